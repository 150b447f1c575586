//! Log entries of `pbmLog` (`pbm/log/history.go`, `pbm/log/log.go`).

use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// PBM's `log.Severity`, stored as an int (lower is more severe, so `s <= N`
/// selects "N and worse").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal = 0,
    Error = 1,
    Warning = 2,
    Info = 3,
    Debug = 4,
}

impl Severity {
    /// The severity stored as `s`.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Severity::Fatal,
            1 => Severity::Error,
            2 => Severity::Warning,
            3 => Severity::Info,
            4 => Severity::Debug,
            _ => return None,
        })
    }

    /// The letter PBM prints and accepts in `pbm logs -s`.
    pub fn letter(self) -> &'static str {
        match self {
            Severity::Fatal => "F",
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Info => "I",
            Severity::Debug => "D",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A Go `int`, which the driver writes as int32.
        s.serialize_i32(*self as i32)
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        i32::try_from(v)
            .ok()
            .and_then(Severity::from_i32)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown log severity {v}")))
    }
}

/// PBM's `log.Entry`: one document of `pbmLog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Unix seconds.
    pub ts: i64,
    /// PBM's `ns`: the nanoseconds within `ts`.
    #[serde(rename = "ns")]
    pub ts_nanos: i32,
    /// PBM's `tz`: the writer's UTC offset in seconds.
    #[serde(rename = "tz")]
    pub tz_offset: i32,
    #[serde(rename = "s")]
    pub severity: Severity,
    pub rs: String,
    pub node: String,
    /// PBM's `e`: the event (`backup`, `restore`, `pitr`, `resync`, `delete`,
    /// `agentCheckup`, ...) or empty.
    #[serde(rename = "e")]
    pub event: String,
    /// PBM's `eobj`: the event object, e.g. the backup name.
    #[serde(rename = "eobj")]
    pub obj_name: String,
    /// PBM's `ep`: config epoch of the operation.
    #[serde(rename = "ep", default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opid: String,
    pub msg: String,
}
