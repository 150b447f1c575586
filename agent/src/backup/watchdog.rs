//! Backups whose agent died: every agent looks, now and then, for a running backup whose
//! meta heartbeat is stale on cluster time (PBM's "backup stuck") and whose lock is
//! stale or gone. The first to see it marks it `error`, removes the dead lock and deletes
//! the backup's objects, so a killed agent never leaves a backup that looks alive or a
//! partial one that could be listed as done.

use super::{state, BackupError};
use crate::control::pbmlog::{Event, PbmLog};
use crate::control::unix_now;
use crate::node::Node;
use bson::{doc, Document};
use futures::TryStreamExt;
use rbm_protocol::defs::{Status, BACKUPS_COLLECTION, DB, LOCK_COLLECTION, STALE_FRAME_SEC};
use rbm_protocol::lock::LockData;
use rbm_protocol::meta::backup::BackupMeta;
use rbm_protocol::meta::log::Severity;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often an agent looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until `cancel`.
pub async fn run(node: Node, log: PbmLog, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        if let Err(e) = fail_stuck_backups(&node, &log).await {
            tracing::warn!("checking for stuck backups: {e}");
        }
    }
}

/// The statuses of a backup that has not ended.
fn running() -> Vec<&'static str> {
    vec![
        Status::Starting.as_str(),
        Status::Running.as_str(),
        Status::DumpDone.as_str(),
    ]
}

/// Fails every stuck backup; returns their names.
///
/// # Errors
/// Read failures.
pub async fn fail_stuck_backups(node: &Node, log: &PbmLog) -> Result<Vec<String>, BackupError> {
    let db_err = |what: &'static str| {
        move |source| BackupError::Db {
            what: what.to_string(),
            source,
        }
    };
    let metas: Vec<Document> = node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        // A replica set stopped for a cold copy cannot beat (see `physical::cold`).
        .find(
            doc! {"status": {"$in": running()}, "replsets.status": {"$ne": Status::Down.as_str()}},
        )
        .await
        .map_err(db_err("read admin.pbmBackups"))?
        .try_collect()
        .await
        .map_err(db_err("read admin.pbmBackups"))?;
    if metas.is_empty() {
        return Ok(Vec::new());
    }
    let now = node.cluster_time().await?;
    let stale = |t: bson::Timestamp| t.time.saturating_add(STALE_FRAME_SEC) < now.time;
    let mut failed = Vec::new();
    for raw in metas {
        let Ok(meta) = bson::deserialize_from_document::<BackupMeta>(raw) else {
            continue;
        };
        if !stale(meta.hb) {
            continue;
        }
        let locks = locks_of(node, &meta.opid).await?;
        if locks.iter().any(|l| !stale(l.hb)) {
            continue;
        }
        let holder = locks
            .first()
            .map(|l| l.node.clone())
            .or_else(|| {
                meta.nomination
                    .iter()
                    .find(|n| !n.ack.is_empty())
                    .map(|n| n.ack.clone())
            })
            .unwrap_or_else(|| "unknown".into());
        let msg = format!(
            "backup stuck: the agent running it ({holder}) stopped (last heartbeat at cluster time {})",
            meta.hb.time
        );
        if !fail(node, log, &meta, &locks, &msg).await? {
            continue;
        }
        failed.push(meta.name);
    }
    Ok(failed)
}

/// Marks `meta` failed with `msg` unless it beat or ended since it was read, removes its
/// dead locks and deletes its objects. Returns whether it was failed here.
async fn fail(
    node: &Node,
    log: &PbmLog,
    meta: &BackupMeta,
    locks: &[LockData],
    msg: &str,
) -> Result<bool, BackupError> {
    // Conditional on the heartbeat we judged: a backup that just beat is left alone.
    if !state::change_with_time(
        node,
        doc! {"name": &meta.name, "hb": meta.hb},
        Status::Error,
        msg,
        unix_now(),
    )
    .await?
    {
        return Ok(false);
    }
    for l in locks {
        let _ = node
            .pbm
            .database(DB)
            .collection::<Document>(LOCK_COLLECTION)
            .delete_one(doc! {"opid": &l.opid, "replset": &l.replset, "hb": l.hb})
            .await;
    }
    let ev = Event {
        event: "backup",
        obj: &meta.name,
        opid: &meta.opid,
        epoch: None,
    };
    log.write(Severity::Error, &ev, msg).await;
    delete_files(node, log, meta).await;
    Ok(true)
}

/// Fails the backup `name` if it still runs: its agent is known to be dead (this node's
/// previous agent, which died holding the node stopped for it; see
/// [`crate::physical::stopmark`]). The watchdog cannot judge such a backup by its
/// heartbeat: a replica set down for a cold copy does not beat.
///
/// # Errors
/// Database errors.
pub async fn fail_abandoned(
    node: &Node,
    log: &PbmLog,
    name: &str,
    why: &str,
) -> Result<bool, BackupError> {
    let found = node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        .find_one(doc! {"name": name, "status": {"$in": running()}})
        .await
        .map_err(|source| BackupError::Db {
            what: "read admin.pbmBackups".into(),
            source,
        })?;
    let Some(meta) = found.and_then(|raw| bson::deserialize_from_document::<BackupMeta>(raw).ok())
    else {
        return Ok(false);
    };
    let locks = locks_of(node, &meta.opid).await?;
    fail(node, log, &meta, &locks, why).await
}

/// The locks (one per replica set) of the operation `opid`.
async fn locks_of(node: &Node, opid: &str) -> Result<Vec<LockData>, BackupError> {
    let db_err = |source| BackupError::Db {
        what: "read admin.pbmLock".into(),
        source,
    };
    node.pbm
        .database(DB)
        .collection::<LockData>(LOCK_COLLECTION)
        .find(doc! {"opid": opid})
        .await
        .map_err(db_err)?
        .try_collect()
        .await
        .map_err(db_err)
}

/// Deletes the objects of a failed backup from the storage its meta names.
async fn delete_files(node: &Node, log: &PbmLog, meta: &BackupMeta) {
    let ev = Event {
        event: "backup",
        obj: &meta.name,
        opid: &meta.opid,
        epoch: None,
    };
    let res = match rbm_storage::from_config(&meta.store.storage, Some(&node.info.name)).await {
        Ok(storage) => super::logical::delete_backup_files(storage.as_ref(), &meta.name).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = res {
        log.write(
            Severity::Error,
            &ev,
            &format!("failed to delete the files of the failed backup: {e}"),
        )
        .await;
    }
}

/// Deletes the objects of the backup with this OPID (a backup failed by someone else
/// than the agent that ran it).
pub async fn delete_files_of(node: &Node, log: &PbmLog, opid: &str) {
    let found = node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        .find_one(doc! {"opid": opid})
        .await;
    if let Ok(Some(raw)) = found {
        if let Ok(meta) = bson::deserialize_from_document::<BackupMeta>(raw) {
            delete_files(node, log, &meta).await;
        }
    }
}
