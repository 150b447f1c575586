//! Counts the bytes an agent moves to and from backup storage: a [`Storage`] wrapper
//! that adds what `save` stored and what readers return to the metrics.

use async_trait::async_trait;
use futures::stream::BoxStream;
use rbm_storage::{ByteReader, DynStorage, ObjectMeta, Result, Storage, StorageType};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Wraps `inner` so its traffic is counted; returns it unchanged when metrics are off.
pub fn metered(inner: DynStorage) -> DynStorage {
    if super::get().is_none() {
        return inner;
    }
    Arc::new(Metered { inner })
}

#[derive(Debug)]
struct Metered {
    inner: DynStorage,
}

struct CountingReader {
    inner: ByteReader,
    storage: &'static str,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            super::storage_read(self.storage, n as u64);
        }
        r
    }
}

impl Metered {
    fn label(&self) -> &'static str {
        self.inner.kind().as_str()
    }

    fn counting(&self, r: ByteReader) -> ByteReader {
        Box::new(CountingReader {
            inner: r,
            storage: self.label(),
        })
    }
}

#[async_trait]
impl Storage for Metered {
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
        let n = self.inner.save(name, data, size_hint, cancel).await?;
        super::storage_written(self.label(), n);
        Ok(n)
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        Ok(self.counting(self.inner.open(name).await?))
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        Ok(self.counting(self.inner.open_range(name, offset, len).await?))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        self.inner.stat(name).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.copy(from, to).await
    }
}
