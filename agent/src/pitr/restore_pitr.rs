//! The agent's part of `restore --time` before the restore starts: resolve the base and
//! the PITR chunks of this replica set, and check that every chunk object is on storage
//! (PBM's `FileStat` in `chunks()`), so that a restore that cannot reach the target is
//! refused with the data untouched.

use super::restore_plan::{self, PlanError};
use crate::control::heartbeat::Heartbeat;
use crate::control::ops::OpContext;
use bson::Timestamp;
use rbm_protocol::command::RestoreCmd;
use rbm_protocol::defs::DB;

/// The chunk objects one replica set replays after its base, and the target.
#[derive(Debug, Clone)]
pub struct PitrObjects {
    pub target: Timestamp,
    /// The base's last write: where the replay starts.
    pub from: Timestamp,
    /// Object names on the main storage, in replay order.
    pub objects: Vec<String>,
}

/// Resolves a `restore --time` on this agent's replica set: returns the command with
/// the base backup's name filled in (PBM's agent does the same) and the chunks to
/// replay. The error is the message for the restore meta.
///
/// # Errors
/// No usable base, a target not covered by chunks, a chunk missing on storage.
pub async fn prepare(
    ctx: &OpContext,
    cmd: &RestoreCmd,
    target: Timestamp,
) -> Result<(RestoreCmd, PitrObjects), String> {
    let admin = ctx.node.pbm.database(DB);
    let rs = ctx.node.info.replset.clone();
    let plan = restore_plan::plan_restore(
        &admin,
        Some(&cmd.backup_name),
        target,
        Some(std::slice::from_ref(&rs)),
    )
    .await
    .map_err(|e| match e {
        PlanError::BaseTooLate => e.to_string(),
        e => format!("define base backup and PITR chunks: {e}"),
    })?;
    let config = Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no storage is configured (run `rbm config`)".to_string())?;
    let storage = rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name))
        .await
        .map_err(|e| format!("storage: {e}"))?;
    let chunks = plan.chunks.get(&rs).cloned().unwrap_or_default();
    for c in &chunks {
        storage.stat(&c.file_name).await.map_err(|e| {
            format!(
                "failed to ensure chunk {}:{} - {}:{} on the storage, file: {}, error: {e}",
                c.start_ts.time,
                c.start_ts.increment,
                c.end_ts.time,
                c.end_ts.increment,
                c.file_name
            )
        })?;
    }
    let mut resolved = cmd.clone();
    resolved.backup_name = plan.base.name.clone();
    Ok((
        resolved,
        PitrObjects {
            target,
            from: plan.base.last_write_ts,
            objects: chunks.into_iter().map(|c| c.file_name).collect(),
        },
    ))
}

/// Applies the entries of `objects` from `range.start` to `range.end` (both inclusive)
/// onto the data `client` reaches, in order, and finishes the applier (transactions
/// still open at the end are left out, as PBM does).
///
/// `keep_uuids`: the data's collections have the source's UUIDs (a physical base), so
/// entries may name collections by `ui`; otherwise they are applied by namespace.
///
/// # Errors
/// The first read or apply failure, as text for the restore meta.
pub async fn replay_chunks(
    client: mongodb::Client,
    storage: &rbm_storage::DynStorage,
    objects: &[String],
    range: crate::oplog::ReplayRange,
    keep_uuids: bool,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<crate::oplog::ReplayStats, String> {
    let mut applier = crate::oplog::Applier::new(
        client,
        crate::oplog::ApplyOptions {
            drop_uuids: !keep_uuids,
            ..crate::oplog::ApplyOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    for o in objects {
        if cancel.is_cancelled() {
            return Err("canceled".into());
        }
        if crate::restore::logical::replay_object(storage, o, range, &mut applier)
            .await
            .map_err(|e| e.to_string())?
        {
            break;
        }
    }
    applier.finish().await.map_err(|e| e.to_string())
}
