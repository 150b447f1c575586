//! Progress of a running backup or restore: the engines count into a [`Progress`]
//! handle (atomics, no I/O), and a [`Publisher`] task writes the counts to the
//! operation's control document at most once a second (`replsets.$.progress`, see
//! [`rbm_protocol::meta::progress`]), so `rbm status` and `--wait` can show them.

pub mod cli;

use bson::{doc, Document};
use mongodb::Collection;
use rbm_protocol::meta::progress::OpProgress;
use rbm_protocol::meta::{NamespaceType, NamespaceV2};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often progress is written at most.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Counters {
    bytes: AtomicU64,
    bytes_total: AtomicU64,
    collections: AtomicU64,
    collections_total: AtomicU64,
}

/// A cheap, clonable counter set; the default one counts nothing (for callers that do
/// not report progress).
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<Arc<Counters>>);

impl Progress {
    /// A handle that counts.
    pub fn new() -> Self {
        Self(Some(Arc::default()))
    }

    pub fn add_bytes(&self, n: u64) {
        if let Some(c) = &self.0 {
            c.bytes.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn collection_done(&self) {
        if let Some(c) = &self.0 {
            c.collections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The expected totals; a `bytes` of 0 means unknown.
    pub fn set_totals(&self, bytes: u64, collections: u64) {
        if let Some(c) = &self.0 {
            c.bytes_total.store(bytes, Ordering::Relaxed);
            c.collections_total.store(collections, Ordering::Relaxed);
        }
    }

    /// `(bytes, bytes_total, collections, collections_total)`.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        match &self.0 {
            None => (0, 0, 0, 0),
            Some(c) => (
                c.bytes.load(Ordering::Relaxed),
                c.bytes_total.load(Ordering::Relaxed),
                c.collections.load(Ordering::Relaxed),
                c.collections_total.load(Ordering::Relaxed),
            ),
        }
    }
}

/// Where progress goes: the replica set's entry of one operation's document.
pub struct Publisher {
    pub coll: Collection<Document>,
    /// The operation's `name`.
    pub name: String,
    pub replset: String,
    pub node: String,
}

fn unix_now() -> i64 {
    crate::control::unix_now()
}

impl Publisher {
    /// The publisher of this node's replica set entry in `coll`'s document `name`.
    pub fn new(coll: Collection<Document>, name: &str, node: &crate::node::Node) -> Self {
        Self {
            coll,
            name: name.to_string(),
            replset: node.info.replset.clone(),
            node: node.info.name.clone(),
        }
    }

    /// Runs `work` while publishing `progress`; the final figures are written before it
    /// returns.
    pub async fn around<T>(
        self,
        progress: Progress,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let stop = CancellationToken::new();
        // Dropped half-way (the operation was stopped), the task still ends.
        let _guard = stop.clone().drop_guard();
        let task = self.spawn(progress, stop.clone());
        let out = work.await;
        stop.cancel();
        let _ = task.await;
        out
    }

    /// Publishes every [`PUBLISH_EVERY`] while the counts move, and once more when
    /// `stop` fires (so the last figures are the final ones). Failures are logged and
    /// skipped: progress is advisory and must never fail the operation.
    pub fn spawn(self, progress: Progress, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let started = unix_now();
            let mut last: Option<(u64, u64, u64, u64)> = None;
            loop {
                let stopping = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tokio::time::sleep(PUBLISH_EVERY) => false,
                };
                let now = progress.counts();
                if last != Some(now) || stopping {
                    self.write(now, started).await;
                    last = Some(now);
                }
                if stopping {
                    return;
                }
            }
        })
    }

    async fn write(
        &self,
        (bytes, bytes_total, colls, colls_total): (u64, u64, u64, u64),
        started: i64,
    ) {
        let p = OpProgress {
            node: self.node.clone(),
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            bytes_total: i64::try_from(bytes_total).unwrap_or(i64::MAX),
            collections: i64::try_from(colls).unwrap_or(i64::MAX),
            collections_total: i64::try_from(colls_total).unwrap_or(i64::MAX),
            started,
            updated: unix_now(),
        };
        let Ok(p) = bson::serialize_to_bson(&p) else {
            return;
        };
        if let Err(e) = self
            .coll
            .update_one(
                doc! {"name": &self.name, "replsets.name": &self.replset},
                doc! {"$set": {"replsets.$.progress": p}},
            )
            .await
        {
            tracing::debug!("publish progress of {}: {e}", self.name);
        }
    }
}

/// A progress handle for the dump of `namespaces`, with its totals.
pub async fn for_dump(node: &mongodb::Client, namespaces: &[NamespaceV2]) -> Progress {
    let colls: Vec<&NamespaceV2> = namespaces
        .iter()
        .filter(|n| n.kind == NamespaceType::Collection)
        .collect();
    let p = Progress::new();
    p.set_totals(data_size(node, &colls).await, colls.len() as u64);
    p
}

/// The uncompressed size of the collections a backup will dump, from `collStats`
/// (0 = unknown). SecantusDB answers `collStats` by scanning the collection, which
/// would cost as much as the dump: there the total stays unknown.
async fn data_size(node: &mongodb::Client, namespaces: &[&NamespaceV2]) -> u64 {
    if crate::testserver::is_secantus(node).await {
        return 0;
    }
    let mut total = 0u64;
    for ns in namespaces {
        let (db, coll) = (&ns.db, &ns.name);
        let Ok(r) = node
            .database(db)
            .run_command(doc! {"collStats": coll})
            .await
        else {
            return 0;
        };
        let size = match r.get("size") {
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            Some(bson::Bson::Int64(n)) => *n,
            Some(bson::Bson::Double(f)) => *f as i64,
            _ => 0,
        };
        total += u64::try_from(size).unwrap_or(0);
    }
    total
}
