//! PITR documents: chunk index entries (`pbmPITRChunks`, `pbm/oplog/chunk.go`) and
//! the slicing coordination document (`pbmPITR`, `pbm/oplog/nomination.go`).

use super::backup::null_as_empty;
use crate::serde_util::empty_as_none;
use bson::oid::ObjectId;
use bson::Timestamp;
use serde::{Deserialize, Serialize};

/// PBM's `OplogChunk`: one document of `pbmPITRChunks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitrChunk {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub rs: String,
    /// Object name on storage (`pbmPitr/<rs>/<day>/<from>.<till>.oplog<ext>`).
    #[serde(rename = "fname")]
    pub file_name: String,
    /// PBM's compression name.
    pub compression: String,
    pub start_ts: Timestamp,
    pub end_ts: Timestamp,
    /// PBM's size: the oplog bytes fed into the compressor (`storage.Upload`'s count),
    /// not the stored object's size; chunks copied from a backup's oplog slices and
    /// chunks indexed by a resync carry the stored size instead, as in PBM.
    pub size: i64,
}

/// PBM's `oplog.PITRMeta`: the single `pbmPITR` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrMeta {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Unix seconds.
    pub start_ts: i64,
    /// Cluster leader heartbeat.
    pub hb: Timestamp,
    /// `None` is PBM's `StatusUnset` (`""`).
    #[serde(with = "empty_as_none", default)]
    pub status: Option<PitrStatus>,
    #[serde(rename = "n", default, deserialize_with = "null_as_empty")]
    pub nomination: Vec<PitrNomination>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub replsets: Vec<PitrReplset>,
}

/// PBM's `oplog.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PitrStatus {
    Ready,
    Running,
    Reconfig,
    Error,
}

/// PBM's `PITRNomination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitrNomination {
    pub rs: String,
    #[serde(rename = "n", default, deserialize_with = "null_as_empty")]
    pub nodes: Vec<String>,
    pub ack: String,
}

/// PBM's `PITRReplset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitrReplset {
    pub name: String,
    pub node: String,
    #[serde(with = "empty_as_none", default)]
    pub status: Option<PitrStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
