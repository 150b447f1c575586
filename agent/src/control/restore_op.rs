//! The `restore` command on an agent: PBM's logical `Snapshot` restore protocol. The
//! primary's agent takes the exclusive lock (type restore), writes the `pbmRestores`
//! meta (starting → running → dumpDone → done, or error, with conditions and `hb`), and
//! drives [`crate::restore::LogicalRestore`].

use super::lock::{acquire_for_op, HeldLock, LockKind, OpLock};
use super::ops::{header, OpContext};
use super::pbmlog::Event;
use super::{unix_now, ControlError};
use crate::node::NodeRole;
use crate::restore::{source, LogicalRestore, RestoreError, RestoreOptions};
use bson::{doc, Document, Timestamp};
use mongodb::Collection;
use rbm_protocol::command::RestoreCmd;
use rbm_protocol::defs::{BackupType, CommandKind, OpId, Status, DB, RESTORES_COLLECTION};
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::restore::RestoreMeta;
use tokio_util::sync::CancellationToken;

pub(crate) fn restores(ctx: &OpContext) -> Collection<Document> {
    ctx.node.pbm.database(DB).collection(RESTORES_COLLECTION)
}

/// Handles a `restore` command.
///
/// # Errors
/// Only control-protocol failures; the restore's own failure goes into its meta.
pub async fn run(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &RestoreCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let (role, _) = ctx.node.hello().await?;
    // A logical restore writes through the primary; the other agents stay out.
    if role != NodeRole::Primary {
        return Ok(());
    }
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: "restore",
        obj: &cmd.name,
        opid: &opid_hex,
        epoch,
    };
    let lock = match acquire_for_op(
        &ctx.node,
        LockKind::Exclusive,
        header(ctx, CommandKind::Restore, opid, epoch),
    )
    .await?
    {
        OpLock::Held { lock, .. } => lock,
        OpLock::Busy(p) => {
            let msg = super::lock::busy_message(&p);
            write_error_meta(ctx, opid, cmd, &msg).await?;
            ctx.log.write(Severity::Error, &ev, &msg).await;
            return Ok(());
        }
        OpLock::SameOp(_) | OpLock::AlreadyRan => return Ok(()),
    };
    // Restore to a time: the base and every chunk it needs are resolved and checked
    // before anything is written (the CLI checked too, but the chunks may have changed).
    let resolved;
    let (cmd, pitr) = match cmd.oplog_ts {
        Some(target) => match crate::pitr::restore_pitr::prepare(ctx, cmd, target).await {
            Ok((c, p)) => {
                resolved = c;
                (&resolved, Some(p))
            }
            Err(msg) => {
                write_error_meta(ctx, opid, cmd, &msg).await?;
                ctx.log.write(Severity::Error, &ev, &msg).await;
                return lock.release().await;
            }
        },
        None => (cmd, None),
    };
    // PBM's prologue: PITR off, and the slicer's last chunk stored, before data is
    // touched (the slicer would otherwise cut chunks of the restore's own writes).
    if let Err(e) = crate::pitr::slicer::disable_and_wait(&ctx.node).await {
        let msg = format!("unable to stop PITR slicer: {e}");
        write_error_meta(ctx, opid, cmd, &msg).await?;
        ctx.log.write(Severity::Error, &ev, &msg).await;
        return lock.release().await;
    }
    ctx.log
        .write(Severity::Info, &ev, "oplog slicer disabled")
        .await;
    ctx.log
        .write(
            Severity::Info,
            &ev,
            &format!("restore started: backup '{}'", cmd.backup_name),
        )
        .await;
    insert_meta(ctx, opid, cmd).await?;
    // Lock and meta heartbeats while the restore runs.
    let beat_stop = CancellationToken::new();
    let beat = {
        let lock = lock.clone();
        let ctx = ctx.clone();
        let name = cmd.name.clone();
        let stop = beat_stop.clone();
        tokio::spawn(async move { heartbeat(&ctx, &lock, &name, &stop).await })
    };
    let started = std::time::Instant::now();
    let result = restore(ctx, cmd, pitr.as_ref(), &opid_hex, &ev, cancel).await;
    beat_stop.cancel();
    let _ = beat.await;
    let outcome = match &result {
        Ok(()) => crate::metrics::Outcome::Done,
        Err(RunError::Restore(_)) => crate::metrics::Outcome::Failed("restore"),
        Err(RunError::Control(_)) => crate::metrics::Outcome::Failed("control"),
        Err(RunError::Other(_)) => crate::metrics::Outcome::Failed("other"),
    };
    crate::metrics::op_finished("restore", "logical", outcome, started.elapsed());
    match result {
        Ok(()) => {
            set_status(ctx, &cmd.name, Status::Done, None).await?;
            ctx.log
                .write(Severity::Info, &ev, "restore finished successfully")
                .await;
        }
        Err(e) => {
            let msg = e.to_string();
            set_status(ctx, &cmd.name, Status::Error, Some(&msg)).await?;
            ctx.log
                .write(Severity::Error, &ev, &format!("restore failed: {msg}"))
                .await;
        }
    }
    lock.release().await
}

pub(crate) async fn heartbeat(
    ctx: &OpContext,
    lock: &HeldLock,
    name: &str,
    stop: &CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(rbm_protocol::defs::HEARTBEAT_INTERVAL) => {}
        }
        if let Err(e) = lock.beat().await {
            tracing::warn!("restore lock heartbeat: {e}");
        }
        if let Ok(hb) = ctx.node.cluster_time().await {
            let _ = restores(ctx)
                .update_one(
                    doc! {"name": name},
                    doc! {"$set": {"hb": hb, "replsets.$[].hb": hb}},
                )
                .await;
        }
    }
}

/// Why a restore failed before or during the engine's work.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Other(String),
}

async fn restore(
    ctx: &OpContext,
    cmd: &RestoreCmd,
    pitr: Option<&crate::pitr::restore_pitr::PitrObjects>,
    opid_hex: &str,
    ev: &Event<'_>,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let config = super::heartbeat::Heartbeat::main_config(&ctx.node)
        .await?
        .ok_or_else(|| RunError::Other("no storage is configured (run `rbm config`)".into()))?;
    let storage = crate::metrics::storage::metered(
        rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name))
            .await
            .map_err(|e| RunError::Other(format!("storage: {e}")))?,
    );
    let meta = match super::ops::read_meta(&ctx.node, &cmd.backup_name).await? {
        Some(m) => m,
        None => source::backup_meta_from_storage(storage.as_ref(), &cmd.backup_name).await?,
    };
    if meta.kind != BackupType::Logical {
        return Err(RunError::Restore(RestoreError::Incompatible {
            backup: meta.name.clone(),
            why: format!(
                "{} backups cannot be restored by this build",
                meta.kind.as_str()
            ),
        }));
    }
    let rcfg = config.restore.clone().unwrap_or_default();
    let opts = RestoreOptions {
        namespaces: cmd.namespaces.clone(),
        clone: (!cmd.ns_from.is_empty() && !cmd.ns_to.is_empty())
            .then(|| (cmd.ns_from.clone(), cmd.ns_to.clone())),
        users_and_roles: cmd.users_and_roles,
        insertion_workers: cmd
            .num_insertion_workers
            .filter(|n| *n > 0)
            .unwrap_or(rcfg.num_insertion_workers())
            .clamp(1, 64) as usize,
        // PBM's default: half the CPUs.
        parallel_collections: cmd
            .num_parallel_colls
            .filter(|n| *n > 0)
            .unwrap_or_else(|| {
                rcfg.num_parallel_collections(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                )
            })
            .clamp(1, 64) as usize,
        batch_size: cmd
            .batch_size
            .filter(|n| *n > 0)
            .unwrap_or(rcfg.batch_size())
            .clamp(1, 100_000) as usize,
        tag: opid_hex.chars().rev().take(8).collect::<String>(),
    };
    let mut r = LogicalRestore::prepare(
        ctx.node.local.clone(),
        storage,
        &meta,
        &ctx.node.info.replset,
        opts,
    )
    .await?;
    restores(ctx)
        .update_one(
            doc! {"name": &cmd.name},
            doc! {"$set": {"nss": r.target_names()}},
        )
        .await
        .map_err(ControlError::db("update admin.pbmRestores"))?;
    set_status(ctx, &cmd.name, Status::Running, None).await?;
    ctx.log
        .write(
            Severity::Info,
            ev,
            &format!("loading {} collection(s)", r.target_names().len()),
        )
        .await;
    let progress = crate::progress::Progress::new();
    r.progress = progress.clone();
    let publisher = crate::progress::Publisher::new(restores(ctx), &cmd.name, &ctx.node);
    publisher.around(progress, r.load(cancel)).await?;
    r.switch().await?;
    r.users_and_roles().await?;
    set_status(ctx, &cmd.name, Status::DumpDone, None).await?;
    ctx.log
        .write(
            Severity::Info,
            ev,
            &format!(
                "{} document(s) restored; replaying the oplog to {}:{}",
                r.summary.documents, meta.last_write_ts.time, meta.last_write_ts.increment
            ),
        )
        .await;
    match pitr {
        Some(p) => {
            ctx.log
                .write(
                    Severity::Info,
                    ev,
                    &format!(
                        "replaying {} PITR chunk(s) to {}:{}",
                        p.objects.len(),
                        p.target.time,
                        p.target.increment
                    ),
                )
                .await;
            r.replay_oplog_to(&p.objects, Some(p.target), cancel)
                .await?;
        }
        None => r.replay_oplog(cancel).await?,
    }
    r.indexes().await?;
    r.views().await?;
    ctx.log
        .write(
            Severity::Info,
            ev,
            &format!(
                "oplog: {} applied; users: {}, roles: {}",
                r.summary.oplog.applied, r.summary.users, r.summary.roles
            ),
        )
        .await;
    Ok(())
}

fn new_meta(
    ctx: &OpContext,
    opid: OpId,
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
    m.opid = opid.to_hex();
    m.namespaces = cmd.namespaces.clone();
    m.pitr = cmd.oplog_ts.map_or(0, |t| i64::from(t.time));
    m
}

async fn insert_meta(ctx: &OpContext, opid: OpId, cmd: &RestoreCmd) -> Result<(), ControlError> {
    let hb = ctx.node.cluster_time().await?;
    let m = new_meta(ctx, opid, cmd, hb, Status::Starting, None);
    let d = bson::serialize_to_document(&m).map_err(ControlError::bson("encode restore meta"))?;
    match restores(ctx).insert_one(d).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(ControlError::db("insert into admin.pbmRestores")(e)),
    }
}

/// A restore refused before it started still gets a meta, so the CLI sees the reason.
async fn write_error_meta(
    ctx: &OpContext,
    opid: OpId,
    cmd: &RestoreCmd,
    msg: &str,
) -> Result<(), ControlError> {
    let exists = restores(ctx)
        .find_one(doc! {"name": &cmd.name})
        .await
        .map_err(ControlError::db("read admin.pbmRestores"))?
        .is_some();
    if exists {
        return set_status(ctx, &cmd.name, Status::Error, Some(msg)).await;
    }
    let hb = ctx.node.cluster_time().await?;
    let m = new_meta(ctx, opid, cmd, hb, Status::Error, Some(msg));
    let d = bson::serialize_to_document(&m).map_err(ControlError::bson("encode restore meta"))?;
    restores(ctx)
        .insert_one(d)
        .await
        .map_err(ControlError::db("insert into admin.pbmRestores"))?;
    Ok(())
}

pub(crate) async fn set_status(
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
        "replsets.$[].hb": hb,
    };
    if let Some(e) = error {
        cond.insert("error", e);
        set.insert("error", e);
        set.insert("replsets.$[].error", e);
    }
    restores(ctx)
        .update_one(
            doc! {"name": name},
            doc! {"$set": set, "$push": {"conditions": cond.clone(), "replsets.$[].conditions": cond}},
        )
        .await
        .map_err(ControlError::db("update admin.pbmRestores"))?;
    Ok(())
}
