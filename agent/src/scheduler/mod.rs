//! rbm's backup scheduler (an extension: PBM has none) and the deletion rules shared
//! with `delete-backup`, `delete-pitr` and `cleanup`.
//!
//! Every agent runs [`run`], but only the holder of the leader document in
//! `admin.rbmSchedule` (`_id: "leader"`, taken over when its heartbeat is older than
//! PBM's stale frame, like the operation locks) evaluates the tasks of the config's
//! `schedule:` section. Per task it keeps `{_id: "task:<name>"}` with the last slot
//! taken, the last result and the backups the task made. A slot is claimed with a
//! compare-and-set on `last_fire`, so a leader hand-over cannot fire it twice; a slot
//! that comes while another operation holds the lock is skipped and logged; after
//! downtime the missed slots collapse into one run. When a scheduled backup is done,
//! retention deletes the task's older backups beyond `keep` / `olderThan`, never a
//! backup [`plan::can_delete`] refuses.

pub mod cron;
pub mod plan;

use crate::control::lifecycle_op;
use crate::control::ops::OpContext;
use crate::control::pbmlog::Event;
use crate::node::NodeRole;
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use rbm_protocol::command::{BackupCmd, Command, CommandDoc};
use rbm_protocol::config::{parse_age, Config, ScheduleTask};
use rbm_protocol::defs::{Status, BACKUPS_COLLECTION, CMD_COLLECTION, DB, LOCK_COLLECTION};
use rbm_protocol::meta::log::Severity;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// rbm's control collection of the scheduler (not one of PBM's).
pub const SCHEDULE_COLLECTION: &str = "rbmSchedule";
const LEADER_ID: &str = "leader";
/// How often the leader looks at the tasks: fine enough for 6-field (seconds) crons.
const TICK: Duration = Duration::from_secs(1);
/// Without enabled tasks the config is read less often: a cluster that schedules
/// nothing pays one small read per agent every few seconds, and a new task is picked
/// up within this long.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Checks the cron expressions of a config's schedule (the rest is checked by
/// [`Config::validate`]).
///
/// # Errors
/// The first bad expression.
pub fn validate(cfg: &Config) -> Result<(), cron::CronError> {
    for t in cfg.schedule.iter().flat_map(|s| s.tasks.iter()) {
        cron::Cron::parse(&t.schedule)?;
    }
    Ok(())
}

/// The `_id` of a task's state document.
pub fn task_id(name: &str) -> String {
    format!("task:{name}")
}

/// A task's state document, as `rbm status` reads it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskState {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub since: i64,
    #[serde(default)]
    pub last_fire: i64,
    /// `running`, `done`, `error` or `skipped`; empty before the first run.
    #[serde(default)]
    pub last_status: String,
    #[serde(default)]
    pub last_result: String,
    #[serde(default)]
    pub last_backup: String,
    /// Backups this task made that still exist: the only ones its retention prunes.
    #[serde(default)]
    pub backups: Vec<String>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn coll(ctx: &OpContext) -> mongodb::Collection<Document> {
    ctx.node.pbm.database(DB).collection(SCHEDULE_COLLECTION)
}

/// The scheduler loop of one agent; ends with `shutdown`.
pub async fn run(ctx: OpContext, shutdown: CancellationToken) {
    let mut wait = IDLE_TICK;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match tick(&ctx).await {
            Ok(true) => TICK,
            Ok(false) => IDLE_TICK,
            Err(e) => {
                tracing::warn!("scheduler: {e}");
                IDLE_TICK
            }
        };
    }
}

/// `Ok(true)` while the config has enabled tasks.
async fn tick(ctx: &OpContext) -> Result<bool, String> {
    let Some(cfg) = crate::control::heartbeat::Heartbeat::main_config(&ctx.node)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(false);
    };
    let tasks: Vec<&ScheduleTask> = cfg
        .schedule
        .iter()
        .flat_map(|s| s.tasks.iter())
        .filter(|t| t.enabled)
        .collect();
    if tasks.is_empty() {
        return Ok(false);
    }
    if ctx.node.hello().await.map_err(|e| e.to_string())?.0 == NodeRole::Arbiter {
        return Ok(false);
    }
    if !lead(ctx).await? {
        return Ok(true);
    }
    for t in tasks {
        if let Err(e) = task_tick(ctx, &cfg, t).await {
            tracing::warn!(task = %t.name, "scheduler: {e}");
        }
    }
    Ok(true)
}

/// Takes or keeps the leader document; `false` while a live agent holds it.
async fn lead(ctx: &OpContext) -> Result<bool, String> {
    let me = format!("{}/{}", ctx.node.info.replset, ctx.node.info.name);
    let now = ctx.node.cluster_time().await.map_err(|e| e.to_string())?;
    let stale = Timestamp {
        time: now.time.saturating_sub(rbm_protocol::defs::STALE_FRAME_SEC),
        increment: 0,
    };
    let r = coll(ctx)
        .update_one(
            doc! {"_id": LEADER_ID, "$or": [{"node": &me}, {"hb": {"$lt": stale}}]},
            doc! {"$set": {"node": &me, "hb": now}},
        )
        .upsert(true)
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if crate::control::is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(format!("take the scheduler lead: {e}")),
    }
}

async fn load_state(ctx: &OpContext, t: &ScheduleTask, now: i64) -> Result<TaskState, String> {
    let id = task_id(&t.name);
    let found = coll(ctx)
        .find_one(doc! {"_id": &id})
        .await
        .map_err(|e| format!("read admin.{SCHEDULE_COLLECTION}: {e}"))?;
    if let Some(d) = found {
        let s: TaskState = bson::deserialize_from_document(d)
            .map_err(|e| format!("decode the state of task {:?}: {e}", t.name))?;
        if s.schedule == t.schedule {
            return Ok(s);
        }
        // A changed expression starts afresh: its past slots are not owed.
        coll(ctx)
            .update_one(
                doc! {"_id": &id},
                doc! {"$set": {"schedule": &t.schedule, "since": now, "last_fire": 0_i64}},
            )
            .await
            .map_err(|e| format!("reset task {:?}: {e}", t.name))?;
        return Ok(TaskState {
            schedule: t.schedule.clone(),
            since: now,
            last_fire: 0,
            ..s
        });
    }
    let s = TaskState {
        id: id.clone(),
        schedule: t.schedule.clone(),
        since: now,
        ..Default::default()
    };
    let d = bson::serialize_to_document(&s).map_err(|e| e.to_string())?;
    match coll(ctx).insert_one(d).await {
        Ok(_) => Ok(s),
        Err(e) if crate::control::is_duplicate_key(&e) => Err("state created concurrently".into()),
        Err(e) => Err(format!("create the state of task {:?}: {e}", t.name)),
    }
}

/// Another operation holds a live lock: its description.
async fn busy(ctx: &OpContext) -> Result<Option<String>, String> {
    let now = ctx.node.cluster_time().await.map_err(|e| e.to_string())?;
    let stale = Timestamp {
        time: now.time.saturating_sub(rbm_protocol::defs::STALE_FRAME_SEC),
        increment: 0,
    };
    let l = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(LOCK_COLLECTION)
        .find_one(doc! {"hb": {"$gte": stale}})
        .await
        .map_err(|e| format!("read admin.pbmLock: {e}"))?;
    Ok(l.map(|l| {
        format!(
            "{} (opid {}) on {}",
            l.get_str("type").unwrap_or(""),
            l.get_str("opid").unwrap_or(""),
            l.get_str("node").unwrap_or("")
        )
    }))
}

async fn task_tick(ctx: &OpContext, cfg: &Config, t: &ScheduleTask) -> Result<(), String> {
    let cron = cron::Cron::parse(&t.schedule).map_err(|e| e.to_string())?;
    let now = now_unix();
    let mut state = load_state(ctx, t, now).await?;
    if state.last_status == "running" {
        follow_backup(ctx, cfg, t, &mut state).await?;
    }
    let timing = cron::Timing {
        since: state.since,
        last_fire: state.last_fire,
    };
    let cron::Due::Now { slot, missed } = cron::due(&cron, timing, now) else {
        return Ok(());
    };
    // Claim the slot: only one evaluation wins, even across a leader hand-over.
    let id = task_id(&t.name);
    let claimed = coll(ctx)
        .update_one(
            doc! {"_id": &id, "last_fire": state.last_fire},
            doc! {"$set": {"last_fire": now}},
        )
        .await
        .map_err(|e| format!("claim a slot of task {:?}: {e}", t.name))?;
    if claimed.modified_count != 1 {
        return Ok(());
    }
    let slot_name = rbm_protocol::names::backup_name(slot);
    let ev = Event {
        event: "schedule",
        obj: &t.name,
        opid: "",
        epoch: None,
    };
    if missed > 0 {
        ctx.log
            .write(
                Severity::Warning,
                &ev,
                &format!("{missed} earlier slot(s) passed while no agent was scheduling; running once for {slot_name}"),
            )
            .await;
    }
    let holder = if state.last_status == "running" {
        Some(format!(
            "the task's previous backup {:?} is still running",
            state.last_backup
        ))
    } else {
        busy(ctx)
            .await?
            .map(|h| format!("another operation is running: {h}"))
    };
    if let Some(h) = holder {
        let msg = format!("skipped the run due at {slot_name}: {h}");
        ctx.log.write(Severity::Warning, &ev, &msg).await;
        // The status stays `running` while its backup does, so it is followed on.
        if state.last_status != "running" {
            set(
                ctx,
                &id,
                doc! {"last_status": "skipped", "last_result": &msg},
            )
            .await?;
        }
        return Ok(());
    }
    let name = rbm_protocol::names::backup_name(now);
    let compression = if t.compression_type.is_empty() {
        cfg.backup_compression().to_string()
    } else {
        t.compression_type.clone()
    };
    let cmd = CommandDoc {
        id: Some(bson::oid::ObjectId::new()),
        command: Command::Backup(BackupCmd {
            kind: t.kind,
            incr_base: false,
            name: name.clone(),
            namespaces: Vec::new(),
            compression,
            compression_level: t.compression_level,
            num_parallel_colls: None,
            num_parallel_files: None,
            filelist: false,
            profile: t.storage_name.clone(),
            users_and_roles: false,
        }),
        ts: now,
    };
    let d = bson::serialize_to_document(&cmd).map_err(|e| e.to_string())?;
    ctx.node
        .pbm
        .database(DB)
        .collection::<Document>(CMD_COLLECTION)
        .insert_one(d)
        .await
        .map_err(|e| format!("send the backup command: {e}"))?;
    ctx.log
        .write(
            Severity::Info,
            &ev,
            &format!("started backup {name:?} for the slot {slot_name}"),
        )
        .await;
    coll(ctx)
        .update_one(
            doc! {"_id": &id},
            doc! {
                "$set": {"last_status": "running", "last_result": format!("backup {name} started"), "last_backup": &name},
                "$addToSet": {"backups": &name},
            },
        )
        .await
        .map_err(|e| format!("record the run of task {:?}: {e}", t.name))?;
    Ok(())
}

async fn set(ctx: &OpContext, id: &str, fields: Document) -> Result<(), String> {
    coll(ctx)
        .update_one(doc! {"_id": id}, doc! {"$set": fields})
        .await
        .map(|_| ())
        .map_err(|e| format!("update admin.{SCHEDULE_COLLECTION}: {e}"))
}

/// A scheduled backup has ended: record how, and prune after a success.
async fn follow_backup(
    ctx: &OpContext,
    cfg: &Config,
    t: &ScheduleTask,
    state: &mut TaskState,
) -> Result<(), String> {
    let id = task_id(&t.name);
    let meta = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION)
        .find_one(doc! {"name": &state.last_backup})
        .await
        .map_err(|e| format!("read admin.pbmBackups: {e}"))?;
    let status = meta
        .as_ref()
        .and_then(|m| m.get_str("status").ok())
        .and_then(|s| s.parse::<Status>().ok());
    let started = rbm_protocol::names::parse_backup_name(&state.last_backup).unwrap_or(0);
    let (st, result) = match (status, meta.as_ref()) {
        (Some(Status::Done), _) => ("done", format!("backup {} done", state.last_backup)),
        (Some(s @ (Status::Error | Status::Canceled)), Some(m)) => (
            "error",
            format!(
                "backup {} {s}: {}",
                state.last_backup,
                m.get_str("error").unwrap_or("")
            ),
        ),
        // No meta long after the command: no agent took it.
        (None, _)
            if now_unix() - started
                > rbm_protocol::defs::WAIT_BACKUP_START.as_secs() as i64 * 2 =>
        {
            (
                "error",
                format!("backup {} never started", state.last_backup),
            )
        }
        _ => return Ok(()),
    };
    let mut result = result;
    state.last_status = st.to_string();
    if st == "done" {
        match prune(ctx, cfg, t, state).await {
            Ok(pruned) if !pruned.is_empty() => {
                result = format!("{result}; pruned {}", pruned.join(", "))
            }
            Ok(_) => {}
            Err(e) => result = format!("{result}; retention failed: {e}"),
        }
    }
    let ev = Event {
        event: "schedule",
        obj: &t.name,
        opid: "",
        epoch: None,
    };
    let sev = if st == "done" {
        Severity::Info
    } else {
        Severity::Error
    };
    ctx.log.write(sev, &ev, &result).await;
    set(
        ctx,
        &id,
        doc! {"last_status": st, "last_result": &result, "backups": &state.backups},
    )
    .await
}

/// Retention of one task after a successful run.
async fn prune(
    ctx: &OpContext,
    cfg: &Config,
    t: &ScheduleTask,
    state: &mut TaskState,
) -> Result<Vec<String>, String> {
    let all = lifecycle_op::load_backups(&ctx.node)
        .await
        .map_err(|e| e.to_string())?;
    // Forget backups deleted by hand.
    state.backups.retain(|b| all.iter().any(|m| &m.name == b));
    let age = parse_age(&t.older_than);
    if t.keep.is_none() && age.is_none() {
        return Ok(Vec::new());
    }
    let chunks = lifecycle_op::load_chunks(&ctx.node)
        .await
        .map_err(|e| e.to_string())?;
    let older_than = age.map(|a| u32::try_from(now_unix() - a as i64).unwrap_or(0));
    let names = plan::retention(
        &state.backups,
        &all,
        &chunks,
        lifecycle_op::pitr_mode(Some(cfg)),
        t.keep.map(|k| k as usize),
        older_than,
    );
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let deleted = lifecycle_op::delete_names(ctx, &names)
        .await
        .map_err(|e| e.to_string())?;
    state.backups.retain(|b| !deleted.contains(b));
    Ok(deleted)
}

/// Every task state document, for `rbm status`.
///
/// # Errors
/// Read failures.
pub async fn states(db: &mongodb::Database) -> Result<Vec<TaskState>, mongodb::error::Error> {
    let docs: Vec<Document> = db
        .collection::<Document>(SCHEDULE_COLLECTION)
        .find(doc! {"_id": {"$regex": "^task:"}})
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| bson::deserialize_from_document(d).ok())
        .collect())
}
