//! The `replay` command (`rbm oplog-replay --start --end`, PBM's `ReplayOplog`): the
//! primary's agent applies the PITR chunks of its replica set from `start` to `end`
//! (both inclusive) onto the current data. The window must be covered by chunks with no
//! gap; that is checked before the first entry is applied. Status goes to `pbmRestores`
//! as PBM records it: a logical restore meta with no backup, `start_pitr` and `pitr`
//! set to the window (`list --restore` shows it as "Oplog Replay").

use super::restore_plan;
use crate::control::heartbeat::Heartbeat;
use crate::control::lock::{acquire_for_op, LockKind, OpLock};
use crate::control::ops::{header, OpContext};
use crate::control::pbmlog::Event;
use crate::control::restore_op::{heartbeat, restores, set_status};
use crate::control::{unix_now, ControlError};
use crate::node::NodeRole;
use crate::oplog::ReplayRange;
use bson::Timestamp;
use rbm_protocol::command::ReplayCmd;
use rbm_protocol::defs::{CommandKind, OpId, Status, DB};
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::restore::RestoreMeta;
use tokio_util::sync::CancellationToken;

/// Handles a `replay` command.
///
/// # Errors
/// Only control-protocol failures; the replay's own failure goes into its meta.
pub async fn run(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &ReplayCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let (role, _) = ctx.node.hello().await?;
    if role != NodeRole::Primary {
        return Ok(());
    }
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: "replay",
        obj: &cmd.name,
        opid: &opid_hex,
        epoch,
    };
    let lock = match acquire_for_op(
        &ctx.node,
        LockKind::Exclusive,
        header(ctx, CommandKind::Replay, opid, epoch),
    )
    .await?
    {
        OpLock::Held { lock, .. } => lock,
        OpLock::Busy(p) => {
            let msg = crate::control::lock::busy_message(&p);
            write_meta(ctx, opid, cmd, Status::Error, Some(&msg)).await?;
            ctx.log.write(Severity::Error, &ev, &msg).await;
            return Ok(());
        }
        OpLock::SameOp(_) | OpLock::AlreadyRan => return Ok(()),
    };
    let zero = Timestamp {
        time: 0,
        increment: 0,
    };
    let (start, end) = (cmd.start.unwrap_or(zero), cmd.end.unwrap_or(zero));
    let objects = match plan(ctx, start, end).await {
        Ok(o) => o,
        Err(msg) => {
            write_meta(ctx, opid, cmd, Status::Error, Some(&msg)).await?;
            ctx.log
                .write(Severity::Error, &ev, &format!("oplog replay error: {msg}"))
                .await;
            return lock.release().await;
        }
    };
    ctx.log
        .write(
            Severity::Info,
            &ev,
            &format!(
                "starting oplog replay for period: {} - {}, {} chunk(s)",
                super::timeline::ts_text(start),
                super::timeline::ts_text(end),
                objects.1.len()
            ),
        )
        .await;
    write_meta(ctx, opid, cmd, Status::Starting, None).await?;
    let beat_stop = CancellationToken::new();
    let beat = {
        let lock = lock.clone();
        let ctx = ctx.clone();
        let name = cmd.name.clone();
        let stop = beat_stop.clone();
        tokio::spawn(async move { heartbeat(&ctx, &lock, &name, &stop).await })
    };
    set_status(ctx, &cmd.name, Status::Running, None).await?;
    let result = apply(ctx, &objects.0, &objects.1, start, end, cancel).await;
    beat_stop.cancel();
    let _ = beat.await;
    match result {
        Ok(stats) => {
            set_status(ctx, &cmd.name, Status::Done, None).await?;
            ctx.log
                .write(
                    Severity::Info,
                    &ev,
                    &format!(
                        "oplog replay successfully finished: {} applied, {} transaction(s), {} uncommitted",
                        stats.applied, stats.transactions, stats.uncommitted_transactions
                    ),
                )
                .await;
        }
        Err(msg) => {
            set_status(ctx, &cmd.name, Status::Error, Some(&msg)).await?;
            ctx.log
                .write(Severity::Error, &ev, &format!("oplog replay error: {msg}"))
                .await;
        }
    }
    lock.release().await
}

type Objects = (rbm_storage::DynStorage, Vec<String>);

/// The chunks of this replica set for the window, checked for gaps and presence.
async fn plan(ctx: &OpContext, start: Timestamp, end: Timestamp) -> Result<Objects, String> {
    if (end.time, end.increment) <= (start.time, start.increment) {
        return Err("the end of the replay must be after its start".into());
    }
    let admin = ctx.node.pbm.database(DB);
    let rs = ctx.node.info.replset.clone();
    let chains = restore_plan::plan_replay(&admin, start, end, Some(&rs))
        .await
        .map_err(|e| e.to_string())?;
    let config = Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no storage is configured (run `rbm config`)".to_string())?;
    let storage = rbm_storage::from_config(&config.storage, Some(&ctx.node.info.name))
        .await
        .map_err(|e| format!("storage: {e}"))?;
    let chunks = chains.get(&rs).cloned().unwrap_or_default();
    for c in &chunks {
        storage
            .stat(&c.file_name)
            .await
            .map_err(|e| format!("failed to ensure chunk {} on the storage: {e}", c.file_name))?;
    }
    Ok((storage, chunks.into_iter().map(|c| c.file_name).collect()))
}

async fn apply(
    ctx: &OpContext,
    storage: &rbm_storage::DynStorage,
    objects: &[String],
    start: Timestamp,
    end: Timestamp,
    cancel: &CancellationToken,
) -> Result<crate::oplog::ReplayStats, String> {
    // The current data's collection UUIDs are not the source's: entries are applied by
    // namespace.
    super::restore_pitr::replay_chunks(
        ctx.node.local.clone(),
        storage,
        objects,
        ReplayRange { start, end },
        false,
        cancel,
    )
    .await
}

/// Inserts the meta, or sets its status if it exists.
async fn write_meta(
    ctx: &OpContext,
    opid: OpId,
    cmd: &ReplayCmd,
    status: Status,
    error: Option<&str>,
) -> Result<(), ControlError> {
    let exists = restores(ctx)
        .find_one(bson::doc! {"name": &cmd.name})
        .await
        .map_err(ControlError::db("read admin.pbmRestores"))?
        .is_some();
    if exists {
        return set_status(ctx, &cmd.name, status, error).await;
    }
    let hb = ctx.node.cluster_time().await?;
    let mut m = RestoreMeta::single_rs(
        &cmd.name,
        "",
        &ctx.node.info.replset,
        unix_now(),
        hb,
        status,
        error,
    );
    m.opid = opid.to_hex();
    m.start_pitr = cmd.start.map_or(0, |t| i64::from(t.time));
    m.pitr = cmd.end.map_or(0, |t| i64::from(t.time));
    let d = bson::serialize_to_document(&m).map_err(ControlError::bson("encode restore meta"))?;
    match restores(ctx).insert_one(d).await {
        Ok(_) => Ok(()),
        Err(e) if crate::control::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(ControlError::db("insert into admin.pbmRestores")(e)),
    }
}
