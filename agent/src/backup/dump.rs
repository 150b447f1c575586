//! The dump itself: every selected collection read raw from the node with a plain
//! `find({})`, streamed through the CRC, the codec and into its own storage object,
//! a bounded number of collections at a time (PBM's `dumpAllCollections`).
//!
//! Memory per collection in flight is bounded: the driver's current batch, a queue of
//! [`QUEUE`] × [`FLUSH`] bytes to the codec, the codec's own buffers and the backend's
//! parts in flight. Nothing is buffered whole and nothing touches local disk.

use super::BackupError;
use bson::{doc, RawDocumentBuf};
use bytes::{Bytes, BytesMut};
use mongodb::Client;
use rbm_protocol::meta::archive::{CollectionCrc, NamespaceType, NamespaceV2};
use rbm_storage::{ByteReader, Compression, DynStorage};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most documents per `getMore` (small documents).
const BATCH: u32 = 10_000;
/// Documents per `getMore` when their size is unknown.
const BATCH_SMALL: u32 = 1_000;
/// Bytes a batch should hold.
const BATCH_BYTES: u64 = 4 << 20;
/// The same on SecantusDB (see `dump_collection`).
const SECANTUS_BATCH_BYTES: u64 = 1 << 20;
/// Bytes gathered before they are handed to the codec.
const FLUSH: usize = 256 << 10;
/// Handed-over buffers waiting for the codec.
const QUEUE: usize = 4;

/// The writing end of a byte pipe whose reading end is an upload's input. An error sent
/// down the pipe fails the upload, so a broken read never leaves a short object.
pub(crate) struct DocSink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

/// The upload went away (it failed or was cancelled); its own error says why.
#[derive(Debug)]
pub(crate) struct UploadGone;

/// A pipe: documents written to the sink come out of the reader.
pub(crate) fn doc_pipe() -> (DocSink, ByteReader) {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    (
        DocSink {
            tx,
            buf: BytesMut::with_capacity(FLUSH),
        },
        Box::new(reader),
    )
}

impl DocSink {
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), UploadGone> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FLUSH {
            let chunk = self.buf.split().freeze();
            self.tx.send(Ok(chunk)).await.map_err(|_| UploadGone)?;
        }
        Ok(())
    }

    /// Flushes and closes: the reader sees a clean end.
    pub(crate) async fn finish(mut self) -> Result<(), UploadGone> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.tx.send(Ok(chunk)).await.map_err(|_| UploadGone)?;
        }
        Ok(())
    }

    /// Closes with an error: the upload fails instead of storing what came so far.
    pub(crate) async fn fail(self, e: io::Error) {
        let _ = self.tx.send(Err(e)).await;
    }
}

/// Where and how collection objects are written.
#[derive(Clone)]
pub struct DumpTarget {
    pub storage: DynStorage,
    pub backup: String,
    pub replset: String,
    pub compression: Compression,
    pub level: Option<i32>,
    pub cancel: CancellationToken,
    /// Test-only (`RBM_AGENT_TEST_DUMP_THROTTLE_MS`): a pause after every 100 documents, so
    /// fault tests can act while a dump is in progress. Zero in production.
    pub test_throttle: std::time::Duration,
    /// Counts the documents' bytes and the collections done, for `rbm status`.
    pub progress: crate::progress::Progress,
}

impl DumpTarget {
    /// `<bcp>/<rs>/<db>.<coll><ext>`; time-series buckets are named after the
    /// collection (PBM's `NS()`).
    pub fn object(&self, ns: &NamespaceV2) -> String {
        let full = ns.ns();
        let (db, coll) = full.split_once('.').unwrap_or((&full, ""));
        rbm_protocol::names::collection_object(
            &self.backup,
            &self.replset,
            db,
            coll,
            self.compression.extension(),
        )
    }
}

/// One collection's result.
#[derive(Debug, Clone, Default)]
pub struct Dumped {
    pub crc: i64,
    /// Uncompressed document bytes.
    pub size: i64,
    /// Bytes stored (compressed).
    pub stored: u64,
    /// The object written; `None` for an empty collection.
    pub object: Option<String>,
}

/// What the dump of all collections did.
#[derive(Debug, Default)]
pub struct DumpStats {
    pub stored: u64,
    pub uncompressed: u64,
    pub objects: Vec<(String, u64)>,
    /// The most collections that were being dumped at one moment.
    pub max_in_flight: usize,
}

/// Dumps every `collection`-type namespace, at most `parallel` at once, and fills in
/// their `crc` and `size`.
///
/// # Errors
/// The first failing collection; the others are stopped.
pub async fn dump_all(
    node: &Client,
    target: &DumpTarget,
    namespaces: &mut [NamespaceV2],
    parallel: usize,
    on_done: impl Fn(&NamespaceV2, &Dumped) + Send + Sync + 'static,
) -> Result<DumpStats, BackupError> {
    let sem = Arc::new(Semaphore::new(parallel.max(1)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let on_done = Arc::new(on_done);
    let mut tasks: JoinSet<(usize, Result<Dumped, BackupError>)> = JoinSet::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if ns.kind != NamespaceType::Collection {
            continue;
        }
        let (node, target, ns) = (node.clone(), target.clone(), ns.clone());
        let (sem, in_flight, max_in_flight, on_done) = (
            sem.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            on_done.clone(),
        );
        tasks.spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else {
                return (i, Err(BackupError::Cancelled));
            };
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, Ordering::SeqCst);
            let r = dump_collection(&node, &target, &ns).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            target.progress.collection_done();
            if let Ok(d) = &r {
                on_done(&ns, d);
            }
            (i, r)
        });
    }
    let mut stats = DumpStats::default();
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined.map_err(|e| BackupError::Other(format!("a dump task failed: {e}")))?;
        let d = match r {
            Ok(d) => d,
            Err(e) => {
                tasks.shutdown().await;
                return Err(e);
            }
        };
        stats.stored += d.stored;
        stats.uncompressed += d.size as u64;
        if let Some(o) = &d.object {
            stats.objects.push((o.clone(), d.stored));
        }
        namespaces[i].crc = d.crc;
        namespaces[i].size = d.size;
    }
    stats.max_in_flight = max_in_flight.load(Ordering::SeqCst);
    Ok(stats)
}

/// mongod's message when a collection is dropped under a running cursor; PBM tolerates it.
fn is_collection_dropped(e: &mongodb::error::Error) -> bool {
    crate::control::command_code(e) == Some(26) || e.to_string().contains("collection dropped")
}

/// What `collStats` says about a collection, for sizing the read and the upload.
#[derive(Debug, Clone, Copy, Default)]
struct CollSizes {
    /// PBM's upload hint: the data size for an uncompressed dump, the on-disk
    /// (compressed) size otherwise.
    hint: Option<u64>,
    avg_obj_size: Option<u64>,
}

async fn coll_sizes(node: &Client, ns: &NamespaceV2, c: Compression) -> CollSizes {
    let Ok(r) = node
        .database(&ns.db)
        .run_command(doc! {"collStats": &ns.name})
        .await
    else {
        return CollSizes::default();
    };
    let num = |key: &str| -> Option<u64> {
        let v = match r.get(key)? {
            bson::Bson::Int32(n) => i64::from(*n),
            bson::Bson::Int64(n) => *n,
            bson::Bson::Double(f) => *f as i64,
            _ => return None,
        };
        u64::try_from(v).ok().filter(|v| *v > 0)
    };
    CollSizes {
        hint: num(if c == Compression::None {
            "size"
        } else {
            "storageSize"
        }),
        avg_obj_size: num("avgObjSize"),
    }
}

/// How a dump opens its cursor on SecantusDB (the test server), which answers
/// `collStats` (and so `avgObjSize`) by scanning the collection, and evaluates every
/// `find`, even a `findOne`, in full before its first reply: a separate sample read to
/// size the batches cost as much as the dump's own read (bench/logical.sh: 1.5-2 s per
/// 72 MB collection, the whole backup 2x the raw scan).
mod secantus {
    use super::{batch_size_for, BATCH_SMALL, SECANTUS_BATCH_BYTES};
    use bson::{doc, RawDocumentBuf};
    use mongodb::{Cursor, Database};

    /// A cursor on the first document, or `None` for an empty collection. The first
    /// reply holds one document, which stands for the rest: the later batches are sized
    /// from it to about [`SECANTUS_BATCH_BYTES`] (this server does not cap replies at
    /// 16 MiB). Only when that size is below [`BATCH_SMALL`] documents (large documents)
    /// is the read started again with that size, paying the second scan.
    pub(super) async fn open(
        db: &Database,
        coll: &str,
    ) -> mongodb::error::Result<Option<Cursor<RawDocumentBuf>>> {
        let find = |first: u32, rest: u32| {
            db.run_cursor_command(doc! {"find": coll, "filter": {}, "batchSize": first})
                .batch_size(rest)
        };
        let mut cursor = find(1, BATCH_SMALL).await?.with_type::<RawDocumentBuf>();
        if !cursor.advance().await? {
            return Ok(None);
        }
        let size = cursor.current().as_bytes().len() as u64;
        let batch = batch_size_for(Some(size), SECANTUS_BATCH_BYTES).min(BATCH_SMALL);
        if batch == BATCH_SMALL {
            return Ok(Some(cursor));
        }
        drop(cursor);
        let mut cursor = find(batch, batch).await?.with_type::<RawDocumentBuf>();
        Ok(cursor.advance().await?.then_some(cursor))
    }
}

/// Documents per batch: about [`BATCH_BYTES`] of them, so that a server that does not cap
/// its replies at 16 MiB cannot make one reply hold a whole collection.
fn batch_size(avg_obj_size: Option<u64>) -> u32 {
    batch_size_for(avg_obj_size, BATCH_BYTES)
}

fn batch_size_for(avg_obj_size: Option<u64>, bytes: u64) -> u32 {
    match avg_obj_size {
        Some(avg) => (bytes / avg.max(1)).clamp(1, u64::from(BATCH)) as u32,
        None => BATCH_SMALL,
    }
}

/// Dumps one collection into its object. An empty collection gets no object.
pub async fn dump_collection(
    node: &Client,
    target: &DumpTarget,
    ns: &NamespaceV2,
) -> Result<Dumped, BackupError> {
    let name = ns.ns();
    let coll = node.database(&ns.db).collection::<RawDocumentBuf>(&ns.name);
    let secantus = crate::testserver::is_secantus(node).await;
    let opened = if secantus {
        secantus::open(&node.database(&ns.db), &ns.name)
            .await
            .map(|c| (CollSizes::default(), c))
    } else {
        let sizes = coll_sizes(node, ns, target.compression).await;
        match coll
            .find(doc! {})
            .batch_size(batch_size(sizes.avg_obj_size))
            .await
        {
            Ok(mut c) => c.advance().await.map(|more| (sizes, more.then_some(c))),
            Err(e) => Err(e),
        }
    };
    // The object is created only once a first document exists: PBM writes no file for an
    // empty collection.
    let (sizes, mut cursor) = match opened {
        Ok((sizes, Some(c))) => (sizes, c),
        Ok((_, None)) => return Ok(Dumped::default()),
        Err(e) if is_collection_dropped(&e) => return Ok(Dumped::default()),
        Err(e) => {
            return Err(BackupError::Db {
                what: format!("read {name}"),
                source: e,
            })
        }
    };
    let object = target.object(ns);
    let hint = sizes.hint;
    let (mut sink, reader) = doc_pipe();
    let input = rbm_storage::codec::compress_reader(reader, target.compression, target.level);
    let save = target.storage.save(&object, input, hint, &target.cancel);
    let produce = async {
        let mut crc = CollectionCrc::new();
        let mut size: i64 = 0;
        let mut docs: u64 = 0;
        loop {
            docs += 1;
            if !target.test_throttle.is_zero() && docs.is_multiple_of(100) {
                tokio::time::sleep(target.test_throttle).await;
            }
            let bytes = cursor.current().as_bytes();
            crc.update(bytes);
            size += bytes.len() as i64;
            target.progress.add_bytes(bytes.len() as u64);
            if sink.write(bytes).await.is_err() {
                return Err(None);
            }
            match cursor.advance().await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if is_collection_dropped(&e) => break,
                Err(e) => {
                    sink.fail(io::Error::other(format!("read {name}: aborted")))
                        .await;
                    return Err(Some(BackupError::Db {
                        what: format!("read {name}"),
                        source: e,
                    }));
                }
            }
        }
        if sink.finish().await.is_err() {
            return Err(None);
        }
        Ok((crc.finish(), size))
    };
    let (produced, saved) = tokio::join!(produce, save);
    match (produced, saved) {
        (Ok((crc, size)), Ok(stored)) => Ok(Dumped {
            crc,
            size,
            stored,
            object: Some(object),
        }),
        (Err(Some(e)), _) => Err(e),
        (_, Err(e)) => Err(BackupError::Storage(e)),
        (Err(None), Ok(_)) => Err(BackupError::Other(format!(
            "upload of {object} ended before the documents did"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_as_pbm() {
        let target = DumpTarget {
            storage: Arc::new(rbm_storage::blackhole::Blackhole),
            backup: "2026-01-02T03:04:05Z".into(),
            replset: "rs1".into(),
            compression: Compression::Zstd,
            level: None,
            cancel: CancellationToken::new(),
            test_throttle: std::time::Duration::ZERO,
            progress: Default::default(),
        };
        let ns = |db: &str, name: &str| NamespaceV2 {
            db: db.into(),
            name: name.into(),
            kind: NamespaceType::Collection,
            uuid: String::new(),
            options: Default::default(),
            indexes: Vec::new(),
            crc: 0,
            size: 0,
        };
        assert_eq!(
            target.object(&ns("shop", "orders.2024")),
            "2026-01-02T03:04:05Z/rs1/shop.orders.2024.zst"
        );
        // A time-series collection's buckets are stored under the collection's name.
        assert_eq!(
            target.object(&ns("iot", "system.buckets.metrics")),
            "2026-01-02T03:04:05Z/rs1/iot.metrics.zst"
        );
    }

    #[test]
    fn batches_hold_a_few_mib() {
        assert_eq!(batch_size(None), BATCH_SMALL);
        assert_eq!(batch_size(Some(100)), BATCH);
        assert_eq!(batch_size(Some(16 << 10)), 256);
        assert_eq!(batch_size(Some(16 << 20)), 1);
    }

    #[tokio::test]
    async fn a_failed_producer_fails_the_reader() {
        use tokio::io::AsyncReadExt;
        let (mut sink, mut reader) = doc_pipe();
        let writer = tokio::spawn(async move {
            sink.write(&[1, 2, 3]).await.expect("write");
            sink.fail(io::Error::other("cursor died")).await;
        });
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.expect_err("must fail");
        assert!(err.to_string().contains("cursor died"), "{err}");
        writer.await.expect("join");
    }
}
