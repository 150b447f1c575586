//! The PITR slicer: one per replica set, writes oplog chunks to storage (PBM's
//! `cmd/pbm-agent/pitr.go` and `pbm/slicer`).
//!
//! Every agent runs [`run`]: each check period (PBM: 15 s) it reads the config and,
//! when `pitr.enabled`, no other operation forbids slicing (PBM's `canSlicingNow`: any
//! live lock except a physical backup or a backup to another storage), no live agent
//! holds the replica set's PITR lock and its node suits, it takes that lock and slices.
//! Agents of better nomination groups (`pitr.priority`, else hidden > secondary >
//! primary, as PBM scores them) try first: an agent of the n-th group waits n × 5 s
//! before trying, which replaces PBM's cluster-leader nomination round for the same
//! outcome with no coordinator.
//!
//! While holding the lock the slicer ([`Session`]) finds its start point
//! ([`super::slicer_start`]), then every `pitr.oplogSpanMin` cuts the chunk
//! `[last end, majority last write]`, so consecutive chunks share their boundary
//! timestamp: no gap, no overlap, on restart or handover too (the next slicer starts at
//! the last indexed chunk's end). It stops — after a last chunk up to now — when PITR
//! is disabled, its settings change, or the agent shuts down; it cuts its last chunk at
//! a logical backup's `first_write_ts` and pauses while that backup runs (PBM 2.x), and
//! stops without a last chunk when its lock was taken over or its node no longer suits.
//! A start point the oplog no longer holds is never bridged: the gap is logged as an
//! error in `pbmLog` and a new run of chunks starts at the oldest entry still there.

use super::slicer_chunk::{self, ChunkTarget};
use super::slicer_lock::{self, PitrLock, PitrLockStore, Take};
use super::slicer_start::{self, fmt_ts};
use crate::control::heartbeat::Heartbeat;
use crate::control::nominate;
use crate::control::pbmlog::{Event, PbmLog};
use crate::control::ControlError;
use crate::node::{Node, NodeError, NodeRole};
use crate::oplog::read::{self, OplogReadError};
use crate::oplog::ts_lt;
use bson::{doc, RawDocumentBuf, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::config::{Config, PitrConf};
use rbm_protocol::defs::{
    BackupType, CommandKind, Status, BACKUPS_COLLECTION, DB, HEARTBEAT_INTERVAL, LOCK_COLLECTION,
    NOMINATION_GROUP_WAIT, PITR_CHECK_RANGE, PITR_COLLECTION,
};
use rbm_protocol::lock::LockData;
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::BackupMeta;
use rbm_storage::{Compression, StorageError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Test-only knob: the check period in milliseconds instead of PBM's 15 s.
pub const TEST_CHECK_ENV: &str = "RBM_AGENT_TEST_PITR_CHECK_MS";

/// How long a last chunk may take when the agent shuts down.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(30);

/// Why slicing failed.
#[derive(Debug, thiserror::Error)]
pub enum SlicerError {
    #[error("{what}: {}", crate::node::concise(.source))]
    Db {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Oplog(#[from] OplogReadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

impl SlicerError {
    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let what = what.into();
        move |source| SlicerError::Db { what, source }
    }
}

/// Settings of the PITR routine.
#[derive(Debug, Clone)]
struct Settings {
    check: Duration,
    throttle: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let ms = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        Self {
            check: ms(TEST_CHECK_ENV)
                .filter(|d| !d.is_zero())
                .unwrap_or(PITR_CHECK_RANGE),
            throttle: ms(slicer_chunk::TEST_THROTTLE_ENV).unwrap_or_default(),
        }
    }

    /// How often a running slicer looks at the config and for backups.
    fn poll(&self) -> Duration {
        self.check.min(HEARTBEAT_INTERVAL)
    }
}

/// PBM's `sliceNow`: the agent's command handler tells its own slicer that a backup
/// was sent, so that the slicer cuts at the backup's first write at once instead of at
/// its next check, which a short backup may have outlasted.
#[derive(Clone, Debug)]
pub struct Wakeup(std::sync::Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Wakeup {
    /// The handle for command handlers, and the receiver for [`run`].
    pub fn new() -> (Self, tokio::sync::watch::Receiver<Option<String>>) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (Self(std::sync::Arc::new(tx)), rx)
    }

    /// A backup with this operation id was sent.
    pub fn backup_sent(&self, opid: &str) {
        self.0.send_replace(Some(opid.to_string()));
    }
}

/// The agent's PITR routine, until `shutdown`; `wakeup` is the receiver of
/// [`Wakeup::new`].
pub async fn run(
    node: Node,
    log: PbmLog,
    wakeup: tokio::sync::watch::Receiver<Option<String>>,
    shutdown: CancellationToken,
) {
    let settings = Settings::from_env();
    let mut routine = Routine {
        node,
        log,
        settings,
        last_note: None,
        wakeup,
    };
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(routine.settings.check) => {}
            }
        }
        first = false;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err((epoch, e)) = routine.attempt(&shutdown).await {
            routine
                .note(Severity::Error, epoch, &format!("init: {e}"))
                .await;
        }
    }
}

struct Routine {
    node: Node,
    log: PbmLog,
    settings: Settings,
    /// The last message written by [`Routine::note`]: repeated ones are not logged again
    /// every check period.
    last_note: Option<String>,
    wakeup: tokio::sync::watch::Receiver<Option<String>>,
}

fn pitr_event(epoch: Option<Timestamp>) -> Event<'static> {
    Event {
        event: CommandKind::Pitr.as_str(),
        obj: "",
        opid: "",
        epoch,
    }
}

impl Routine {
    async fn note(&mut self, s: Severity, epoch: Option<Timestamp>, msg: &str) {
        if self.last_note.as_deref() == Some(msg) {
            tracing::debug!("{msg}");
            return;
        }
        self.last_note = Some(msg.to_string());
        self.log.write(s, &pitr_event(epoch), msg).await;
    }

    /// One check: start slicing if this agent should.
    async fn attempt(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<(), (Option<Timestamp>, SlicerError)> {
        let cfg = match Heartbeat::main_config(&self.node).await {
            Ok(Some(c)) => c.with_defaults(),
            Ok(None) => return Ok(()),
            Err(e) => return Err((None, e.into())),
        };
        let epoch = cfg.epoch;
        let pitr = cfg.pitr.clone().unwrap_or_default();
        if !pitr.enabled {
            self.last_note = None;
            return Ok(());
        }
        let e = |e: SlicerError| (epoch, e);
        if let Some(holder) = blocking_op(&self.node, &cfg).await.map_err(e)? {
            let msg = format!(
                "oplog slicer is paused for lock [{}, opid: {}]",
                holder.kind.map(|k| k.as_str()).unwrap_or(""),
                holder.opid
            );
            self.note(Severity::Info, epoch, &msg).await;
            return Ok(());
        }
        let rs = self.node.info.replset.clone();
        let store = PitrLockStore::new(&self.node);
        if store
            .live_holder(&rs)
            .await
            .map_err(|x| e(x.into()))?
            .is_some()
        {
            return Ok(());
        }
        let (role, _) = self.node.hello().await.map_err(|x| e(x.into()))?;
        if !suits(role) {
            return Ok(());
        }
        let rank = nomination_rank(&self.node, &pitr).await.map_err(e)?;
        if rank > 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(NOMINATION_GROUP_WAIT * rank as u32) => {}
            }
            if store
                .live_holder(&rs)
                .await
                .map_err(|x| e(x.into()))?
                .is_some()
            {
                return Ok(());
            }
        }
        let (lock, took_over) = match slicer_lock::take(&self.node, epoch)
            .await
            .map_err(|x| e(x.into()))?
        {
            Take::Busy(_) => return Ok(()),
            Take::Held { lock, took_over } => (*lock, took_over),
        };
        self.last_note = None;
        if let Some(old) = took_over {
            self.log
                .write(
                    Severity::Info,
                    &pitr_event(epoch),
                    &format!(
                        "took over PITR slicing of {rs} from {} (its lock went stale)",
                        old.node
                    ),
                )
                .await;
        }
        let session = Session {
            wakeup: self.wakeup.clone(),
            node: &self.node,
            log: &self.log,
            settings: &self.settings,
            cfg,
            lock: lock.clone(),
            start_role: role,
        };
        let res = session.run(shutdown).await;
        if let Err(r) = lock.release().await {
            tracing::warn!("release the PITR lock: {r}");
        }
        res.map(|_| ())
            .map_err(|x| e(SlicerError::Other(format!("streaming oplog: {x}"))))
    }
}

/// PBM's `NodeSuits` for the roles this agent knows.
fn suits(role: NodeRole) -> bool {
    matches!(
        role,
        NodeRole::Primary | NodeRole::Secondary | NodeRole::Hidden
    )
}

/// Implicit priority of a role (PBM's `CalcPriorityForNode`).
fn implicit_prio(role: NodeRole) -> f64 {
    match role {
        NodeRole::Hidden => nominate::HIDDEN_PRIO,
        NodeRole::Primary => nominate::PRIMARY_PRIO,
        _ => nominate::SECONDARY_PRIO,
    }
}

/// The index of this agent's nomination group among the replica set's steady agents
/// (0 = the best); an agent not listed as steady comes after every group.
async fn nomination_rank(node: &Node, pitr: &PitrConf) -> Result<usize, SlicerError> {
    let steady = nominate::steady_agents(node).await?;
    let groups = nominate::groups(&steady, &pitr.priority);
    Ok(groups
        .iter()
        .position(|g| g.iter().any(|n| n == &node.info.name))
        .unwrap_or(groups.len()))
}

/// PBM's `canSlicingNow`: the live `pbmLock` holder that forbids slicing — any
/// operation but a backup, or a logical backup to the main storage.
async fn blocking_op(node: &Node, cfg: &Config) -> Result<Option<LockData>, SlicerError> {
    let now = node.cluster_time().await?;
    let locks: Vec<LockData> = node
        .pbm
        .database(DB)
        .collection::<LockData>(LOCK_COLLECTION)
        .find(doc! {})
        .await
        .map_err(SlicerError::db("read admin.pbmLock"))?
        .try_collect()
        .await
        .map_err(SlicerError::db("read admin.pbmLock"))?;
    for l in locks {
        if l.is_stale(now) {
            continue;
        }
        if l.kind != Some(CommandKind::Backup) {
            return Ok(Some(l));
        }
        let Some(b) = backup_by_opid(node, &l.opid).await? else {
            continue;
        };
        if b.kind == BackupType::Logical && same_storage(&b, cfg) {
            return Ok(Some(l));
        }
    }
    Ok(None)
}

/// PBM's `IsSameStorage` for the cases rbm writes: a backup to a profile goes elsewhere.
fn same_storage(b: &BackupMeta, cfg: &Config) -> bool {
    !b.store.is_profile && b.store.storage == cfg.storage
}

async fn backup_by_opid(node: &Node, opid: &str) -> Result<Option<BackupMeta>, SlicerError> {
    node.pbm
        .database(DB)
        .collection::<BackupMeta>(BACKUPS_COLLECTION)
        .find_one(doc! {"opid": opid})
        .await
        .map_err(SlicerError::db("read admin.pbmBackups"))
}

/// The oldest entry of the node's oplog.
async fn oldest_entry(node: &Node) -> Result<Timestamp, SlicerError> {
    let first = node
        .local
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"$natural": 1})
        .await
        .map_err(SlicerError::db("query local.oplog.rs"))?
        .ok_or_else(|| SlicerError::Other("the oplog is empty".into()))?;
    Ok(read::entry_ts(&first)?)
}

/// Why a slicing session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Disabled,
    Reconfig,
    Shutdown,
    LockLost,
    Backup,
    NodeUnsuitable,
}

/// What the config says about a running slicer.
#[derive(Debug, Clone, PartialEq)]
struct Knobs {
    span: Duration,
    oplog_only: bool,
    priority: std::collections::BTreeMap<String, f64>,
    compression: Compression,
    level: Option<i32>,
}

fn knobs(cfg: &Config) -> Result<Knobs, SlicerError> {
    let pitr = cfg.pitr.clone().unwrap_or_default();
    let compression: Compression = pitr
        .compression
        .parse()
        .map_err(|_| SlicerError::Other(format!("unknown compression {:?}", pitr.compression)))?;
    compression
        .check_level(pitr.compression_level)
        .map_err(|e| SlicerError::Other(e.to_string()))?;
    Ok(Knobs {
        span: cfg.pitr_span(),
        oplog_only: pitr.oplog_only,
        priority: pitr.priority,
        compression,
        level: pitr.compression_level,
    })
}

struct Session<'a> {
    wakeup: tokio::sync::watch::Receiver<Option<String>>,
    node: &'a Node,
    log: &'a PbmLog,
    settings: &'a Settings,
    cfg: Config,
    lock: PitrLock,
    start_role: NodeRole,
}

impl Session<'_> {
    async fn log(&self, s: Severity, msg: &str) {
        self.log.write(s, &pitr_event(self.cfg.epoch), msg).await;
    }

    /// Slices until a stop; the lock heartbeat runs alongside.
    async fn run(&self, shutdown: &CancellationToken) -> Result<Stop, SlicerError> {
        let lost = CancellationToken::new();
        let hb_stop = CancellationToken::new();
        let hb = tokio::spawn(heartbeat(
            self.node.clone(),
            self.lock.clone(),
            lost.clone(),
            hb_stop.clone(),
        ));
        let r = self.slice(shutdown, &lost).await;
        hb_stop.cancel();
        let _ = hb.await;
        if let Ok(stop) = &r {
            tracing::debug!("PITR slicing stopped: {stop:?}");
        }
        r
    }

    async fn slice(
        &self,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> Result<Stop, SlicerError> {
        let mut k = knobs(&self.cfg)?;
        let storage =
            rbm_storage::from_config(&self.cfg.storage, Some(&self.node.info.name)).await?;
        let mut target = ChunkTarget {
            storage,
            rs: self.node.info.replset.clone(),
            compression: k.compression,
            level: k.level,
            throttle: self.settings.throttle,
        };
        // Uploads are cancelled only when the lock is lost: a stop still flushes.
        let cancel = lost.child_token();
        let start = slicer_start::start_point(self.node, &target, k.oplog_only, &cancel).await?;
        for n in &start.notes {
            self.log(Severity::Info, n).await;
        }
        for (a, b) in &start.gaps {
            self.log(
                Severity::Error,
                &format!(
                    "PITR gap {} - {}: the oplog no longer holds these entries; \
                     a new backup is needed to restore past it",
                    fmt_ts(*a),
                    fmt_ts(*b)
                ),
            )
            .await;
        }
        let mut last = start.from;
        if last.time == 0 {
            return Err(SlicerError::Other("no starting point defined".into()));
        }
        if !read::reaches_back_to(&self.node.local, last).await? {
            last = self.restart_after_gap(last).await?;
        }
        if let Err(e) = set_running(self.node).await {
            tracing::warn!("update admin.{PITR_COLLECTION}: {e}");
        }
        self.log(
            Severity::Info,
            &format!("streaming started from {} / {}", fmt_ts(last), last.time),
        )
        .await;

        let mut next_cut = Instant::now() + k.span;
        // Only backups sent from now on wake this run.
        let mut wake = self.wakeup.clone();
        wake.borrow_and_update();
        let mut wake_open = true;
        let mut woken: Option<String> = None;
        loop {
            let poll = self.settings.poll().min(k.span);
            tokio::select! {
                r = wake.changed(), if wake_open => {
                    match r {
                        Ok(()) => woken = wake.borrow_and_update().clone(),
                        Err(_) => wake_open = false,
                    }
                }
                _ = shutdown.cancelled() => {
                    self.log(Severity::Info, "got done signal, stopping").await;
                    let flush = self.cut(&target, &mut last, None, &cancel);
                    match tokio::time::timeout(SHUTDOWN_FLUSH, flush).await {
                        Ok(r) => { r?; }
                        Err(_) => self.log(Severity::Warning, "the last chunk did not finish before shutdown").await,
                    }
                    return Ok(Stop::Shutdown);
                }
                _ = lost.cancelled() => {
                    self.log(Severity::Warning, "the PITR lock was taken over: stopping").await;
                    return Ok(Stop::LockLost);
                }
                _ = tokio::time::sleep(poll) => {}
            }
            // The config first: disabling or re-configuring PITR stops after a last chunk.
            match Heartbeat::main_config(self.node).await {
                Ok(Some(c)) => {
                    let c = c.with_defaults();
                    let enabled = c.pitr.as_ref().is_some_and(|p| p.enabled);
                    let nk = knobs(&c);
                    let stop = if !enabled {
                        Some(Stop::Disabled)
                    } else {
                        match &nk {
                            Ok(n) if n.oplog_only != k.oplog_only || n.priority != k.priority => {
                                Some(Stop::Reconfig)
                            }
                            _ => None,
                        }
                    };
                    if let Some(stop) = stop {
                        self.log(Severity::Info, "got done signal, stopping").await;
                        self.cut(&target, &mut last, None, &cancel).await?;
                        return Ok(stop);
                    }
                    if let Ok(n) = nk {
                        if n.span < k.span {
                            next_cut = next_cut.min(Instant::now() + n.span);
                        }
                        target.compression = n.compression;
                        target.level = n.level;
                        k = n;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("PITR: read the config: {e}"),
            }
            if let Some(fw) = self.backup_start(woken.take().as_deref()).await? {
                self.log(Severity::Info, "got wake_up signal for a backup")
                    .await;
                if ts_lt(last, fw) {
                    self.cut(&target, &mut last, Some(fw), &cancel).await?;
                }
                self.log(
                    Severity::Info,
                    &format!("pausing/stopping with last_ts {}", fmt_ts(last)),
                )
                .await;
                return Ok(Stop::Backup);
            }
            // Another operation (a restore, a resync, ...) took the cluster: PBM's restore
            // disables PITR and waits for the slicers; stop here as soon as it is seen.
            if let Some(l) = blocking_op(self.node, &self.cfg).await? {
                if l.kind != Some(CommandKind::Backup) {
                    self.log(
                        Severity::Info,
                        &format!(
                            "stopping for lock [{}, opid: {}]",
                            l.kind.map(|k| k.as_str()).unwrap_or(""),
                            l.opid
                        ),
                    )
                    .await;
                    self.cut(&target, &mut last, None, &cancel).await?;
                    return Ok(Stop::Reconfig);
                }
            }
            if Instant::now() < next_cut {
                continue;
            }
            next_cut = Instant::now() + k.span;
            let (role, _) = self.node.hello().await?;
            if !suits(role) {
                self.log(Severity::Info, "the node no longer suits slicing: stopping")
                    .await;
                return Ok(Stop::NodeUnsuitable);
            }
            if k.priority.is_empty() && implicit_prio(role) < implicit_prio(self.start_role) {
                self.log(
                    Severity::Info,
                    &format!(
                        "node priority has changed {:.1}->{:.1}: stopping",
                        implicit_prio(self.start_role),
                        implicit_prio(role)
                    ),
                )
                .await;
                return Ok(Stop::NodeUnsuitable);
            }
            if !self.lock.still_ours().await? {
                self.log(
                    Severity::Warning,
                    "the PITR lock is no longer ours: stopping",
                )
                .await;
                return Ok(Stop::LockLost);
            }
            self.cut(&target, &mut last, None, &cancel).await?;
        }
    }

    /// Uploads `[last, till]` (`till` = the majority last write if not given) and moves
    /// `last`. A range the oplog no longer holds is a gap: logged, and slicing restarts
    /// at the oldest entry.
    async fn cut(
        &self,
        target: &ChunkTarget,
        last: &mut Timestamp,
        till: Option<Timestamp>,
        cancel: &CancellationToken,
    ) -> Result<(), SlicerError> {
        let till = match till {
            Some(t) => t,
            None => read::last_write(&self.node.local, true).await?,
        };
        if !ts_lt(*last, till) {
            return Ok(());
        }
        match slicer_chunk::upload(self.node, target, *last, till, cancel).await {
            Ok(c) => {
                self.log(
                    Severity::Info,
                    &format!(
                        "created chunk {} - {} ({} entries)",
                        fmt_ts(*last),
                        fmt_ts(till),
                        c.entries
                    ),
                )
                .await;
                *last = till;
                Ok(())
            }
            Err(e) if slicer_chunk::is_insufficient_range(&e) => {
                *last = self.restart_after_gap(*last).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Logs the gap since `from` as an error and returns where the new run starts.
    async fn restart_after_gap(&self, from: Timestamp) -> Result<Timestamp, SlicerError> {
        let oldest = oldest_entry(self.node).await?;
        self.log(
            Severity::Error,
            &format!(
                "oplog has insufficient range, some records since the last saved ts {} are missing: \
                 PITR gap {} - {}; slicing starts a new run at {}. Run `rbm backup` to create a \
                 valid starting point for the PITR",
                fmt_ts(from),
                fmt_ts(from),
                fmt_ts(oldest),
                fmt_ts(oldest)
            ),
        )
        .await;
        Ok(oldest)
    }

    /// A logical backup to the main storage that started: its `first_write_ts` for this
    /// replica set, where the slicer cuts its last chunk (PBM's `backupRSStartTS`).
    /// `woken`: the operation id of a backup this agent was just sent; otherwise a live
    /// backup lock names it.
    async fn backup_start(&self, woken: Option<&str>) -> Result<Option<Timestamp>, SlicerError> {
        let opid = match woken {
            Some(o) => o.to_string(),
            None => {
                let now = self.node.cluster_time().await?;
                let locks: Vec<LockData> = self
                    .node
                    .pbm
                    .database(DB)
                    .collection::<LockData>(LOCK_COLLECTION)
                    .find(doc! {"type": CommandKind::Backup.as_str()})
                    .await
                    .map_err(SlicerError::db("read admin.pbmLock"))?
                    .try_collect()
                    .await
                    .map_err(SlicerError::db("read admin.pbmLock"))?;
                let Some(l) = locks.into_iter().find(|l| !l.is_stale(now)) else {
                    return Ok(None);
                };
                l.opid
            }
        };
        let deadline = Instant::now() + self.cfg.backup_starting_timeout();
        loop {
            if let Some(b) = backup_by_opid(self.node, &opid).await? {
                if b.kind != BackupType::Logical
                    || !b.namespaces.is_empty()
                    || !same_storage(&b, &self.cfg)
                    || matches!(b.status, Status::Error | Status::Canceled)
                {
                    return Ok(None);
                }
                if let Some(r) = b
                    .replsets
                    .iter()
                    .find(|r| r.name == self.node.info.replset)
                    .filter(|r| r.first_write_ts.time > 0)
                {
                    return Ok(Some(r.first_write_ts));
                }
            }
            if Instant::now() > deadline {
                // PBM: an unsuitable backup; slicing goes on.
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// PBM's restore prologue for the slicers (`SetConfigVar pitr.enabled=false` then
/// `waitForPITRSlicerStop`): disables PITR (moving the config epoch, as `--set
/// pitr.enabled` does) and waits up to 2 minutes until no live agent holds the replica
/// set's PITR lock, so the slicer's last chunk is stored before data is touched.
///
/// # Errors
/// Database errors, or the slicer still running after 2 minutes.
pub async fn disable_and_wait(node: &Node) -> Result<(), SlicerError> {
    let now = node.cluster_time().await?;
    node.pbm
        .database(DB)
        .collection::<bson::Document>(rbm_protocol::defs::CONFIG_COLLECTION)
        .update_one(
            doc! {"profile": {"$ne": true}},
            doc! {"$set": {"pitr.enabled": false, "epoch": now}},
        )
        .await
        .map_err(SlicerError::db("disable PITR in admin.pbmConfig"))?;
    let store = PitrLockStore::new(node);
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.live_holder(&node.info.replset).await?.is_some() {
        if Instant::now() > deadline {
            return Err(SlicerError::Other(
                "done waiting for oplog slicer to stop: it still holds its lock".into(),
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The lock heartbeat every 5 s; a lock taken over cancels `lost`.
async fn heartbeat(node: Node, lock: PitrLock, lost: CancellationToken, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
        }
        match lock.beat().await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!("PITR lock heartbeat: {e}"),
        }
        if let Ok(now) = node.cluster_time().await {
            let _ = node
                .pbm
                .database(DB)
                .collection::<bson::Document>(PITR_COLLECTION)
                .update_one(doc! {}, doc! {"$set": {"hb": now}})
                .await;
        }
    }
}

/// Records this agent as the replica set's acknowledged slicer in `pbmPITR`, which
/// `status` lists as the running member (PBM's `SetPITRNomineeACK`).
async fn set_running(node: &Node) -> Result<(), SlicerError> {
    let coll = node
        .pbm
        .database(DB)
        .collection::<bson::Document>(PITR_COLLECTION);
    let rs = &node.info.replset;
    let me = &node.info.name;
    let now = node.cluster_time().await?;
    coll.update_one(doc! {}, doc! {"$pull": {"n": {"rs": rs}}})
        .await
        .map_err(SlicerError::db("update admin.pbmPITR"))?;
    coll.update_one(
        doc! {},
        doc! {
            "$push": {"n": {"rs": rs, "n": [me], "ack": me}},
            "$set": {"status": "running", "hb": now},
            "$setOnInsert": {"start_ts": crate::control::unix_now()},
        },
    )
    .upsert(true)
    .await
    .map_err(SlicerError::db("update admin.pbmPITR"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondaries_outrank_the_primary_implicitly() {
        assert!(implicit_prio(NodeRole::Primary) < implicit_prio(NodeRole::Secondary));
        assert!(implicit_prio(NodeRole::Secondary) < implicit_prio(NodeRole::Hidden));
        assert!(!suits(NodeRole::Arbiter) && !suits(NodeRole::Other));
    }

    #[test]
    fn knobs_follow_the_config() {
        let c = Config {
            pitr: Some(PitrConf {
                enabled: true,
                oplog_span_min: Some(0.05),
                compression: "zstd".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let k = knobs(&c.with_defaults()).expect("knobs");
        assert_eq!(k.span, Duration::from_secs(3));
        assert_eq!(k.compression, Compression::Zstd);
        let d = knobs(&Config::default().with_defaults()).expect("defaults");
        assert_eq!(d.compression, Compression::S2);
        assert_eq!(d.span, rbm_protocol::defs::DEFAULT_PITR_INTERVAL);
    }
}
