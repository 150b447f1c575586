//! The parts of `resync` beyond the main backup list: the PITR chunk index rebuilt from
//! `pbmPitr/` objects (PBM's `resyncOplogRange`), and the backup lists of storage
//! profiles (`rbm profile sync <name> | --all [--clear]`).

use super::ops::OpContext;
use super::pbmlog::Event;
use bson::{doc, Document};
use futures::StreamExt;
use rbm_protocol::command::ResyncCmd;
use rbm_protocol::config::Config;
use rbm_protocol::defs::{BACKUPS_COLLECTION, CONFIG_COLLECTION, DB, PITR_CHUNKS_COLLECTION};
use rbm_protocol::meta::backup::BackupStorage;
use rbm_protocol::meta::log::Severity;
use rbm_protocol::meta::pitr::PitrChunk;
use rbm_protocol::names;

/// Documents written per `insertMany`, so memory stays bounded however many chunks.
const BATCH: usize = 1000;

/// Replaces `pbmPITRChunks` with one document per chunk object on `storage`. Objects
/// whose names are not chunk names are skipped with a warning.
///
/// # Errors
/// Storage or database failures, as text.
pub async fn sync_chunks(
    ctx: &OpContext,
    storage: &dyn rbm_storage::Storage,
) -> Result<usize, String> {
    let coll = ctx
        .node
        .pbm
        .database(DB)
        .collection::<PitrChunk>(PITR_CHUNKS_COLLECTION);
    coll.delete_many(doc! {})
        .await
        .map_err(|e| format!("clean up {PITR_CHUNKS_COLLECTION}: {e}"))?;
    let prefix = format!("{}/", names::PITR_PREFIX);
    let mut objects = storage.list(&prefix);
    let mut batch = Vec::with_capacity(BATCH);
    let mut n = 0;
    while let Some(o) = objects.next().await {
        let o = o.map_err(|e| format!("get list of pitr chunks: {e}"))?;
        let parsed = match names::parse_pitr_chunk_path(&o.name) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("resync: skip pitr object {}: {e}", o.name);
                continue;
            }
        };
        let compression = names::compression_for_suffix(&parsed.ext)
            .unwrap_or("none")
            .to_string();
        batch.push(PitrChunk {
            id: None,
            rs: parsed.rs.clone(),
            file_name: o.name.clone(),
            compression,
            start_ts: parsed.start,
            end_ts: parsed.end,
            size: i64::try_from(o.size).unwrap_or(i64::MAX),
        });
        if batch.len() == BATCH {
            n += batch.len();
            coll.insert_many(std::mem::take(&mut batch))
                .await
                .map_err(|e| format!("insert retrieved pitr meta: {e}"))?;
        }
    }
    if !batch.is_empty() {
        n += batch.len();
        coll.insert_many(batch)
            .await
            .map_err(|e| format!("insert retrieved pitr meta: {e}"))?;
    }
    Ok(n)
}

/// `resync` with a profile name or `all`.
///
/// # Errors
/// Unknown profile, storage or database failures, as text.
pub async fn run(ctx: &OpContext, ev: &Event<'_>, cmd: &ResyncCmd) -> Result<(), String> {
    let cfgs = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(CONFIG_COLLECTION);
    let mut filter = doc! {"profile": true};
    if !cmd.all {
        filter.insert("name", &cmd.name);
    }
    let mut cur = cfgs
        .find(filter)
        .await
        .map_err(|e| format!("read admin.pbmConfig: {e}"))?;
    let mut profiles = Vec::new();
    while let Some(d) = cur.next().await {
        let d = d.map_err(|e| format!("read admin.pbmConfig: {e}"))?;
        let p: Config =
            bson::deserialize_from_document(d).map_err(|e| format!("decode profile: {e}"))?;
        profiles.push(p);
    }
    if profiles.is_empty() && !cmd.all {
        return Err(format!("profile {:?} is not found", cmd.name));
    }
    let backups = ctx
        .node
        .pbm
        .database(DB)
        .collection::<Document>(BACKUPS_COLLECTION);
    for p in profiles {
        backups
            .delete_many(doc! {"store.profile": true, "store.name": &p.name})
            .await
            .map_err(|e| format!("clear backup list of {:?}: {e}", p.name))?;
        if cmd.clear {
            continue;
        }
        ctx.log
            .write(
                Severity::Info,
                ev,
                &format!("syncing backup list for profile {:?}", p.name),
            )
            .await;
        let st = rbm_storage::from_config(&p.storage, Some(&ctx.node.info.name))
            .await
            .map_err(|e| format!("storage of profile {:?}: {e}", p.name))?;
        let objects = rbm_storage::list_all(st.as_ref(), "")
            .await
            .map_err(|e| e.to_string())?;
        for o in objects.iter().filter(|o| !o.name.contains('/')) {
            let Some(name) = names::backup_from_meta_file(&o.name) else {
                continue;
            };
            let mut meta =
                match crate::restore::source::backup_meta_from_storage(st.as_ref(), name).await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("resync: skip {}: {e}", o.name);
                        continue;
                    }
                };
            meta.id = None;
            meta.store = BackupStorage {
                name: p.name.clone(),
                is_profile: true,
                storage: p.storage.clone(),
            };
            let d = bson::serialize_to_document(&meta).map_err(|e| e.to_string())?;
            backups
                .replace_one(doc! {"name": &meta.name}, d)
                .upsert(true)
                .await
                .map_err(|e| format!("write admin.pbmBackups: {e}"))?;
        }
    }
    Ok(())
}
