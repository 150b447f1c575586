//! The PITR op-lock in `pbmLockOp` (PBM's `lock.NewOpLock` with `type: "pitr"`): one
//! document per replica set, `{type, replset, node, epoch, hb}` — no `opid`, as PBM
//! writes it — whose `hb` the holder refreshes every 5 s of cluster time. A holder
//! whose beat is 30 s old is dead and the next agent removes it and takes over.
//!
//! The decision logic is the shared [`lock::acquire`]; this store only keys the
//! documents by `(replset, type[, node])` because the PITR lock has no `opid`.

use crate::control::lock::{self, Acquire, LockStore};
use crate::control::ControlError;
use crate::node::Node;
use bson::{doc, Timestamp};
use mongodb::Collection;
use rbm_protocol::defs::{CommandKind, DB, LOCK_OP_COLLECTION};
use rbm_protocol::lock::{LockData, LockHeader};

/// `pbmLockOp` as the PITR lock's store.
#[derive(Clone, Debug)]
pub struct PitrLockStore {
    node: Node,
    coll: Collection<LockData>,
}

impl PitrLockStore {
    pub fn new(node: &Node) -> Self {
        Self {
            node: node.clone(),
            coll: node.pbm.database(DB).collection(LOCK_OP_COLLECTION),
        }
    }

    fn filter(rs: &str) -> bson::Document {
        doc! {"replset": rs, "type": CommandKind::Pitr.as_str()}
    }

    /// The current holder of the replica set's PITR lock, live or not.
    ///
    /// # Errors
    /// Database errors.
    pub async fn current(&self, rs: &str) -> Result<Option<LockData>, ControlError> {
        self.coll
            .find_one(Self::filter(rs))
            .await
            .map_err(ControlError::db("read admin.pbmLockOp"))
    }

    /// Whether a live agent holds the replica set's PITR lock.
    ///
    /// # Errors
    /// Database errors.
    pub async fn live_holder(&self, rs: &str) -> Result<Option<LockData>, ControlError> {
        let Some(l) = self.current(rs).await? else {
            return Ok(None);
        };
        let now = self.node.cluster_time().await?;
        Ok((!l.is_stale(now)).then_some(l))
    }
}

impl LockStore for PitrLockStore {
    type Error = ControlError;

    async fn cluster_time(&self) -> Result<Timestamp, ControlError> {
        Ok(self.node.cluster_time().await?)
    }

    async fn insert(&self, lock: &LockData) -> Result<bool, ControlError> {
        match self.coll.insert_one(lock).await {
            Ok(_) => Ok(true),
            Err(e) if crate::control::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(ControlError::db("insert into admin.pbmLockOp")(e)),
        }
    }

    async fn holder(&self, header: &LockHeader) -> Result<Option<LockData>, ControlError> {
        self.current(&header.replset).await
    }

    async fn remove_stale(&self, lock: &LockData) -> Result<bool, ControlError> {
        let mut filter = Self::filter(&lock.replset);
        filter.insert("node", &lock.node);
        filter.insert("hb", lock.hb);
        if let Some(id) = lock.id {
            filter.insert("_id", id);
        }
        let r = self
            .coll
            .delete_one(filter)
            .await
            .map_err(ControlError::db("delete stale lock in admin.pbmLockOp"))?;
        Ok(r.deleted_count == 1)
    }
}

/// The PITR lock, held by this agent.
#[derive(Clone, Debug)]
pub struct PitrLock {
    store: PitrLockStore,
    rs: String,
    me: String,
}

/// What happened when trying to take the lock.
#[derive(Debug)]
pub enum Take {
    Held {
        lock: Box<PitrLock>,
        /// A dead slicer's lock that was removed on the way.
        took_over: Option<LockData>,
    },
    Busy(LockData),
}

/// Tries to take the replica set's PITR lock for this agent.
///
/// # Errors
/// Database errors.
pub async fn take(node: &Node, epoch: Option<Timestamp>) -> Result<Take, ControlError> {
    let store = PitrLockStore::new(node);
    let header = LockHeader {
        kind: Some(CommandKind::Pitr),
        replset: node.info.replset.clone(),
        node: node.info.name.clone(),
        opid: String::new(),
        epoch,
    };
    Ok(match lock::acquire(&store, &header).await? {
        Acquire::Acquired { took_over } => Take::Held {
            lock: Box::new(PitrLock {
                store,
                rs: header.replset,
                me: header.node,
            }),
            took_over,
        },
        Acquire::Busy(l) | Acquire::SameOp(l) => Take::Busy(l),
    })
}

impl PitrLock {
    fn mine(&self) -> bson::Document {
        let mut f = PitrLockStore::filter(&self.rs);
        f.insert("node", &self.me);
        f
    }

    /// Refreshes `hb`; `Ok(false)` when the lock is no longer ours (taken over as stale).
    ///
    /// # Errors
    /// Database errors.
    pub async fn beat(&self) -> Result<bool, ControlError> {
        let now = self.store.node.cluster_time().await?;
        let r = self
            .store
            .coll
            .update_one(self.mine(), doc! {"$set": {"hb": now}})
            .await
            .map_err(ControlError::db("PITR lock heartbeat"))?;
        Ok(r.matched_count == 1)
    }

    /// Whether the lock is still ours and fresh by cluster time (PBM's check before
    /// every chunk).
    ///
    /// # Errors
    /// Database errors.
    pub async fn still_ours(&self) -> Result<bool, ControlError> {
        Ok(self
            .store
            .live_holder(&self.rs)
            .await?
            .is_some_and(|l| l.node == self.me))
    }

    /// Deletes our lock document.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release(&self) -> Result<(), ControlError> {
        self.store
            .coll
            .delete_one(self.mine())
            .await
            .map_err(ControlError::db("release the PITR lock"))?;
        Ok(())
    }
}
