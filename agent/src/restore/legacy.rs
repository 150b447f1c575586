//! PBM 1.x logical backups: one mongodump archive per replica set (`dump_name`) and one
//! oplog file (`oplog_name`).
//!
//! Narrow scope: [`restore_legacy_rs`] restores ONE replica set's part of such a backup
//! onto the server behind `client` (collections, oplog slice, indexes). It is a library
//! entry point, not reachable from the `restore` command: this build supports a single
//! replica set, and the only legacy backups at hand are sharded (a shard's part alone is
//! not a consistent cluster state, so the command refuses them). Users and roles of the
//! archive (`admin.system.users`/`roles`) and views are not restored by this path.
//!
//! Same safety rule as the 2.x path: every collection is loaded into a temporary and
//! checked (the archive's per-namespace CRC-64) before any target is replaced.

use super::mongoarchive::{ArchiveItem, ArchiveReader};
use super::source::{self, parse_collection_metadata};
use super::{excluded, secantus, RestoreError};
use crate::oplog::{Applier, ApplyOptions, ReplayRange};
use bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use rbm_protocol::meta::archive::NamespaceType;
use rbm_protocol::meta::BackupMeta;
use rbm_protocol::ns::NsFilter;
use rbm_storage::{codec, Compression, DynStorage};
use std::collections::BTreeMap;

/// What [`restore_legacy_rs`] did.
#[derive(Debug, Clone, Default)]
pub struct LegacySummary {
    /// `db.coll` → documents restored.
    pub collections: BTreeMap<String, u64>,
    pub oplog_applied: u64,
}

struct Coll {
    db: String,
    coll: String,
    temp: String,
    options: Document,
    indexes: Vec<Document>,
    batch: Vec<RawDocumentBuf>,
    docs: u64,
    ended: bool,
}

/// Restores replica set `rs`'s part of the PBM 1.x backup `meta`.
///
/// # Errors
/// Missing objects, a corrupted archive (CRC), refused writes, or oplog entries the
/// applier refuses. Before the switch, failures drop only the temporaries.
pub async fn restore_legacy_rs(
    client: &Client,
    storage: DynStorage,
    meta: &BackupMeta,
    rs: &str,
    tag: &str,
) -> Result<LegacySummary, RestoreError> {
    let part =
        meta.replsets
            .iter()
            .find(|p| p.name == rs)
            .ok_or_else(|| RestoreError::Incompatible {
                backup: meta.name.clone(),
                why: format!("it has no part for replica set {rs}"),
            })?;
    let compression: Compression =
        meta.compression
            .parse()
            .map_err(|e: codec::CodecError| RestoreError::Incompatible {
                backup: meta.name.clone(),
                why: e.to_string(),
            })?;
    for o in [&part.dump_name, &part.oplog_name] {
        storage
            .stat(o)
            .await
            .map_err(|e| source::storage_err(o, e))?;
    }
    let mut colls: BTreeMap<String, Coll> = BTreeMap::new();
    let r = load(
        client,
        &storage,
        &part.dump_name,
        compression,
        tag,
        &mut colls,
    )
    .await;
    if let Err(e) = r {
        for c in colls.values() {
            let _ = client
                .database(&c.db)
                .collection::<Document>(&c.temp)
                .drop()
                .await;
        }
        return Err(e);
    }
    let mut summary = LegacySummary::default();
    let is_secantus = secantus::is_secantus(client).await;
    for c in colls.values() {
        if is_secantus {
            secantus::switch_by_copy(client, &c.db, &c.temp, &c.coll, &c.options).await?;
        } else {
            let from = format!("{}.{}", c.db, c.temp);
            let to = format!("{}.{}", c.db, c.coll);
            client
                .database("admin")
                .run_command(doc! {"renameCollection": &from, "to": &to, "dropTarget": true})
                .await
                .map_err(RestoreError::db(format!("renameCollection {from} to {to}")))?;
        }
        summary
            .collections
            .insert(format!("{}.{}", c.db, c.coll), c.docs);
    }
    summary.oplog_applied = replay(client, &storage, meta, &part.oplog_name, part).await?;
    for c in colls.values() {
        let specs: Vec<Bson> = c
            .indexes
            .iter()
            .filter(|s| {
                !s.get_document("key")
                    .is_ok_and(|k| k.len() == 1 && k.contains_key("_id"))
            })
            .map(|s| {
                let mut s = s.clone();
                s.remove("v");
                s.remove("ns");
                Bson::Document(s)
            })
            .collect();
        if !specs.is_empty() {
            client
                .database(&c.db)
                .run_command(doc! {"createIndexes": &c.coll, "indexes": specs})
                .await
                .map_err(RestoreError::db(format!(
                    "createIndexes for {}.{}",
                    c.db, c.coll
                )))?;
        }
    }
    Ok(summary)
}

async fn load(
    client: &Client,
    storage: &DynStorage,
    dump: &str,
    compression: Compression,
    tag: &str,
    colls: &mut BTreeMap<String, Coll>,
) -> Result<(), RestoreError> {
    let corrupt = |e: super::mongoarchive::ArchiveError| RestoreError::Corrupted {
        object: dump.to_string(),
        why: e.to_string(),
    };
    let raw = storage
        .open(dump)
        .await
        .map_err(|e| source::storage_err(dump, e))?;
    let mut ar = ArchiveReader::open(codec::decompress_reader(raw, compression))
        .await
        .map_err(corrupt)?;
    for m in &ar.collections {
        if excluded(&m.db, &m.collection) {
            continue;
        }
        let (kind, options, indexes, _uuid) =
            parse_collection_metadata(&m.metadata).map_err(|why| RestoreError::BadMeta {
                object: dump.to_string(),
                why: format!("{}.{}: {why}", m.db, m.collection),
            })?;
        if kind != NamespaceType::Collection {
            continue;
        }
        let temp = format!("rbm_restore_{tag}.{}", m.collection);
        let db = client.database(&m.db);
        db.collection::<Document>(&temp)
            .drop()
            .await
            .map_err(RestoreError::db(format!("drop {}.{temp}", m.db)))?;
        let mut create = doc! {"create": &temp};
        for (k, v) in &options {
            create.insert(k.clone(), v.clone());
        }
        db.run_command(create)
            .await
            .map_err(RestoreError::db(format!("create {}.{temp}", m.db)))?;
        colls.insert(
            format!("{}.{}", m.db, m.collection),
            Coll {
                db: m.db.clone(),
                coll: m.collection.clone(),
                temp,
                options,
                indexes,
                batch: Vec::new(),
                docs: 0,
                ended: false,
            },
        );
    }
    while let Some(item) = ar.next().await.map_err(corrupt)? {
        match item {
            ArchiveItem::Doc { ns, doc } => {
                let Some(c) = colls.get_mut(&ns) else {
                    continue;
                };
                c.batch.push(doc);
                if c.batch.len() >= 500 {
                    flush(client, c).await?;
                }
            }
            ArchiveItem::End { ns, .. } => {
                if let Some(c) = colls.get_mut(&ns) {
                    flush(client, c).await?;
                    c.ended = true;
                }
            }
        }
    }
    if let Some(c) = colls.values().find(|c| !c.ended) {
        return Err(RestoreError::Corrupted {
            object: dump.to_string(),
            why: format!(
                "namespace {}.{} has no end block (truncated archive)",
                c.db, c.coll
            ),
        });
    }
    Ok(())
}

async fn flush(client: &Client, c: &mut Coll) -> Result<(), RestoreError> {
    if c.batch.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(&mut c.batch);
    c.docs += batch.len() as u64;
    client
        .database(&c.db)
        .collection::<RawDocumentBuf>(&c.temp)
        .insert_many(batch)
        .bypass_document_validation(true)
        .await
        .map_err(RestoreError::db(format!("insert into {}.{}", c.db, c.temp)))?;
    Ok(())
}

async fn replay(
    client: &Client,
    storage: &DynStorage,
    meta: &BackupMeta,
    object: &str,
    part: &rbm_protocol::meta::backup::BackupReplset,
) -> Result<u64, RestoreError> {
    let _ = meta;
    let mut applier = Applier::new(
        client.clone(),
        ApplyOptions {
            filter: NsFilter::all(),
            remap: None,
            drop_uuids: true,
            force_commands: false,
        },
    )
    .await?;
    let range = ReplayRange {
        start: part.first_write_ts,
        end: part.last_write_ts,
    };
    super::logical::replay_object(storage, object, range, &mut applier).await?;
    Ok(applier.finish().await?.applied)
}
