//! rbm's `schedule:` section (an rbm extension; PBM has no scheduler): backup tasks
//! modelled on the Percona Operator's `backup.tasks` entries. PBM ignores the key.
//! The cron expression itself is checked by the agent's scheduler, which owns the parser.

use super::{invalid, ConfigError, COMPRESSION_TYPES};
use crate::defs::BackupType;
use serde::{Deserialize, Serialize};

/// `schedule:`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConf {
    #[serde(default)]
    pub tasks: Vec<ScheduleTask>,
}

/// One `schedule.tasks` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTask {
    /// Unique task name; the key of its state in `admin.rbmSchedule`.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cron expression in UTC: 5 fields (minute precision) or 6 with leading seconds.
    pub schedule: String,
    #[serde(rename = "type", default = "logical")]
    pub kind: BackupType,
    /// Storage profile; empty or absent for the main storage.
    #[serde(
        rename = "storageName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub storage_name: String,
    #[serde(
        rename = "compressionType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub compression_type: String,
    #[serde(
        rename = "compressionLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compression_level: Option<i32>,
    /// Keep at most this many finished backups of this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Delete this task's backups older than this: `<N>d`, `<N>h` or `<N>m`.
    #[serde(
        rename = "olderThan",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub older_than: String,
}

fn yes() -> bool {
    true
}

fn logical() -> BackupType {
    BackupType::Logical
}

/// Parses `olderThan` (`30d`, `12h`, `90m`) into seconds.
pub fn parse_age(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let mul = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v > 0)
}

impl ScheduleConf {
    /// Checks everything but the cron syntax.
    ///
    /// # Errors
    /// The first bad task field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            let key = |f: &str| format!("schedule.tasks[{i}].{f}");
            if t.name.trim().is_empty() {
                return Err(invalid(&key("name"), "must not be empty".into()));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(invalid(
                    &key("name"),
                    format!("duplicate task name {:?}", t.name),
                ));
            }
            if t.schedule.trim().is_empty() {
                return Err(invalid(&key("schedule"), "must not be empty".into()));
            }
            if !t.compression_type.is_empty()
                && !COMPRESSION_TYPES.contains(&t.compression_type.as_str())
            {
                return Err(invalid(
                    &key("compressionType"),
                    format!(
                        "{:?} is not one of {}",
                        t.compression_type,
                        COMPRESSION_TYPES.join(", ")
                    ),
                ));
            }
            if !t.older_than.is_empty() && parse_age(&t.older_than).is_none() {
                return Err(invalid(
                    &key("olderThan"),
                    format!("{:?} is not <N>d, <N>h or <N>m", t.older_than),
                ));
            }
        }
        Ok(())
    }
}
