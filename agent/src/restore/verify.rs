//! Reading a dumped collection with its checks, and `rbm verify`: every object of a
//! backup read end to end, sizes and CRC-64s compared with the metadata, without
//! touching any database.

use super::source::{self, RsBackup};
use super::RestoreError;
use bson::RawDocumentBuf;
use rbm_protocol::meta::archive::{CollectionCrc, NamespaceType, NamespaceV2};
use rbm_protocol::meta::BackupMeta;
use rbm_storage::bson_stream::BsonReader;
use rbm_storage::{codec, ByteReader, Compression, Storage};

/// A collection dump being read: documents as stored, with the running size and CRC.
pub struct DumpReader {
    object: String,
    reader: BsonReader<ByteReader>,
    crc: CollectionCrc,
}

impl DumpReader {
    /// PBM writes no object for an empty collection: a missing object is empty when the
    /// metadata says so (size 0), and missing otherwise.
    ///
    /// # Errors
    /// A missing object (not recorded as empty) or a storage error.
    pub async fn open_or_empty(
        storage: &dyn Storage,
        object: &str,
        compression: Compression,
        ns: &NamespaceV2,
    ) -> Result<Option<Self>, RestoreError> {
        match Self::open(storage, object, compression).await {
            Ok(r) => Ok(Some(r)),
            Err(RestoreError::MissingObject { .. }) if ns.size == 0 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `object`, decompressing with `compression`.
    ///
    /// # Errors
    /// A missing object or a storage error.
    pub async fn open(
        storage: &dyn Storage,
        object: &str,
        compression: Compression,
    ) -> Result<Self, RestoreError> {
        let raw = storage
            .open(object)
            .await
            .map_err(|e| source::storage_err(object, e))?;
        Ok(Self {
            object: object.to_string(),
            reader: BsonReader::new(codec::decompress_reader(raw, compression)),
            crc: CollectionCrc::new(),
        })
    }

    /// The next document.
    ///
    /// # Errors
    /// [`RestoreError::Corrupted`] naming the object when the stream is not clean BSON.
    pub async fn next(&mut self) -> Result<Option<RawDocumentBuf>, RestoreError> {
        let d = self
            .reader
            .next()
            .await
            .map_err(|e| RestoreError::stream(&self.object, e))?;
        if let Some(d) = &d {
            self.crc.update(d.as_bytes());
        }
        Ok(d)
    }

    /// Documents read.
    pub fn count(&self) -> u64 {
        self.reader.count()
    }

    /// Checks the whole stream against the namespace's recorded size and CRC-64.
    ///
    /// # Errors
    /// [`RestoreError::Corrupted`] naming the object and what differs.
    pub fn finish(self, ns: &NamespaceV2) -> Result<u64, RestoreError> {
        let bytes = self.reader.bytes();
        let count = self.reader.count();
        let crc = self.crc.finish();
        if bytes != ns.size as u64 {
            return Err(RestoreError::Corrupted {
                object: self.object,
                why: format!(
                    "{bytes} bytes of documents read, the metadata records {}",
                    ns.size
                ),
            });
        }
        if crc != ns.crc {
            return Err(RestoreError::Corrupted {
                object: self.object,
                why: format!("CRC-64 {crc} differs from the recorded {}", ns.crc),
            });
        }
        Ok(count)
    }
}

/// The outcome of checking one object.
#[derive(Debug, Clone)]
pub struct ObjectCheck {
    pub object: String,
    /// Documents (collections) or oplog entries read.
    pub docs: u64,
    /// `None` when the object is sound.
    pub problem: Option<String>,
}

/// What [`verify_backup`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub backup: String,
    pub checks: Vec<ObjectCheck>,
}

impl VerifyReport {
    /// True when every object is sound and the metadata complete.
    pub fn restorable(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.problem.is_none())
    }
}

/// Reads every object of `meta`'s backup on `storage`.
///
/// # Errors
/// Only when nothing can be checked at all (the meta is unusable); per-object problems
/// are in the report.
pub async fn verify_backup(
    storage: &dyn Storage,
    meta: &BackupMeta,
) -> Result<VerifyReport, RestoreError> {
    let rs = meta
        .replsets
        .first()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let rsb = source::open_rs_backup(storage, meta, &rs).await?;
    let mut report = VerifyReport {
        backup: meta.name.clone(),
        checks: Vec::new(),
    };
    report.checks.push(ObjectCheck {
        object: rsb.meta_object.clone(),
        docs: rsb.namespaces.len() as u64,
        problem: None,
    });
    for ns in &rsb.namespaces {
        if ns.kind == NamespaceType::View {
            continue;
        }
        report
            .checks
            .push(check_collection(storage, &rsb, ns).await);
    }
    report.checks.extend(check_oplog(storage, &rsb).await);
    report.checks.extend(check_unlisted(storage, &rsb).await);
    Ok(report)
}

async fn check_collection(storage: &dyn Storage, rsb: &RsBackup, ns: &NamespaceV2) -> ObjectCheck {
    let object = rsb.object(ns);
    let run = async {
        let mut r = match DumpReader::open(storage, &object, rsb.compression).await {
            Err(RestoreError::MissingObject { .. }) if ns.size == 0 => return Ok(0),
            r => r?,
        };
        while r.next().await?.is_some() {}
        r.finish(ns)
    };
    match run.await {
        Ok(docs) => ObjectCheck {
            object,
            docs,
            problem: None,
        },
        Err(e) => ObjectCheck {
            object,
            docs: 0,
            problem: Some(e.to_string()),
        },
    }
}

/// Every chunk of the oplog slice must decode, be in `ts` order, and together cover
/// `first_write_ts..=last_write_ts`.
async fn check_oplog(storage: &dyn Storage, rsb: &RsBackup) -> Vec<ObjectCheck> {
    let chunks = match source::oplog_chunks(storage, rsb).await {
        Ok(c) => c,
        Err(e) => {
            return vec![ObjectCheck {
                object: rsb.oplog_dir(),
                docs: 0,
                problem: Some(e.to_string()),
            }]
        }
    };
    if chunks.is_empty() {
        return vec![ObjectCheck {
            object: rsb.oplog_dir(),
            docs: 0,
            problem: Some("the oplog slice has no chunks".into()),
        }];
    }
    let mut out = Vec::new();
    let mut last_seen: Option<bson::Timestamp> = None;
    for object in chunks {
        let run = async {
            let raw = storage
                .open(&object)
                .await
                .map_err(|e| source::storage_err(&object, e))?;
            let mut r = BsonReader::new(codec::decompress_reader(
                raw,
                Compression::from_file_name(&object),
            ));
            let mut n = 0u64;
            while let Some(d) = r
                .next()
                .await
                .map_err(|e| RestoreError::stream(&object, e))?
            {
                let ts = d.get_timestamp("ts").map_err(|e| RestoreError::Corrupted {
                    object: object.clone(),
                    why: format!("entry {n} has no ts: {e}"),
                })?;
                if let Some(prev) = last_seen {
                    if crate::oplog::ts_lt(ts, prev) {
                        return Err(RestoreError::Corrupted {
                            object: object.clone(),
                            why: format!("entry {n} is out of order"),
                        });
                    }
                }
                last_seen = Some(ts);
                n += 1;
            }
            Ok(n)
        };
        out.push(match run.await {
            Ok(docs) => ObjectCheck {
                object,
                docs,
                problem: None,
            },
            Err(e) => ObjectCheck {
                object,
                docs: 0,
                problem: Some(e.to_string()),
            },
        });
    }
    // PBM names each chunk by its range; the last one must reach the consistency point.
    let reach = out
        .iter()
        .filter_map(|c| {
            let base = c.object.rsplit('/').next()?;
            rbm_protocol::names::parse_backup_oplog_chunk_name(base)
                .ok()
                .map(|(_, end, _)| end)
        })
        .max_by_key(|t| (t.time, t.increment));
    if out.iter().all(|c| c.problem.is_none())
        && reach.is_none_or(|t| crate::oplog::ts_lt(t, rsb.last_write))
    {
        out.push(ObjectCheck {
            object: rsb.oplog_dir(),
            docs: 0,
            problem: Some(format!(
                "the oplog slice ends before the backup's last_write_ts {}:{}",
                rsb.last_write.time, rsb.last_write.increment
            )),
        });
    }
    out
}

/// A collection object on storage that the metadata does not list means the metadata is
/// incomplete (a restore would silently skip that collection).
async fn check_unlisted(storage: &dyn Storage, rsb: &RsBackup) -> Vec<ObjectCheck> {
    let prefix = format!("{}/{}/", rsb.backup, rsb.rs);
    let listed: std::collections::HashSet<String> =
        rsb.namespaces.iter().map(|n| rsb.object(n)).collect();
    let objects = match rbm_storage::list_all(storage, &prefix).await {
        Ok(o) => o,
        Err(e) => {
            return vec![ObjectCheck {
                object: prefix,
                docs: 0,
                problem: Some(format!("cannot list: {e}")),
            }]
        }
    };
    let oplog = format!("{}/", rsb.oplog_dir());
    objects
        .into_iter()
        .filter(|o| {
            !o.name.starts_with(&oplog)
                && o.name != rsb.meta_object
                && !o.name.ends_with("/meta.pbm")
                && !o.name.ends_with("/metadata.json")
                && !listed.contains(&o.name)
        })
        .map(|o| ObjectCheck {
            problem: Some(format!(
                "backup object {} is not listed in {}: the metadata is incomplete",
                o.name, rsb.meta_object
            )),
            object: o.name,
            docs: 0,
        })
        .collect()
}
