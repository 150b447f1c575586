//! One PITR chunk: the oplog range `[from, till]` streamed from the node through the
//! codec into storage, its stored size checked, and only then its `pbmPITRChunks`
//! document inserted (PBM's `Slicer.upload` + `PITRAddChunk`). Also the copy of a
//! logical backup's own oplog slices into `pbmPitr/` (PBM's `copyReplsetOplog`).

use super::slicer::SlicerError;
use crate::backup::dump::doc_pipe;
use crate::node::Node;
use crate::oplog::read::{OplogRange, OplogReadError};
use bson::Timestamp;
use futures::TryStreamExt;
use rbm_protocol::defs::{DB, PITR_CHUNKS_COLLECTION};
use rbm_protocol::meta::PitrChunk;
use rbm_protocol::names;
use rbm_storage::{Compression, DynStorage};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Test-only knob: milliseconds to pause after every 100 entries of a chunk, so a test
/// can kill the agent while a chunk is being uploaded.
pub const TEST_THROTTLE_ENV: &str = "RBM_AGENT_TEST_PITR_THROTTLE_MS";

/// Where chunks go and how they are encoded.
#[derive(Clone, Debug)]
pub struct ChunkTarget {
    pub storage: DynStorage,
    pub rs: String,
    pub compression: Compression,
    pub level: Option<i32>,
    pub throttle: Duration,
}

/// A chunk that is stored and indexed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub meta: PitrChunk,
    /// Oplog entries in it.
    pub entries: u64,
}

fn chunks(node: &Node) -> mongodb::Collection<PitrChunk> {
    node.pbm.database(DB).collection(PITR_CHUNKS_COLLECTION)
}

/// The newest chunk of `rs` (PBM's `PITRLastChunkMeta`: by `start_ts`).
///
/// # Errors
/// Database errors.
pub async fn last_chunk(node: &Node, rs: &str) -> Result<Option<PitrChunk>, SlicerError> {
    chunks(node)
        .find_one(bson::doc! {"rs": rs})
        .sort(bson::doc! {"start_ts": -1})
        .await
        .map_err(SlicerError::db("read admin.pbmPITRChunks"))
}

/// Indexes a stored chunk; a duplicate (the same range indexed by another slicer) is
/// fine, as in PBM.
async fn index(node: &Node, meta: &PitrChunk) -> Result<(), SlicerError> {
    match chunks(node).insert_one(meta).await {
        Ok(_) => {
            crate::metrics::set_pitr_chunk_end(meta.end_ts);
            Ok(())
        }
        Err(e) if crate::control::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(SlicerError::db("insert into admin.pbmPITRChunks")(e)),
    }
}

/// Uploads `[from, till]` of the node's oplog as a chunk and indexes it. On any failure
/// the object is deleted (a half-written one never stays under the chunk's name) and
/// nothing is indexed.
///
/// # Errors
/// Oplog, storage and database errors; [`SlicerError::Oplog`] with
/// [`OplogReadError::InsufficientRange`] when `from` is no longer in the oplog.
pub async fn upload(
    node: &Node,
    t: &ChunkTarget,
    from: Timestamp,
    till: Timestamp,
    cancel: &CancellationToken,
) -> Result<Stored, SlicerError> {
    let fname = names::pitr_chunk_path(&t.rs, from, till, t.compression.extension());
    tracing::debug!("uploading chunk {fname}");
    let result = stream_range(node, t, &fname, from, till, cancel).await;
    let (raw, entries) = match result {
        Ok(v) => v,
        Err(e) => {
            if let Err(d) = t.storage.delete(&fname).await {
                tracing::warn!("remove {fname} after a failed upload: {d}");
            }
            return Err(e);
        }
    };
    let meta = PitrChunk {
        id: None,
        rs: t.rs.clone(),
        file_name: fname.clone(),
        compression: t.compression.as_str().to_string(),
        start_ts: from,
        end_ts: till,
        // PBM records the oplog bytes read (what `storage.Upload` returns), not the
        // compressed size: `status` and `list` sum this field as PBM does.
        size: raw as i64,
    };
    if let Err(e) = index(node, &meta).await {
        // Unindexed, the object would only confuse a later resync.
        if let Err(d) = t.storage.delete(&fname).await {
            tracing::warn!("remove unindexed {fname}: {d}");
        }
        return Err(e);
    }
    Ok(Stored { meta, entries })
}

/// Streams the range into storage; returns (oplog bytes, entries) once the object is
/// stored and its stored size checked against the bytes the codec produced.
async fn stream_range(
    node: &Node,
    t: &ChunkTarget,
    fname: &str,
    from: Timestamp,
    till: Timestamp,
    cancel: &CancellationToken,
) -> Result<(u64, u64), SlicerError> {
    let mut range = OplogRange::open(&node.local, from, till).await?;
    let (mut sink, reader) = doc_pipe();
    let input = rbm_storage::codec::compress_reader(reader, t.compression, t.level);
    let save = t.storage.save(fname, input, None, cancel);
    let produce = async {
        let (mut n, mut raw) = (0u64, 0u64);
        loop {
            match range.next().await {
                Ok(Some(entry)) => {
                    n += 1;
                    raw += entry.as_bytes().len() as u64;
                    if sink.write(entry.as_bytes()).await.is_err() {
                        return Err(None);
                    }
                    if !t.throttle.is_zero() && n.is_multiple_of(100) {
                        tokio::time::sleep(t.throttle).await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sink.fail(std::io::Error::other("oplog read aborted")).await;
                    return Err(Some(SlicerError::Oplog(e)));
                }
            }
        }
        sink.finish().await.map_err(|_| None)?;
        Ok((n, raw))
    };
    let (produced, saved) = tokio::join!(produce, save);
    let ((entries, raw), stored) = match (produced, saved) {
        (Ok(v), Ok(stored)) => (v, stored),
        (Err(Some(e)), _) => return Err(e),
        (_, Err(e)) => return Err(e.into()),
        (Err(None), Ok(_)) => {
            return Err(SlicerError::Other(format!("upload of {fname} ended early")))
        }
    };
    let st = t.storage.stat(fname).await?;
    if st.size != stored {
        return Err(SlicerError::Other(format!(
            "{fname}: stored {} bytes, wrote {stored}",
            st.size
        )));
    }
    Ok((raw, entries))
}

/// Copies a logical backup's oplog slices (`<bcp>/<rs>/oplog/…`) into `pbmPitr/` and
/// indexes them (PBM's `copyReplsetOplog`). Returns how many were copied.
///
/// # Errors
/// No slices, a name that does not parse, storage or database errors.
pub async fn copy_backup_oplog(
    node: &Node,
    storage: &DynStorage,
    rs: &str,
    oplog_dir: &str,
) -> Result<usize, SlicerError> {
    let prefix = format!("{oplog_dir}/");
    let files: Vec<rbm_storage::ObjectMeta> = storage.list(&prefix).try_collect().await?;
    if files.is_empty() {
        return Err(SlicerError::Other(format!(
            "no oplog slices under {prefix}"
        )));
    }
    for f in &files {
        let base = f.name.rsplit('/').next().unwrap_or(&f.name);
        let (start, end, ext) = names::parse_backup_oplog_chunk_name(base)
            .map_err(|e| SlicerError::Other(format!("parse chunk name {:?}: {e}", f.name)))?;
        let compression = Compression::from_file_name(base);
        let to = names::pitr_chunk_path(rs, start, end, ext);
        storage.copy(&f.name, &to).await?;
        let st = storage.stat(&to).await?;
        if st.size != f.size {
            return Err(SlicerError::Other(format!(
                "{to}: copied {} bytes of {}",
                st.size, f.size
            )));
        }
        index(
            node,
            &PitrChunk {
                id: None,
                rs: rs.to_string(),
                file_name: to,
                compression: compression.as_str().to_string(),
                start_ts: start,
                end_ts: end,
                size: st.size as i64,
            },
        )
        .await?;
    }
    Ok(files.len())
}

/// Whether `e` means the oplog no longer holds the start of the range.
pub fn is_insufficient_range(e: &SlicerError) -> bool {
    matches!(e, SlicerError::Oplog(OplogReadError::InsufficientRange(_)))
}
