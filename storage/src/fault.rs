//! Fault injection for tests: a wrapper that fails chosen attempts of each operation
//! with a transient error, so that every caller is forced to be retry-correct (after
//! Neon's `UnreliableWrapper`).

use crate::{
    ByteReader, DynStorage, ErrorKind, ObjectMeta, Result, Storage, StorageError, StorageType,
};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Which attempts fail.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultPlan {
    /// The first `n` attempts of each (operation, object) fail, later ones pass.
    FailFirst(u32),
    /// A share of all attempts fails, chosen by a seeded sequence (reproducible).
    FailRatio { ratio: f64, seed: u64 },
}

/// Wraps a backend and injects [`ErrorKind::Transient`] failures. A failing `save`
/// fails before reading any input, as a refused connection would.
#[derive(Debug)]
pub struct Faulty {
    inner: DynStorage,
    plan: FaultPlan,
    attempts: Mutex<HashMap<(&'static str, String), u32>>,
    state: AtomicU64,
    injected: AtomicU64,
}

impl Faulty {
    pub fn new(inner: DynStorage, plan: FaultPlan) -> Self {
        let seed = match plan {
            FaultPlan::FailRatio { seed, .. } => seed,
            FaultPlan::FailFirst(_) => 0,
        };
        Self {
            inner,
            plan,
            attempts: Mutex::new(HashMap::new()),
            state: AtomicU64::new(seed),
            injected: AtomicU64::new(0),
        }
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn check(&self, op: &'static str, name: &str) -> Result<()> {
        let fail = match self.plan {
            FaultPlan::FailFirst(n) => {
                let mut map = match self.attempts.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                let seen = map.entry((op, name.to_string())).or_insert(0);
                *seen += 1;
                *seen <= n
            }
            FaultPlan::FailRatio { ratio, .. } => {
                // splitmix64: deterministic for a seed, no dependency needed.
                let mut z = self
                    .state
                    .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
                    .wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64) < ratio
            }
        };
        if fail {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StorageError::new(
                ErrorKind::Transient,
                self.inner.kind(),
                op,
                name,
                "injected fault",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for Faulty {
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
        self.check("save", name)?;
        self.inner.save(name, data, size_hint, cancel).await
    }

    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        self.check("save_sized", name)?;
        self.inner.save_sized(name, data, size, cancel).await
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        self.check("open", name)?;
        self.inner.open(name).await
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        self.check("open_range", name)?;
        self.inner.open_range(name, offset, len).await
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.check("stat", name)?;
        self.inner.stat(name).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        match self.check("list", prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => stream::once(async { Err(e) }).boxed(),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.check("delete", name)?;
        self.inner.delete(name).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.check("copy", from)?;
        self.inner.copy(from, to).await
    }
}
