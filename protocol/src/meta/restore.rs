//! Restore metadata: `pbmRestores` documents and, for physical restores,
//! `.pbm.restore/<name>.json` (`pbm/restore/types.go`, `pbm/restore/phys`).

use super::backup::null_as_empty;
use crate::defs::{BackupType, Status};
use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Serialize};

/// PBM's `RestoreMeta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreMeta {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Restore name (RFC 3339 with nanoseconds).
    pub name: String,
    pub opid: String,
    /// Backup being restored; empty for an oplog replay.
    pub backup: String,
    /// Incremental: the chain from base to target.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub bcp_chain: Vec<String>,
    #[serde(rename = "nss", default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Replay start (unix seconds).
    pub start_pitr: i64,
    /// PITR target (unix seconds); 0 for a snapshot restore.
    pub pitr: i64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub replsets: Vec<RestoreReplset>,
    pub hb: Timestamp,
    pub start_ts: i64,
    pub last_transition_ts: i64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<super::Condition>,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Physical restore leader, `node/rs`.
    #[serde(rename = "l", default, skip_serializing_if = "String::is_empty")]
    pub leader: String,
    /// Physical restore statistics (`{rs: {rs: {node: {txn, download}}}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<bson::Document>,
}

/// PBM's `RestoreReplset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReplset {
    pub name: String,
    pub start_ts: i64,
    pub status: Status,
    /// Last committed distributed transactions, exchanged between shards.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub committed_txn: Vec<RestoreTxn>,
    #[serde(rename = "txn_set", default)]
    pub committed_txn_set: bool,
    /// Oplog entries of transactions that could not be completed.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub partial_txn: Vec<bson::Document>,
    /// PBM's `op`: the oplog position being applied.
    #[serde(rename = "op")]
    pub current_op: Timestamp,
    pub last_transition_ts: i64,
    pub last_write_ts: Timestamp,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<RestoreNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<super::Condition>,
    pub hb: Timestamp,
    #[serde(default)]
    pub stat: RestoreShardStat,
}

/// PBM's `phys.RestoreShardStat` (its Go fields carry no tags, so the driver writes
/// the lowercased names `txn` and `d`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RestoreShardStat {
    #[serde(default)]
    pub txn: DistTxnStat,
    /// Download statistics of a physical restore; `null` otherwise.
    #[serde(default)]
    pub d: Option<bson::Document>,
}

/// PBM's `phys.DistTxnStat`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DistTxnStat {
    /// Transactions applied on other shards but incomplete here.
    pub partial: i32,
    pub shard_uncommitted: i32,
    pub left_uncommitted: i32,
}

/// PBM's `RestoreNode`: a node of a physical restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreNode {
    pub name: String,
    pub status: Status,
    pub last_transition_ts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<super::Condition>,
    pub hb: Timestamp,
}

/// PBM's `phys.RestoreTxn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTxn {
    pub id: String,
    /// Commit timestamp.
    #[serde(rename = "ts")]
    pub ctime: Timestamp,
    /// `commit`, `prepare`, `abort`, or empty for unknown.
    pub state: String,
}
