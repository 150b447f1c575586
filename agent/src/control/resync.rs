//! The `resync` command: rebuild `pbmBackups` from the `<name>.pbm.json` files on the
//! configured storage (PBM's `SyncBackupList`) and `pbmPITRChunks` from the `pbmPitr/`
//! objects (PBM's `resyncOplogRange`), so backups written elsewhere — by PBM or by
//! another cluster — can be listed and restored. With a profile name (`rbm profile
//! sync`), the profile's backups are synced or, with `clear`, dropped from the list.

use super::lock::{acquire_for_op, LockKind, OpLock};
use super::ops::{header, OpContext};
use super::pbmlog::Event;
use super::ControlError;
use crate::node::NodeRole;
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::defs::{CommandKind, OpId, BACKUPS_COLLECTION, DB};
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::BackupMeta;
use rbm_protocol::names;

/// Handles `resync` on the primary's agent.
///
/// # Errors
/// Control-protocol failures; storage problems are logged.
pub async fn run(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: Option<&rbm_protocol::command::ResyncCmd>,
) -> Result<(), ControlError> {
    if ctx.node.hello().await?.0 != NodeRole::Primary {
        return Ok(());
    }
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: "resync",
        obj: "",
        opid: &opid_hex,
        epoch,
    };
    let lock = match acquire_for_op(
        &ctx.node,
        LockKind::Exclusive,
        header(ctx, CommandKind::Resync, opid, epoch),
    )
    .await?
    {
        OpLock::Held { lock, .. } => lock,
        OpLock::Busy(p) => {
            let msg = super::lock::busy_message(&p);
            ctx.log.write(Severity::Error, &ev, &msg).await;
            return Ok(());
        }
        OpLock::SameOp(_) | OpLock::AlreadyRan => return Ok(()),
    };
    let r = match cmd {
        Some(c) if !c.name.is_empty() || c.all => {
            super::resync_profile::run(ctx, &ev, c).await.map(|_| 0)
        }
        _ => sync(ctx, &ev).await,
    };
    match &r {
        Ok(n) => {
            ctx.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!("resync done: {n} backup(s) on storage"),
                )
                .await
        }
        Err(e) => {
            ctx.log
                .write(Severity::Error, &ev, &format!("resync failed: {e}"))
                .await
        }
    }
    lock.release().await
}

async fn sync(ctx: &OpContext, ev: &Event<'_>) -> Result<usize, String> {
    let config = super::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no storage is configured")?;
    let storage = rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name))
        .await
        .map_err(|e| e.to_string())?;
    let objects = rbm_storage::list_all(storage.as_ref(), "")
        .await
        .map_err(|e| e.to_string())?;
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION);
    let mut found = Vec::new();
    for o in objects {
        if o.name.contains('/') {
            continue;
        }
        let Some(name) = names::backup_from_meta_file(&o.name) else {
            continue;
        };
        let meta =
            match crate::restore::source::backup_meta_from_storage(storage.as_ref(), name).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("resync: skip {}: {e}", o.name);
                    continue;
                }
            };
        let mut meta: BackupMeta = meta;
        meta.id = None;
        // As PBM: the backup is read through the storage it was found on, whatever
        // storage the writing cluster had.
        meta.store = rbm_protocol::meta::backup::BackupStorage {
            name: String::new(),
            is_profile: false,
            storage: config.storage.clone(),
        };
        let d = bson::serialize_to_document(&meta).map_err(|e| e.to_string())?;
        coll.replace_one(doc! {"name": &meta.name}, d)
            .upsert(true)
            .await
            .map_err(|e| format!("write admin.pbmBackups: {e}"))?;
        found.push(meta.name);
    }
    // Backups no longer on the storage leave the list, unless one is being taken.
    let stale: Vec<Document> = coll
        .find(doc! {"name": {"$nin": &found}, "status": {"$in": ["done", "error", "canceled"]}, "store.profile": {"$ne": true}})
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    for d in stale {
        if let Ok(id) = d.get_object_id("_id") {
            coll.delete_one(doc! {"_id": id})
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if let Err(e) = super::resync_profile::sync_chunks(ctx, storage.as_ref()).await {
        ctx.log
            .write(
                Severity::Error,
                ev,
                &format!("failed sync oplog range: {e}"),
            )
            .await;
    }
    Ok(found.len())
}
