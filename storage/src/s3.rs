//! S3 and S3-compatible storage (aws-sdk-s3). STUB: being written.

use crate::{ByteReader, ObjectMeta, Result, Storage, StorageError, StorageType};
use async_trait::async_trait;
use futures::stream::BoxStream;
use rbm_protocol::S3Conf;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct S3;

impl S3 {
    pub async fn new(_conf: &S3Conf, _node: Option<&str>) -> Result<Self> {
        Err(StorageError::config(StorageType::S3, "not implemented yet"))
    }
}

#[async_trait]
impl Storage for S3 {
    fn kind(&self) -> StorageType {
        StorageType::S3
    }
    fn location(&self) -> String {
        unimplemented!()
    }
    async fn save(
        &self,
        _: &str,
        _: ByteReader,
        _: Option<u64>,
        _: &CancellationToken,
    ) -> Result<u64> {
        unimplemented!()
    }
    async fn open(&self, _: &str) -> Result<ByteReader> {
        unimplemented!()
    }
    async fn open_range(&self, _: &str, _: u64, _: u64) -> Result<ByteReader> {
        unimplemented!()
    }
    async fn stat(&self, _: &str) -> Result<ObjectMeta> {
        unimplemented!()
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        unimplemented!()
    }
    async fn delete(&self, _: &str) -> Result<()> {
        unimplemented!()
    }
    async fn copy(&self, _: &str, _: &str) -> Result<()> {
        unimplemented!()
    }
}
