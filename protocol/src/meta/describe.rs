//! `pbm describe-backup -o json` output (`cmd/pbm/backup.go` `bcpDesc`). JSON only:
//! it never touches BSON.

use super::backup::File;
use crate::defs::{BackupType, Status};
use serde::{Deserialize, Serialize};

/// PBM's `bcpDesc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupDescription {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_type: String,
    pub opid: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Unix seconds of the restore point.
    pub last_write_ts: i64,
    pub last_transition_ts: i64,
    /// RFC 3339 UTC.
    pub last_write_time: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// PBM's key really is `sel_user_and_roles` here (not `users`).
    pub sel_user_and_roles: bool,
    pub mongodb_version: String,
    pub fcv: String,
    pub pbm_version: String,
    pub status: Status,
    pub size: i64,
    pub size_uncompressed: i64,
    /// Human size, IEC units (`2.4 MiB`).
    pub size_h: String,
    pub size_uncompressed_h: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub replsets: Vec<ReplsetDescription>,
}

/// PBM's `bcpReplDesc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplsetDescription {
    pub name: String,
    pub status: Status,
    pub node: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    pub size: i64,
    pub size_uncompressed: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub size_h: String,
    pub size_uncompressed_h: String,
    pub last_write_ts: i64,
    pub last_transition_ts: i64,
    pub last_write_time: String,
    pub last_transition_time: String,
    #[serde(rename = "configsvr", default, skip_serializing_if = "Option::is_none")]
    pub is_config_svr: Option<bool>,
    #[serde(
        rename = "configshard",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_config_shard: Option<bool>,
    /// mongod encryption options of a physical backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--with-collections`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
}
