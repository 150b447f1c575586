//! The maintenance commands an agent carries out (PBM's `cmd/pbm-agent/delete.go` and
//! `profile.go`): `delete` (by name or `--older-than`), `deletePitr`, `cleanup`,
//! `addConfigProfile`, `removeConfigProfile`. As in PBM the CLI only sends the command;
//! the primary's agent takes the lock, deletes from storage and then from the
//! collections, and logs under the OPID (errors there fail the CLI's wait).
//! What is safe to delete is decided by [`crate::scheduler::plan`].

use super::lock::{acquire_for_op, HeldLock, LockKind, OpLock};
use super::ops::{fail_dead_op, header, hold_lock, OpContext};
use super::pbmlog::Event;
use super::ControlError;
use crate::node::{Node, NodeRole};
use crate::scheduler::plan::{self, PitrMode};
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::command::{CleanupCmd, DeleteBackupCmd, DeletePitrCmd, ProfileCmd};
use rbm_protocol::config::Config;
use rbm_protocol::defs::{
    CommandKind, OpId, BACKUPS_COLLECTION, CONFIG_COLLECTION, DB, PITR_CHUNKS_COLLECTION,
};
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::pitr::PitrChunk;
use rbm_protocol::meta::BackupMeta;
use rbm_storage::DynStorage;
use tokio_util::sync::CancellationToken;

/// PBM's `time.Format("2006-01-02T15:04:05Z")` of unix seconds.
fn fmt_time(secs: i64) -> String {
    rbm_protocol::names::backup_name(secs)
}

/// Every backup meta, oldest snapshot first.
///
/// # Errors
/// Read or decode failures.
pub async fn load_backups(node: &Node) -> Result<Vec<BackupMeta>, ControlError> {
    let docs: Vec<Document> = node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        .find(doc! {})
        .sort(doc! {"last_write_ts": 1})
        .await
        .map_err(ControlError::db("read admin.pbmBackups"))?
        .try_collect()
        .await
        .map_err(ControlError::db("read admin.pbmBackups"))?;
    docs.into_iter()
        .map(|d| {
            bson::deserialize_from_document(d).map_err(ControlError::bson("decode backup meta"))
        })
        .collect()
}

/// Every PITR chunk document, oldest first.
///
/// # Errors
/// Read or decode failures.
pub async fn load_chunks(node: &Node) -> Result<Vec<PitrChunk>, ControlError> {
    node.pbm
        .database(DB)
        .collection::<PitrChunk>(PITR_CHUNKS_COLLECTION)
        .find(doc! {})
        .sort(doc! {"start_ts": 1})
        .await
        .map_err(ControlError::db("read admin.pbmPITRChunks"))?
        .try_collect()
        .await
        .map_err(ControlError::db("read admin.pbmPITRChunks"))
}

/// PITR mode of the main config.
pub fn pitr_mode(cfg: Option<&Config>) -> PitrMode {
    cfg.and_then(|c| c.pitr.as_ref())
        .map(|p| PitrMode {
            enabled: p.enabled,
            oplog_only: p.oplog_only,
        })
        .unwrap_or_default()
}

async fn storage_of(node: &Node, conf: &rbm_protocol::StorageConf) -> Result<DynStorage, String> {
    rbm_storage::from_config(conf, Some(&node.info.name))
        .await
        .map_err(|e| format!("get storage: {e}"))
}

/// PBM's `DeleteBackupData`: the files first, then the meta (a meta without files
/// would be listed as restorable).
///
/// # Errors
/// Storage or database failures, as text for the log.
pub async fn delete_backup_data(node: &Node, st: &DynStorage, name: &str) -> Result<(), String> {
    crate::backup::logical::delete_backup_files(st.as_ref(), name)
        .await
        .map_err(|e| format!("delete files from storage for {name:?}: {e}"))?;
    node.pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        .delete_one(doc! {"name": name})
        .await
        .map_err(|e| format!("delete metadata from db for {name:?}: {e}"))?;
    Ok(())
}

/// PBM's `DeleteChunkData`.
async fn delete_chunk(node: &Node, st: &DynStorage, c: &PitrChunk) -> Result<(), String> {
    match st.delete(&c.file_name).await {
        Ok(()) => {}
        Err(e) if e.kind == rbm_storage::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "delete pitr chunk {:?} from storage: {e}",
                c.file_name
            ))
        }
    }
    node.pbm
        .database(DB)
        .collection::<Document>(PITR_CHUNKS_COLLECTION)
        .delete_one(doc! {"rs": &c.rs, "start_ts": c.start_ts, "end_ts": c.end_ts})
        .await
        .map_err(|e| format!("delete pitr chunk metadata: {e}"))?;
    Ok(())
}

/// Takes the exclusive lock for a maintenance command. As in PBM every agent of the
/// (single, leading) replica set competes and the lock picks one; profile changes are
/// the cluster leader's (the primary's) only. `None` when this agent does not run it.
async fn lock_for(
    ctx: &OpContext,
    kind: CommandKind,
    opid: OpId,
    epoch: Option<Timestamp>,
    ev: &Event<'_>,
    primary_only: bool,
) -> Result<Option<Box<HeldLock>>, ControlError> {
    let role = ctx.node.hello().await?.0;
    if role == NodeRole::Arbiter || (primary_only && role != NodeRole::Primary) {
        return Ok(None);
    }
    match acquire_for_op(
        &ctx.node,
        LockKind::Exclusive,
        header(ctx, kind, opid, epoch),
    )
    .await?
    {
        OpLock::Held { lock, took_over } => {
            if let Some(old) = took_over {
                fail_dead_op(ctx, &old).await;
            }
            Ok(Some(lock))
        }
        OpLock::Busy(p) => {
            let msg = super::lock::busy_message(&p);
            ctx.log.write(Severity::Error, ev, &msg).await;
            Ok(None)
        }
        OpLock::SameOp(_) | OpLock::AlreadyRan => Ok(None),
    }
}

/// The event of a command, owned so the body's future can keep it.
pub struct OwnedEvent {
    event: &'static str,
    obj: String,
    opid: String,
    epoch: Option<Timestamp>,
}

impl OwnedEvent {
    fn ev(&self) -> Event<'_> {
        Event {
            event: self.event,
            obj: &self.obj,
            opid: &self.opid,
            epoch: self.epoch,
        }
    }
}

/// Runs `body` under the command's lock and logs its error (PBM's `l.Error`), or `done`.
#[allow(clippy::too_many_arguments)]
async fn locked<F, Fut>(
    ctx: &OpContext,
    kind: CommandKind,
    opid: OpId,
    epoch: Option<Timestamp>,
    obj: &str,
    primary_only: bool,
    cancel: &CancellationToken,
    body: F,
) -> Result<(), ControlError>
where
    F: FnOnce(OwnedEvent) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: kind.as_str(),
        obj,
        opid: &opid_hex,
        epoch,
    };
    let Some(lock) = lock_for(ctx, kind, opid, epoch, &ev, primary_only).await? else {
        return Ok(());
    };
    ctx.log
        .write(
            Severity::Info,
            &ev,
            &format!("got command {kind}, opid {opid_hex}"),
        )
        .await;
    // Test-only: stands for a long operation (lock tests, interrupted operations).
    if !ctx.hold.is_zero() {
        let kept = hold_lock(&lock, ctx.hold, cancel).await?;
        if cancel.is_cancelled() {
            let msg = format!(
                "{} interrupted: the agent is shutting down",
                kind.description()
            );
            ctx.log.write(Severity::Error, &ev, &msg).await;
        }
        if !kept || cancel.is_cancelled() {
            if kept {
                lock.release().await?;
            }
            return Ok(());
        }
    }
    let owned = OwnedEvent {
        event: kind.as_str(),
        obj: obj.to_string(),
        opid: opid_hex.clone(),
        epoch,
    };
    let r = body(owned).await;
    match r {
        Ok(()) => ctx.log.write(Severity::Info, &ev, "done").await,
        Err(e) => ctx.log.write(Severity::Error, &ev, &e).await,
    }
    lock.release().await
}

/// `delete` (PBM's `Agent.Delete`).
///
/// # Errors
/// Control-protocol failures; refusals and storage problems are logged.
pub async fn delete_backup(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &DeleteBackupCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let obj = if cmd.older_than > 0 {
        fmt_time(cmd.older_than)
    } else {
        cmd.backup.clone()
    };
    let c = ctx.clone();
    let cmd = cmd.clone();
    locked(
        ctx,
        CommandKind::DeleteBackup,
        opid,
        epoch,
        &obj,
        false,
        cancel,
        |oev| async move {
            let ev = oev.ev();
            let cfg = super::heartbeat::Heartbeat::main_config(&c.node)
                .await
                .map_err(|e| e.to_string())?;
            let pitr = pitr_mode(cfg.as_ref());
            let all = load_backups(&c.node).await.map_err(|e| e.to_string())?;
            let chunks = load_chunks(&c.node).await.map_err(|e| e.to_string())?;
            if cmd.older_than > 0 {
                let now = c.node.cluster_time().await.map_err(|e| e.to_string())?;
                if cmd.older_than > i64::from(now.time) {
                    return Err(format!(
                        "provided time {:?} is after now {:?}",
                        fmt_time(cmd.older_than),
                        fmt_time(i64::from(now.time))
                    ));
                }
                let ts = Timestamp {
                    time: u32::try_from(cmd.older_than).unwrap_or(0),
                    increment: 0,
                };
                let info = plan::cleanup_info(&all, &chunks, pitr, ts, &cmd.profile);
                let conf = if cmd.profile.is_empty() {
                    cfg.map(|c| c.storage).ok_or("no storage is configured")?
                } else {
                    crate::backup::logical::profile_storage(&c.node, &cmd.profile)
                        .await
                        .map_err(|e| e.to_string())?
                };
                let st = storage_of(&c.node, &conf).await?;
                c.log
                    .write(
                        Severity::Info,
                        &ev,
                        &format!("deleting backups older than {}", fmt_time(cmd.older_than)),
                    )
                    .await;
                for b in info
                    .backups
                    .iter()
                    .filter(|b| plan::matches_type(b, cmd.kind))
                {
                    c.log
                        .write(
                            Severity::Info,
                            &ev,
                            &format!("deleting backup {:?}", b.name),
                        )
                        .await;
                    delete_backup_data(&c.node, &st, &b.name).await?;
                }
                return Ok(());
            }
            let b = all
                .iter()
                .find(|b| b.name == cmd.backup)
                .ok_or_else(|| format!("get backup meta: backup {:?} not found", cmd.backup))?;
            c.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!("deleting backup {:?}", b.name),
                )
                .await;
            let st = storage_of(&c.node, &b.store.storage).await?;
            if b.kind == rbm_protocol::defs::BackupType::Incremental {
                // PBM: an incremental backup goes only with its whole chain, newest first.
                let chain = plan::incremental_chain(b, &all, &chunks, pitr)
                    .map_err(|e| format!("deleting: {e}"))?;
                for m in chain.iter().rev() {
                    c.log
                        .write(
                            Severity::Info,
                            &ev,
                            &format!("deleting backup {:?}", m.name),
                        )
                        .await;
                    delete_backup_data(&c.node, &st, &m.name).await?;
                }
                return Ok(());
            }
            plan::can_delete(b, &all, &chunks, pitr).map_err(|e| format!("deleting: {e}"))?;
            delete_backup_data(&c.node, &st, &b.name).await
        },
    )
    .await
}

/// Deletes the named backups of a retention pass under one lock (the scheduler's own
/// operation, logged as a `delete` with a fresh OPID). Each name is checked again.
///
/// # Errors
/// Control-protocol failures; per-backup problems are logged and returned as text.
pub async fn delete_names(ctx: &OpContext, names: &[String]) -> Result<Vec<String>, ControlError> {
    let opid = OpId(bson::oid::ObjectId::new());
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: CommandKind::DeleteBackup.as_str(),
        obj: "retention",
        opid: &opid_hex,
        epoch: None,
    };
    // The scheduling agent deletes wherever it runs: it already is the only one.
    let Some(lock) = lock_for(ctx, CommandKind::DeleteBackup, opid, None, &ev, false).await? else {
        return Ok(Vec::new());
    };
    let mut deleted = Vec::new();
    let r: Result<(), String> = async {
        let cfg = super::heartbeat::Heartbeat::main_config(&ctx.node)
            .await
            .map_err(|e| e.to_string())?;
        let pitr = pitr_mode(cfg.as_ref());
        let mut all = load_backups(&ctx.node).await.map_err(|e| e.to_string())?;
        let chunks = load_chunks(&ctx.node).await.map_err(|e| e.to_string())?;
        for name in names {
            let Some(b) = all.iter().find(|b| &b.name == name).cloned() else {
                continue;
            };
            if let Err(e) = plan::can_delete(&b, &all, &chunks, pitr) {
                ctx.log
                    .write(
                        Severity::Warning,
                        &ev,
                        &format!("keep backup {name:?}: {e}"),
                    )
                    .await;
                continue;
            }
            ctx.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!("deleting backup {name:?} (retention)"),
                )
                .await;
            let st = storage_of(&ctx.node, &b.store.storage).await?;
            delete_backup_data(&ctx.node, &st, name).await?;
            all.retain(|x| &x.name != name);
            deleted.push(name.clone());
        }
        Ok(())
    }
    .await;
    if let Err(e) = &r {
        ctx.log.write(Severity::Error, &ev, e).await;
    }
    lock.release().await?;
    Ok(deleted)
}

async fn delete_chunks_before(
    ctx: &OpContext,
    ev: &Event<'_>,
    ts: Timestamp,
    with_backups: bool,
    profile: &str,
) -> Result<(), String> {
    let cfg = super::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no storage is configured")?;
    let now = ctx.node.cluster_time().await.map_err(|e| e.to_string())?;
    if ts.time > now.time {
        return Err(format!(
            "provided time {:?} is after now {:?}",
            fmt_time(i64::from(ts.time)),
            fmt_time(i64::from(now.time))
        ));
    }
    let all = load_backups(&ctx.node).await.map_err(|e| e.to_string())?;
    let chunks = load_chunks(&ctx.node).await.map_err(|e| e.to_string())?;
    let info = plan::cleanup_info(&all, &chunks, pitr_mode(Some(&cfg)), ts, profile);
    let conf = if profile.is_empty() {
        cfg.storage.clone()
    } else {
        crate::backup::logical::profile_storage(&ctx.node, profile)
            .await
            .map_err(|e| e.to_string())?
    };
    let st = storage_of(&ctx.node, &conf).await?;
    if info.chunks.is_empty() && (!with_backups || info.backups.is_empty()) {
        ctx.log
            .write(Severity::Debug, ev, "nothing to delete")
            .await;
    }
    // Chunks are in the main storage whatever the profile.
    let main = storage_of(&ctx.node, &cfg.storage).await?;
    for c in &info.chunks {
        delete_chunk(&ctx.node, &main, c).await?;
    }
    if with_backups {
        for b in &info.backups {
            ctx.log
                .write(Severity::Info, ev, &format!("deleting backup {:?}", b.name))
                .await;
            delete_backup_data(&ctx.node, &st, &b.name).await?;
        }
    }
    Ok(())
}

/// `deletePitr` (PBM's `Agent.DeletePITR`).
///
/// # Errors
/// Control-protocol failures.
pub async fn delete_pitr(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &DeletePitrCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let obj = fmt_time(cmd.older_than);
    let c = ctx.clone();
    let ts = Timestamp {
        time: u32::try_from(cmd.older_than).unwrap_or(0),
        increment: 0,
    };
    locked(
        ctx,
        CommandKind::DeletePitr,
        opid,
        epoch,
        &obj,
        false,
        cancel,
        |oev| async move {
            let ev = oev.ev();
            c.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!(
                        "deleting pitr chunks older than {}",
                        fmt_time(i64::from(ts.time))
                    ),
                )
                .await;
            delete_chunks_before(&c, &ev, ts, false, "").await
        },
    )
    .await
}

/// `cleanup` (PBM's `Agent.Cleanup`).
///
/// # Errors
/// Control-protocol failures.
pub async fn cleanup(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &CleanupCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let obj = fmt_time(i64::from(cmd.older_than.time));
    let c = ctx.clone();
    let cmd = cmd.clone();
    locked(
        ctx,
        CommandKind::Cleanup,
        opid,
        epoch,
        &obj,
        false,
        cancel,
        |oev| async move {
            let ev = oev.ev();
            c.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!(
                        "deleting backups and pitr chunks older than {}",
                        fmt_time(i64::from(cmd.older_than.time))
                    ),
                )
                .await;
            delete_chunks_before(&c, &ev, cmd.older_than, true, &cmd.profile).await
        },
    )
    .await
}

/// `addConfigProfile` (PBM's `handleAddConfigProfile`): the storage must be reachable;
/// an empty one is initialised with `.pbm.init`.
///
/// # Errors
/// Control-protocol failures.
pub async fn add_profile(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &ProfileCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let c = ctx.clone();
    let cmd = cmd.clone();
    let name = cmd.name.clone();
    locked(
        ctx,
        CommandKind::AddConfigProfile,
        opid,
        epoch,
        &name,
        true,
        cancel,
        |oev| async move {
            let ev = oev.ev();
            let fail = |e: String| format!("failed to add config profile: {e}");
            if cmd.name.is_empty() {
                return Err(fail("missed config profile name".into()));
            }
            let st = storage_of(&c.node, &cmd.storage).await.map_err(fail)?;
            crate::storage_init::ensure(st.as_ref(), &tokio_util::sync::CancellationToken::new())
                .await
                .map_err(|e| fail(format!("init storage: {e}")))?;
            let profile = Config {
                name: cmd.name.clone(),
                is_profile: true,
                storage: cmd.storage.clone(),
                ..Default::default()
            };
            let d = bson::serialize_to_document(&profile)
                .map_err(|e| fail(format!("encode profile: {e}")))?;
            c.node
                .pbm
                .database(DB)
                .collection::<Document>(CONFIG_COLLECTION)
                .replace_one(doc! {"profile": true, "name": &cmd.name}, d)
                .upsert(true)
                .await
                .map_err(|e| fail(format!("add profile config: {e}")))?;
            c.log.write(Severity::Info, &ev, "profile saved").await;
            Ok(())
        },
    )
    .await
}

/// `removeConfigProfile`: the profile and the backup list synced from it (PBM's
/// `resync.ClearBackupList`) go; the files on its storage stay.
///
/// # Errors
/// Control-protocol failures.
pub async fn remove_profile(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &ProfileCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let c = ctx.clone();
    let name = cmd.name.clone();
    locked(
        ctx,
        CommandKind::RemoveConfigProfile,
        opid,
        epoch,
        &cmd.name,
        true,
        cancel,
        |oev| async move {
            let ev = oev.ev();
            let fail = |e: String| format!("failed to remove config profile: {e}");
            let coll = c
                .node
                .pbm
                .database(DB)
                .collection::<Document>(CONFIG_COLLECTION);
            let found = coll
                .find_one(doc! {"profile": true, "name": &name})
                .await
                .map_err(|e| fail(format!("get config profile: {e}")))?;
            if found.is_none() {
                return Err(fail(format!("profile {name:?} is not found")));
            }
            c.node
                .pbm
                .database(DB)
                .collection::<Document>(BACKUPS_COLLECTION)
                .delete_many(doc! {"store.profile": true, "store.name": &name})
                .await
                .map_err(|e| fail(format!("clear backup list: {e}")))?;
            coll.delete_one(doc! {"profile": true, "name": &name})
                .await
                .map_err(|e| fail(format!("delete document: {e}")))?;
            c.log.write(Severity::Info, &ev, "profile removed").await;
            Ok(())
        },
    )
    .await
}
