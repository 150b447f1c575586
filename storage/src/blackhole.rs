//! The `blackhole` storage: accepts and discards writes, for speed tests.

use crate::{ByteReader, ObjectMeta, Result, Storage, StorageError, StorageType};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio_util::sync::CancellationToken;

/// Discards everything written to it; holds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blackhole;

const KIND: StorageType = StorageType::Blackhole;

#[async_trait]
impl Storage for Blackhole {
    fn kind(&self) -> StorageType {
        KIND
    }

    fn location(&self) -> String {
        "blackhole://".into()
    }

    async fn save(
        &self,
        name: &str,
        mut data: ByteReader,
        _size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let mut sink = tokio::io::sink();
        tokio::select! {
            r = tokio::io::copy(&mut data, &mut sink) => r.map_err(|e| StorageError::io(KIND, "save", name, &e)),
            _ = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
        }
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        Err(StorageError::not_found(KIND, "open", name))
    }

    async fn open_range(&self, name: &str, _offset: u64, _len: u64) -> Result<ByteReader> {
        Err(StorageError::not_found(KIND, "open", name))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        Err(StorageError::not_found(KIND, "stat", name))
    }

    fn list<'a>(&'a self, _prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        stream::empty().boxed()
    }

    async fn delete(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn copy(&self, from: &str, _to: &str) -> Result<()> {
        Err(StorageError::not_found(KIND, "copy", from))
    }
}
