//! Restore metadata: `pbmRestores` documents and, for physical restores,
//! `.pbm.restore/<name>.json` (`pbm/restore/types.go`, `pbm/restore/phys`).

use super::backup::null_as_empty;
use crate::defs::{BackupType, Status};
use crate::gojson::{self, GoJsonError};
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
    /// Incremental: the chain from base to target. `None` is Go's nil slice, which
    /// PBM writes as `null` for every non-incremental restore.
    #[serde(default)]
    pub bcp_chain: Option<Vec<String>>,
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

impl RestoreMeta {
    /// A new restore of one replica set in `status` at `now` (unix seconds) and cluster
    /// time `hb`, as every restore kind first records it; the caller fills in what is
    /// its own (`opid`, `nss`, `start_pitr`, `pitr`, `type`).
    pub fn single_rs(
        name: &str,
        backup: &str,
        rs: &str,
        now: i64,
        hb: Timestamp,
        status: Status,
        error: Option<&str>,
    ) -> Self {
        let cond = super::Condition {
            timestamp: now,
            status,
            error: error.map(str::to_string),
        };
        let zero = Timestamp {
            time: 0,
            increment: 0,
        };
        Self {
            id: None,
            status,
            error: error.map(str::to_string),
            name: name.to_string(),
            opid: String::new(),
            backup: backup.to_string(),
            bcp_chain: None,
            namespaces: Vec::new(),
            start_pitr: 0,
            pitr: 0,
            replsets: vec![RestoreReplset {
                name: rs.to_string(),
                start_ts: now,
                status,
                committed_txn: None,
                committed_txn_set: false,
                partial_txn: None,
                current_op: zero,
                last_transition_ts: now,
                last_write_ts: zero,
                nodes: Vec::new(),
                error: error.map(str::to_string),
                conditions: vec![cond.clone()],
                hb,
                stat: RestoreShardStat::default(),
            }],
            hb,
            start_ts: now,
            last_transition_ts: now,
            conditions: vec![cond],
            kind: BackupType::Logical,
            leader: String::new(),
            stat: None,
        }
    }

    /// The JSON PBM writes for a physical restore (`.pbm.restore/<name>.json`).
    pub fn to_pbm_json(&self) -> Result<String, GoJsonError> {
        let mut doc = bson::serialize_to_document(self)?;
        doc.remove("_id");
        gojson::to_string_indented(&bson::Bson::Document(doc))
    }

    /// Parses `.pbm.restore/<name>.json`.
    pub fn from_pbm_json(text: &str) -> Result<Self, GoJsonError> {
        Ok(bson::deserialize_from_bson(gojson::parse(text)?)?)
    }
}

/// PBM's `RestoreReplset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReplset {
    pub name: String,
    pub start_ts: i64,
    pub status: Status,
    /// Last committed distributed transactions, exchanged between shards.
    /// `None` (`null`) until the shard has published its transactions.
    #[serde(default)]
    pub committed_txn: Option<Vec<RestoreTxn>>,
    #[serde(rename = "txn_set", default)]
    pub committed_txn_set: bool,
    /// Oplog entries of transactions that could not be completed.
    /// `None` (`null`) when there are none.
    #[serde(default)]
    pub partial_txn: Option<Vec<bson::Document>>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    #[test]
    fn nil_slices_stay_null_in_bson_and_json() {
        let d = doc! {
            "status": "running", "name": "2026-11-26T12:00:00.5Z", "opid": "6b081ac530932961ee3cc9eb",
            "backup": "2026-11-26T11:40:53Z", "bcp_chain": null, "start_pitr": 0_i64, "pitr": 0_i64,
            "replsets": [{
                "name": "rs0", "start_ts": 5_i64, "status": "running", "committed_txn": null,
                "txn_set": false, "partial_txn": null, "op": ts(0, 0), "last_transition_ts": 5_i64,
                "last_write_ts": ts(0, 0), "conditions": [{"timestamp": 5_i64, "status": "running"}],
                "hb": ts(7, 1),
                "stat": {"txn": {"partial": 0, "shard_uncommitted": 0, "left_uncommitted": 0}, "d": null},
            }],
            "hb": ts(7, 2), "start_ts": 4_i64, "last_transition_ts": 5_i64,
            "conditions": [{"timestamp": 4_i64, "status": "starting"}], "type": "logical",
        };
        let m: RestoreMeta = bson::deserialize_from_document(d.clone()).expect("restore meta");
        assert_eq!(m.bcp_chain, None);
        let bytes = bson::serialize_to_vec(&m).expect("bson");
        assert_eq!(
            bytes,
            bson::serialize_to_vec(&d).expect("bson"),
            "BSON differs"
        );
        let json = m.to_pbm_json().expect("json");
        assert!(
            json.contains("\"bcp_chain\": null") && json.contains("\"hb\": {\n\t\t\"T\": 7"),
            "{json}"
        );
        assert_eq!(RestoreMeta::from_pbm_json(&json).expect("parse"), m);
    }
}
