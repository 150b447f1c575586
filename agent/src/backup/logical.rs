//! A logical backup of this agent's replica set, from nomination to `done` (PBM's
//! `Backup.Run` + `doLogical` for the single replica set, whose nominated agent is also
//! the backup leader).
//!
//! Order of things, and why:
//! 1. `first_write_ts` is read before anything is dumped, so replaying the oplog from it
//!    over the fuzzy dump gives a consistent state.
//! 2. The oplog slicer runs during the dump; its last slice ends at the majority last
//!    write when the dump is done, which becomes `last_write_ts`.
//! 3. `meta.pbm` and `metadata.json` are written after the collections; every object is
//!    stat'ed against the size written; only then `<name>.pbm.json` is stored and the
//!    meta set to `done`. A failure anywhere deletes the backup's objects.

use super::dump::{self, doc_pipe, DumpTarget};
use super::{archive, state, users, BackupError, RunningBackups};
use crate::control::lock::HeldLock;
use crate::control::pbmlog::{Event, PbmLog};
use crate::control::unix_now;
use crate::node::Node;
use crate::oplog::read::{self, OplogRange};
use bson::{doc, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::command::BackupCmd;
use rbm_protocol::config::Config;
use rbm_protocol::defs::{Status, PBM_COMPAT_VERSION};
use rbm_protocol::meta::archive::ArchiveMetaV2;
use rbm_protocol::meta::backup::BackupReplset;
use rbm_protocol::meta::log::Severity;
use rbm_protocol::names;
use rbm_protocol::ns::NsFilter;
use rbm_protocol::StorageConf;
use rbm_storage::{Compression, DynStorage};

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// PBM's agent setting for collections dumped at once (`--dump-parallel-collections`).
pub const DUMP_PARALLEL_ENV: &str = "PBM_DUMP_PARALLEL_COLLECTIONS";

/// Test-only knob: milliseconds to pause after every 100 dumped documents.
pub const TEST_THROTTLE_ENV: &str = "RBM_AGENT_TEST_DUMP_THROTTLE_MS";

/// How long a stopped backup gets to wind down its uploads after a cancel.
const WIND_DOWN: Duration = Duration::from_secs(60);

/// Everything one backup needs.
pub struct BackupJob<'a> {
    pub node: &'a Node,
    pub log: &'a PbmLog,
    pub opid: String,
    pub epoch: Option<Timestamp>,
    pub cmd: &'a BackupCmd,
    pub config: Option<Config>,
    pub running: &'a RunningBackups,
}

impl BackupJob<'_> {
    fn event(&self) -> Event<'_> {
        Event {
            event: "backup",
            obj: &self.cmd.name,
            opid: &self.opid,
            epoch: self.epoch,
        }
    }

    async fn log(&self, s: Severity, msg: &str) {
        self.log.write(s, &self.event(), msg).await;
    }
}

/// Runs the backup to its end with the lock held; marks the meta `error`/`canceled` and
/// deletes the backup's objects when it fails. `shutdown` is the agent's.
pub async fn run_logical(job: &BackupJob<'_>, lock: &HeldLock, shutdown: &CancellationToken) {
    let name = job.cmd.name.clone();
    let started = std::time::Instant::now();
    let user_cancel = job.running.register(&name);
    let stop = CancellationToken::new();
    let lock_lost = CancellationToken::new();
    let hb_stop = CancellationToken::new();
    let hb = heartbeats(
        job.node.clone(),
        lock.clone(),
        name.clone(),
        lock_lost.clone(),
        hb_stop.clone(),
        false,
    );

    let storage_cell: std::sync::Mutex<Option<DynStorage>> = std::sync::Mutex::new(None);
    let work = do_logical(job, &stop, &storage_cell);
    tokio::pin!(work);
    let mut reason: Option<BackupError> = None;
    let result = tokio::select! {
        r = &mut work => r,
        _ = user_cancel.cancelled() => { reason = Some(BackupError::Cancelled); Err(BackupError::Cancelled) }
        _ = shutdown.cancelled() => { reason = Some(BackupError::Shutdown); Err(BackupError::Shutdown) }
        _ = lock_lost.cancelled() => { reason = Some(BackupError::LockLost); Err(BackupError::LockLost) }
    };
    if reason.is_some() {
        // Stop the uploads through their token and let the work unwind, so no half
        // object is left behind by a dropped upload.
        stop.cancel();
        let _ = tokio::time::timeout(WIND_DOWN, &mut work).await;
    }
    let result = match (result, reason) {
        (_, Some(r)) => Err(r),
        (r, None) => r,
    };
    crate::metrics::op_finished(
        "backup",
        job.cmd.kind.as_str(),
        crate::metrics::backup_outcome(&result),
        started.elapsed(),
    );
    if let Err(e) = &result {
        let status = if matches!(e, BackupError::Cancelled) {
            Status::Canceled
        } else {
            Status::Error
        };
        let msg = e.to_string();
        job.log(Severity::Error, &format!("backup failed: {msg}"))
            .await;
        let rs = &job.node.info.replset;
        if let Err(e2) = state::change_rs(job.node, &name, rs, status, &msg).await {
            job.log(
                Severity::Warning,
                &format!("mark replica set as {status}: {e2}"),
            )
            .await;
        }
        if let Err(e2) = state::change(job.node, &name, status, &msg).await {
            job.log(Severity::Warning, &format!("mark backup as {status}: {e2}"))
                .await;
        }
        let storage = storage_cell.lock().ok().and_then(|g| g.clone());
        if let Some(storage) = storage {
            if let Err(e2) = delete_backup_files(storage.as_ref(), &name).await {
                job.log(
                    Severity::Error,
                    &format!("failed to delete leftover files of backup {name:?}: {e2}"),
                )
                .await;
            }
        }
    }
    // A selective backup without users and roles copied none.
    let copied_users = job.cmd.namespaces.is_empty() || job.cmd.users_and_roles;
    if copied_users {
        job.log(Severity::Info, "dropping tmp collections").await;
        if let Err(e) = users::drop_tmp(job.node).await {
            job.log(Severity::Warning, &format!("drop tmp users and roles: {e}"))
                .await;
        }
    }
    hb_stop.cancel();
    let _ = hb.await;
    job.running.unregister(&name);
}

/// The lock and the meta heartbeats, every 5 s on cluster time. A lost lock (taken over
/// as stale) stops the backup. `node_may_be_down` (a cold physical backup stops its
/// node) logs failed beats at debug level, where they are expected, instead of warn.
pub(crate) fn heartbeats(
    node: Node,
    lock: HeldLock,
    name: String,
    lost: CancellationToken,
    stop: CancellationToken,
    node_may_be_down: bool,
) -> tokio::task::JoinHandle<()> {
    let failed = move |what: &str, e: &dyn std::fmt::Display| {
        if node_may_be_down {
            tracing::debug!("{what}: {e}");
        } else {
            tracing::warn!("{what}: {e}");
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(rbm_protocol::defs::HEARTBEAT_INTERVAL) => {}
            }
            match lock.beat().await {
                Ok(true) => {}
                Ok(false) => {
                    lost.cancel();
                    return;
                }
                Err(e) => failed("backup lock heartbeat", &e),
            }
            if let Err(e) = state::heartbeat(&node, &name).await {
                failed("backup heartbeat", &e);
            }
        }
    })
}

/// The storage the backup goes to: the named profile's, else the main one.
async fn storage_conf(job: &BackupJob<'_>) -> Result<StorageConf, BackupError> {
    if job.cmd.profile.is_empty() {
        return job
            .config
            .as_ref()
            .map(|c| c.storage.clone())
            .ok_or_else(|| BackupError::Other("no storage configured (run `rbm config`)".into()));
    }
    profile_storage(job.node, &job.cmd.profile).await
}

/// A storage profile's configuration (`pbmConfig` `{name, profile: true, storage}`).
pub async fn profile_storage(node: &Node, profile: &str) -> Result<StorageConf, BackupError> {
    let raw = node
        .pbm
        .database(rbm_protocol::defs::DB)
        .collection::<bson::Document>(rbm_protocol::defs::CONFIG_COLLECTION)
        .find_one(doc! {"profile": true, "name": profile})
        .await
        .map_err(|source| BackupError::Db {
            what: "read admin.pbmConfig".into(),
            source,
        })?
        .ok_or_else(|| BackupError::Other(format!("storage profile {profile:?} not found")))?;
    let cfg: Config = bson::deserialize_from_document(raw).map_err(|source| BackupError::Bson {
        what: format!("decode profile {profile:?}"),
        source,
    })?;
    Ok(cfg.storage)
}

fn ts_after(a: Timestamp, b: Timestamp) -> bool {
    (a.time, a.increment) > (b.time, b.increment)
}

async fn fcv(node: &Node) -> Result<String, BackupError> {
    let r = node
        .local
        .database("admin")
        .run_command(doc! {"getParameter": 1, "featureCompatibilityVersion": 1})
        .await
        .map_err(|source| BackupError::Db {
            what: "get featureCompatibilityVersion".into(),
            source,
        })?;
    Ok(r.get_document("featureCompatibilityVersion")
        .ok()
        .and_then(|d| d.get_str("version").ok())
        .unwrap_or_default()
        .to_string())
}

async fn do_logical(
    job: &BackupJob<'_>,
    stop: &CancellationToken,
    storage_cell: &std::sync::Mutex<Option<DynStorage>>,
) -> Result<(), BackupError> {
    let node = job.node;
    let cmd = job.cmd;
    let name = cmd.name.as_str();
    let rs = node.info.replset.as_str();
    let compression: Compression = if cmd.compression.is_empty() {
        Compression::default()
    } else {
        cmd.compression
            .parse()
            .map_err(|_| BackupError::Other(format!("unknown compression {:?}", cmd.compression)))?
    };
    let backup_conf = job
        .config
        .as_ref()
        .and_then(|c| c.backup.clone())
        .unwrap_or_default();
    let level = cmd.compression_level.or(backup_conf.compression_level);
    compression
        .check_level(level)
        .map_err(|e| BackupError::Other(e.to_string()))?;
    let parallel = match cmd.num_parallel_colls {
        Some(n) if n > 0 => n as usize,
        _ => match backup_conf.num_parallel_collections {
            Some(n) if n > 0 => n as usize,
            // PBM's agent flag/env comes next, then half the CPUs.
            _ => std::env::var(DUMP_PARALLEL_ENV)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(super::half_cpus),
        },
    };
    let filter = NsFilter::parse(&cmd.namespaces).map_err(|e| BackupError::Other(e.to_string()))?;
    let selective = !filter.is_all();

    let conf = storage_conf(job).await?;
    let storage = crate::metrics::storage::metered(
        rbm_storage::from_config(&conf, Some(&node.info.name)).await?,
    );
    if let Ok(mut g) = storage_cell.lock() {
        *g = Some(storage.clone());
    }

    let first_write = read::backup_start_time(&node.local).await?;
    let mongo_version = node.info.mongo_version.clone();
    let rs_meta = BackupReplset {
        name: rs.to_string(),
        journal: Vec::new(),
        files: Vec::new(),
        dump_name: names::metadata_json(name, rs),
        oplog_name: names::backup_oplog_dir(name, rs),
        start_ts: unix_now(),
        status: Status::Running,
        size: Some(0),
        size_uncompressed: Some(0),
        is_config_svr: None,
        is_config_shard: None,
        last_transition_ts: 0,
        first_write_ts: first_write,
        last_write_ts: Timestamp {
            time: 0,
            increment: 0,
        },
        node: Some(node.info.name.clone()),
        error: None,
        conditions: Vec::new(),
        mongod_opts: None,
        pbm_version: PBM_COMPAT_VERSION.to_string(),
        mongo_version: mongo_version.clone(),
        this_id: String::new(),
    };
    state::add_rs(node, name, rs_meta).await?;
    state::heartbeat(node, name).await?;

    // PBM's storage check: readable, and initialised on first use.
    crate::storage_init::ensure(storage.as_ref(), stop).await?;

    // One replica set: it is running, so the cluster is.
    state::change(node, name, Status::Running, "").await?;
    state::set(node, name, doc! {"first_write_ts": first_write}).await?;

    let codec = (compression, level);
    let slicer_stop = CancellationToken::new();
    let span = job
        .config
        .as_ref()
        .map(Config::backup_oplog_span)
        .unwrap_or(rbm_protocol::defs::DEFAULT_PITR_INTERVAL);
    let slicer = tokio::spawn(slice_oplog(Slicer {
        node: node.local.clone(),
        storage: storage.clone(),
        backup: name.to_string(),
        replset: rs.to_string(),
        codec,
        from: first_write,
        every: span,
        stop: slicer_stop.clone(),
        cancel: stop.clone(),
        log: job.log.clone(),
        opid: job.opid.clone(),
        epoch: job.epoch,
    }));
    // Whatever happens next, the slicer ends with the backup.
    let _slicer_guard = slicer_stop.clone().drop_guard();

    let with_users = !selective || cmd.users_and_roles;
    if with_users {
        let dbs: Option<Vec<String>> = selective.then(|| {
            let mut d: Vec<String> = filter
                .patterns()
                .iter()
                .map(|p| p.db().to_string())
                .collect();
            d.sort();
            d.dedup();
            d
        });
        let lw = users::copy_users_and_roles(node, dbs.as_deref()).await?;
        users::wait_for_write(&node.local, lw).await?;
    }

    job.log(
        Severity::Debug,
        &format!("dumping up to {parallel} collections in parallel"),
    )
    .await;
    let users_too = selective && cmd.users_and_roles;
    let selected = move |db: &str, coll: &str| {
        filter.matches(db, coll)
            || (users_too
                && db == rbm_protocol::defs::DB
                && (coll == rbm_protocol::defs::TMP_USERS_COLLECTION
                    || coll == rbm_protocol::defs::TMP_ROLES_COLLECTION))
    };
    let mut namespaces = archive::list_namespaces(&node.local, &selected).await?;
    let progress = crate::progress::for_dump(&node.local, &namespaces).await;
    let publisher = crate::progress::Publisher::new(
        node.pbm
            .database(rbm_protocol::defs::DB)
            .collection(rbm_protocol::defs::BACKUPS_COLLECTION),
        name,
        node,
    );
    let target = DumpTarget {
        progress: progress.clone(),
        storage: storage.clone(),
        backup: name.to_string(),
        replset: rs.to_string(),
        compression,
        level,
        cancel: stop.clone(),
        test_throttle: std::env::var(TEST_THROTTLE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default(),
    };
    let log = job.log.clone();
    let (opid, epoch, bname) = (job.opid.clone(), job.epoch, name.to_string());
    // The final figures are written before the status says the dump is done.
    let dump = dump::dump_all(
        &node.local,
        &target,
        &mut namespaces,
        parallel,
        move |ns, d| {
            let log = log.clone();
            let (opid, bname) = (opid.clone(), bname.clone());
            let msg = format!("dump collection {:?} done (size: {})", ns.ns(), d.size);
            tokio::spawn(async move {
                let ev = Event {
                    event: "backup",
                    obj: &bname,
                    opid: &opid,
                    epoch,
                };
                log.write(Severity::Info, &ev, &msg).await;
            });
        },
    );
    let stats = publisher.around(progress, dump).await?;
    job.log(
        Severity::Debug,
        &format!(
            "dumped {} collection objects, at most {} at once (limit {parallel})",
            stats.objects.len(),
            stats.max_in_flight
        ),
    )
    .await;

    namespaces.sort_by_key(|a| a.ns());
    let meta = ArchiveMetaV2 {
        version: PBM_COMPAT_VERSION.to_string(),
        server_version: mongo_version.clone(),
        fcv: fcv(node).await?,
        namespaces,
    };
    let meta_bytes = meta.to_bson_bytes().map_err(|source| BackupError::Bson {
        what: "encode meta.pbm".into(),
        source,
    })?;
    let mut expected: Vec<(String, u64)> = stats.objects.clone();
    let meta_name = names::meta_pbm(name, rs);
    let meta_len = meta_bytes.len() as u64;
    storage
        .save(
            &meta_name,
            Box::new(std::io::Cursor::new(meta_bytes)),
            Some(meta_len),
            stop,
        )
        .await?;
    expected.push((meta_name, meta_len));
    let v1 = archive::metadata_json(&meta, super::half_cpus() as i32);
    let v1_name = names::metadata_json(name, rs);
    let v1_len = v1.len() as u64;
    storage
        .save(
            &v1_name,
            Box::new(std::io::Cursor::new(v1.into_bytes())),
            Some(v1_len),
            stop,
        )
        .await?;
    expected.push((v1_name, v1_len));
    job.log(Severity::Info, &format!("dump finished for RS: {rs}"))
        .await;

    state::change_rs(node, name, rs, Status::DumpDone, "").await?;
    state::change(node, name, Status::DumpDone, "").await?;

    job.log(Severity::Info, "stopping oplog slicer on this node")
        .await;
    slicer_stop.cancel();
    let sliced = slicer
        .await
        .map_err(|e| BackupError::Other(format!("oplog slicer task failed: {e}")))??;
    if sliced.chunks.is_empty() {
        return Err(BackupError::Other(
            "no oplog slice was written for the backup window".into(),
        ));
    }
    expected.extend(sliced.chunks.iter().cloned());
    state::set_rs(node, name, rs, doc! {"last_write_ts": sliced.last}).await?;
    state::set(node, name, doc! {"last_write_ts": sliced.last}).await?;

    let size = (stats.stored + meta_len + sliced.stored) as i64;
    let size_uncompressed = (stats.uncompressed + meta_len + sliced.raw) as i64;
    state::set_rs(
        node,
        name,
        rs,
        doc! {"size": size, "size_uncompressed": size_uncompressed},
    )
    .await?;
    state::set(
        node,
        name,
        doc! {"size": size, "size_uncompressed": size_uncompressed},
    )
    .await?;
    state::change_rs(node, name, rs, Status::Done, "").await?;

    check_objects(storage.as_ref(), &expected).await?;

    mark_done(node, storage.as_ref(), name, stop).await?;
    job.log(Severity::Info, "backup finished").await;
    Ok(())
}

/// The last step of every backup type: unless the backup was failed or canceled
/// meanwhile, writes `<name>.pbm.json` (the meta as done), checks it on storage, and only
/// then marks the meta `done`, so a backup is never done before its objects are stored.
///
/// # Errors
/// Database and storage errors; the backup ended elsewhere.
pub(crate) async fn mark_done(
    node: &Node,
    storage: &dyn rbm_storage::Storage,
    name: &str,
    stop: &CancellationToken,
) -> Result<(), BackupError> {
    let mut done = state::get(node, name)
        .await?
        .ok_or_else(|| BackupError::Other("the backup meta vanished".into()))?;
    if matches!(done.status, Status::Error | Status::Canceled) {
        return Err(BackupError::Other(format!(
            "the backup was marked {} meanwhile: {}",
            done.status,
            done.error.unwrap_or_default()
        )));
    }
    let now = unix_now();
    done.status = Status::Done;
    done.last_transition_ts = now;
    done.conditions.push(rbm_protocol::meta::backup::Condition {
        timestamp: now,
        status: Status::Done,
        error: None,
    });
    let json = done
        .to_pbm_json()
        .map_err(|e| BackupError::Other(format!("encode {name}.pbm.json: {e}")))?;
    let json_name = names::backup_meta_file(name);
    let json_len = json.len() as u64;
    storage
        .save(
            &json_name,
            Box::new(std::io::Cursor::new(json.into_bytes())),
            Some(json_len),
            stop,
        )
        .await?;
    check_objects(storage, &[(json_name, json_len)]).await?;
    if !state::change_with_time(node, doc! {"name": name}, Status::Done, "", now).await? {
        return Err(BackupError::Other(
            "the backup ended elsewhere (marked error or canceled) before it was done".into(),
        ));
    }
    Ok(())
}

/// Every object exists with the size that was written (PBM's `CheckBackupFiles`, with
/// sizes).
async fn check_objects(
    storage: &dyn rbm_storage::Storage,
    expected: &[(String, u64)],
) -> Result<(), BackupError> {
    for (obj, size) in expected {
        let m = storage
            .stat(obj)
            .await
            .map_err(|e| BackupError::Check(e.to_string()))?;
        if m.size != *size {
            return Err(BackupError::Check(format!(
                "{obj}: stored {} bytes, wrote {size}",
                m.size
            )));
        }
        if m.size == 0 {
            return Err(BackupError::Check(format!("{obj} is empty")));
        }
    }
    Ok(())
}

/// PBM's `DeleteBackupFiles`: every object under `<name>/` and `<name>.pbm.json`.
pub async fn delete_backup_files(
    storage: &dyn rbm_storage::Storage,
    name: &str,
) -> Result<(), BackupError> {
    let prefix = format!("{name}/");
    let objects: Vec<rbm_storage::ObjectMeta> = storage.list(&prefix).try_collect().await?;
    let mut first_err = None;
    for o in objects {
        if let Err(e) = storage.delete(&o.name).await {
            first_err.get_or_insert(e);
        }
    }
    if let Err(e) = storage.delete(&names::backup_meta_file(name)).await {
        first_err.get_or_insert(e);
    }
    match first_err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

struct Slicer {
    node: mongodb::Client,
    storage: DynStorage,
    backup: String,
    replset: String,
    codec: (Compression, Option<i32>),
    from: Timestamp,
    every: Duration,
    stop: CancellationToken,
    cancel: CancellationToken,
    log: PbmLog,
    opid: String,
    epoch: Option<Timestamp>,
}

struct Sliced {
    last: Timestamp,
    stored: u64,
    raw: u64,
    chunks: Vec<(String, u64)>,
}

/// PBM's backup oplog slicer: a slice every `every`, and a last one up to the majority
/// last write once stopped. A failed periodic slice is retried at the next tick; a failed
/// last slice fails the backup.
async fn slice_oplog(s: Slicer) -> Result<Sliced, BackupError> {
    let mut out = Sliced {
        last: s.from,
        stored: 0,
        raw: 0,
        chunks: Vec::new(),
    };
    let mut start = s.from;
    loop {
        let last = tokio::select! {
            _ = s.cancel.cancelled() => return Err(BackupError::Cancelled),
            _ = s.stop.cancelled() => true,
            _ = tokio::time::sleep(s.every) => false,
        };
        let till = match read::last_write(&s.node, true).await {
            Ok(t) => t,
            Err(e) if last => return Err(e.into()),
            Err(e) => {
                tracing::warn!("oplog slicer: {e}");
                continue;
            }
        };
        if ts_after(till, start) {
            match upload_slice(&s, start, till).await {
                Ok((obj, stored, raw)) => {
                    let ev = Event {
                        event: "backup",
                        obj: &s.backup,
                        opid: &s.opid,
                        epoch: s.epoch,
                    };
                    s.log
                        .write(
                            Severity::Info,
                            &ev,
                            &format!(
                                "created chunk {} - {}",
                                names::backup_name(i64::from(start.time)).trim_end_matches('Z'),
                                names::backup_name(i64::from(till.time)).trim_end_matches('Z')
                            ),
                        )
                        .await;
                    out.chunks.push((obj, stored));
                    out.stored += stored;
                    out.raw += raw;
                    out.last = till;
                    start = till;
                }
                Err(e) if last => return Err(e),
                Err(e) => tracing::warn!("oplog slicer: {e}; retrying at the next tick"),
            }
        }
        if last {
            return Ok(out);
        }
    }
}

async fn upload_slice(
    s: &Slicer,
    from: Timestamp,
    till: Timestamp,
) -> Result<(String, u64, u64), BackupError> {
    let (c, level) = s.codec;
    let obj = names::backup_oplog_chunk_path(&s.backup, &s.replset, from, till, c.extension());
    let mut range = OplogRange::open(&s.node, from, till).await?;
    let (mut sink, reader) = doc_pipe();
    let input = rbm_storage::codec::compress_reader(reader, c, level);
    let save = s.storage.save(&obj, input, None, &s.cancel);
    let produce = async {
        let mut raw = 0u64;
        loop {
            match range.next().await {
                Ok(Some(entry)) => {
                    raw += entry.as_bytes().len() as u64;
                    if sink.write(entry.as_bytes()).await.is_err() {
                        return Err(None);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sink.fail(std::io::Error::other("oplog read aborted")).await;
                    return Err(Some(BackupError::Oplog(e)));
                }
            }
        }
        sink.finish().await.map_err(|_| None)?;
        Ok(raw)
    };
    let (produced, saved) = tokio::join!(produce, save);
    match (produced, saved) {
        (Ok(raw), Ok(stored)) => Ok((obj, stored, raw)),
        (Err(Some(e)), _) => Err(e),
        (_, Err(e)) => Err(e.into()),
        (Err(None), Ok(_)) => Err(BackupError::Other(format!("upload of {obj} ended early"))),
    }
}
