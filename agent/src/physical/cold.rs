//! A physical backup of this node, from nomination to `done`. The copy itself depends on
//! the mode; `cold` (stop, copy, start) is the one wired end to end.
//!
//! Order of things, and why:
//! 1. The replica set's entry goes into the meta as `running` while the node is up.
//! 2. Before the node stops, the entry is set `down` (PBM's status for stopped mongod
//!    processes): while it is down the meta heartbeat cannot move on a single-member
//!    set, and neither the CLI nor the watchdogs may take that for a dead agent.
//! 3. The node is started again on every path once it was stopped; only then is the
//!    state written (the control collections live on it when it is the only member).
//! 4. `filelist.pbm` is written after every file, every object is stat'ed, then
//!    `<name>.pbm.json` is stored and the meta set `done`. A failure deletes the objects.

use super::cursor::CursorKind;
use super::files::{self, Upload};
use super::incr::{self as incr, FileHashes, FilePlan};
use super::mode::{self, Mode, NodeCaps};
use super::{nodectl, PhysicalError, PhysicalSettings};
use crate::backup::{state, BackupJob};
use crate::control::lock::HeldLock;
use crate::control::pbmlog::Event;
use crate::control::unix_now;
use crate::node::Node;
use bson::{doc, Document, Timestamp};
use rbm_protocol::command::BackupCmd;
use rbm_protocol::defs::BackupType;
use rbm_protocol::defs::{Status, PBM_COMPAT_VERSION};
use rbm_protocol::meta::backup::BackupReplset;
use rbm_protocol::meta::log::Severity;
use rbm_protocol::names;
use rbm_storage::{Compression, DynStorage};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long state writes are retried after the node came back (the replica-set
/// client needs a moment to find the primary again).
const BACK_ONLINE_RETRY: Duration = Duration::from_secs(90);

async fn log(job: &BackupJob<'_>, s: Severity, msg: &str) {
    let ev = Event {
        event: "backup",
        obj: &job.cmd.name,
        opid: &job.opid,
        epoch: job.epoch,
    };
    job.log.write(s, &ev, msg).await;
}

/// Runs the physical backup with the lock held; marks the meta `error`/`canceled` and
/// deletes the backup's objects when it fails. Never leaves the node stopped.
pub async fn run(
    job: &BackupJob<'_>,
    settings: &PhysicalSettings,
    lock: &HeldLock,
    shutdown: &CancellationToken,
) {
    let name = job.cmd.name.clone();
    let user_cancel = job.running.register(&name);
    // Cancel and shutdown stop the copy between files; the work then restarts the node
    // and unwinds by itself, so it is always awaited to its end.
    let stop = CancellationToken::new();
    let lost = CancellationToken::new();
    let hb_stop = CancellationToken::new();
    let hb = crate::backup::logical::heartbeats(
        job.node.clone(),
        lock.clone(),
        name.clone(),
        lost.clone(),
        hb_stop.clone(),
        true,
    );
    let watcher = {
        let (stop, user_cancel, shutdown, lost) = (
            stop.clone(),
            user_cancel.clone(),
            shutdown.clone(),
            lost.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = user_cancel.cancelled() => {}
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
            stop.cancel();
        })
    };
    let storage_cell: std::sync::Mutex<Option<DynStorage>> = std::sync::Mutex::new(None);
    let result = do_backup(job, settings, &stop, &storage_cell).await;
    watcher.abort();
    let result = match result {
        Err(_) if user_cancel.is_cancelled() => {
            Err(PhysicalError::Interrupted("backup canceled".into()))
        }
        Err(_) if shutdown.is_cancelled() => Err(PhysicalError::Interrupted(
            "the agent is shutting down".into(),
        )),
        Err(_) if lost.is_cancelled() => Err(PhysicalError::Interrupted(
            "lost the backup lock: another agent took it over".into(),
        )),
        r => r,
    };
    if let Err(e) = &result {
        let status = if user_cancel.is_cancelled() {
            Status::Canceled
        } else {
            Status::Error
        };
        let msg = e.to_string();
        log(job, Severity::Error, &format!("backup failed: {msg}")).await;
        let rs = &job.node.info.replset;
        if let Err(e2) = retry(|| state::change_rs(job.node, &name, rs, status, &msg)).await {
            log(
                job,
                Severity::Warning,
                &format!("mark replica set as {status}: {e2}"),
            )
            .await;
        }
        if let Err(e2) = retry(|| state::change(job.node, &name, status, &msg)).await {
            log(
                job,
                Severity::Warning,
                &format!("mark backup as {status}: {e2}"),
            )
            .await;
        }
        let storage = storage_cell.lock().ok().and_then(|g| g.clone());
        if let Some(storage) = storage {
            if let Err(e2) =
                crate::backup::logical::delete_backup_files(storage.as_ref(), &name).await
            {
                log(
                    job,
                    Severity::Error,
                    &format!("failed to delete leftover files of backup {name:?}: {e2}"),
                )
                .await;
            }
        }
    }
    hb_stop.cancel();
    let _ = hb.await;
    job.running.unregister(&name);
}

/// Retries a state write while the node comes back.
async fn retry<T, E: std::fmt::Display, F, Fut>(mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + BACK_ONLINE_RETRY;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::debug!("state write failed, retrying: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's dbPath: the agent's `--dbpath`, else what the server reports.
///
/// # Errors
/// Neither is known.
pub async fn dbpath(node: &Node, s: &PhysicalSettings) -> Result<PathBuf, PhysicalError> {
    if let Some(p) = &s.dbpath {
        return Ok(p.clone());
    }
    let opts = cmd_line_opts(node).await?;
    super::secantus::dbpath_from_opts(&opts)
        .map(PathBuf::from)
        .ok_or_else(|| {
            PhysicalError::Config(
                "the server does not report its dbPath (getCmdLineOpts): give the agent --dbpath"
                    .into(),
            )
        })
}

pub(super) async fn cmd_line_opts(node: &Node) -> Result<Document, PhysicalError> {
    let r = node
        .local
        .database("admin")
        .run_command(doc! {"getCmdLineOpts": 1})
        .await
        .map_err(PhysicalError::db("getCmdLineOpts"))?;
    Ok(r.get_document("parsed").cloned().unwrap_or_default())
}

/// PBM's `MongodOpts`: what a restore needs to start mongod on these files (storage
/// engine options, directory layout, encryption settings), from `getCmdLineOpts`, with
/// the engine from `serverStatus` and encryption-at-rest key ids when reported.
pub async fn mongod_opts(node: &Node, dbpath: &std::path::Path) -> Result<Document, PhysicalError> {
    let parsed = cmd_line_opts(node).await?;
    let mut out = Document::new();
    for k in ["net", "sharding", "storage", "security", "replication"] {
        if let Ok(d) = parsed.get_document(k) {
            out.insert(k, d.clone());
        }
    }
    let status = node
        .local
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .map_err(PhysicalError::db("serverStatus"))?;
    let mut storage = out.get_document("storage").cloned().unwrap_or_default();
    storage.insert("dbPath", dbpath.display().to_string());
    if let Ok(engine) = status
        .get_document("storageEngine")
        .and_then(|e| e.get_str("name"))
    {
        storage.insert("engine", engine);
    }
    out.insert("storage", storage);
    if let Ok(ear) = status.get_document("encryptionAtRest") {
        let mut sec = out.get_document("security").cloned().unwrap_or_default();
        for k in ["encryptionKeyId", "encryptionCipherMode"] {
            if let Some(v) = ear.get(k) {
                sec.insert(k, v.clone());
            }
        }
        out.insert("security", sec);
    }
    Ok(out)
}

async fn last_write(node: &Node) -> Result<Timestamp, PhysicalError> {
    crate::oplog::read::last_write(&node.local, false)
        .await
        .map_err(|e| PhysicalError::Other(format!("read the last write: {e}")))
}

async fn do_backup(
    job: &BackupJob<'_>,
    settings: &PhysicalSettings,
    stop: &CancellationToken,
    storage_cell: &std::sync::Mutex<Option<DynStorage>>,
) -> Result<(), PhysicalError> {
    let node = job.node;
    let cmd = job.cmd;
    let name = cmd.name.as_str();
    let rs = node.info.replset.as_str();
    let compression: Compression = if cmd.compression.is_empty() {
        Compression::default()
    } else {
        cmd.compression.parse().map_err(|_| {
            PhysicalError::Config(format!("unknown compression {:?}", cmd.compression))
        })?
    };
    let backup_conf = job
        .config
        .as_ref()
        .and_then(|c| c.backup.clone())
        .unwrap_or_default();
    let level = cmd.compression_level.or(backup_conf.compression_level);
    compression
        .check_level(level)
        .map_err(|e| PhysicalError::Config(e.to_string()))?;
    let parallel = cmd
        .num_parallel_files
        .or(backup_conf.num_parallel_files)
        .filter(|n| *n > 0)
        .map_or(settings.parallel_files, |n| n as usize);

    let conf = if cmd.profile.is_empty() {
        job.config
            .as_ref()
            .map(|c| c.storage.clone())
            .ok_or_else(|| {
                PhysicalError::Config("no storage configured (run `rbm config`)".into())
            })?
    } else {
        crate::backup::logical::profile_storage(node, &cmd.profile).await?
    };
    let storage = rbm_storage::from_config(&conf, Some(&node.info.name)).await?;
    if let Ok(mut g) = storage_cell.lock() {
        *g = Some(storage.clone());
    }

    let dbpath = dbpath(node, settings).await;
    let (role, _) = node
        .hello()
        .await
        .map_err(|e| PhysicalError::Other(e.to_string()))?;
    let caps = NodeCaps {
        percona: !node.info.percona_version.is_empty(),
        role,
        // Non-voting (priority 0, `passives`) members count like any other: stopping
        // a primary that has them is not a single-member maintenance.
        members: match super::rsreset::target_config(node).await {
            Ok(c) => super::rsreset::data_members(node, c.as_ref())
                .await
                .map_or(node.info.hosts.len(), |m| m.len()),
            Err(_) => node.info.hosts.len(),
        },
        can_restart: settings.start_cmd.is_some() && dbpath.is_ok(),
    };
    let mode = mode::choose(settings.mode, &caps)?;
    let dbpath = dbpath?;
    log(
        job,
        Severity::Info,
        &format!(
            "physical backup in {} mode of {} ({} files at once)",
            mode.as_str(),
            dbpath.display(),
            parallel
        ),
    )
    .await;
    let opts = mongod_opts(node, &dbpath).await?;
    let rs_meta = BackupReplset {
        name: rs.to_string(),
        journal: Vec::new(),
        files: Vec::new(),
        dump_name: String::new(),
        oplog_name: String::new(),
        start_ts: unix_now(),
        status: Status::Running,
        size: Some(0),
        size_uncompressed: Some(0),
        is_config_svr: None,
        is_config_shard: None,
        last_transition_ts: 0,
        first_write_ts: Timestamp {
            time: 0,
            increment: 0,
        },
        last_write_ts: Timestamp {
            time: 0,
            increment: 0,
        },
        node: Some(node.info.name.clone()),
        error: None,
        conditions: Vec::new(),
        mongod_opts: Some(opts),
        pbm_version: PBM_COMPAT_VERSION.to_string(),
        mongo_version: node.info.mongo_version.clone(),
        this_id: String::new(),
    };
    state::add_rs(node, name, rs_meta).await?;
    state::heartbeat(node, name).await?;
    crate::storage_init::ensure(storage.as_ref(), stop).await?;
    state::change(node, name, Status::Running, "").await?;
    let chain = Chain::define(node, cmd, mode, storage.as_ref()).await?;

    let up = Upload {
        storage: storage.clone(),
        backup: name.to_string(),
        replset: rs.to_string(),
        compression,
        level,
        parallel,
        cancel: stop.clone(),
        exact: mode != Mode::BackupCursor,
    };
    let (copied, first, last) = match mode {
        Mode::Cold => {
            state::change_rs(node, name, rs, Status::Down, "").await?;
            log(job, Severity::Info, "stopping the node for a cold copy").await;
            let (copied, last) = cold_copy(node, settings, &dbpath, &up, &chain).await?;
            let copied = copied?;
            log(
                job,
                Severity::Info,
                &format!("node is back; {} files copied", copied.len()),
            )
            .await;
            retry(|| state::heartbeat(node, name)).await?;
            retry(|| state::change_rs(node, name, rs, Status::Running, "")).await?;
            (copied, last, last)
        }
        Mode::FsyncLock => {
            let cmds = std::sync::Arc::new(node.local.clone());
            let (up2, dbp, ch) = (up.clone(), dbpath.clone(), &chain);
            let copied = super::fsync::with_lock(cmds, || async move {
                let last = last_write(node).await?;
                let rels = files::list_dbpath(&dbp).await?;
                Ok((hashed_copy(&up2, &dbp, &rels, ch).await?, last))
            })
            .await?;
            (copied.0, copied.1, copied.1)
        }
        Mode::BackupCursor => cursor_copy(node, &dbpath, &up, &chain).await?,
    };
    let list = files::encode_filelist(&copied)?;
    let list_name = names::filelist(name, rs);
    let list_len = list.len() as u64;
    storage
        .save(
            &list_name,
            Box::new(std::io::Cursor::new(list)),
            Some(list_len),
            stop,
        )
        .await?;
    let stored = || {
        copied
            .iter()
            .filter(|f| f.file.offset >= 0 && f.file.length >= 0)
    };
    let mut expected: Vec<(String, u64)> = stored()
        .map(|f| {
            (
                up.object_of(&f.file.name, f.file.offset, f.file.length),
                f.file.stg_size as u64,
            )
        })
        .collect();
    expected.push((list_name, list_len));
    let size: i64 = stored().map(|f| f.file.stg_size).sum::<i64>() + list_len as i64;
    let size_uncompressed: i64 =
        stored().map(|f| f.file.stg_size_uncompressed).sum::<i64>() + list_len as i64;
    state::change_rs(node, name, rs, Status::DumpDone, "").await?;
    state::change(node, name, Status::DumpDone, "").await?;
    let sizes = doc! {"size": size, "size_uncompressed": size_uncompressed};
    let mut rs_fields = sizes.clone();
    rs_fields.insert("first_write_ts", first);
    rs_fields.insert("last_write_ts", last);
    state::set_rs(node, name, rs, rs_fields).await?;
    let mut top = sizes;
    top.insert("first_write_ts", first);
    top.insert("last_write_ts", last);
    state::set(node, name, top).await?;
    state::change_rs(node, name, rs, Status::Done, "").await?;

    check_objects(storage.as_ref(), &expected).await?;

    crate::backup::logical::mark_done(node, storage.as_ref(), name, stop).await?;
    log(job, Severity::Info, "backup finished").await;
    Ok(())
}

/// Stops the node, copies, starts it. The outer error is the node's (it could not be
/// stopped or started again); the inner one the copy's. The timestamp is the last
/// write before the stop: the copy holds exactly the data up to it.
async fn cold_copy(
    node: &Node,
    settings: &PhysicalSettings,
    dbpath: &std::path::Path,
    up: &Upload,
    chain: &Chain,
) -> Result<(Result<Vec<files::ListedFile>, PhysicalError>, Timestamp), PhysicalError> {
    let last = last_write(node).await?;
    super::stopmark::set(dbpath, "cold backup", &up.backup).await?;
    if let Err(e) = nodectl::stop(node, settings, dbpath).await {
        // Half stopped is worse than either: bring it back if it went away.
        if !nodectl::is_up(node).await {
            if let Err(e2) = nodectl::start(node, settings).await {
                return Err(PhysicalError::NodeControl(format!(
                    "{e}; and starting it again failed: {e2}"
                )));
            }
        }
        super::stopmark::clear(dbpath).await;
        return Err(e);
    }
    let mut guard = nodectl::RestartGuard::armed(settings);
    let copied = match files::list_dbpath(dbpath).await {
        Ok(rels) => hashed_copy(up, dbpath, &rels, chain).await,
        Err(e) => Err(e),
    };
    let started = nodectl::start(node, settings).await;
    guard.disarm();
    started?;
    super::stopmark::clear(dbpath).await;
    Ok((copied, last))
}

/// `$backupCursor`: the checkpoint's files while the node runs, then the journal up to
/// the majority last write (one replica set: its own is the cluster's), cursor closed
/// on every path. `first` is the cursor's `oplogEnd`.
async fn cursor_copy(
    node: &Node,
    dbpath: &std::path::Path,
    up: &Upload,
    chain: &Chain,
) -> Result<(Vec<files::ListedFile>, Timestamp, Timestamp), PhysicalError> {
    let cmds = node.local.clone();
    let cur = super::cursor::open(&cmds, &super::cursor::options(&chain.cursor))
        .await
        .map_err(|e| match e {
            // WiredTiger lost the source's history (another node, a restart).
            PhysicalError::Reply(m) if chain.incr() && m.contains("No such file or directory") => {
                PhysicalError::Config(
                    "can't find incremental backup history. Previous backup was made on another node. You can make a new base incremental backup to start a new history.".into(),
                )
            }
            e => e,
        })?;
    if let Some(id) = &cur.this_id {
        let rs = node.info.replset.as_str();
        state::set_rs(node, &up.backup, rs, doc! {"this_id": id})
            .await
            .map_err(PhysicalError::from)?;
    }
    let keep = {
        let (cmds, cur) = (cmds.clone(), cur.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(super::cursor::KEEP_ALIVE).await;
                if let Err(e) = super::cursor::keep_alive(&cmds, &cur).await {
                    tracing::warn!("{e}");
                }
            }
        })
    };
    let work = async {
        let plan = super::cursor::plan_uploads(&cur.files, chain.incr());
        let rels: Vec<String> = plan.iter().map(|(f, _)| f.name.clone()).collect();
        let (pieces, unchanged) = super::cursor::plan_pieces(&plan);
        let unchanged = unchanged
            .into_iter()
            .map(|file| files::ListedFile { file, crc64: None });
        let sizes: Vec<i64> = plan
            .iter()
            .filter(|(_, up)| *up)
            .map(|(f, _)| f.size)
            .collect();
        let mut copied: Vec<files::ListedFile> = files::upload_pieces(up, dbpath, &pieces, false)
            .await?
            .into_iter()
            .zip(sizes)
            .map(|((mut f, _), size)| {
                // A range's file is cut to the checkpoint's size on restore (PBM), not
                // to what it had grown to while being read.
                if f.file.length > 0 {
                    f.file.size = size;
                }
                f
            })
            .collect();
        copied.extend(unchanged);
        let last = crate::oplog::read::last_write(&node.local, true)
            .await
            .map_err(|e| PhysicalError::Other(format!("read the majority last write: {e}")))?;
        let journals = super::cursor::extend(&cmds, &cur, last).await?;
        let jrels: Vec<String> = journals
            .iter()
            .map(|f| f.name.clone())
            .filter(|n| !rels.contains(n))
            .collect();
        copied.extend(files::upload_all(up, dbpath, &jrels).await?);
        Ok::<_, PhysicalError>((copied, cur.meta.oplog_end, last))
    };
    let r = work.await;
    keep.abort();
    if let Err(e) = super::cursor::close(&cmds, &cur).await {
        tracing::warn!("{e}");
    }
    r
}

/// Every object exists with the size that was written.
async fn check_objects(
    storage: &dyn rbm_storage::Storage,
    expected: &[(String, u64)],
) -> Result<(), PhysicalError> {
    for (obj, size) in expected {
        let m = storage
            .stat(obj)
            .await
            .map_err(|e| PhysicalError::Check(e.to_string()))?;
        if m.size != *size {
            return Err(PhysicalError::Check(format!(
                "{obj}: stored {} bytes, wrote {size}",
                m.size
            )));
        }
    }
    Ok(())
}

/// Where an incremental backup stands in its chain: `cursor` says which kind of backup
/// it is (and names the source of a non-base increment).
struct Chain {
    /// Hash mode: the source's block hashes.
    src_hashes: Option<HashMap<String, FileHashes>>,
    cursor: CursorKind,
}

impl Chain {
    /// An incremental backup, base or not.
    fn incr(&self) -> bool {
        !matches!(self.cursor, CursorKind::Full)
    }

    /// PBM's rules: a non-base increment follows the newest done incremental backup,
    /// which must be on the same storage; its name goes into the meta (`src_backup`).
    async fn define(
        node: &Node,
        cmd: &BackupCmd,
        mode: Mode,
        storage: &dyn rbm_storage::Storage,
    ) -> Result<Self, PhysicalError> {
        if cmd.kind != BackupType::Incremental {
            return Ok(Self {
                src_hashes: None,
                cursor: CursorKind::Full,
            });
        }
        if cmd.incr_base {
            if mode == Mode::BackupCursor {
                flush_history(node).await;
            }
            return Ok(Self {
                src_hashes: None,
                cursor: CursorKind::IncrementalBase {
                    backup: cmd.name.clone(),
                },
            });
        }
        let src = last_incremental(node, &cmd.name).await?.ok_or_else(|| {
            PhysicalError::Config(
                "define source backup: no done incremental backup to continue: make one with --base".into(),
            )
        })?;
        if src.store.name != cmd.profile {
            return Err(PhysicalError::Config(
                "cannot use the configured storage: source backup is stored on a different storage"
                    .into(),
            ));
        }
        state::set(node, &cmd.name, doc! {"src_backup": &src.name}).await?;
        let rs = node.info.replset.as_str();
        let src_this_id = src
            .replsets
            .iter()
            .find(|r| r.name == rs)
            .map(|r| r.this_id.clone())
            .unwrap_or_default();
        let src_hashes = if mode == Mode::BackupCursor {
            None
        } else {
            Some(read_hashes(storage, &src.name, rs).await?)
        };
        Ok(Self {
            src_hashes,
            cursor: CursorKind::Incremental {
                backup: cmd.name.clone(),
                src_backup: src.name,
                src_this_id,
            },
        })
    }
}

/// PBM's `LastIncrementalBackup`: the newest done incremental backup (other than `me`).
///
/// # Errors
/// The query or the decoding failed.
pub async fn last_incremental(
    node: &Node,
    me: &str,
) -> Result<Option<rbm_protocol::meta::backup::BackupMeta>, PhysicalError> {
    let opts = mongodb::options::FindOneOptions::builder()
        .sort(doc! {"start_ts": -1})
        .build();
    let d = node
        .pbm
        .database(rbm_protocol::defs::DB)
        .collection::<Document>(rbm_protocol::defs::BACKUPS_COLLECTION)
        .find_one(doc! {"type": "incremental", "status": "done", "name": {"$ne": me}})
        .with_options(opts)
        .await
        .map_err(PhysicalError::db("find the last incremental backup"))?;
    d.map(|d| {
        bson::deserialize_from_document(d)
            .map_err(|e| PhysicalError::Other(format!("decode backup meta: {e}")))
    })
    .transpose()
}

/// A base needs no earlier history: PBM flushes WiredTiger's to free its resources.
async fn flush_history(node: &Node) {
    let opts = doc! {"disableIncrementalBackup": true};
    match super::cursor::open(&node.local, &opts).await {
        Ok(cur) => {
            if let Err(e) = super::cursor::close(&node.local, &cur).await {
                tracing::warn!("close cursor disableIncrementalBackup: {e}");
            }
        }
        Err(e) => tracing::warn!("flush incremental backup history error: {e}"),
    }
}

async fn read_hashes(
    storage: &dyn rbm_storage::Storage,
    src: &str,
    rs: &str,
) -> Result<HashMap<String, FileHashes>, PhysicalError> {
    let obj = incr::hash_object(src, rs);
    let mut r = match storage.open(&obj).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => {
            return Err(PhysicalError::Config(format!(
                "source backup '{src}' has no block hashes ({obj}) on the configured storage: it was made by PBM or in backupCursor mode (which this node's mode cannot continue), or it is stored elsewhere; make a new base with --base"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut bytes)
        .await
        .map_err(PhysicalError::io(format!("read {obj}")))?;
    incr::decode_hashes(&bytes)
}

/// The copy of `cold` and `fsyncLock` modes. A full backup streams every file. An
/// incremental one also keeps the block hashes of every file ([`incr::hash_object`]):
/// a base takes them from the bytes it sends; a later increment first reads each file
/// to hash it, then stores only the ranges whose hashes differ from the source's.
async fn hashed_copy(
    up: &Upload,
    dbpath: &std::path::Path,
    rels: &[String],
    chain: &Chain,
) -> Result<Vec<files::ListedFile>, PhysicalError> {
    use futures::{StreamExt, TryStreamExt};
    if !chain.incr() {
        return files::upload_all(up, dbpath, rels).await;
    }
    let (copied, hashes) = match &chain.src_hashes {
        None => {
            let pieces: Vec<files::Piece> = rels.iter().map(|r| files::Piece::whole(r)).collect();
            let done = files::upload_pieces(up, dbpath, &pieces, true).await?;
            let mut hashes = Vec::with_capacity(done.len());
            let mut copied = Vec::with_capacity(done.len());
            for (f, h) in done {
                hashes.push((
                    f.file.name.clone(),
                    h.unwrap_or(FileHashes {
                        size: 0,
                        blocks: Vec::new(),
                    }),
                ));
                copied.push(f);
            }
            (copied, hashes)
        }
        Some(src) => {
            let hashes: Vec<(String, FileHashes)> = futures::stream::iter(rels.iter().cloned())
                .map(|rel| async move {
                    // The node is stopped or locked meanwhile: stop reading at once.
                    if up.cancel.is_cancelled() {
                        return Err(PhysicalError::Interrupted("backup stopped".into()));
                    }
                    let h = files::hash_file(&dbpath.join(&rel)).await?;
                    Ok::<_, PhysicalError>((rel, h))
                })
                .buffered(up.parallel.max(1))
                .try_collect()
                .await?;
            let mut pieces = Vec::new();
            let mut unchanged = Vec::new();
            for (rel, h) in &hashes {
                match incr::diff(src.get(rel), h) {
                    FilePlan::Whole => pieces.push(files::Piece::whole(rel)),
                    FilePlan::Unchanged => unchanged.push(unchanged_entry(dbpath, rel, h.size)?),
                    FilePlan::Ranges(rs) => pieces.extend(rs.into_iter().map(|r| files::Piece {
                        rel: rel.clone(),
                        range: Some(r),
                    })),
                }
            }
            let mut copied: Vec<files::ListedFile> =
                files::upload_pieces(up, dbpath, &pieces, false)
                    .await?
                    .into_iter()
                    .map(|(f, _)| f)
                    .collect();
            copied.extend(unchanged);
            (copied, hashes)
        }
    };
    if let CursorKind::Incremental {
        src_backup: src, ..
    } = &chain.cursor
    {
        tracing::debug!("increment over {src}: {} objects", copied.len());
    }
    let bytes = incr::encode_hashes(&hashes)?;
    let len = bytes.len() as u64;
    up.storage
        .save(
            &incr::hash_object(&up.backup, &up.replset),
            Box::new(std::io::Cursor::new(bytes)),
            Some(len),
            &up.cancel,
        )
        .await?;
    Ok(copied)
}

/// PBM's record of a file an increment does not store.
fn unchanged_entry(
    dbpath: &std::path::Path,
    rel: &str,
    size: u64,
) -> Result<files::ListedFile, PhysicalError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dbpath.join(rel);
    let md =
        std::fs::metadata(&path).map_err(PhysicalError::io(format!("stat {}", path.display())))?;
    let file = rbm_protocol::meta::backup::File {
        name: rel.to_string(),
        offset: -1,
        length: -1,
        size: size as i64,
        stg_size: 0,
        stg_size_uncompressed: 0,
        fmode: md.permissions().mode() & 0o777,
    };
    Ok(files::ListedFile { file, crc64: None })
}
