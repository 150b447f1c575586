//! What an agent does with each command: each one goes to its engine (backup, restore,
//! PITR replay, physical, lifecycle), which takes part in the protocol (nomination,
//! locks, `pbmOpLog`) so that exactly one agent per replica set answers, once.

use super::lock::{acquire_for_op, HeldLock, LockKind, OpLock};
use super::pbmlog::{Event, PbmLog};
use super::{nominate, unix_now, ControlError};
use crate::node::{Node, NodeRole};
use bson::{doc, Document, Timestamp};
use mongodb::Collection;
use rbm_protocol::command::{BackupCmd, Command, CommandDoc};
use rbm_protocol::config::Config;
use rbm_protocol::defs::{
    CommandKind, OpId, Status, BACKUPS_COLLECTION, DB, NOMINATION_GROUP_WAIT, WAIT_ACTION_START,
};
use rbm_protocol::lock::{LockData, LockHeader};
use rbm_protocol::meta::backup::{BackupMeta, BackupRsNomination, BackupStorage};
use rbm_protocol::meta::log::Severity;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the backup meta says for backup types this build cannot take.
pub const BACKUP_UNAVAILABLE: &str =
    "external backups are not available in this rbm build (use --type logical, physical or incremental)";

/// How often nominees look at the meta while a nomination is open (PBM: 0.5 s). One
/// small read per agent, only for the second or so a nomination lasts; at PBM's pace
/// it cost half a second of every backup's start.
const NOMINATION_POLL: Duration = Duration::from_millis(100);

/// Everything a handler needs.
#[derive(Clone, Debug)]
pub struct OpContext {
    pub node: Node,
    pub log: PbmLog,
    /// Test-only: hold the lock of an unavailable operation this long before answering,
    /// to stand for a long-running operation.
    pub hold: Duration,
    /// The backups this agent runs, for `cancelBackup`.
    pub backups: crate::backup::RunningBackups,
    /// Node-local settings of physical backups and restores.
    pub physical: std::sync::Arc<crate::physical::PhysicalSettings>,
    /// Tells this agent's PITR slicer that a backup was sent.
    pub pitr_wakeup: crate::pitr::slicer::Wakeup,
}

/// Handles one command to the end. Errors are logged, not returned: one failed
/// operation must not stop the agent.
pub async fn handle(ctx: OpContext, cmd: CommandDoc, cancel: CancellationToken) {
    let Some(opid) = cmd.opid() else { return };
    let kind = cmd.command.kind();
    let opid_hex = opid.to_hex();
    let epoch = match super::heartbeat::Heartbeat::main_config(&ctx.node).await {
        Ok(c) => c.and_then(|c| c.epoch),
        Err(e) => {
            tracing::warn!(opid = %opid_hex, "cannot read the config: {e}");
            None
        }
    };
    let result = match &cmd.command {
        Command::Backup(b) => {
            // PBM's sliceNow: only a logical backup to the main storage cuts PITR, so
            // only such a one is worth waking the slicer (it then waits for the meta).
            if b.kind == rbm_protocol::defs::BackupType::Logical && b.profile.is_empty() {
                ctx.pitr_wakeup.backup_sent(&opid_hex);
            }
            backup(&ctx, opid, epoch, b, &cancel).await
        }
        Command::Pitr => {
            let ev = Event {
                event: "pitr",
                obj: "",
                opid: &opid_hex,
                epoch,
            };
            ctx.log
                .write(
                    Severity::Debug,
                    &ev,
                    "pitr: slicing follows pitr.enabled in the config; nothing to do",
                )
                .await;
            Ok(())
        }
        Command::Restore(r) if crate::physical::restore::is_physical(&ctx, r).await => {
            crate::physical::restore::run(&ctx, &ctx.physical, opid, epoch, r, &cancel).await
        }
        Command::Restore(r) => super::restore_op::run(&ctx, opid, epoch, r, &cancel).await,
        Command::Resync(r) => super::resync::run(&ctx, opid, epoch, r.as_ref()).await,
        Command::DeleteBackup(d) => {
            super::lifecycle_op::delete_backup(&ctx, opid, epoch, d, &cancel).await
        }
        Command::DeletePitr(d) => {
            super::lifecycle_op::delete_pitr(&ctx, opid, epoch, d, &cancel).await
        }
        Command::Cleanup(d) => super::lifecycle_op::cleanup(&ctx, opid, epoch, d, &cancel).await,
        Command::AddConfigProfile(p) => {
            super::lifecycle_op::add_profile(&ctx, opid, epoch, p, &cancel).await
        }
        Command::RemoveConfigProfile(p) => {
            super::lifecycle_op::remove_profile(&ctx, opid, epoch, p, &cancel).await
        }
        Command::Replay(r) => crate::pitr::restore_replay::run(&ctx, opid, epoch, r, &cancel).await,
        Command::CancelBackup => {
            let ev = Event {
                event: "cancelBackup",
                obj: "",
                opid: &opid_hex,
                epoch,
            };
            let names = ctx.backups.cancel_all();
            let msg = if names.is_empty() {
                "no backup is running on this node".to_string()
            } else {
                format!("canceling backup {}", names.join(", "))
            };
            ctx.log.write(Severity::Info, &ev, &msg).await;
            Ok(())
        }
    };
    crate::metrics::command_handled(kind.as_str(), result.is_ok());
    if let Err(e) = result {
        crate::metrics::error("control");
        let ev = Event {
            event: kind.as_str(),
            obj: "",
            opid: &opid_hex,
            epoch,
        };
        ctx.log
            .write(Severity::Error, &ev, &format!("{kind} failed: {e}"))
            .await;
    }
}

pub(crate) fn header(
    ctx: &OpContext,
    kind: CommandKind,
    opid: OpId,
    epoch: Option<Timestamp>,
) -> LockHeader {
    LockHeader {
        kind: Some(kind),
        replset: ctx.node.info.replset.clone(),
        node: ctx.node.info.name.clone(),
        opid: opid.to_hex(),
        epoch,
    }
}

/// Beats the lock every 5 s until `until` ends or the lock is lost; `Ok(false)` if lost.
pub(super) async fn hold_lock(
    lock: &HeldLock,
    dur: Duration,
    cancel: &CancellationToken,
) -> Result<bool, ControlError> {
    let deadline = tokio::time::Instant::now() + dur;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(true),
            _ = tokio::time::sleep_until(deadline) => return Ok(true),
            _ = tokio::time::sleep(rbm_protocol::defs::HEARTBEAT_INTERVAL) => {
                if !lock.beat().await? {
                    return Ok(false);
                }
            }
        }
    }
}

/// The operation of a stale lock died with its holder: say so, and fail its backup meta.
pub(super) async fn fail_dead_op(ctx: &OpContext, old: &LockData) {
    let kind = old.kind.map(|k| k.as_str()).unwrap_or("");
    let msg = format!(
        "took over the stale lock of {kind} operation {} held by {} (last heartbeat at cluster time {})",
        old.opid, old.node, old.hb.time
    );
    let ev = Event {
        event: kind,
        obj: "",
        opid: &old.opid,
        epoch: old.epoch,
    };
    ctx.log.write(Severity::Warning, &ev, &msg).await;
    if old.kind == Some(CommandKind::Backup) {
        let err = format!("lost agent {}: its lock went stale", old.node);
        match mark_backup_error(&ctx.node, doc! {"opid": &old.opid}, &err).await {
            Ok(true) => {
                crate::backup::watchdog::delete_files_of(&ctx.node, &ctx.log, &old.opid).await
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot mark backup {} failed: {e}", old.opid),
        }
    }
}

fn backups(node: &Node) -> Collection<Document> {
    node.pbm.database(DB).collection(BACKUPS_COLLECTION)
}

/// Sets a backup meta to `error` unless it already ended.
async fn mark_backup_error(node: &Node, filter: Document, err: &str) -> Result<bool, ControlError> {
    let now = unix_now();
    let mut f = filter;
    f.insert(
        "status",
        doc! {"$nin": [Status::Done.as_str(), Status::Error.as_str(), Status::Canceled.as_str()]},
    );
    let r = backups(node)
        .update_one(
            f,
            doc! {
                "$set": {"status": Status::Error.as_str(), "error": err, "last_transition_ts": now},
                "$push": {"conditions": {"timestamp": now, "status": Status::Error.as_str(), "error": err}},
            },
        )
        .await
        .map_err(ControlError::db("update admin.pbmBackups"))?;
    Ok(r.modified_count == 1)
}

/// The cluster leader creates the meta in `starting`, as PBM's `Init` does; an
/// existing meta of the same command (another leader's) is kept, one of another command
/// refuses this one.
async fn ensure_backup_meta(
    ctx: &OpContext,
    opid: OpId,
    cmd: &BackupCmd,
    config: Option<&Config>,
) -> Result<(), ControlError> {
    let hb = ctx.node.cluster_time().await?;
    let now = unix_now();
    let meta = BackupMeta {
        id: None,
        kind: cmd.kind,
        opid: opid.to_hex(),
        name: cmd.name.clone(),
        src_backup: String::new(),
        shard_remap: Default::default(),
        namespaces: cmd.namespaces.clone(),
        sel_users_and_roles: cmd.users_and_roles,
        replsets: Vec::new(),
        compression: if cmd.compression.is_empty() {
            rbm_protocol::defs::DEFAULT_COMPRESSION.to_string()
        } else {
            cmd.compression.clone()
        },
        store: BackupStorage {
            name: cmd.profile.clone(),
            is_profile: !cmd.profile.is_empty(),
            storage: if cmd.profile.is_empty() {
                config.map(|c| c.storage.clone()).unwrap_or_default()
            } else {
                crate::backup::logical::profile_storage(&ctx.node, &cmd.profile)
                    .await
                    .unwrap_or_default()
            },
        },
        size: None,
        size_uncompressed: None,
        mongodb_version: ctx.node.info.mongo_version.clone(),
        fcv: feature_compatibility_version(&ctx.node).await,
        start_ts: now,
        last_transition_ts: now,
        // PBM's `Init` writes 1:1 until the replica sets report theirs.
        first_write_ts: Timestamp {
            time: 1,
            increment: 1,
        },
        last_write_ts: Timestamp {
            time: 1,
            increment: 1,
        },
        hb,
        status: Status::Starting,
        conditions: vec![rbm_protocol::meta::backup::Condition {
            timestamp: now,
            status: Status::Starting,
            error: None,
        }],
        nomination: Vec::new(),
        error: None,
        // PBM refuses backups whose recorded version predates its breaking changes,
        // so this is the PBM format version, not rbm's.
        pbm_version: rbm_protocol::defs::PBM_COMPAT_VERSION.to_string(),
        balancer: Some(rbm_protocol::meta::backup::BalancerMode::Off),
    };
    let doc =
        bson::serialize_to_document(&meta).map_err(ControlError::bson("encode backup meta"))?;
    match backups(&ctx.node).insert_one(doc).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_duplicate_key(&e) => match read_meta(&ctx.node, &cmd.name).await? {
            // Two commands with one name (sent within the same second): the name
            // belongs to the first, and this one must not act on its meta.
            Some(other) if other.opid != opid.to_hex() => Err(ControlError::Refused(format!(
                "backup name {:?} is already used by operation {}",
                cmd.name, other.opid
            ))),
            _ => Ok(()),
        },
        Err(e) => Err(ControlError::db("insert into admin.pbmBackups")(e)),
    }
}

async fn feature_compatibility_version(node: &Node) -> Option<String> {
    let r = node
        .local
        .database("admin")
        .run_command(doc! {"getParameter": 1, "featureCompatibilityVersion": 1})
        .await
        .ok()?;
    r.get_document("featureCompatibilityVersion")
        .ok()?
        .get_str("version")
        .ok()
        .map(str::to_string)
}

pub(crate) async fn read_meta(node: &Node, name: &str) -> Result<Option<BackupMeta>, ControlError> {
    let Some(raw) = backups(node)
        .find_one(doc! {"name": name})
        .await
        .map_err(ControlError::db("read admin.pbmBackups"))?
    else {
        return Ok(None);
    };
    bson::deserialize_from_document(raw)
        .map(Some)
        .map_err(ControlError::bson("decode backup meta"))
}

fn ended(s: Status) -> bool {
    matches!(s, Status::Done | Status::Error | Status::Canceled)
}

/// PBM's `nominateRS` for the leader's own replica set: offer each priority group in
/// turn, 5 s apart, until someone acknowledges.
async fn nominate(
    ctx: &OpContext,
    cmd: &BackupCmd,
    priority: &std::collections::BTreeMap<String, f64>,
    nominated: &tokio::sync::Notify,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let name = cmd.name.as_str();
    // PBM: the next increment goes preferably to the node of its source.
    let mut rules = std::collections::BTreeMap::new();
    if cmd.kind == rbm_protocol::defs::BackupType::Incremental && !cmd.incr_base {
        match crate::physical::cold::last_incremental(&ctx.node, name).await {
            Ok(Some(src)) => {
                for n in src.replsets.iter().filter_map(|r| r.node.clone()) {
                    rules.insert(n, nominate::SRC_HOST_MULTIPLIER);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("define source backup: {e}"),
        }
    }
    let rs = ctx.node.info.replset.clone();
    // An agent that just started, or has not yet re-checked a storage that `rbm config`
    // set a moment ago, reports itself unhealthy until its next beat. PBM fails the
    // backup at once; waiting up to two beats spares `config` then `backup` that race.
    let deadline = tokio::time::Instant::now() + 2 * rbm_protocol::defs::AGENTS_STAT_CHECK_RANGE;
    let groups = loop {
        let groups =
            nominate::groups_with(&nominate::steady_agents(&ctx.node).await?, priority, &rules);
        if !groups.is_empty() || tokio::time::Instant::now() >= deadline {
            break groups;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(NOMINATION_POLL) => {}
        }
    };
    for group in groups {
        let Some(meta) = read_meta(&ctx.node, name).await? else {
            return Ok(());
        };
        if ended(meta.status)
            || meta
                .nomination
                .iter()
                .any(|n| n.rs == rs && !n.ack.is_empty())
        {
            return Ok(());
        }
        let n = vec![BackupRsNomination {
            rs: rs.clone(),
            nodes: group,
            ack: String::new(),
        }];
        let n = bson::serialize_to_bson(&n).map_err(ControlError::bson("encode nomination"))?;
        let hb = ctx.node.cluster_time().await?;
        backups(&ctx.node)
            .update_one(doc! {"name": name}, doc! {"$set": {"n": n, "hb": hb}})
            .await
            .map_err(ControlError::db("nominate in admin.pbmBackups"))?;
        // This agent's own nominee need not wait for its next look.
        nominated.notify_one();
        let deadline = tokio::time::Instant::now() + NOMINATION_GROUP_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(NOMINATION_POLL) => {}
            }
            let Some(meta) = read_meta(&ctx.node, name).await? else {
                return Ok(());
            };
            if ended(meta.status)
                || meta
                    .nomination
                    .iter()
                    .any(|n| n.rs == rs && !n.ack.is_empty())
            {
                return Ok(());
            }
        }
    }
    mark_backup_error(
        &ctx.node,
        doc! {"name": name},
        &format!("no agent of replica set {rs} acknowledged the nomination"),
    )
    .await?;
    Ok(())
}

/// A nominee: wait to be named, take the lock, acknowledge, then run the backup.
/// `nominated` wakes it as soon as this agent's own nominator wrote a nomination; other
/// agents' nominations are seen by polling.
async fn run_if_nominated(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &BackupCmd,
    config: Option<Config>,
    nominated: &tokio::sync::Notify,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let name = cmd.name.as_str();
    let rs = &ctx.node.info.replset;
    let me = &ctx.node.info.name;
    let opid_hex = opid.to_hex();
    let ev = Event {
        event: "backup",
        obj: name,
        opid: &opid_hex,
        epoch,
    };
    // The last group is offered after (groups-1) * 5 s; give it its whole window too.
    let deadline = tokio::time::Instant::now() + WAIT_ACTION_START + NOMINATION_GROUP_WAIT * 2;
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = nominated.notified() => {}
            _ = tokio::time::sleep(NOMINATION_POLL) => {}
        }
        let Some(meta) = read_meta(&ctx.node, name).await? else {
            continue;
        };
        if ended(meta.status) || meta.opid != opid_hex {
            return Ok(());
        }
        let Some(mine) = meta.nomination.iter().find(|n| &n.rs == rs) else {
            continue;
        };
        if !mine.ack.is_empty() {
            return Ok(());
        }
        if !mine.nodes.contains(me) {
            continue;
        }
        match acquire_for_op(
            &ctx.node,
            LockKind::Exclusive,
            header(ctx, CommandKind::Backup, opid, epoch),
        )
        .await?
        {
            OpLock::Held { lock, took_over } => {
                if let Some(old) = took_over {
                    fail_dead_op(ctx, &old).await;
                }
                // Acknowledge only the nomination we read, so two winners cannot both ack.
                let mut acked = meta.nomination.clone();
                for n in acked.iter_mut().filter(|n| &n.rs == rs) {
                    n.ack = me.clone();
                }
                let before = bson::serialize_to_bson(&meta.nomination)
                    .map_err(ControlError::bson("encode nomination"))?;
                let after = bson::serialize_to_bson(&acked)
                    .map_err(ControlError::bson("encode nomination"))?;
                backups(&ctx.node)
                    .update_one(
                        doc! {"name": name, "n": before},
                        doc! {"$set": {"n": after}},
                    )
                    .await
                    .map_err(ControlError::db("acknowledge nomination"))?;
                ctx.log
                    .write(
                        Severity::Info,
                        &ev,
                        &format!("backup started on {me} (nominated)"),
                    )
                    .await;
                if matches!(
                    cmd.kind,
                    rbm_protocol::defs::BackupType::Physical
                        | rbm_protocol::defs::BackupType::Incremental
                ) {
                    let job = crate::backup::BackupJob {
                        node: &ctx.node,
                        log: &ctx.log,
                        opid: opid_hex.clone(),
                        epoch,
                        cmd,
                        config,
                        running: &ctx.backups,
                    };
                    crate::physical::cold::run(&job, &ctx.physical, &lock, cancel).await;
                    if let Err(e) = lock.release().await {
                        // On a single-member set the node may still be finding its feet.
                        tracing::warn!("release the backup lock: {e}");
                    }
                    return Ok(());
                }
                if cmd.kind == rbm_protocol::defs::BackupType::Logical {
                    let job = crate::backup::BackupJob {
                        node: &ctx.node,
                        log: &ctx.log,
                        opid: opid_hex.clone(),
                        epoch,
                        cmd,
                        config,
                        running: &ctx.backups,
                    };
                    crate::backup::run_logical(&job, &lock, cancel).await;
                    lock.release().await?;
                    return Ok(());
                }
                let kept = hold_lock(&lock, ctx.hold, cancel).await?;
                mark_backup_error(&ctx.node, doc! {"name": name}, BACKUP_UNAVAILABLE).await?;
                ctx.log
                    .write(
                        Severity::Error,
                        &ev,
                        &format!("backup failed: {BACKUP_UNAVAILABLE}"),
                    )
                    .await;
                if kept {
                    lock.release().await?;
                }
                return Ok(());
            }
            OpLock::Busy(p) => {
                let msg = format!("cannot start backup: {}", super::lock::busy_message(&p));
                mark_backup_error(&ctx.node, doc! {"name": name}, &msg).await?;
                ctx.log.write(Severity::Error, &ev, &msg).await;
                return Ok(());
            }
            OpLock::SameOp(_) | OpLock::AlreadyRan => return Ok(()),
        }
    }
    Ok(())
}

async fn backup(
    ctx: &OpContext,
    opid: OpId,
    epoch: Option<Timestamp>,
    cmd: &BackupCmd,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    // The role now, not at start-up: elections move the primary.
    let (role, _) = ctx.node.hello().await?;
    if role == NodeRole::Arbiter {
        return Ok(());
    }
    // With one replica set its primary is the cluster leader (sharded clusters, where the
    // CSRS primary leads, are not supported by this build yet).
    if role == NodeRole::Primary {
        let config = super::heartbeat::Heartbeat::main_config(&ctx.node).await?;
        ensure_backup_meta(ctx, opid, cmd, config.as_ref()).await?;
        let priority = config
            .as_ref()
            .and_then(|c| c.backup.as_ref())
            .map(|b| b.priority.clone())
            .unwrap_or_default();
        let nominated = tokio::sync::Notify::new();
        let (a, b) = tokio::join!(
            nominate(ctx, cmd, &priority, &nominated, cancel),
            run_if_nominated(ctx, opid, epoch, cmd, config.clone(), &nominated, cancel)
        );
        a.and(b)
    } else {
        let config = super::heartbeat::Heartbeat::main_config(&ctx.node).await?;
        let never = tokio::sync::Notify::new();
        run_if_nominated(ctx, opid, epoch, cmd, config, &never, cancel).await
    }
}
