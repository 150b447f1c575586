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

impl LogEntry {
    /// PBM's `Entry.Stringify`, the line `pbm logs` prints:
    /// `<time> <S>[ [rs/node]][ [event/obj[/opid]]] msg`, with the time in PBM's
    /// `2006-01-02T15:04:05.000-0700` layout at the given UTC offset (`pbm logs
    /// --timezone`; the milliseconds are always `000` since `ts` is whole seconds).
    pub fn to_text(&self, utc_offset_secs: i32, show_node: bool, with_opid: bool) -> String {
        let t = crate::names::UtcTime::from_unix(self.ts + i64::from(utc_offset_secs));
        let off = utc_offset_secs.unsigned_abs();
        let sign = if utc_offset_secs < 0 { '-' } else { '+' };
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000{sign}{:02}{:02} {}",
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            off / 3600,
            off % 3600 / 60,
            self.severity
        );
        if show_node {
            s.push_str(&format!(" [{}/{}]", self.rs, self.node));
        }
        if !self.event.is_empty() || !self.obj_name.is_empty() {
            let mut id: Vec<&str> = Vec::new();
            if !self.event.is_empty() {
                id.push(&self.event);
            }
            if !self.obj_name.is_empty() {
                id.push(&self.obj_name);
            }
            if with_opid {
                id.push(&self.opid);
            }
            s.push_str(&format!(" [{}]", id.join("/")));
        }
        s.push(' ');
        s.push_str(&self.msg);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_is_pbms() {
        let e: LogEntry = bson::deserialize_from_document(bson::doc! {
            "ts": 1_795_693_254_i64, "ns": 726_025_902, "tz": 0, "s": 4, "rs": "secantus",
            "node": "127.0.0.1:27201", "e": "backup", "eobj": "2026-11-26T11:40:53Z",
            "ep": Timestamp { time: 1_795_693_250, increment: 26 },
            "opid": "6b081ac530932961ee3cc9eb", "msg": "init backup meta",
        })
        .expect("log entry");
        assert_eq!(
            e.to_text(0, true, false),
            "2026-11-26T11:40:54.000+0000 D [secantus/127.0.0.1:27201] [backup/2026-11-26T11:40:53Z] init backup meta"
        );
        assert_eq!(
            e.to_text(-5 * 3600 - 1800, false, true),
            "2026-11-26T06:10:54.000-0530 D [backup/2026-11-26T11:40:53Z/6b081ac530932961ee3cc9eb] init backup meta"
        );
        let plain = LogEntry {
            event: String::new(),
            obj_name: String::new(),
            ..e
        };
        assert_eq!(
            plain.to_text(0, false, false),
            "2026-11-26T11:40:54.000+0000 D init backup meta"
        );
        assert!(bson::deserialize_from_document::<LogEntry>(bson::doc! {"s": 9}).is_err());
    }
}
