//! PBM's locks (`pbm/lock/lock.go`): `pbmLock` (one operation per replica set) and
//! `pbmLockOp` (per replica set and type, PITR only). Acquire = insert; the unique
//! index decides the race. A holder whose heartbeat is 30 s of *cluster time* old is
//! dead and may be replaced.
//!
//! The decision logic is [`acquire`] over a [`LockStore`], so it is tested without a
//! database; [`MongoLockStore`] is the real store.

use super::ControlError;
use crate::node::Node;
use bson::{doc, Timestamp};
use mongodb::Collection;
use rbm_protocol::defs::{DB, LOCK_COLLECTION, LOCK_OP_COLLECTION, OP_LOG_COLLECTION};
use rbm_protocol::lock::{LockData, LockHeader, OpLogHeader};
use std::future::Future;

/// Which lock collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `pbmLock`: exclusive per replica set.
    Exclusive,
    /// `pbmLockOp`: per replica set and operation type (PITR slicing).
    PerType,
}

impl LockKind {
    fn collection(self) -> &'static str {
        match self {
            LockKind::Exclusive => LOCK_COLLECTION,
            LockKind::PerType => LOCK_OP_COLLECTION,
        }
    }
}

/// What holds the lock documents and tells the cluster time.
pub trait LockStore {
    type Error;
    /// Cluster time now.
    fn cluster_time(&self) -> impl Future<Output = Result<Timestamp, Self::Error>> + Send;
    /// Inserts; `Ok(false)` on a duplicate key (someone holds the lock).
    fn insert(&self, lock: &LockData) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// The current holder of the lock `header` would take.
    fn holder(
        &self,
        header: &LockHeader,
    ) -> impl Future<Output = Result<Option<LockData>, Self::Error>> + Send;
    /// Deletes exactly this holder's document (same `_id` and `hb`), so a racing
    /// taker-over never removes a lock that was just re-taken.
    fn remove_stale(
        &self,
        lock: &LockData,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// The outcome of one acquisition attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Acquire {
    /// We hold it. `took_over` is the stale lock we removed on the way: its operation
    /// died and must be marked failed.
    Acquired { took_over: Option<LockData> },
    /// A live holder runs another operation (PBM's `ConcurrentOpError`).
    Busy(LockData),
    /// Another node of this replica set won the same operation.
    SameOp(LockData),
}

/// PBM's acquire: insert; on a duplicate look at the holder: alive → busy (or same op);
/// stale by cluster time → delete it and try again.
///
/// # Errors
/// Store errors.
pub async fn acquire<S: LockStore>(store: &S, header: &LockHeader) -> Result<Acquire, S::Error> {
    let mut took_over = None;
    // A few rounds: a holder may release or go stale between our insert and our read.
    for _ in 0..4 {
        let now = store.cluster_time().await?;
        if store.insert(&LockData::new(header.clone(), now)).await? {
            return Ok(Acquire::Acquired { took_over });
        }
        let Some(peer) = store.holder(header).await? else {
            continue;
        };
        if peer.is_stale(now) {
            if store.remove_stale(&peer).await? {
                took_over = Some(peer);
            }
            continue;
        }
        return Ok(if peer.opid == header.opid {
            Acquire::SameOp(peer)
        } else {
            Acquire::Busy(peer)
        });
    }
    // Still contended after several rounds: report whoever holds it now.
    match store.holder(header).await? {
        Some(p) if p.opid == header.opid => Ok(Acquire::SameOp(p)),
        Some(p) => Ok(Acquire::Busy(p)),
        None => Ok(Acquire::Busy(LockData::new(
            header.clone(),
            Timestamp {
                time: 0,
                increment: 0,
            },
        ))),
    }
}

/// The real store: the lock collections in the PBM DB, cluster time from the node.
#[derive(Clone, Debug)]
pub struct MongoLockStore {
    node: Node,
    kind: LockKind,
    coll: Collection<LockData>,
}

impl MongoLockStore {
    pub fn new(node: &Node, kind: LockKind) -> Self {
        Self {
            node: node.clone(),
            kind,
            coll: node.pbm.database(DB).collection(kind.collection()),
        }
    }

    fn filter(&self, header: &LockHeader) -> bson::Document {
        match self.kind {
            LockKind::Exclusive => doc! {"replset": &header.replset},
            LockKind::PerType => doc! {
                "replset": &header.replset,
                "type": header.kind.map(|k| k.as_str()).unwrap_or_default(),
            },
        }
    }
}

impl LockStore for MongoLockStore {
    type Error = ControlError;

    async fn cluster_time(&self) -> Result<Timestamp, ControlError> {
        Ok(self.node.cluster_time().await?)
    }

    async fn insert(&self, lock: &LockData) -> Result<bool, ControlError> {
        match self.coll.insert_one(lock).await {
            Ok(_) => Ok(true),
            Err(e) if super::is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(ControlError::db(format!(
                "insert into admin.{}",
                self.kind.collection()
            ))(e)),
        }
    }

    async fn holder(&self, header: &LockHeader) -> Result<Option<LockData>, ControlError> {
        self.coll
            .find_one(self.filter(header))
            .await
            .map_err(ControlError::db(format!(
                "read admin.{}",
                self.kind.collection()
            )))
    }

    async fn remove_stale(&self, lock: &LockData) -> Result<bool, ControlError> {
        let mut filter = doc! {"replset": &lock.replset, "opid": &lock.opid, "hb": lock.hb};
        if let Some(id) = lock.id {
            filter.insert("_id", id);
        }
        let r = self
            .coll
            .delete_one(filter)
            .await
            .map_err(ControlError::db(format!(
                "delete stale lock in admin.{}",
                self.kind.collection()
            )))?;
        Ok(r.deleted_count == 1)
    }
}

/// A lock we hold.
#[derive(Debug, Clone)]
pub struct HeldLock {
    store: MongoLockStore,
    pub header: LockHeader,
}

/// What an agent says when another operation holds the lock it needs.
pub fn busy_message(holder: &LockData) -> String {
    format!(
        "another operation is running: {} (opid {}) on {}",
        holder.kind.map(|k| k.as_str()).unwrap_or(""),
        holder.opid,
        holder.node
    )
}

/// The result of taking the lock for an operation.
#[derive(Debug)]
pub enum OpLock {
    Held {
        // Boxed: the other variants are small and this one is moved around rarely.
        lock: Box<HeldLock>,
        took_over: Option<LockData>,
    },
    Busy(LockData),
    SameOp(LockData),
    /// The operation already ran on this replica set (`pbmOpLog` has its header; PBM's
    /// `DuplicatedOpError`): it must not run again, e.g. after an agent restart.
    AlreadyRan,
}

/// Takes the lock for an operation and records it in `pbmOpLog`, whose unique
/// `(opid, replset)` index makes an operation run at most once per replica set.
///
/// # Errors
/// Database errors.
pub async fn acquire_for_op(
    node: &Node,
    kind: LockKind,
    header: LockHeader,
) -> Result<OpLock, ControlError> {
    let store = MongoLockStore::new(node, kind);
    match acquire(&store, &header).await? {
        Acquire::Busy(p) => Ok(OpLock::Busy(p)),
        Acquire::SameOp(p) => Ok(OpLock::SameOp(p)),
        Acquire::Acquired { took_over } => {
            let held = HeldLock {
                store,
                header: header.clone(),
            };
            if kind == LockKind::Exclusive {
                let oplog: Collection<OpLogHeader> =
                    node.pbm.database(DB).collection(OP_LOG_COLLECTION);
                match oplog.insert_one(OpLogHeader::from(header)).await {
                    Ok(_) => {}
                    Err(e) if super::is_duplicate_key(&e) => {
                        held.release().await?;
                        return Ok(OpLock::AlreadyRan);
                    }
                    Err(e) => {
                        let _ = held.release().await;
                        return Err(ControlError::db(format!(
                            "insert into admin.{OP_LOG_COLLECTION}"
                        ))(e));
                    }
                }
            }
            Ok(OpLock::Held {
                lock: Box::new(held),
                took_over,
            })
        }
    }
}

impl HeldLock {
    /// Refreshes `hb` with the cluster time. `Ok(false)` when the lock is no longer ours
    /// (someone took it over as stale): the operation must stop.
    ///
    /// # Errors
    /// Database errors.
    pub async fn beat(&self) -> Result<bool, ControlError> {
        let now = self.store.node.cluster_time().await?;
        let r = self
            .store
            .coll
            .update_one(
                doc! {"replset": &self.header.replset, "opid": &self.header.opid, "node": &self.header.node},
                doc! {"$set": {"hb": now}},
            )
            .await
            .map_err(ControlError::db("lock heartbeat"))?;
        Ok(r.matched_count == 1)
    }

    /// Deletes our lock document.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release(&self) -> Result<(), ControlError> {
        self.store
            .coll
            .delete_one(doc! {"replset": &self.header.replset, "opid": &self.header.opid, "node": &self.header.node})
            .await
            .map_err(ControlError::db("release lock"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_protocol::defs::CommandKind;
    use std::sync::Mutex;

    /// An in-memory store with a settable cluster time.
    #[derive(Default)]
    struct Mem {
        now: Mutex<u32>,
        lock: Mutex<Option<LockData>>,
    }

    impl LockStore for Mem {
        type Error = std::convert::Infallible;
        async fn cluster_time(&self) -> Result<Timestamp, Self::Error> {
            Ok(Timestamp {
                time: *self.now.lock().expect("mutex"),
                increment: 1,
            })
        }
        async fn insert(&self, lock: &LockData) -> Result<bool, Self::Error> {
            let mut l = self.lock.lock().expect("mutex");
            if l.is_some() {
                return Ok(false);
            }
            *l = Some(lock.clone());
            Ok(true)
        }
        async fn holder(&self, _: &LockHeader) -> Result<Option<LockData>, Self::Error> {
            Ok(self.lock.lock().expect("mutex").clone())
        }
        async fn remove_stale(&self, lock: &LockData) -> Result<bool, Self::Error> {
            let mut l = self.lock.lock().expect("mutex");
            if l.as_ref() == Some(lock) {
                *l = None;
                return Ok(true);
            }
            Ok(false)
        }
    }

    fn header(node: &str, opid: &str) -> LockHeader {
        LockHeader {
            kind: Some(CommandKind::Backup),
            replset: "rs0".into(),
            node: node.into(),
            opid: opid.into(),
            epoch: None,
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn first_wins_then_busy_or_same_op() {
        let s = Mem::default();
        *s.now.lock().expect("mutex") = 100;
        block_on(async {
            assert_eq!(
                acquire(&s, &header("a:1", "op1")).await,
                Ok(Acquire::Acquired { took_over: None })
            );
            assert!(
                matches!(acquire(&s, &header("b:1", "op1")).await, Ok(Acquire::SameOp(p)) if p.node == "a:1")
            );
            assert!(
                matches!(acquire(&s, &header("b:1", "op2")).await, Ok(Acquire::Busy(p)) if p.node == "a:1")
            );
        });
    }

    #[test]
    fn stale_only_after_30s_of_cluster_time() {
        let s = Mem::default();
        *s.now.lock().expect("mutex") = 100;
        block_on(async {
            assert!(matches!(
                acquire(&s, &header("a:1", "op1")).await,
                Ok(Acquire::Acquired { .. })
            ));
            // hb 100 + 30 = 130 is not < 130: still alive.
            *s.now.lock().expect("mutex") = 130;
            assert!(matches!(
                acquire(&s, &header("b:1", "op2")).await,
                Ok(Acquire::Busy(_))
            ));
            *s.now.lock().expect("mutex") = 131;
            match acquire(&s, &header("b:1", "op2")).await {
                Ok(Acquire::Acquired {
                    took_over: Some(old),
                }) => assert_eq!(old.opid, "op1"),
                other => panic!("expected a takeover, got {other:?}"),
            }
            assert_eq!(
                s.lock
                    .lock()
                    .expect("mutex")
                    .as_ref()
                    .map(|l| l.node.clone()),
                Some("b:1".into())
            );
        });
    }
}
