//! The agent's Prometheus metrics (opt-in with `--metrics-addr`).
//!
//! One process-wide set in a [`OnceLock`]: the engines record through the free
//! functions here ([`op_finished`], [`error`], ...) without a handle threaded through
//! them, and every recorder is a no-op (one atomic load) when metrics are off.
//!
//! Counters and histograms are recorded as things happen. Figures that are facts of the
//! cluster rather than of this process (the last successful backup per type, PITR lag,
//! which locks this agent holds) are read from the control collections at scrape time,
//! so they are right after a restart and agree between agents.

pub mod server;
pub mod storage;

use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rbm_protocol::defs::{
    BACKUPS_COLLECTION, CONFIG_COLLECTION, DB, LOCK_COLLECTION, LOCK_OP_COLLECTION,
    PITR_CHUNKS_COLLECTION,
};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::node::Node;

/// How long a scrape may spend on the control collections.
const SCRAPE_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `backup`, `restore`, ...
    pub op: String,
    /// `logical`, `physical`, ... (empty when the operation has no type).
    #[prometheus(flatten)]
    pub kind: TypeLabel,
    /// `done`, `error`, `canceled`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub storage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RsLabel {
    pub rs: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub rs: String,
    pub node: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    info: Family<InfoLabels, Gauge>,
    operations: Family<OpLabels, Counter>,
    operation_seconds: HistogramFamily<OpLabels>,
    commands: Family<CommandLabels, Counter>,
    storage_written: Family<StorageLabels, Counter>,
    storage_read: Family<StorageLabels, Counter>,
    errors: Family<KindLabel, Counter>,
    last_backup: Family<TypeLabel, Gauge>,
    pitr_last_chunk_end: Family<RsLabel, Gauge>,
    pitr_lag: Family<RsLabel, Gauge<f64, AtomicU64>>,
    lock_held: Family<TypeLabel, Gauge>,
    pitr_enabled: Gauge,
    /// Set by this agent's slicer (cluster-time seconds of its last chunk's end), so
    /// the lag is known even when the control collections cannot be read.
    slicer_chunk_end: AtomicI64,
    node: OnceLock<Node>,
}

fn duration_histogram() -> Histogram {
    // 1 s to ~9 h.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("rbm");
        let m = Self {
            info: Family::default(),
            operations: Family::default(),
            operation_seconds: Family::new_with_constructor(duration_histogram),
            commands: Family::default(),
            storage_written: Family::default(),
            storage_read: Family::default(),
            errors: Family::default(),
            last_backup: Family::default(),
            pitr_last_chunk_end: Family::default(),
            pitr_lag: Family::default(),
            lock_held: Family::default(),
            pitr_enabled: Gauge::default(),
            slicer_chunk_end: AtomicI64::new(0),
            node: OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register(
            "agent_info",
            "The agent's version and node (always 1)",
            m.info.clone(),
        );
        registry.register(
            "operations",
            "Backups and restores this agent ran, by operation, type and result",
            m.operations.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "How long the operations this agent ran took, by operation, type and result",
            m.operation_seconds.clone(),
        );
        registry.register(
            "commands",
            "Commands this agent handled from admin.pbmCmd, by command and result",
            m.commands.clone(),
        );
        registry.register(
            "storage_written_bytes",
            "Bytes this agent wrote to backup storage",
            m.storage_written.clone(),
        );
        registry.register(
            "storage_read_bytes",
            "Bytes this agent read from backup storage",
            m.storage_read.clone(),
        );
        registry.register(
            "errors",
            "Failed operations and commands, by kind of error",
            m.errors.clone(),
        );
        registry.register(
            "last_successful_backup_timestamp_seconds",
            "Unix time at which the last successful backup of each type completed",
            m.last_backup.clone(),
        );
        registry.register(
            "pitr_last_chunk_end_timestamp_seconds",
            "Cluster time (unix seconds) up to which the oplog of each replica set is saved",
            m.pitr_last_chunk_end.clone(),
        );
        registry.register(
            "pitr_lag_seconds",
            "Seconds between the cluster time and the end of the last saved oplog chunk",
            m.pitr_lag.clone(),
        );
        registry.register(
            "pitr_enabled",
            "1 when PITR is on in the cluster's config",
            m.pitr_enabled.clone(),
        );
        registry.register(
            "lock_held",
            "1 for each type of operation lock this agent holds",
            m.lock_held.clone(),
        );
        Self { registry, ..m }
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Turns metrics on (idempotent).
pub fn enable() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// The metrics, when enabled.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Gives the scrape the agent's connections (for `/healthz` and the figures read from
/// the control collections).
pub fn attach(node: &Node) {
    if let Some(m) = get() {
        let _ = m.node.set(node.clone());
        m.info
            .get_or_create(&InfoLabels {
                version: crate::VERSION.to_string(),
                rs: node.info.replset.clone(),
                node: node.info.name.clone(),
            })
            .set(1);
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Canceled,
    /// Failed, with the kind of error (`storage`, `db`, ...).
    Failed(&'static str),
}

/// An operation ended: `op` is `backup`/`restore`/..., `kind` its type (`logical`).
/// A failure also counts in `rbm_errors_total`.
pub fn op_finished(op: &str, kind: &str, outcome: Outcome, took: Duration) {
    if let Some(m) = get() {
        let result = match outcome {
            Outcome::Done => "done",
            Outcome::Canceled => "canceled",
            Outcome::Failed(why) => {
                error(why);
                "error"
            }
        };
        let l = OpLabels {
            op: op.to_string(),
            kind: TypeLabel {
                r#type: kind.to_string(),
            },
            result: result.to_string(),
        };
        m.operations.get_or_create(&l).inc();
        m.operation_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }
}

/// A command from `pbmCmd` was handled; `ok` is whether its handler succeeded.
pub fn command_handled(command: &str, ok: bool) {
    if let Some(m) = get() {
        m.commands
            .get_or_create(&CommandLabels {
                command: command.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

/// An error of `kind` (`storage`, `db`, `lock_lost`, ...) failed an operation.
pub fn error(kind: &str) {
    if let Some(m) = get() {
        m.errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }
}

pub(crate) fn storage_written(storage: &str, n: u64) {
    if let Some(m) = get() {
        m.storage_written
            .get_or_create(&StorageLabels {
                storage: storage.to_string(),
            })
            .inc_by(n);
    }
}

pub(crate) fn storage_read(storage: &str, n: u64) {
    if let Some(m) = get() {
        m.storage_read
            .get_or_create(&StorageLabels {
                storage: storage.to_string(),
            })
            .inc_by(n);
    }
}

/// For the PITR slicer: the cluster time at which the last chunk it stored for this
/// agent's replica set ends. The lag is computed at scrape time from the later of this
/// and the last chunk in `pbmPITRChunks`.
pub fn set_pitr_chunk_end(end: Timestamp) {
    if let Some(m) = get() {
        m.slicer_chunk_end
            .fetch_max(i64::from(end.time), Ordering::Relaxed);
    }
}

/// How a backup ended, for [`op_finished`].
pub fn backup_outcome(r: &Result<(), crate::backup::BackupError>) -> Outcome {
    use crate::backup::BackupError as E;
    let e = match r {
        Ok(()) => return Outcome::Done,
        Err(E::Cancelled) => return Outcome::Canceled,
        Err(e) => e,
    };
    Outcome::Failed(match e {
        E::Db { .. } | E::Node(_) => "db",
        E::Bson { .. } => "bson",
        E::Storage(_) => "storage",
        E::Oplog(_) => "oplog",
        E::Control(_) => "control",
        E::Cancelled => "canceled",
        E::Shutdown => "shutdown",
        E::LockLost => "lock_lost",
        E::Check(_) => "check",
        E::Other(_) => "other",
    })
}

impl Metrics {
    /// The text exposition, after refreshing the figures read from the cluster.
    pub async fn render(&self) -> String {
        self.refresh().await;
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encode metrics: {e}");
        }
        out
    }

    async fn refresh(&self) {
        let Some(node) = self.node.get() else { return };
        let chunk_end =
            match tokio::time::timeout(SCRAPE_QUERY_TIMEOUT, self.refresh_from_db(node)).await {
                Ok(end) => end,
                Err(_) => {
                    tracing::debug!("metrics: the control collections did not answer in time");
                    None
                }
            };
        // The slicer's own figure counts too: it is known even when the chunks could
        // not be read, and it may be newer than what a lagging read saw.
        let end = chunk_end
            .unwrap_or(0)
            .max(self.slicer_chunk_end.load(Ordering::Relaxed));
        let mine = RsLabel {
            rs: node.info.replset.clone(),
        };
        if end <= 0 {
            return;
        }
        self.pitr_last_chunk_end.get_or_create(&mine).set(end);
        if let Ok(now) = node.cluster_time().await {
            self.pitr_lag
                .get_or_create(&mine)
                .set((i64::from(now.time) - end).max(0) as f64);
        }
    }

    /// Reads the cluster's figures; returns the end (cluster-time seconds) of this
    /// replica set's last PITR chunk.
    async fn refresh_from_db(&self, node: &Node) -> Option<i64> {
        let admin = node.pbm.database(DB);
        // The last `done` backup of each type.
        for t in ["logical", "physical", "incremental", "external"] {
            let r = admin
                .collection::<Document>(BACKUPS_COLLECTION)
                .find_one(doc! {"type": t, "status": "done"})
                .sort(doc! {"last_transition_ts": -1})
                .projection(doc! {"last_transition_ts": 1})
                .await;
            if let Ok(Some(d)) = r {
                if let Some(ts) = int_of(&d, "last_transition_ts") {
                    self.last_backup
                        .get_or_create(&TypeLabel {
                            r#type: t.to_string(),
                        })
                        .set(ts);
                }
            }
        }
        // Whether PITR is configured on (the main config, not a profile).
        if let Ok(Some(c)) = admin
            .collection::<Document>(CONFIG_COLLECTION)
            .find_one(doc! {"profile": {"$ne": true}})
            .projection(doc! {"pitr.enabled": 1})
            .await
        {
            let on = c
                .get_document("pitr")
                .ok()
                .and_then(|p| p.get_bool("enabled").ok())
                .unwrap_or(false);
            self.pitr_enabled.set(i64::from(on));
        }
        self.refresh_locks(node).await;
        // The end of the last PITR chunk of this replica set.
        let d = admin
            .collection::<Document>(PITR_CHUNKS_COLLECTION)
            .find_one(doc! {"rs": &node.info.replset})
            .sort(doc! {"end_ts": -1})
            .projection(doc! {"end_ts": 1})
            .await
            .ok()??;
        d.get_timestamp("end_ts").ok().map(|t| i64::from(t.time))
    }

    /// The locks this agent holds (a stale one is still held until taken over); left
    /// as they were when the collections cannot be read.
    async fn refresh_locks(&self, node: &Node) {
        let admin = node.pbm.database(DB);
        let mut held: Vec<String> = Vec::new();
        for coll in [LOCK_COLLECTION, LOCK_OP_COLLECTION] {
            let Ok(cur) = admin
                .collection::<Document>(coll)
                .find(doc! {"replset": &node.info.replset, "node": &node.info.name})
                .await
            else {
                return;
            };
            let Ok(docs) = cur.try_collect::<Vec<Document>>().await else {
                return;
            };
            held.extend(
                docs.iter()
                    .filter_map(|d| d.get_str("type").ok().map(str::to_string)),
            );
        }
        self.lock_held.clear();
        for t in ["backup", "restore", "pitr"] {
            self.lock_held
                .get_or_create(&TypeLabel {
                    r#type: t.to_string(),
                })
                .set(0);
        }
        for t in held {
            self.lock_held
                .get_or_create(&TypeLabel { r#type: t })
                .set(1);
        }
    }
}

fn int_of(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        bson::Bson::Int32(n) => Some(i64::from(*n)),
        bson::Bson::Int64(n) => Some(*n),
        bson::Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}
