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

    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let n = self.inner.save_sized(name, data, size, cancel).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn counted(m: &super::super::Metrics) -> (u64, u64) {
        let l = super::super::StorageLabels {
            storage: "filesystem".into(),
        };
        (
            m.storage_written.get_or_create(&l).get(),
            m.storage_read.get_or_create(&l).get(),
        )
    }

    #[tokio::test]
    async fn saved_and_read_bytes_are_counted() {
        let m = super::super::enable();
        let dir = tempfile::tempdir().expect("dir");
        let conf: rbm_storage::StorageConf = rbm_storage::StorageConf::from_yaml(&format!(
            "type: filesystem\nfilesystem:\n  path: {}\n",
            dir.path().display()
        ))
        .expect("conf");
        let st = metered(
            rbm_storage::from_config(&conf, None)
                .await
                .expect("storage"),
        );
        let (w0, r0) = counted(m);
        let body = vec![7u8; 10_000];
        let n = st
            .save(
                "a/b.bin",
                Box::new(std::io::Cursor::new(body.clone())),
                None,
                &CancellationToken::new(),
            )
            .await
            .expect("save");
        assert_eq!(n, 10_000);
        let mut back = Vec::new();
        st.open("a/b.bin")
            .await
            .expect("open")
            .read_to_end(&mut back)
            .await
            .expect("read");
        assert_eq!(back, body);
        let mut part = Vec::new();
        st.open_range("a/b.bin", 100, 50)
            .await
            .expect("range")
            .read_to_end(&mut part)
            .await
            .expect("read range");
        let (w1, r1) = counted(m);
        assert_eq!(w1 - w0, 10_000);
        assert_eq!(r1 - r0, 10_050);
    }
}
