//! What a backup holds, read from storage: the backup meta (`<name>.pbm.json` or
//! `pbmBackups`), the per-replica-set archive meta (`meta.pbm`, else `metadata.json`),
//! the object of every namespace and the oplog slice. Shared by restore and `rbm verify`,
//! so both agree on what "the backup's objects" are.

use super::RestoreError;
use bson::{Bson, Document};
use rbm_protocol::defs::{BackupType, Status};
use rbm_protocol::meta::archive::{ArchiveMetaV2, NamespaceType, NamespaceV2};
use rbm_protocol::meta::BackupMeta;
use rbm_protocol::names;
use rbm_storage::{Compression, ErrorKind, Storage};
use tokio::io::AsyncReadExt;

/// Largest metadata object read into memory (a `meta.pbm` of 100k namespaces is ~50 MB).
const MAX_META_BYTES: u64 = 256 << 20;

/// Reads `<name>.pbm.json` from storage.
///
/// # Errors
/// [`RestoreError::UnknownBackup`] when absent; storage and parse errors otherwise.
pub async fn backup_meta_from_storage(
    storage: &dyn Storage,
    name: &str,
) -> Result<BackupMeta, RestoreError> {
    let object = names::backup_meta_file(name);
    let text = match read_small(storage, &object).await {
        Ok(b) => b,
        Err(RestoreError::MissingObject { .. }) => {
            return Err(RestoreError::UnknownBackup(name.to_string()))
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(text).map_err(|_| RestoreError::BadMeta {
        object: object.clone(),
        why: "not UTF-8".into(),
    })?;
    BackupMeta::from_pbm_json(&text).map_err(|e| RestoreError::BadMeta {
        object,
        why: e.to_string(),
    })
}

/// Reads a whole (small) object.
pub(crate) async fn read_small(
    storage: &dyn Storage,
    object: &str,
) -> Result<Vec<u8>, RestoreError> {
    let mut r = storage
        .open(object)
        .await
        .map_err(|e| storage_err(object, e))?;
    let mut buf = Vec::new();
    (&mut r)
        .take(MAX_META_BYTES + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| RestoreError::Read {
            object: object.to_string(),
            why: e.to_string(),
        })?;
    if buf.len() as u64 > MAX_META_BYTES {
        return Err(RestoreError::BadMeta {
            object: object.to_string(),
            why: format!("larger than {MAX_META_BYTES} bytes"),
        });
    }
    Ok(buf)
}

pub(crate) fn storage_err(object: &str, e: rbm_storage::StorageError) -> RestoreError {
    if e.kind == ErrorKind::NotFound {
        RestoreError::MissingObject {
            object: object.to_string(),
        }
    } else {
        RestoreError::Storage {
            object: object.to_string(),
            source: e,
        }
    }
}

/// One replica set's part of a logical backup, resolved to objects.
#[derive(Debug, Clone)]
pub struct RsBackup {
    pub backup: String,
    /// Replica-set name in the backup.
    pub rs: String,
    pub compression: Compression,
    pub namespaces: Vec<NamespaceV2>,
    /// Which metadata object the namespaces came from.
    pub meta_object: String,
    pub first_write: bson::Timestamp,
    pub last_write: bson::Timestamp,
}

impl RsBackup {
    /// The object holding one collection's documents.
    pub fn object(&self, ns: &NamespaceV2) -> String {
        let ext = names::suffix_for_compression(self.compression.as_str()).unwrap_or("");
        names::collection_object(&self.backup, &self.rs, &ns.db, &ns.name, ext)
    }

    /// The oplog slice folder.
    pub fn oplog_dir(&self) -> String {
        names::backup_oplog_dir(&self.backup, &self.rs)
    }

    /// A namespace of the dump by `db.coll`.
    pub fn find(&self, db: &str, coll: &str) -> Option<&NamespaceV2> {
        self.namespaces
            .iter()
            .find(|n| n.db == db && n.name == coll)
    }
}

/// Checks that `meta` is a backup this build can restore onto replica set `rs`, and
/// resolves its objects.
///
/// # Errors
/// One clear error per kind of incompatibility.
pub async fn open_rs_backup(
    storage: &dyn Storage,
    meta: &BackupMeta,
    rs: &str,
) -> Result<RsBackup, RestoreError> {
    let name = &meta.name;
    let incompatible = |why: String| RestoreError::Incompatible {
        backup: name.clone(),
        why,
    };
    if meta.status != Status::Done {
        return Err(incompatible(format!(
            "its status is '{}', not 'done'",
            meta.status
        )));
    }
    if meta.kind != BackupType::Logical {
        return Err(incompatible(format!(
            "it is a {} backup; this build restores logical backups only",
            meta.kind.as_str()
        )));
    }
    if meta.replsets.len() > 1 {
        let rss: Vec<&str> = meta.replsets.iter().map(|r| r.name.as_str()).collect();
        return Err(incompatible(format!(
            "it is a sharded cluster backup (replica sets {}); this build restores a single replica set",
            rss.join(", ")
        )));
    }
    let Some(part) = meta.replsets.first() else {
        return Err(incompatible("it records no replica set".into()));
    };
    if part.name != rs {
        return Err(incompatible(format!(
            "it was taken from replica set '{}', this is '{rs}' (replica-set remapping is not supported)",
            part.name
        )));
    }
    if is_legacy(&meta.pbm_version) {
        return Err(incompatible(format!(
            "it was written by PBM {} as a mongodump archive ({}); restoring legacy archives is not supported by this build",
            meta.pbm_version, part.dump_name
        )));
    }
    let compression: Compression = meta
        .compression
        .parse()
        .map_err(|e: rbm_storage::codec::CodecError| incompatible(e.to_string()))?;
    let meta_pbm = names::meta_pbm(name, rs);
    let (namespaces, meta_object) = match read_small(storage, &meta_pbm).await {
        Ok(bytes) => {
            let m = ArchiveMetaV2::from_bson_bytes(&bytes).map_err(|e| RestoreError::BadMeta {
                object: meta_pbm.clone(),
                why: e.to_string(),
            })?;
            (m.namespaces, meta_pbm)
        }
        Err(RestoreError::MissingObject { .. }) => {
            let object = if part.dump_name.is_empty() {
                names::metadata_json(name, rs)
            } else {
                part.dump_name.clone()
            };
            let bytes = read_small(storage, &object).await?;
            (parse_metadata_json(&bytes, &object)?, object)
        }
        Err(e) => return Err(e),
    };
    Ok(RsBackup {
        backup: name.clone(),
        rs: rs.to_string(),
        compression,
        namespaces,
        meta_object,
        first_write: part.first_write_ts,
        last_write: part.last_write_ts,
    })
}

/// PBM before 2.0 wrote one mongodump archive per replica set.
pub fn is_legacy(pbm_version: &str) -> bool {
    let major = pbm_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    matches!(major, Some(m) if m < 2)
}

/// PBM 2.0–2.x `metadata.json` (mongodump's prelude as JSON: each namespace's `metadata`
/// is an extended-JSON string with `options`, `indexes`, `uuid`, `type`).
///
/// # Errors
/// Malformed JSON or a namespace entry missing its fields.
pub fn parse_metadata_json(bytes: &[u8], object: &str) -> Result<Vec<NamespaceV2>, RestoreError> {
    let bad = |why: String| RestoreError::BadMeta {
        object: object.to_string(),
        why,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let tree = extjson(rbm_protocol::gojson::parse(text).map_err(|e| bad(e.to_string()))?);
    let Bson::Document(top) = tree else {
        return Err(bad("not a JSON object".into()));
    };
    let list = top
        .get_array("namespaces")
        .map_err(|_| bad("no namespaces array".into()))?;
    let mut out = Vec::new();
    for item in list {
        let Bson::Document(d) = item else {
            return Err(bad("a namespace entry is not an object".into()));
        };
        let db = d
            .get_str("db")
            .map_err(|_| bad("namespace without db".into()))?;
        let coll = d
            .get_str("collection")
            .map_err(|_| bad(format!("namespace in {db} without collection")))?;
        let md_text = d.get_str("metadata").unwrap_or("{}");
        let md = match extjson(
            rbm_protocol::gojson::parse(md_text)
                .map_err(|e| bad(format!("{db}.{coll} metadata: {e}")))?,
        ) {
            Bson::Document(md) => md,
            _ => Document::new(),
        };
        let kind = match d.get_str("type").or_else(|_| md.get_str("type")) {
            Ok("view") => NamespaceType::View,
            Ok("timeseries") => NamespaceType::Timeseries,
            _ => NamespaceType::Collection,
        };
        let int = |k: &str| match d.get(k) {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Double(v)) => *v as i64,
            _ => 0,
        };
        out.push(NamespaceV2 {
            db: db.to_string(),
            name: coll.to_string(),
            kind,
            uuid: md.get_str("uuid").unwrap_or("").to_string(),
            options: md.get_document("options").cloned().unwrap_or_default(),
            indexes: md
                .get_array("indexes")
                .map(|a| a.iter().filter_map(|i| i.as_document().cloned()).collect())
                .unwrap_or_default(),
            crc: int("crc"),
            size: int("size"),
        });
    }
    Ok(out)
}

/// A mongodump `metadata` string (extended JSON) as `(type, options, indexes, uuid)`.
///
/// # Errors
/// Malformed JSON.
pub fn parse_collection_metadata(
    text: &str,
) -> Result<(NamespaceType, Document, Vec<Document>, String), String> {
    let md = match extjson(rbm_protocol::gojson::parse(text).map_err(|e| e.to_string())?) {
        Bson::Document(md) => md,
        _ => Document::new(),
    };
    let kind = match md.get_str("type") {
        Ok("view") => NamespaceType::View,
        Ok("timeseries") => NamespaceType::Timeseries,
        _ => NamespaceType::Collection,
    };
    let indexes = md
        .get_array("indexes")
        .map(|a| a.iter().filter_map(|i| i.as_document().cloned()).collect())
        .unwrap_or_default();
    Ok((
        kind,
        md.get_document("options").cloned().unwrap_or_default(),
        indexes,
        md.get_str("uuid").unwrap_or("").to_string(),
    ))
}

/// Canonical extended JSON wrappers (`$numberInt`, ...) to BSON values; other documents
/// keep their order.
fn extjson(v: Bson) -> Bson {
    match v {
        Bson::Document(d) => {
            if d.len() == 1 {
                if let Some((k, inner)) = d.iter().next() {
                    let s = inner.as_str();
                    let conv = match (k.as_str(), s) {
                        ("$numberInt", Some(s)) => s.parse().ok().map(Bson::Int32),
                        ("$numberLong", Some(s)) => s.parse().ok().map(Bson::Int64),
                        ("$numberDouble", Some(s)) => match s {
                            "Infinity" => Some(Bson::Double(f64::INFINITY)),
                            "-Infinity" => Some(Bson::Double(f64::NEG_INFINITY)),
                            "NaN" => Some(Bson::Double(f64::NAN)),
                            s => s.parse().ok().map(Bson::Double),
                        },
                        ("$oid", Some(s)) => {
                            bson::oid::ObjectId::parse_str(s).ok().map(Bson::ObjectId)
                        }
                        _ => None,
                    };
                    if let Some(c) = conv {
                        return c;
                    }
                }
            }
            Bson::Document(d.into_iter().map(|(k, v)| (k, extjson(v))).collect())
        }
        Bson::Array(a) => Bson::Array(a.into_iter().map(extjson).collect()),
        other => other,
    }
}

/// The backup's oplog slice: chunk objects in order.
///
/// # Errors
/// Listing errors; an empty slice when the meta says writes happened during the dump.
pub async fn oplog_chunks(
    storage: &dyn Storage,
    rsb: &RsBackup,
) -> Result<Vec<String>, RestoreError> {
    let dir = format!("{}/", rsb.oplog_dir());
    let list = rbm_storage::list_all(storage, &dir)
        .await
        .map_err(|e| storage_err(&dir, e))?;
    let mut chunks: Vec<(bson::Timestamp, String)> = Vec::new();
    for o in list {
        let base = o.name.rsplit('/').next().unwrap_or(&o.name);
        if let Ok((start, _end, _ext)) = names::parse_backup_oplog_chunk_name(base) {
            chunks.push((start, o.name));
        }
    }
    chunks.sort_by_key(|(s, _)| (s.time, s.increment));
    Ok(chunks.into_iter().map(|(_, n)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PBM 2.15 writes both `meta.pbm` and `metadata.json`; read from either, a backup's
    /// namespaces are the same (the JSON form is the fallback for older 2.x backups).
    #[test]
    fn metadata_json_matches_meta_pbm_on_the_fixture() {
        let root = match std::env::var_os("RBM_FIXTURES") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        };
        let dir = root.join("pbm-2.15/storage/2026-11-26T11:40:53Z/secantus");
        let pbm = std::fs::read(dir.join("meta.pbm")).expect("fixture meta.pbm (RBM_FIXTURES?)");
        let json = std::fs::read(dir.join("metadata.json")).expect("fixture metadata.json");
        let v2 = ArchiveMetaV2::from_bson_bytes(&pbm).expect("meta.pbm");
        let v1 = parse_metadata_json(&json, "metadata.json").expect("metadata.json");
        assert_eq!(v1.len(), v2.namespaces.len());
        for (a, b) in v1.iter().zip(&v2.namespaces) {
            assert_eq!((&a.db, &a.name, a.kind), (&b.db, &b.name, b.kind));
            assert_eq!((a.crc, a.size), (b.crc, b.size), "{}.{}", a.db, a.name);
            assert_eq!(a.options, b.options, "{}.{}", a.db, a.name);
            assert_eq!(a.indexes, b.indexes, "{}.{}", a.db, a.name);
        }
    }

    #[test]
    fn legacy_versions() {
        assert!(is_legacy("1.6.0"));
        assert!(!is_legacy("2.15.0"));
        assert!(!is_legacy(""));
    }
}
