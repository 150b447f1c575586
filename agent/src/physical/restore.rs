//! Physical restore on one node (PBM's `pbm/restore/physical.go`, for backups of the
//! same replica set): stop the node, move its dbPath aside (the fallback), stream the
//! backup's files back, start the node, reset rbm's control state on it; then delete
//! the fallback. Any failure after the stop puts the fallback back and starts the node
//! on its old data.
//!
//! The database is down for most of this, so progress goes to storage as PBM's does,
//! under `.pbm.restore/<name>/`: `rs.<rs>/node.<host:port>.<status>` (content: unix
//! seconds, or the error text for `.error`), `rs.<rs>/node.<host:port>.hb`, and from the
//! replica set's primary `rs.<rs>/rs.<status>`, `cluster.<status>`, `cluster.hb` and
//! finally `.pbm.restore/<name>.json` (the restore meta). The `pbmRestores` document is
//! written before the stop and again once the node is back.
//!
//! Recovery after the start: a cold backup was taken from a cleanly stopped node, so
//! its checkpoint is the data and no oplog recovery is needed; restored onto the same
//! replica set its `local.system.replset` is still right. The restored `admin.pbm*`
//! collections are as they were at backup time (the backup itself still `running`, its
//! lock held), so they are emptied as PBM's `resetRS` does, the current config is put
//! back (PITR off) and the backup list is read again from storage.

use super::files::{self, Download, ListedFile};
use super::incr::RestoreFile;
use super::{nodectl, PhysicalError, PhysicalSettings};
use crate::control::lock::{acquire_for_op, LockKind, OpLock};
use crate::control::ops::OpContext;
use crate::control::pbmlog::Event;
use crate::control::{unix_now, ControlError};
use crate::node::NodeRole;
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::command::RestoreCmd;
use rbm_protocol::defs::{self, BackupType, CommandKind, OpId, Status, DB};
use rbm_protocol::meta::backup::BackupMeta;
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::restore::{RestoreMeta, RestoreNode};
use rbm_protocol::names;
use rbm_storage::{Compression, DynStorage};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// PBM's fallback directory inside the dbPath.
pub const FALLBACK_DIR: &str = ".fallbacksync";

/// How long the primary waits for the other members' final status files.
const MEMBERS_WAIT: Duration = Duration::from_secs(600);

/// Whether `cmd` restores a physical backup (so every node, not only the primary,
/// takes part). Unknown backups go the logical way, which reports them.
pub async fn is_physical(ctx: &OpContext, cmd: &RestoreCmd) -> bool {
    let Some(name) = base_name(ctx, cmd).await else {
        return false;
    };
    matches!(
        backup_meta(ctx, &name).await.map(|(m, _)| m.kind),
        Ok(BackupType::Physical | BackupType::Incremental)
    )
}

/// The backup a restore starts from: the named one, or for `--time` without one PBM's
/// choice of base (the `rbm` CLI always names it; other senders may not).
async fn base_name(ctx: &OpContext, cmd: &RestoreCmd) -> Option<String> {
    if !cmd.backup_name.is_empty() {
        return Some(cmd.backup_name.clone());
    }
    let target = cmd.oplog_ts?;
    let backups = crate::pitr::restore_plan::load_backups(&ctx.node.pbm.database(DB))
        .await
        .ok()?;
    crate::pitr::restore_plan::pick_base(&backups, target).map(|b| b.name.clone())
}

async fn backup_meta(
    ctx: &OpContext,
    name: &str,
) -> Result<(BackupMeta, DynStorage), PhysicalError> {
    let config = crate::control::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| PhysicalError::Other(e.to_string()))?
        .ok_or_else(|| {
            PhysicalError::Config("no storage is configured (run `rbm config`)".into())
        })?;
    let storage = rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name)).await?;
    let meta = match crate::control::ops::read_meta(&ctx.node, name)
        .await
        .map_err(|e| PhysicalError::Other(e.to_string()))?
    {
        Some(m) => m,
        None => crate::restore::source::backup_meta_from_storage(storage.as_ref(), name)
            .await
            .map_err(|e| PhysicalError::Other(e.to_string()))?,
    };
    Ok((meta, storage))
}

/// Status files on storage.
#[derive(Clone)]
struct Progress {
    storage: DynStorage,
    dir: String,
    rs: String,
    me: String,
}

impl Progress {
    async fn put(&self, rel: &str, body: String) -> Result<(), PhysicalError> {
        let len = body.len() as u64;
        self.storage
            .save(
                &format!("{}/{rel}", self.dir),
                Box::new(std::io::Cursor::new(body.into_bytes())),
                Some(len),
                &CancellationToken::new(),
            )
            .await?;
        Ok(())
    }

    async fn node(&self, status: Status, err: Option<&str>) -> Result<(), PhysicalError> {
        let body = err.map_or_else(|| unix_now().to_string(), str::to_string);
        self.put(&format!("rs.{}/node.{}.{}", self.rs, self.me, status), body)
            .await
    }

    async fn node_hb(&self) -> Result<(), PhysicalError> {
        self.put(
            &format!("rs.{}/node.{}.hb", self.rs, self.me),
            unix_now().to_string(),
        )
        .await
    }

    async fn rs_and_cluster(&self, status: Status, err: Option<&str>) -> Result<(), PhysicalError> {
        let body = err.map_or_else(|| unix_now().to_string(), str::to_string);
        self.put(&format!("rs.{}/rs.{status}", self.rs), body.clone())
            .await?;
        self.put("cluster.hb", unix_now().to_string()).await?;
        self.put(&format!("cluster.{status}"), body).await
    }

    /// The final status of `member`, if it wrote one.
    async fn member_end(&self, member: &str) -> Result<Option<Status>, PhysicalError> {
        for s in [Status::Done, Status::Error] {
            let obj = format!("{}/rs.{}/node.{member}.{s}", self.dir, self.rs);
            match self.storage.stat(&obj).await {
                Ok(_) => return Ok(Some(s)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

/// Handles a physical `restore` command on this node.
///
/// # Errors
/// Only control-protocol failures before the restore started; the restore's own
/// failure goes to its meta and status files.
pub async fn run(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &RestoreCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let (role, _) = ctx.node.hello().await?;
    if role == NodeRole::Arbiter {
        return Ok(());
    }
    let leader = role == NodeRole::Primary;
    let resolved;
    let cmd = if cmd.backup_name.is_empty() {
        let mut c = cmd.clone();
        c.backup_name = base_name(ctx, cmd).await.unwrap_or_default();
        resolved = c;
        &resolved
    } else {
        cmd
    };
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: "restore",
        obj: &cmd.name,
        opid: &opid_hex,
        epoch,
    };
    let lock = if leader {
        match acquire_for_op(
            &ctx.node,
            LockKind::Exclusive,
            crate::control::ops::header(ctx, CommandKind::Restore, opid, epoch),
        )
        .await?
        {
            OpLock::Held { lock, .. } => Some(lock),
            OpLock::Busy(p) => {
                let msg = crate::control::lock::busy_message(&p);
                ctx.log.write(Severity::Error, &ev, &msg).await;
                let _ = insert_meta(ctx, opid, cmd, Status::Error, Some(&msg)).await;
                return Ok(());
            }
            OpLock::SameOp(_) | OpLock::AlreadyRan => return Ok(()),
        }
    } else {
        None
    };
    ctx.log
        .write(
            Severity::Info,
            &ev,
            &format!("physical restore started: backup '{}'", cmd.backup_name),
        )
        .await;
    if leader {
        insert_meta(ctx, opid, cmd, Status::Starting, None).await?;
    }
    let result = restore(ctx, settings, cmd, leader, &ev, cancel).await;
    match &result {
        Ok(()) => {
            ctx.log
                .write(
                    Severity::Info,
                    &ev,
                    "physical restore finished successfully",
                )
                .await
        }
        Err(e) => {
            ctx.log
                .write(Severity::Error, &ev, &format!("restore failed: {e}"))
                .await
        }
    }
    if let Some(lock) = lock {
        // After a successful restore the lock document went with the old data.
        if let Err(e) = lock.release().await {
            tracing::debug!("release the restore lock: {e}");
        }
    }
    Ok(())
}

async fn restore(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    cmd: &RestoreCmd,
    leader: bool,
    ev: &Event<'_>,
    cancel: &CancellationToken,
) -> Result<(), PhysicalError> {
    let node = &ctx.node;
    let rs = node.info.replset.clone();
    let prepared = prepare(ctx, settings, cmd).await;
    let (meta, storage, list, dbpath, extra) = match prepared {
        Ok(p) => p,
        Err(e) => {
            if leader {
                let _ = set_meta(ctx, &cmd.name, Status::Error, Some(&e.to_string())).await;
            }
            return Err(e);
        }
    };
    // PBM's prologue, as for a logical restore: PITR off and the slicer's last chunk
    // stored before the node is stopped under it.
    if leader {
        if let Err(e) = crate::pitr::slicer::disable_and_wait(node).await {
            let e = PhysicalError::Other(format!("unable to stop PITR slicer: {e}"));
            let _ = set_meta(ctx, &cmd.name, Status::Error, Some(&e.to_string())).await;
            return Err(e);
        }
    }
    let progress = Progress {
        storage: storage.clone(),
        dir: names::phys_restore_dir(&cmd.name),
        rs: rs.clone(),
        me: node.info.name.clone(),
    };
    let members = extra.members.clone();
    progress.node(Status::Starting, None).await?;
    progress.node_hb().await?;
    if leader {
        set_meta(ctx, &cmd.name, Status::Running, None)
            .await
            .map_err(|e| PhysicalError::Other(e.to_string()))?;
    }
    let hb_stop = CancellationToken::new();
    let hb = {
        let p = progress.clone();
        let stop = hb_stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(defs::PHYS_RESTORE_HB_FRAME_SEC)) => {}
                }
                if let Err(e) = p.node_hb().await {
                    tracing::warn!("restore heartbeat file: {e}");
                }
            }
        })
    };
    let restore_conf = crate::control::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.restore);
    let dl = Download {
        storage: storage.clone(),
        replset: rs.clone(),
        parallel: cmd
            .num_parallel_files
            .filter(|n| *n > 0)
            .map_or(settings.parallel_files, |n| n as usize),
        // PBM's `restore.downloadChunkMb` when set, else the agent's.
        chunk: restore_conf
            .as_ref()
            .and_then(|r| r.download_chunk_mb)
            .filter(|mb| *mb > 0)
            .map_or(settings.download_chunk, |mb| (mb as u64) << 20),
        ahead: settings.download_ahead,
    };
    let outcome = swap_data(
        ctx, settings, &dbpath, &dl, &list, &progress, &extra, leader, cancel,
    )
    .await;
    let result = match outcome {
        Ok(bytes) => {
            ctx.log
                .write(
                    Severity::Info,
                    ev,
                    &format!(
                        "{} files ({bytes} stored bytes) restored into {}",
                        list.len(),
                        dbpath.display()
                    ),
                )
                .await;
            progress.node(Status::Done, None).await?;
            if leader {
                finish_leader(ctx, cmd, &progress, &members, &meta).await
            } else {
                Ok(())
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let _ = progress.node(Status::Error, Some(&msg)).await;
            if leader {
                let _ = progress.rs_and_cluster(Status::Error, Some(&msg)).await;
                let r = retry_db(|| async {
                    set_meta(ctx, &cmd.name, Status::Error, Some(&msg))
                        .await
                        .map_err(|e| match e {
                            ControlError::Db { source, .. } => source,
                            other => mongodb::error::Error::custom(other.to_string()),
                        })
                })
                .await;
                if let Err(e2) = r {
                    tracing::warn!("mark the restore failed: {e2}");
                }
            }
            Err(e)
        }
    };
    if result.is_ok() {
        // Only now is the old data no longer needed.
        let fb = dbpath.join(FALLBACK_DIR);
        if let Err(e) = tokio::fs::remove_dir_all(&fb).await {
            ctx.log
                .write(
                    Severity::Warning,
                    ev,
                    &format!("could not remove the old data in {}: {e}", fb.display()),
                )
                .await;
        }
    }
    hb_stop.cancel();
    let _ = hb.await;
    result
}

type Prepared = (BackupMeta, DynStorage, Vec<RestoreFile>, PathBuf, Extra);

/// What the restore needs besides the files, all read before the node is stopped.
struct Extra {
    /// `admin.pbmConfig`, put back after the restore.
    config_doc: Document,
    /// `--time`: the chunks to replay after the start, checked to be complete.
    pitr: Option<crate::pitr::restore_pitr::PitrObjects>,
    /// The target's replica-set configuration for the standalone recovery steps;
    /// `None` where there is none to read (SecantusDB).
    rs_config: Option<Document>,
    /// Every member that restores (all but arbiters).
    members: Vec<String>,
    /// The mongod binary for the standalone steps (`restore.mongodLocation[Map]`).
    mongod: String,
    /// Its storage and encryption flags ([`super::rsreset::engine_args`]).
    engine: Vec<String>,
    /// Where the restored oplog ends (the backup's last write).
    last_write: Timestamp,
}

async fn prepare(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    cmd: &RestoreCmd,
) -> Result<Prepared, PhysicalError> {
    let (meta, storage) = backup_meta(ctx, &cmd.backup_name).await?;
    if meta.status != Status::Done {
        return Err(PhysicalError::Config(format!(
            "backup '{}' is not done (status {})",
            meta.name, meta.status
        )));
    }
    if !matches!(meta.kind, BackupType::Physical | BackupType::Incremental) {
        return Err(PhysicalError::Config(format!(
            "backup '{}' is {}, not physical",
            meta.name,
            meta.kind.as_str()
        )));
    }
    let rs = &ctx.node.info.replset;
    let part = meta
        .replsets
        .iter()
        .find(|r| &r.name == rs)
        .ok_or_else(|| {
            PhysicalError::Config(format!(
                "backup '{}' has no data of replica set {rs} (remapping replica sets is not supported for physical restores)",
                meta.name
            ))
        })?;
    let part_opts = part.mongod_opts.clone();
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    if !part.mongo_version.is_empty()
        && major_minor(&part.mongo_version) != major_minor(&ctx.node.info.mongo_version)
    {
        return Err(PhysicalError::Config(format!(
            "backup '{}' was taken on server version {}, this node runs {}: the data files need the same major.minor",
            meta.name, part.mongo_version, ctx.node.info.mongo_version
        )));
    }
    let list = if meta.kind == BackupType::Incremental {
        chain_plan(ctx, &storage, &meta).await?
    } else {
        super::incr::single(
            &meta.name,
            compression_of(&meta),
            &filelist(&storage, &meta, part).await?,
        )?
    };
    // Every object there, with the size written, before the node is touched.
    check_objects(&storage, rs, &list).await?;
    if settings.start_cmd.is_none() {
        return Err(PhysicalError::Config(
            "a physical restore stops and starts the node: give the agent --mongod-start-cmd"
                .into(),
        ));
    }
    let dbpath = super::cold::dbpath(&ctx.node, settings).await?;
    if tokio::fs::try_exists(dbpath.join(FALLBACK_DIR))
        .await
        .unwrap_or(true)
    {
        return Err(PhysicalError::Config(format!(
            "{} exists: the old data of an earlier restore is still there; move it away first",
            dbpath.join(FALLBACK_DIR).display()
        )));
    }
    let config_doc = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(defs::CONFIG_COLLECTION)
        .find_one(doc! {"profile": {"$ne": true}})
        .await
        .map_err(PhysicalError::db("read admin.pbmConfig"))?
        .unwrap_or_default();
    // `--time`: the base and every chunk to the target checked now, so that a target
    // in a gap fails with the node untouched.
    let pitr = match cmd.oplog_ts {
        Some(target) => Some(
            crate::pitr::restore_pitr::prepare(ctx, cmd, target)
                .await
                .map_err(PhysicalError::Other)?
                .1,
        ),
        None => None,
    };
    let rs_config = super::rsreset::target_config(&ctx.node).await?;
    let members = super::rsreset::data_members(&ctx.node, rs_config.as_ref()).await?;
    let restore_conf = config_doc
        .get_document("restore")
        .ok()
        .cloned()
        .unwrap_or_default();
    let mongod = restore_conf
        .get_document("mongodLocationMap")
        .ok()
        .and_then(|m| m.get_str(&ctx.node.info.name).ok())
        .or_else(|| restore_conf.get_str("mongodLocation").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("mongod")
        .to_string();
    let engine = match &rs_config {
        Some(_) => super::rsreset::engine_args(
            part_opts.as_ref(),
            &super::cold::cmd_line_opts(&ctx.node).await?,
        ),
        None => Vec::new(),
    };
    let last_write = meta.last_write_ts;
    Ok((
        meta,
        storage,
        list,
        dbpath,
        Extra {
            config_doc,
            pitr,
            rs_config,
            members,
            mongod,
            engine,
            last_write,
        },
    ))
}

/// The file list of one backup: `filelist.pbm`, or the meta's list (PBM before 2.0).
async fn filelist(
    storage: &DynStorage,
    meta: &BackupMeta,
    part: &rbm_protocol::meta::backup::BackupReplset,
) -> Result<Vec<ListedFile>, PhysicalError> {
    if !part.files.is_empty() {
        return Ok(part
            .files
            .iter()
            .map(|f| ListedFile {
                file: f.clone(),
                crc64: None,
            })
            .collect());
    }
    let mut r = storage
        .open(&names::filelist(&meta.name, &part.name))
        .await?;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut bytes)
        .await
        .map_err(PhysicalError::io("read filelist.pbm"))?;
    files::decode_filelist(&bytes)
}

/// PBM's `setBcpFiles`: the chain from the target back to its base through
/// `src_backup`, every member done, incremental and of this replica set, then the copy
/// plan over their file lists.
async fn chain_plan(
    ctx: &OpContext,
    storage: &DynStorage,
    target: &BackupMeta,
) -> Result<Vec<RestoreFile>, PhysicalError> {
    let rs = &ctx.node.info.replset;
    let mut chain: Vec<(String, Compression, Vec<ListedFile>)> = Vec::new();
    let mut meta = target.clone();
    loop {
        let part = meta
            .replsets
            .iter()
            .find(|r| &r.name == rs)
            .ok_or_else(|| {
                PhysicalError::Config(format!(
                    "backup '{}' of the incremental chain has no data of replica set {rs}",
                    meta.name
                ))
            })?;
        chain.push((
            meta.name.clone(),
            compression_of(&meta),
            filelist(storage, &meta, part).await?,
        ));
        if meta.src_backup.is_empty() {
            break;
        }
        if chain.iter().any(|(n, _, _)| n == &meta.src_backup) || chain.len() > 10_000 {
            return Err(PhysicalError::Check(format!(
                "the incremental chain of '{}' loops at '{}'",
                target.name, meta.src_backup
            )));
        }
        let src = meta.src_backup.clone();
        meta = backup_meta(ctx, &src)
            .await
            .map_err(|e| {
                PhysicalError::Config(format!(
                    "source backup '{src}' of '{}' (incremental chain): {e}",
                    meta.name
                ))
            })?
            .0;
        if meta.status != Status::Done || meta.kind != BackupType::Incremental {
            return Err(PhysicalError::Config(format!(
                "source backup '{}' of the incremental chain is {} {}, not a done incremental backup",
                meta.name,
                meta.status,
                meta.kind.as_str()
            )));
        }
    }
    super::incr::copy_plan(&chain)
}

fn compression_of(meta: &BackupMeta) -> Compression {
    meta.compression.parse().unwrap_or(Compression::None)
}

/// Every object the plan reads exists with its recorded stored size.
async fn check_objects(
    storage: &DynStorage,
    rs: &str,
    plan: &[RestoreFile],
) -> Result<(), PhysicalError> {
    for f in plan {
        for op in &f.ops {
            let obj = files::restore_object(rs, op);
            let m = storage.stat(&obj).await.map_err(|e| {
                PhysicalError::Check(format!("backup '{}' is incomplete: {obj}: {e}", op.backup))
            })?;
            // PBM before 2.x recorded no stored sizes.
            if op.entry.file.stg_size > 0 && m.size != op.entry.file.stg_size as u64 {
                return Err(PhysicalError::Check(format!(
                    "backup '{}' is damaged: {obj} has {} bytes, {} were stored",
                    op.backup, m.size, op.entry.file.stg_size
                )));
            }
        }
    }
    Ok(())
}

/// Stop, move aside, copy back, start, reset the control state. On failure after the
/// stop, the old data is put back and the node started on it.
#[allow(clippy::too_many_arguments)]
async fn swap_data(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    dbpath: &Path,
    dl: &Download,
    list: &[RestoreFile],
    progress: &Progress,
    extra: &Extra,
    leader: bool,
    cancel: &CancellationToken,
) -> Result<u64, PhysicalError> {
    let node = &ctx.node;
    nodectl::stop(node, settings, dbpath).await?;
    let mut guard = FallbackGuard {
        dbpath: dbpath.to_path_buf(),
        restart: nodectl::RestartGuard::armed(settings),
        armed: true,
        copying: Arc::new(AtomicBool::new(false)),
    };
    let r = swap_stopped(
        ctx,
        settings,
        dbpath,
        dl,
        list,
        progress,
        extra,
        leader,
        cancel,
        &guard.copying,
    )
    .await;
    guard.armed = false;
    guard.restart.disarm();
    r
}

/// If the restore is aborted (the agent's shutdown grace ran out) while the node is
/// down, the old data goes back synchronously and the node is started on it.
struct FallbackGuard {
    dbpath: PathBuf,
    restart: nodectl::RestartGuard,
    armed: bool,
    /// Files of the backup may be in the dbPath (else everything there is old data
    /// not yet moved aside, and must stay).
    copying: Arc<AtomicBool>,
}

impl Drop for FallbackGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.dbpath.join(FALLBACK_DIR).exists() {
            if let Err(e) = put_back_blocking(&self.dbpath, self.copying.load(Ordering::SeqCst)) {
                tracing::error!("aborted restore: putting the old data back failed: {e}");
                self.restart.disarm();
            }
        }
        // `restart` drops next and starts the node.
    }
}

fn put_back_blocking(dbpath: &Path, remove_new: bool) -> std::io::Result<()> {
    let fb = dbpath.join(FALLBACK_DIR);
    for e in std::fs::read_dir(dbpath)? {
        let e = e?;
        if !remove_new || e.file_name() == FALLBACK_DIR {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    for e in std::fs::read_dir(&fb)? {
        let e = e?;
        std::fs::rename(e.path(), dbpath.join(e.file_name()))?;
    }
    std::fs::remove_dir(&fb)
}

#[allow(clippy::too_many_arguments)]
async fn swap_stopped(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    dbpath: &Path,
    dl: &Download,
    list: &[RestoreFile],
    progress: &Progress,
    extra: &Extra,
    leader: bool,
    cancel: &CancellationToken,
    copying: &AtomicBool,
) -> Result<u64, PhysicalError> {
    let node = &ctx.node;
    let _ = progress.node(Status::Down, None).await;
    let fb = dbpath.join(FALLBACK_DIR);
    if let Err(e) = move_aside(dbpath, &fb).await {
        // Whatever moved goes back before anything else happens.
        return Err(fall_back(ctx, settings, dbpath, e, false).await);
    }
    copying.store(true, Ordering::SeqCst);
    let copied = tokio::select! {
        r = files::download_all(dl, dbpath, list) => r,
        _ = cancel.cancelled() => Err(PhysicalError::Interrupted("the agent is shutting down".into())),
    };
    let bytes = match copied {
        Ok(b) => b,
        Err(e) => return Err(fall_back(ctx, settings, dbpath, e, true).await),
    };
    let _ = progress.node(Status::Running, None).await;
    if let Some(target) = &extra.rs_config {
        let r = super::rsreset::run(
            &extra.mongod,
            &extra.engine,
            dbpath,
            target,
            extra.last_write,
            settings.node_timeout,
        )
        .await;
        if let Err(e) = r {
            let e = PhysicalError::Other(format!("replica-set config recovery: {e}"));
            return Err(fall_back(ctx, settings, dbpath, e, true).await);
        }
    }
    if let Err(e) = nodectl::start(node, settings).await {
        return Err(fall_back(ctx, settings, dbpath, e, true).await);
    }
    if leader {
        if let Err(e) = reset_control_state(ctx, &extra.config_doc).await {
            return Err(fall_back(ctx, settings, dbpath, e, true).await);
        }
        if let Some(p) = &extra.pitr {
            if let Err(e) = replay_pitr(ctx, settings, &dl.storage, p, cancel).await {
                return Err(fall_back(ctx, settings, dbpath, e, true).await);
            }
        }
    }
    Ok(bytes)
}

/// `--time` on a physical base: the node runs on the backup's data, whose oplog ends at
/// the backup's last write; the chunks from there to the target are applied through the
/// primary like any writes, so the other members get them by replication. The data
/// files keep the source's collection UUIDs, so entries may name collections by `ui`.
async fn replay_pitr(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    storage: &DynStorage,
    p: &crate::pitr::restore_pitr::PitrObjects,
    cancel: &CancellationToken,
) -> Result<(), PhysicalError> {
    wait_writable(ctx, settings.node_timeout).await?;
    let stats = crate::pitr::restore_pitr::replay_chunks(
        ctx.node.local.clone(),
        storage,
        &p.objects,
        crate::oplog::ReplayRange {
            start: p.from,
            end: p.target,
        },
        true,
        cancel,
    )
    .await
    .map_err(|e| PhysicalError::Other(format!("replay the PITR chunks: {e}")))?;
    tracing::info!(
        "PITR replay onto the physical base: {} applied, {} transaction(s)",
        stats.applied,
        stats.transactions
    );
    Ok(())
}

/// Until the restarted node is the writable primary again (an election may follow the
/// start).
async fn wait_writable(ctx: &OpContext, timeout: Duration) -> Result<(), PhysicalError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let h = ctx
            .node
            .local
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await;
        if let Ok(h) = h {
            if h.get_bool("isWritablePrimary").unwrap_or(false) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(PhysicalError::NodeControl(format!(
                "the node did not become the writable primary within {timeout:?} to replay the PITR chunks"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Moves every dbPath entry into the fallback directory (same filesystem: renames).
async fn move_aside(dbpath: &Path, fb: &Path) -> Result<(), PhysicalError> {
    tokio::fs::create_dir(fb)
        .await
        .map_err(PhysicalError::io(format!("create {}", fb.display())))?;
    let mut rd = tokio::fs::read_dir(dbpath)
        .await
        .map_err(PhysicalError::io("read the dbPath"))?;
    while let Some(e) = rd
        .next_entry()
        .await
        .map_err(PhysicalError::io("read the dbPath"))?
    {
        if e.file_name() == FALLBACK_DIR {
            continue;
        }
        tokio::fs::rename(e.path(), fb.join(e.file_name()))
            .await
            .map_err(PhysicalError::io(format!(
                "move {} aside",
                e.path().display()
            )))?;
    }
    Ok(())
}

/// Puts the old data back and starts the node on it. Returns the error to report:
/// `cause`, with what went wrong while falling back.
async fn fall_back(
    ctx: &OpContext,
    settings: &PhysicalSettings,
    dbpath: &Path,
    cause: PhysicalError,
    remove_new: bool,
) -> PhysicalError {
    let node = &ctx.node;
    tracing::warn!("physical restore failed ({cause}); putting the old data back");
    // A node that came up on half-restored files must go down before they go away.
    if nodectl::is_up(node).await || nodectl::locked(dbpath) {
        if let Err(e) = nodectl::stop(node, settings, dbpath).await {
            return PhysicalError::Other(format!(
                "{cause}; and stopping the node to put the old data back failed: {e} (the old data is in {})",
                dbpath.join(FALLBACK_DIR).display()
            ));
        }
    }
    if let Err(e) = put_back(dbpath, remove_new).await {
        return PhysicalError::Other(format!(
            "{cause}; and putting the old data back failed: {e} (it is in {})",
            dbpath.join(FALLBACK_DIR).display()
        ));
    }
    if let Err(e) = nodectl::start(node, settings).await {
        return PhysicalError::Other(format!(
            "{cause}; the old data is back but the node did not start: {e}"
        ));
    }
    PhysicalError::Other(format!("{cause}; the old data was put back"))
}

/// Moves the old data back; `remove_new`: first delete what the restore wrote (only
/// once the copy began — before it, whatever is in the dbPath is old data).
async fn put_back(dbpath: &Path, remove_new: bool) -> Result<(), PhysicalError> {
    let fb = dbpath.join(FALLBACK_DIR);
    let mut rd = tokio::fs::read_dir(dbpath)
        .await
        .map_err(PhysicalError::io("read the dbPath"))?;
    while let Some(e) = rd
        .next_entry()
        .await
        .map_err(PhysicalError::io("read the dbPath"))?
    {
        if !remove_new || e.file_name() == FALLBACK_DIR {
            continue;
        }
        let p = e.path();
        let r = if e
            .file_type()
            .await
            .map_err(PhysicalError::io("stat"))?
            .is_dir()
        {
            tokio::fs::remove_dir_all(&p).await
        } else {
            tokio::fs::remove_file(&p).await
        };
        r.map_err(PhysicalError::io(format!(
            "remove restored {}",
            p.display()
        )))?;
    }
    let mut rd = tokio::fs::read_dir(&fb)
        .await
        .map_err(PhysicalError::io("read the fallback"))?;
    while let Some(e) = rd
        .next_entry()
        .await
        .map_err(PhysicalError::io("read the fallback"))?
    {
        tokio::fs::rename(e.path(), dbpath.join(e.file_name()))
            .await
            .map_err(PhysicalError::io(format!(
                "move {} back",
                e.path().display()
            )))?;
    }
    tokio::fs::remove_dir(&fb)
        .await
        .map_err(PhysicalError::io("remove the empty fallback directory"))
}

/// PBM's `resetRS` for the control collections: the restored ones describe the moment
/// of the backup (its own lock and `running` meta among them).
async fn reset_control_state(ctx: &OpContext, config_doc: &Document) -> Result<(), PhysicalError> {
    let db = ctx.node.pbm.database(DB);
    for c in [
        defs::LOCK_COLLECTION,
        defs::LOCK_OP_COLLECTION,
        defs::BACKUPS_COLLECTION,
        defs::RESTORES_COLLECTION,
        defs::CMD_COLLECTION,
        defs::PITR_CHUNKS_COLLECTION,
        defs::AGENTS_COLLECTION,
    ] {
        retry_db(|| async {
            db.collection::<Document>(c)
                .delete_many(doc! {})
                .await
                .map(|_| ())
        })
        .await
        .map_err(PhysicalError::db(format!("empty admin.{c}")))?;
    }
    if !config_doc.is_empty() {
        let mut cfg = config_doc.clone();
        cfg.remove("_id");
        if let Ok(p) = cfg.get_document_mut("pitr") {
            p.insert("enabled", false);
        }
        let coll = db.collection::<Document>(defs::CONFIG_COLLECTION);
        retry_db(|| async {
            coll.replace_one(doc! {"profile": {"$ne": true}}, cfg.clone())
                .upsert(true)
                .await
                .map(|_| ())
        })
        .await
        .map_err(PhysicalError::db("restore admin.pbmConfig"))?;
    }
    resync_backups(ctx).await
}

async fn retry_db<F, Fut>(mut f: F) -> Result<(), mongodb::error::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), mongodb::error::Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The backup list from `<name>.pbm.json` objects, as `force-resync` builds it.
async fn resync_backups(ctx: &OpContext) -> Result<(), PhysicalError> {
    let config = crate::control::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| PhysicalError::Other(e.to_string()))?
        .ok_or_else(|| PhysicalError::Config("no storage is configured".into()))?;
    let storage = rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name)).await?;
    let objects = rbm_storage::list_all(storage.as_ref(), "").await?;
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(defs::BACKUPS_COLLECTION);
    for o in objects {
        if o.name.contains('/') {
            continue;
        }
        let Some(name) = names::backup_from_meta_file(&o.name) else {
            continue;
        };
        let mut meta =
            match crate::restore::source::backup_meta_from_storage(storage.as_ref(), name).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("resync after restore: skip {}: {e}", o.name);
                    continue;
                }
            };
        meta.id = None;
        let d = bson::serialize_to_document(&meta)
            .map_err(|e| PhysicalError::Other(format!("encode backup meta: {e}")))?;
        coll.replace_one(doc! {"name": &meta.name}, d)
            .upsert(true)
            .await
            .map_err(PhysicalError::db("write admin.pbmBackups"))?;
    }
    Ok(())
}

/// The primary: wait for every member's final file, then the replica-set and cluster
/// files, the restore meta on storage and in `pbmRestores`.
async fn finish_leader(
    ctx: &OpContext,
    cmd: &RestoreCmd,
    progress: &Progress,
    members: &[String],
    meta: &BackupMeta,
) -> Result<(), PhysicalError> {
    let deadline = tokio::time::Instant::now() + MEMBERS_WAIT;
    let mut failed = Vec::new();
    for m in members {
        loop {
            match progress.member_end(m).await? {
                Some(Status::Done) => break,
                Some(_) => {
                    failed.push(m.clone());
                    break;
                }
                None if tokio::time::Instant::now() > deadline => {
                    failed.push(m.clone());
                    break;
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
    let (status, err) = if failed.is_empty() {
        (Status::Done, None)
    } else {
        (
            Status::PartlyDone,
            Some(format!(
                "members without a successful restore: {}",
                failed.join(", ")
            )),
        )
    };
    progress.rs_and_cluster(status, err.as_deref()).await?;
    let hb = ctx
        .node
        .cluster_time()
        .await
        .map_err(|e| PhysicalError::Other(e.to_string()))?;
    let mut rmeta = new_meta(ctx, cmd, hb, status, err.as_deref());
    rmeta.leader = format!("{}/{}", ctx.node.info.name, ctx.node.info.replset);
    let now = unix_now();
    if let Some(r) = rmeta.replsets.first_mut() {
        r.last_write_ts = meta.last_write_ts;
        r.nodes = members
            .iter()
            .map(|m| RestoreNode {
                name: m.clone(),
                status: if failed.contains(m) {
                    Status::Error
                } else {
                    Status::Done
                },
                last_transition_ts: now,
                error: None,
                conditions: Vec::new(),
                hb,
            })
            .collect();
    }
    let json = rmeta
        .to_pbm_json()
        .map_err(|e| PhysicalError::Other(format!("encode the restore meta: {e}")))?;
    progress
        .storage
        .save(
            &names::phys_restore_meta(&cmd.name),
            Box::new(std::io::Cursor::new(json.clone().into_bytes())),
            Some(json.len() as u64),
            &CancellationToken::new(),
        )
        .await?;
    let d = bson::serialize_to_document(&rmeta)
        .map_err(|e| PhysicalError::Other(format!("encode the restore meta: {e}")))?;
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(defs::RESTORES_COLLECTION);
    retry_db(|| async {
        coll.replace_one(doc! {"name": &cmd.name}, d.clone())
            .upsert(true)
            .await
            .map(|_| ())
    })
    .await
    .map_err(PhysicalError::db("write admin.pbmRestores"))?;
    Ok(())
}

fn new_meta(
    ctx: &OpContext,
    cmd: &RestoreCmd,
    hb: Timestamp,
    status: Status,
    error: Option<&str>,
) -> RestoreMeta {
    let mut m = RestoreMeta::single_rs(
        &cmd.name,
        &cmd.backup_name,
        &ctx.node.info.replset,
        unix_now(),
        hb,
        status,
        error,
    );
    m.kind = BackupType::Physical;
    m
}

async fn insert_meta(
    ctx: &OpContext,
    opid: OpId,
    cmd: &RestoreCmd,
    status: Status,
    err: Option<&str>,
) -> Result<(), ControlError> {
    let hb = ctx.node.cluster_time().await?;
    let mut m = new_meta(ctx, cmd, hb, status, err);
    m.opid = opid.to_hex();
    let d = bson::serialize_to_document(&m).map_err(ControlError::bson("encode restore meta"))?;
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(defs::RESTORES_COLLECTION);
    match coll.insert_one(d).await {
        Ok(_) => Ok(()),
        Err(e) if crate::control::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(ControlError::db("insert into admin.pbmRestores")(e)),
    }
}

async fn set_meta(
    ctx: &OpContext,
    name: &str,
    status: Status,
    error: Option<&str>,
) -> Result<(), ControlError> {
    let now = unix_now();
    let hb = ctx.node.cluster_time().await?;
    let mut cond = doc! {"timestamp": now, "status": status.as_str()};
    let mut set = doc! {
        "status": status.as_str(), "last_transition_ts": now, "hb": hb,
        "replsets.$[].status": status.as_str(), "replsets.$[].last_transition_ts": now,
    };
    if let Some(e) = error {
        cond.insert("error", e);
        set.insert("error", e);
        set.insert("replsets.$[].error", e);
    }
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(defs::RESTORES_COLLECTION);
    coll.update_one(
        doc! {"name": name},
        doc! {"$set": set, "$push": {"conditions": cond.clone(), "replsets.$[].conditions": cond}},
    )
    .await
    .map_err(ControlError::db("update admin.pbmRestores"))?;
    Ok(())
}

/// Objects of a restore's status folder, for tests and `describe-restore`.
///
/// # Errors
/// Listing failures.
pub async fn status_objects(
    storage: &dyn rbm_storage::Storage,
    restore: &str,
) -> Result<Vec<String>, PhysicalError> {
    let prefix = format!("{}/", names::phys_restore_dir(restore));
    let v: Vec<rbm_storage::ObjectMeta> = storage.list(&prefix).try_collect().await?;
    Ok(v.into_iter().map(|o| o.name).collect())
}
