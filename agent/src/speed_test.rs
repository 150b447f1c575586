//! `rbm speed-test`: how fast this machine compresses and stores backup data, through
//! the same streaming path a backup uses (source → codec → storage), like PBM's
//! `pbm-speed-test`. The source is synthetic BSON (see [`crate::sample`]).

use crate::sample::SampleStream;
use rbm_storage::codec::{compress_reader, decompress_reader};
use rbm_storage::io::CountingReader;
use rbm_storage::procstat as proc_stats;
use rbm_storage::{Compression, DynStorage, StorageError};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// The object a speed test writes (PBM uses the same name) and removes afterwards.
pub const OBJECT: &str = "pbmSpeedTest";

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedReport {
    pub compression: String,
    pub storage: String,
    /// Uncompressed bytes read from the source.
    pub bytes_in: u64,
    /// Bytes stored.
    pub bytes_stored: u64,
    pub upload_secs: f64,
    /// Uncompressed MB/s (10^6 bytes), as PBM reports.
    pub upload_mb_s: f64,
    /// Time to read the object back and decompress it (None for the blackhole).
    pub download_secs: Option<f64>,
    pub download_mb_s: Option<f64>,
    /// CPU seconds (user + system) of this process during the run.
    pub cpu_secs: f64,
    /// Peak resident memory of this process during the run.
    pub peak_rss_bytes: Option<u64>,
}

/// Where the data of a speed test comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// About this many bytes of synthetic BSON documents.
    Sample(u64),
    /// A file's bytes (to compare with another client uploading the same file).
    File(std::path::PathBuf),
}

/// Streams the source through `compression` into `storage`, then (if the storage keeps
/// data) reads it back and decompresses it.
///
/// # Errors
/// A storage failure, an unreadable source file, or a read-back that differs in length.
pub async fn run(
    storage: DynStorage,
    compression: Compression,
    level: Option<i32>,
    source: &Source,
) -> Result<SpeedReport, StorageError> {
    let _ = proc_stats::reset_peak();
    let cpu0 = proc_stats::cpu_secs();
    let (input, size): (rbm_storage::ByteReader, u64) = match source {
        Source::Sample(size) => (Box::new(SampleStream::new(42, *size)), *size),
        Source::File(path) => {
            let io_err = |e: &std::io::Error| {
                StorageError::io(storage.kind(), "save", path.display().to_string(), e)
            };
            let f = tokio::fs::File::open(path).await.map_err(|e| io_err(&e))?;
            let len = f.metadata().await.map_err(|e| io_err(&e))?.len();
            (
                Box::new(tokio::io::BufReader::with_capacity(1 << 20, f)),
                len,
            )
        }
    };
    let (source, counter) = CountingReader::new(input);
    let compressed = compress_reader(Box::new(source), compression, level);
    let started = Instant::now();
    let cancel = CancellationToken::new();
    // Uncompressed, the stored size is known up front: the backend may stream it as one
    // request (as a backup does with physical files).
    let stored = match compression {
        Compression::None => {
            storage
                .save_sized(OBJECT, compressed, size, &cancel)
                .await?
        }
        _ => storage.save(OBJECT, compressed, None, &cancel).await?,
    };
    let upload_secs = started.elapsed().as_secs_f64();
    let bytes_in = counter.load(Ordering::Relaxed);

    let (download_secs, download_mb_s) = if storage.kind() == rbm_storage::StorageType::Blackhole {
        (None, None)
    } else {
        let started = Instant::now();
        let raw = storage.open(OBJECT).await?;
        let mut plain = decompress_reader(raw, compression);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = plain
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::io(storage.kind(), "open", OBJECT, &e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        storage.delete(OBJECT).await?;
        if total != bytes_in {
            return Err(StorageError::new(
                rbm_storage::ErrorKind::Other,
                storage.kind(),
                "open",
                OBJECT,
                format!("read back {total} bytes, wrote {bytes_in}"),
            ));
        }
        (Some(secs), Some(mb_s(total, secs)))
    };
    Ok(SpeedReport {
        compression: compression.as_str().to_string(),
        storage: storage.location(),
        bytes_in,
        bytes_stored: stored,
        upload_secs,
        upload_mb_s: mb_s(bytes_in, upload_secs),
        download_secs,
        download_mb_s,
        cpu_secs: proc_stats::cpu_secs().unwrap_or(0.0) - cpu0.unwrap_or(0.0),
        peak_rss_bytes: proc_stats::peak_rss().ok(),
    })
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}
