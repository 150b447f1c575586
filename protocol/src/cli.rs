//! JSON printed by `pbm status -o json` and `pbm list -o json` (`cmd/pbm/status.go`,
//! `cmd/pbm/list.go`, `cmd/pbm/main.go`), so that scripts and the Percona Operator,
//! which parse them, can be pointed at `rbm`. `describe-backup` lives in
//! [`crate::meta::describe`]. Field order follows PBM's Go structs, so
//! `serde_json::to_string` gives PBM's bytes.

use crate::defs::{BackupType, Status};
use serde::{Deserialize, Serialize};

/// PBM's `PrintStatus` of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrintStatus {
    Success,
    Failed,
    Ongoing,
}

impl PrintStatus {
    /// PBM's `Status.PrintStatus`: an `error` status counts as success when the error
    /// is only "incompatible".
    pub fn of(status: Status, incompatible: bool) -> Self {
        match status {
            Status::Done => PrintStatus::Success,
            Status::Canceled => PrintStatus::Failed,
            Status::Error if incompatible => PrintStatus::Success,
            Status::Error => PrintStatus::Failed,
            _ => PrintStatus::Ongoing,
        }
    }
}

/// PBM's `snapshotStat`: a backup line of `list` and `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStat {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
    /// Deprecated duplicate of `profile`.
    #[serde(rename = "storage", default, skip_serializing_if = "String::is_empty")]
    pub store_name: String,
    #[serde(rename = "nss", default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: i64,
    pub status: Status,
    #[serde(rename = "printStatus")]
    pub print_status: PrintStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Unix seconds of `last_write_ts`.
    #[serde(rename = "restoreTo")]
    pub restore_to: i64,
    #[serde(rename = "pbmVersion")]
    pub pbm_version: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Incremental: the previous backup of the chain.
    pub src: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// PBM's `oplog.Timeline` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub start: u32,
    pub end: u32,
}

/// PBM's `pitrRange`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrRange {
    /// PBM marshals a Go `error` here, which comes out as `{}`; kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    pub range: Timeline,
    #[serde(
        rename = "noBaseSnapshot",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub no_base_snapshot: bool,
}

/// `pbm list -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListOutput {
    /// Go marshals an empty (nil) slice as `null`; so does this, and reads both.
    #[serde(
        serialize_with = "empty_as_null",
        deserialize_with = "crate::meta::backup::null_as_empty"
    )]
    pub snapshots: Vec<SnapshotStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrList>,
}

/// PBM's `pitrListOut`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrList {
    pub on: bool,
    pub ranges: Vec<PitrRange>,
    /// `--full`: per replica set.
    #[serde(rename = "rsRanges", default, skip_serializing_if = "Option::is_none")]
    pub rs_ranges: Option<std::collections::BTreeMap<String, Vec<PitrRange>>>,
}

/// `pbm list --restore -o json`: one entry per restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreListEntry {
    pub start: i64,
    pub status: Status,
    /// `snapshot`, `pitr` or `replay`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub snapshot: String,
    #[serde(
        rename = "start-point-in-time",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub start_point_in_time: i64,
    #[serde(rename = "point-in-time", default, skip_serializing_if = "is_zero")]
    pub point_in_time: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `pbm status -o json`. PBM marshals a Go map of sections, so keys come out sorted;
/// `-s` leaves sections out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<StorageStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Vec<ClusterReplset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<CurrentOp>,
}

/// PBM's status `rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReplset {
    #[serde(rename = "rs")]
    pub name: String,
    pub nodes: Vec<NodeStatus>,
}

/// PBM's status `node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub host: String,
    /// Agent version, `v2.15.0`.
    pub agent: String,
    /// `P`, `S`, `H` (hidden), `D` (delayed), `A` (arbiter).
    pub role: String,
    pub prio_pitr: String,
    pub prio_backup: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// PBM's `pitrStat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrStat {
    /// `pitr.enabled` in the config.
    pub conf: bool,
    /// Some slicer is running.
    pub run: bool,
    /// `rs/host` of running slicers; Go's nil slice is `null`.
    pub nodes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// PBM's `currOp`: `{}` when nothing runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CurrentOp {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::defs::CommandKind>,
    #[serde(rename = "opID", default, skip_serializing_if = "String::is_empty")]
    pub opid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "startTS", default, skip_serializing_if = "is_zero")]
    pub start_ts: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// rbm's extension: each replica set's progress, when its agent reports one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<crate::meta::progress::RsProgress>,
}

/// PBM's `storageStat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageStat {
    /// `S3`, `Minio`, `GCS`, `Azure`, `FS`, `OSS`, `OCI`.
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    pub snapshot: Vec<SnapshotStat>,
    #[serde(
        rename = "pitrChunks",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pitr: Option<PitrRanges>,
}

/// PBM's `pitrRanges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrRanges {
    #[serde(rename = "pitrChunks", default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<PitrRange>,
    pub size: i64,
}

fn empty_as_null<S: serde::Serializer, T: Serialize>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_snapshots_is_null_as_go_prints_a_nil_slice() {
        let l = ListOutput {
            snapshots: Vec::new(),
            pitr: None,
        };
        let text = serde_json::to_string(&l).unwrap();
        assert_eq!(text, r#"{"snapshots":null}"#);
        let back: ListOutput = serde_json::from_str(&text).unwrap();
        assert!(back.snapshots.is_empty());
    }
}
