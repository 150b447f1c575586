//! Objects larger than `maxObjSizeGB` stored as `name`, `name.pbmpart.1`, ... STUB.

use crate::{ByteReader, DynStorage, ObjectMeta, Result, Storage, StorageType};
use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Split {
    inner: DynStorage,
    #[allow(dead_code)]
    max_obj_size: u64,
}

impl Split {
    pub fn new(inner: DynStorage, max_obj_size: u64) -> Self {
        Self { inner, max_obj_size }
    }
}

#[async_trait]
impl Storage for Split {
    fn kind(&self) -> StorageType { self.inner.kind() }
    fn location(&self) -> String { self.inner.location() }
    async fn save(&self, n: &str, d: ByteReader, h: Option<u64>, c: &CancellationToken) -> Result<u64> { self.inner.save(n, d, h, c).await }
    async fn open(&self, n: &str) -> Result<ByteReader> { self.inner.open(n).await }
    async fn open_range(&self, n: &str, o: u64, l: u64) -> Result<ByteReader> { self.inner.open_range(n, o, l).await }
    async fn stat(&self, n: &str) -> Result<ObjectMeta> { self.inner.stat(n).await }
    fn list<'a>(&'a self, p: &'a str) -> BoxStream<'a, Result<ObjectMeta>> { self.inner.list(p) }
    async fn delete(&self, n: &str) -> Result<()> { self.inner.delete(n).await }
    async fn copy(&self, f: &str, t: &str) -> Result<()> { self.inner.copy(f, t).await }
}
