//! Lock documents of `pbmLock` / `pbmLockOp` and the `pbmOpLog` record of acquired
//! locks (`pbm/lock/lock.go`), and PBM's rule for when a lock holder is dead.

use crate::defs::{CommandKind, STALE_FRAME_SEC};
use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Serialize};

/// PBM's `LockHeader`: what identifies a lock (and is used as a query filter, so
/// every field is `omitempty`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LockHeader {
    /// The operation holding the lock (`backup`, `restore`, `pitr`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CommandKind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replset: String,
    /// `host:port` of the holder.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Hex OPID of the command being executed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opid: String,
    /// Config epoch the operation started under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Timestamp>,
}

/// PBM's `LockData`: a document of `pbmLock` or `pbmLockOp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockData {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CommandKind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Timestamp>,
    /// Holder's heartbeat: cluster time, refreshed every 5 s.
    pub hb: Timestamp,
}

impl LockData {
    /// A fresh lock document for `header` with heartbeat `hb`.
    pub fn new(header: LockHeader, hb: Timestamp) -> Self {
        Self {
            id: None,
            kind: header.kind,
            replset: header.replset,
            node: header.node,
            opid: header.opid,
            epoch: header.epoch,
            hb,
        }
    }

    /// The identifying part.
    pub fn header(&self) -> LockHeader {
        LockHeader {
            kind: self.kind,
            replset: self.replset.clone(),
            node: self.node.clone(),
            opid: self.opid.clone(),
            epoch: self.epoch,
        }
    }

    /// See [`is_stale`].
    pub fn is_stale(&self, cluster_time: Timestamp) -> bool {
        is_stale(self.hb, cluster_time)
    }
}

/// A document of `pbmOpLog`: the header of a lock once acquired (the unique index on
/// `(opid, replset)` makes an operation run at most once per replica set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpLogHeader {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CommandKind>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replset: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Timestamp>,
}

impl From<LockHeader> for OpLogHeader {
    fn from(h: LockHeader) -> Self {
        Self {
            id: None,
            kind: h.kind,
            replset: h.replset,
            node: h.node,
            opid: h.opid,
            epoch: h.epoch,
        }
    }
}

/// PBM's staleness rule for any heartbeat (`hb.T + StaleFrameSec < now.T`): the
/// holder is dead when its last beat is more than 30 s of *cluster* time old. Only
/// the seconds count; increments are ignored, as in PBM. Computed in u64 because Go
/// adds in u32 and would wrap near the end of the epoch.
pub fn is_stale(hb: Timestamp, cluster_time: Timestamp) -> bool {
    u64::from(hb.time) + u64::from(STALE_FRAME_SEC) < u64::from(cluster_time.time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    #[test]
    fn stale_only_strictly_after_thirty_seconds() {
        assert!(!is_stale(ts(100, 5), ts(100, 1)));
        assert!(
            !is_stale(ts(100, 0), ts(130, 0)),
            "exactly 30 s is still alive"
        );
        assert!(
            !is_stale(ts(100, 0), ts(130, 99)),
            "increments do not count"
        );
        assert!(is_stale(ts(100, 0), ts(131, 0)));
        assert!(
            !is_stale(ts(200, 0), ts(100, 0)),
            "a beat from the future is alive"
        );
        assert!(
            !is_stale(ts(u32::MAX, 0), ts(u32::MAX, 0)),
            "no wrap-around"
        );
    }

    #[test]
    fn lock_document_shape() {
        let doc = bson::doc! {
            "_id": ObjectId::parse_str("6b081ac7ddc37bc9dd46b643").expect("oid"),
            "type": "backup", "replset": "secantus", "node": "127.0.0.1:27201",
            "opid": "6b081ac530932961ee3cc9eb",
            "epoch": ts(1_795_693_250, 26), "hb": ts(1_795_693_255, 1),
        };
        let l: LockData = bson::deserialize_from_document(doc.clone()).expect("lock");
        assert_eq!(l.kind, Some(CommandKind::Backup));
        assert!(l.is_stale(ts(1_795_693_286, 0)));
        assert_eq!(bson::serialize_to_document(&l).expect("ser"), doc);
        let h = bson::serialize_to_document(&l.header()).expect("ser");
        assert!(!h.contains_key("hb") && !h.contains_key("_id"));
    }
}
