//! The `Schedule` section of `rbm status` (rbm's own; PBM has no scheduler): each task
//! of the config's `schedule:` with its next run and its last result, from the task
//! states the scheduling agent keeps in `admin.rbmSchedule`.

use super::conn::Conn;
use super::error::CliError;
use super::text::fmt_rfc3339;
use crate::scheduler::cron::{due, Cron, Due, Timing};
use crate::scheduler::{states, task_id};
use rbm_protocol::cli::StatusOutput;
use rbm_protocol::Config;
use serde::Serialize;

/// One task as `rbm status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub name: String,
    pub enabled: bool,
    pub schedule: String,
    /// RFC 3339, `now` when a slot is due, or empty when the expression is invalid
    /// or the task is disabled.
    pub next_run: String,
    /// RFC 3339 of the last slot taken; empty if none.
    pub last_run: String,
    /// `running`, `done`, `error`, `skipped` or empty.
    pub last_status: String,
    pub last_result: String,
    /// The task's backups retention looks after.
    pub backups: Vec<String>,
}

/// PBM's status document with rbm's `schedule` after its sections.
#[derive(Serialize)]
pub struct WithSchedule<'a> {
    #[serde(flatten)]
    pub status: &'a StatusOutput,
    pub schedule: &'a [TaskStatus],
}

/// The tasks of `cfg` with their states.
///
/// # Errors
/// Read failures.
pub async fn tasks(conn: &Conn, cfg: Option<&Config>) -> Result<Vec<TaskStatus>, CliError> {
    let Some(tasks) = cfg.and_then(|c| c.schedule.as_ref()).map(|s| &s.tasks) else {
        return Ok(Vec::new());
    };
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let st = states(conn.admin())
        .await
        .map_err(|e| CliError::mongo("read admin.rbmSchedule", &e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(tasks
        .iter()
        .map(|t| {
            let s = st
                .iter()
                .find(|s| s.id == task_id(&t.name) && s.schedule == t.schedule);
            let timing = Timing {
                since: s.map(|s| s.since).unwrap_or(now),
                last_fire: s.map(|s| s.last_fire).unwrap_or(0),
            };
            let next_run = match (t.enabled, Cron::parse(&t.schedule)) {
                (true, Ok(c)) => match due(&c, timing, now) {
                    Due::Wait { next } if next < i64::MAX => fmt_rfc3339(next),
                    Due::Wait { .. } => String::new(),
                    Due::Now { .. } => "now".into(),
                },
                (true, Err(e)) => format!("never: {e}"),
                (false, _) => String::new(),
            };
            TaskStatus {
                name: t.name.clone(),
                enabled: t.enabled,
                schedule: t.schedule.clone(),
                next_run,
                last_run: s
                    .filter(|s| s.last_fire > 0)
                    .map(|s| fmt_rfc3339(s.last_fire))
                    .unwrap_or_default(),
                last_status: s.map(|s| s.last_status.clone()).unwrap_or_default(),
                last_result: s.map(|s| s.last_result.clone()).unwrap_or_default(),
                backups: s.map(|s| s.backups.clone()).unwrap_or_default(),
            }
        })
        .collect())
}

/// The text lines of the section.
pub fn text(tasks: &[TaskStatus]) -> String {
    let mut s = String::new();
    for t in tasks {
        let state = if t.enabled { "ON" } else { "OFF" };
        s.push_str(&format!("{} [{state}] \"{}\"\n", t.name, t.schedule));
        if t.enabled {
            s.push_str(&format!("  next run: {}\n", t.next_run));
        }
        if !t.last_run.is_empty() {
            s.push_str(&format!(
                "  last run: {} [{}] {}\n",
                t.last_run, t.last_status, t.last_result
            ));
        }
    }
    s
}
