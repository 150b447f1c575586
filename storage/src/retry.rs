//! Retries of transient failures with exponential backoff and full jitter.
//!
//! Backends retry inside their own clients (the AWS SDK's standard retryer, the Azure
//! client's `RetryConfig`); this wrapper adds the same policy above any backend, which
//! is what the fault-injection tests exercise. A `save` is retried only while none of
//! its input has been consumed: a stream cannot be rewound.

use crate::io::SharedReader;
use crate::{ByteReader, DynStorage, ObjectMeta, Result, Storage, StorageType};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use rbm_protocol::Retryer;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// PBM's S3 defaults: 3 retries, 30 ms to 300 s.
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(30),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// PBM's `retryer` block over `defaults` (keys that are unset keep the default).
    pub fn from_retryer(r: Option<&Retryer>, defaults: RetryPolicy) -> Self {
        let Some(r) = r else { return defaults };
        Self {
            max_retries: r.num_max_retries.unwrap_or(defaults.max_retries),
            min_delay: r.min_retry_delay.map(|d| d.0).unwrap_or(defaults.min_delay),
            max_delay: r.max_retry_delay.map(|d| d.0).unwrap_or(defaults.max_delay),
        }
    }

    /// The wait before retry number `attempt` (1-based): a uniformly random share of
    /// `min_delay × 2^(attempt-1)`, capped at `max_delay` ("full jitter", so that many
    /// agents failing together do not retry in lockstep).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .min_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max_delay).max(self.min_delay);
        let span = cap.saturating_sub(self.min_delay);
        self.min_delay + span.mul_f64(jitter())
    }

    /// Runs `f` until it succeeds, fails permanently, or retries run out.
    ///
    /// # Errors
    /// The last error.
    pub async fn run<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.is_transient() && attempt < self.max_retries => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying storage operation");
                    tokio::time::sleep(self.delay(attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// A number in [0, 1) for jitter. Hand-written (splitmix64 over a counter and the
/// clock) because jitter needs no cryptographic quality and this keeps `rand` out of
/// the library's dependencies.
fn jitter() -> f64 {
    static SEQ: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut z = SEQ.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ nanos;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Wraps a backend with [`RetryPolicy`].
#[derive(Debug)]
pub struct Retry {
    inner: DynStorage,
    policy: RetryPolicy,
}

impl Retry {
    pub fn new(inner: DynStorage, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// Runs `save` (one of the backend's save calls) until it succeeds, fails for good,
    /// or fails after reading some of `data`.
    async fn retry_save<'a>(
        &self,
        name: &str,
        data: ByteReader,
        cancel: &CancellationToken,
        save: impl Fn(ByteReader) -> futures::future::BoxFuture<'a, Result<u64>>,
    ) -> Result<u64> {
        let shared = Arc::new(Mutex::new(data));
        let mut attempt = 0;
        loop {
            let (reader, consumed) =
                crate::io::CountingReader::new(SharedReader::new(shared.clone(), u64::MAX));
            match save(Box::new(reader)).await {
                Err(e)
                    if e.is_transient()
                        && attempt < self.policy.max_retries
                        && consumed.load(Ordering::Relaxed) == 0 =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "retrying save");
                    tokio::select! {
                        _ = tokio::time::sleep(self.policy.delay(attempt)) => {}
                        _ = cancel.cancelled() => return Err(crate::StorageError::cancelled(self.kind(), "save", name)),
                    }
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Storage for Retry {
    fn kind(&self) -> StorageType {
        self.inner.kind()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn save(
        &self,
        name: &str,
        data: ByteReader,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        self.retry_save(name, data, cancel, |r| {
            self.inner.save(name, r, size_hint, cancel)
        })
        .await
    }

    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        self.retry_save(name, data, cancel, |r| {
            self.inner.save_sized(name, r, size, cancel)
        })
        .await
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        self.policy.run(|| self.inner.open(name)).await
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        self.policy
            .run(|| self.inner.open_range(name, offset, len))
            .await
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.policy.run(|| self.inner.stat(name)).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // A listing that fails part-way is restarted whole: simpler than resuming
        // from a page token the wrapper cannot see, and listings are small.
        stream::once(async move {
            self.policy
                .run(|| self.inner.list(prefix).try_collect::<Vec<_>>())
                .await
        })
        .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.policy.run(|| self.inner.delete(name)).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.policy.run(|| self.inner.copy(from, to)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        };
        for attempt in 1..12 {
            let d = p.delay(attempt);
            assert!(d >= p.min_delay && d <= p.max_delay, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn pbm_retryer_overrides_defaults() {
        let r = Retryer {
            num_max_retries: Some(7),
            min_retry_delay: None,
            max_retry_delay: Some(rbm_protocol::GoDuration(Duration::from_secs(5))),
        };
        let p = RetryPolicy::from_retryer(Some(&r), RetryPolicy::default());
        assert_eq!(p.max_retries, 7);
        assert_eq!(p.min_delay, Duration::from_millis(30));
        assert_eq!(p.max_delay, Duration::from_secs(5));
    }
}
