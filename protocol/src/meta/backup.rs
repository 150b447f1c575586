//! Backup metadata: `pbmBackups` documents and `<bcp>.pbm.json` on storage
//! (`pbm/backup/types.go`).

use crate::config::StorageConf;
use crate::defs::{BackupType, Status};
use crate::gojson::{self, GoJsonError};
use crate::serde_util::{empty_as_none, is_false};
use bson::oid::ObjectId;
use bson::{Bson, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Go writes a nil slice as `null`; PBM reads `null` and `[]` alike, so rbm reads
/// both as empty and always writes an array.
pub(crate) fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// PBM's `BackupMeta`. The serde form is the BSON one (`pbmBackups`); use
/// [`BackupMeta::to_pbm_json`] / [`BackupMeta::from_pbm_json`] for the storage file,
/// which names `dump_name` `backup_name` and writes timestamps as `{"T","I"}`.
///
/// Fields that PBM 1.x did not write yet are `Option` so that an old meta
/// round-trips unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMeta {
    /// Document `_id` in `pbmBackups` (not part of PBM's struct; kept so a document
    /// round-trips).
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Hex OPID of the backup command.
    pub opid: String,
    pub name: String,
    /// Incremental backups: the previous backup of the chain; empty for a base.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub src_backup: String,
    /// Replica-set name → shard id, only where they differ.
    #[serde(
        rename = "shardRemap",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub shard_remap: BTreeMap<String, String>,
    /// Selective backup namespaces.
    #[serde(rename = "nss", default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sel_users_and_roles: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub replsets: Vec<BackupReplset>,
    /// PBM's compression name (`s2`, `zstd`, ..., `none`).
    pub compression: String,
    pub store: BackupStorage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_uncompressed: Option<i64>,
    pub mongodb_version: String,
    /// Feature compatibility version (PBM ≥ 2.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcv: Option<String>,
    /// Unix seconds.
    pub start_ts: i64,
    /// Unix seconds of the last status change.
    pub last_transition_ts: i64,
    pub first_write_ts: Timestamp,
    /// The cluster-consistent point the backup restores to.
    pub last_write_ts: Timestamp,
    /// Backup leader heartbeat (cluster time).
    pub hb: Timestamp,
    pub status: Status,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<Condition>,
    /// PBM's `n`: per-RS nomination of the nodes allowed to take the backup.
    #[serde(rename = "n", default, deserialize_with = "null_as_empty")]
    pub nomination: Vec<BackupRsNomination>,
    /// PBM's `error` is `omitempty`, but its `$set` updates write `""` into the
    /// document; `Some("")` keeps that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub pbm_version: String,
    /// `full` if the balancer was on and must be re-enabled, `off` otherwise.
    #[serde(with = "empty_as_none", default)]
    pub balancer: Option<BalancerMode>,
}

/// PBM's `topo.BalancerMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalancerMode {
    /// PBM's `BalancerModeOn`.
    Full,
    Off,
}

/// PBM's `backup.Storage`: where the backup went. `name`/`profile` are set for a
/// storage profile; the storage configuration is inlined next to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupStorage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "profile", default, skip_serializing_if = "is_false")]
    pub is_profile: bool,
    #[serde(flatten)]
    pub storage: StorageConf,
}

/// PBM's `BackupRsNomination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRsNomination {
    pub rs: String,
    /// Candidates, `host:port`.
    #[serde(rename = "n", default, deserialize_with = "null_as_empty")]
    pub nodes: Vec<String>,
    /// The node that took the backup; empty until one does.
    pub ack: String,
}

/// PBM's `Condition`: one status transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Unix seconds.
    pub timestamp: i64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// PBM's `BackupReplset`: one replica set's part of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReplset {
    pub name: String,
    /// Legacy physical backups; unused since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<File>,
    /// Physical backups before 2.4.1 (later ones use `filelist.pbm`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// `<bcp>/<rs>/metadata.json`, or the PBM 1.x dump archive name. JSON calls it
    /// `backup_name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dump_name: String,
    /// `<bcp>/<rs>/oplog` (folder), or the PBM < 2.4 single oplog file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oplog_name: String,
    /// Unix seconds.
    pub start_ts: i64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_uncompressed: Option<i64>,
    /// Config server replica set.
    #[serde(rename = "iscs", default, skip_serializing_if = "Option::is_none")]
    pub is_config_svr: Option<bool>,
    /// Config shard (8.0 embedded config server).
    #[serde(
        rename = "configshard",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_config_shard: Option<bool>,
    pub last_transition_ts: i64,
    pub first_write_ts: Timestamp,
    pub last_write_ts: Timestamp,
    /// The node that took this part (`host:port`); absent in PBM 1.x metas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<Condition>,
    /// Physical backups: the mongod options needed to restore (PBM's
    /// `topo.MongodOpts`), kept as the document PBM wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongod_opts: Option<bson::Document>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pbm_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mongo_version: String,
    /// Incremental: the `thisBackupName` actually used (WiredTiger's `this_id`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub this_id: String,
}

/// PBM's `backup.File`: a physical backup file (also the documents of `filelist.pbm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Path relative to dbPath.
    #[serde(rename = "filename")]
    pub name: String,
    /// Incremental: offset of the changed range; -1 for an unchanged file.
    pub offset: i64,
    pub length: i64,
    #[serde(rename = "fileSize")]
    pub size: i64,
    #[serde(rename = "stgSize")]
    pub stg_size: i64,
    #[serde(rename = "stgSizeUncompressed")]
    pub stg_size_uncompressed: i64,
    /// Go `os.FileMode` bits.
    pub fmode: u32,
}

/// Errors reading `filelist.pbm`.
#[derive(Debug, thiserror::Error)]
pub enum FilelistError {
    #[error("filelist.pbm: truncated document at byte {0}")]
    Truncated(usize),
    #[error("filelist.pbm: document at byte {offset}: {source}")]
    Document {
        offset: usize,
        source: bson::error::Error,
    },
}

/// Splits concatenated BSON documents (`filelist.pbm` and rbm's own objects of the same
/// shape) into one slice per document; `Err(offset)` names where a document is cut off
/// or its length is impossible.
pub fn split_documents(bytes: &[u8]) -> Result<Vec<(usize, &[u8])>, usize> {
    let mut docs = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let len = bytes
            .get(offset..offset + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n >= 5 && offset + n <= bytes.len())
            .ok_or(offset)?;
        docs.push((offset, &bytes[offset..offset + len]));
        offset += len;
    }
    Ok(docs)
}

/// Parses `<bcp>/<rs>/filelist.pbm`: PBM's physical file list, concatenated BSON
/// [`File`] documents, uncompressed.
pub fn read_filelist(bytes: &[u8]) -> Result<Vec<File>, FilelistError> {
    split_documents(bytes)
        .map_err(FilelistError::Truncated)?
        .into_iter()
        .map(|(offset, doc)| {
            bson::deserialize_from_slice(doc)
                .map_err(|source| FilelistError::Document { offset, source })
        })
        .collect()
}

/// The bytes of a `filelist.pbm` object.
pub fn write_filelist(files: &[File]) -> Result<Vec<u8>, bson::error::Error> {
    let mut out = Vec::new();
    for f in files {
        bson::serialize_to_buffer(f, &mut out)?;
    }
    Ok(out)
}

/// The key PBM's JSON uses for `dump_name`.
const JSON_DUMP_NAME: &str = "backup_name";
const BSON_DUMP_NAME: &str = "dump_name";

impl BackupMeta {
    /// The `<bcp>.pbm.json` text exactly as PBM writes it (`json.MarshalIndent` with a
    /// tab; no `_id`).
    pub fn to_pbm_json(&self) -> Result<String, GoJsonError> {
        gojson::to_string_indented(&self.to_json_tree()?)
    }

    /// The JSON form as a value (for comparisons and CLI output).
    pub fn to_json_value(&self) -> Result<serde_json::Value, GoJsonError> {
        gojson::to_value(&self.to_json_tree()?)
    }

    /// Parses a `<bcp>.pbm.json` written by PBM 1.x or 2.x.
    pub fn from_pbm_json(text: &str) -> Result<Self, GoJsonError> {
        let mut tree = gojson::parse(text)?;
        rename_dump_name(&mut tree, JSON_DUMP_NAME, BSON_DUMP_NAME);
        Ok(bson::deserialize_from_bson(tree)?)
    }

    fn to_json_tree(&self) -> Result<Bson, GoJsonError> {
        let mut doc = bson::serialize_to_document(self)?;
        doc.remove("_id");
        let mut tree = Bson::Document(doc);
        rename_dump_name(&mut tree, BSON_DUMP_NAME, JSON_DUMP_NAME);
        Ok(tree)
    }

    /// The replica set entry named `rs`.
    pub fn replset(&self, rs: &str) -> Option<&BackupReplset> {
        self.replsets.iter().find(|r| r.name == rs)
    }
}

/// Renames the key in every `replsets[]` entry, keeping its position.
fn rename_dump_name(tree: &mut Bson, from: &str, to: &str) {
    let Some(Bson::Array(rss)) = tree.as_document_mut().and_then(|d| d.get_mut("replsets")) else {
        return;
    };
    for rs in rss.iter_mut() {
        if let Bson::Document(d) = rs {
            if d.contains_key(from) {
                *d = std::mem::take(d)
                    .into_iter()
                    .map(|(k, v)| {
                        if k == from {
                            (to.to_string(), v)
                        } else {
                            (k, v)
                        }
                    })
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    /// The fields the fixtures (logical, main storage) never exercise.
    #[test]
    fn incremental_backup_on_a_profile_round_trips() {
        let d = doc! {
            "type": "incremental", "opid": "6b081ac530932961ee3cc9eb", "name": "2026-11-26T12:00:00Z",
            "src_backup": "2026-11-26T11:00:00Z", "shardRemap": {"rs1": "shard1"},
            "replsets": [{
                "name": "rs1",
                "files": [{"filename": "collection-7--123.wt", "offset": -1_i64, "length": -1_i64,
                           "fileSize": 4096_i64, "stgSize": 0_i64, "stgSizeUncompressed": 0_i64,
                           "fmode": 420_i64}],
                "start_ts": 1_i64, "status": "done", "size": 9_i64, "size_uncompressed": 10_i64,
                "iscs": false, "last_transition_ts": 2_i64, "first_write_ts": ts(1, 1),
                "last_write_ts": ts(2, 2), "node": "rs101:27017", "error": "",
                "conditions": [{"timestamp": 2_i64, "status": "error", "error": "boom"}],
                "mongod_opts": {"net": {"bindIp": "0.0.0.0", "port": 27017}, "sharding": {"clusterRole": "shardsvr"},
                                "storage": {"dbPath": "/data/db"}},
                "pbm_version": "2.15.0", "mongo_version": "8.0.4", "this_id": "20261126120000Z.1",
            }],
            "compression": "zstd",
            "store": {"name": "p1", "profile": true, "type": "s3",
                      "s3": {"region": "eu", "bucket": "b", "prefix": "x"}},
            "size": 9_i64, "size_uncompressed": 10_i64, "mongodb_version": "8.0.4", "fcv": "8.0",
            "start_ts": 1_i64, "last_transition_ts": 2_i64, "first_write_ts": ts(1, 1),
            "last_write_ts": ts(2, 2), "hb": ts(2, 3), "status": "error",
            "conditions": [], "n": [{"rs": "rs1", "n": ["rs101:27017"], "ack": "rs101:27017"}],
            "error": "boom", "pbm_version": "2.15.0", "balancer": "full",
        };
        let m: BackupMeta = bson::deserialize_from_document(d.clone()).expect("meta");
        assert!(m.store.is_profile && m.store.name == "p1");
        assert_eq!(m.replsets[0].files[0].offset, -1);
        let back = bson::serialize_to_document(&m).expect("bson");
        assert_eq!(back, d);
        let json = m.to_pbm_json().expect("json");
        assert!(
            json.contains("\"last_write_ts\": {\n\t\t\"T\": 2,"),
            "{json}"
        );
        assert_eq!(BackupMeta::from_pbm_json(&json).expect("parse"), m);

        let list = write_filelist(&m.replsets[0].files).expect("filelist");
        assert_eq!(read_filelist(&list).expect("read"), m.replsets[0].files);
        assert!(matches!(
            read_filelist(&list[..list.len() - 1]),
            Err(FilelistError::Truncated(0))
        ));
    }
}
