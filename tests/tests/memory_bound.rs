//! A 1 GiB streamed upload to every backend keeps this process's peak memory within
//! the configured bound (parts in flight × part size, plus a fixed allowance for the
//! runtime and HTTP buffers), and reads back identical.
//!
//! This file holds a single test so that the process measures nothing else.

use rbm_e2e::{azure_conf, fs_conf, s3_conf};
use rbm_storage::conformance::{assert_matches_random, memory, RandomReader};
use rbm_storage::{from_config, ByteReader, StorageConf};
use tokio_util::sync::CancellationToken;

const SIZE: u64 = 1 << 30;
const PART: u64 = 8 << 20;
const IN_FLIGHT: u32 = 4;
/// Runtime, TLS-less HTTP client buffers, allocator slack: measured well below this.
const ALLOWANCE: u64 = 48 << 20;

async fn check(label: &str, conf: StorageConf) {
    let storage = from_config(&conf, None)
        .await
        .unwrap_or_else(|e| panic!("{label}: storage: {e}"));
    let name = format!("memory-bound/{label}-{:08x}", rand::random::<u32>());
    let baseline = memory::rss().expect("VmRSS");
    memory::reset_peak().expect("reset VmHWM (needs Linux)");
    let input: ByteReader = Box::new(RandomReader::new(1, SIZE));
    let started = std::time::Instant::now();
    let n = storage
        .save(&name, input, None, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{label}: save 1 GiB: {e}"));
    let secs = started.elapsed().as_secs_f64();
    let peak = memory::peak_rss().expect("VmHWM");
    assert_eq!(n, SIZE, "{label}: stored bytes");
    let grew = peak.saturating_sub(baseline);
    let bound = (u64::from(IN_FLIGHT) + 1) * PART + ALLOWANCE;
    eprintln!(
        "{label}: 1 GiB in {secs:.1}s ({:.0} MB/s); peak RSS {} MiB, {} MiB above the {} MiB baseline; bound {} MiB",
        SIZE as f64 / 1e6 / secs,
        peak >> 20,
        grew >> 20,
        baseline >> 20,
        bound >> 20
    );
    assert!(
        grew <= bound,
        "{label}: peak RSS grew by {} MiB during a streamed upload, bound {} MiB",
        grew >> 20,
        bound >> 20
    );
    let reader = storage
        .open(&name)
        .await
        .unwrap_or_else(|e| panic!("{label}: open: {e}"));
    assert_matches_random(reader, 1, SIZE, label).await;
    storage.delete(&name).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gib_upload_stays_within_memory_bound() {
    let mut s3 = s3_conf(None);
    if let Some(c) = s3.s3.as_mut() {
        c.upload_part_size = Some(PART);
        c.upload_concurrency = Some(IN_FLIGHT);
    }
    check("s3s-fs", s3).await;

    let mut az = azure_conf();
    if let Some(c) = az.azure.as_mut() {
        c.upload_part_size = Some(PART);
        c.upload_concurrency = Some(IN_FLIGHT);
    }
    check("azurite", az).await;

    let dir = tempfile::tempdir().expect("temp dir");
    check("filesystem", fs_conf(dir.path())).await;
}
