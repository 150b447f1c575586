//! Bytes in, bytes out.
//!
//! One async [`Storage`] trait with what backups need, its backends (filesystem, S3,
//! Azure Blob, blackhole), wrappers that every backend composes with (split of large
//! objects into `.pbmpart.N`, retries, fault injection for tests), and PBM's codecs as
//! streaming adapters.
//!
//! Object names are `/`-separated paths relative to the storage root (bucket + prefix,
//! container + prefix, or the filesystem path), exactly as PBM lays them out.

pub mod azure;
pub mod blackhole;
pub mod bson_stream;
pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod fault;
pub mod fs;
pub mod io;
pub mod procstat;
pub mod retry;
pub mod s3;
pub mod split;

use async_trait::async_trait;
use futures::stream::BoxStream;
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

pub use codec::Compression;
pub use error::{ErrorKind, StorageError};
pub use rbm_protocol::config::{StorageConf, StorageType};

/// A boxed byte source: what [`Storage::save`] consumes and what reads return.
pub type ByteReader = Box<dyn AsyncRead + Send + Unpin>;

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// One stored object, as listed or stat'ed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectMeta {
    /// Name relative to the storage root.
    pub name: String,
    /// Size in bytes as stored (compressed, if a codec was used).
    pub size: u64,
}

/// The storage contract every backend fulfils (and the conformance suite checks).
///
/// - `save` streams its input: memory is bounded by the backend's parts in flight ×
///   part size, never by the object's size, and nothing is written to local temp files.
/// - A reader never sees a partial object: an object appears under its name only when
///   `save` returns `Ok`, and a failed or cancelled `save` leaves nothing under that name.
/// - Writers racing on one name never leave a mix: the object is one writer's whole
///   input (on Azure a losing writer may fail instead: a block-list commit discards the
///   other writers' staged blocks).
/// - `delete` of a missing object succeeds (it is what a retried delete sees).
/// - `stat` and reads of a missing object fail with [`ErrorKind::NotFound`].
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The backend type, for messages.
    fn kind(&self) -> StorageType;

    /// Where the storage points, without credentials (`s3://host/bucket/prefix`).
    fn location(&self) -> String;

    /// Stores `data` under `name`, replacing any object there. `size_hint` is the
    /// expected size if known (it sizes multipart parts). Returns the bytes stored.
    ///
    /// # Errors
    /// Fails when the backend refuses or the input fails; cancelled through `cancel`.
    async fn save(
        &self,
        name: &str,
        data: ByteReader,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64>;

    /// Stores `data`, which is exactly `size` bytes, under `name`. Backends that can
    /// stream an object of known length in one request (S3's PutObject) use it; the
    /// default is [`Storage::save`] with `size` as the hint. Input longer or shorter than
    /// `size` is an error (and stores nothing) where the backend relies on it.
    ///
    /// # Errors
    /// As [`Storage::save`].
    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        self.save(name, data, Some(size), cancel).await
    }

    /// Opens the whole object for streaming reads.
    async fn open(&self, name: &str) -> Result<ByteReader>;

    /// Opens `len` bytes starting at `offset`. A range past the end is cut at the end.
    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader>;

    /// Size of an object.
    async fn stat(&self, name: &str) -> Result<ObjectMeta>;

    /// Every object whose name starts with `prefix`, in name order, fetched page by page.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>>;

    /// Deletes an object; a missing one is not an error.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Copies an object within the storage (server-side where the backend can).
    async fn copy(&self, from: &str, to: &str) -> Result<()>;
}

/// A storage shared between tasks.
pub type DynStorage = Arc<dyn Storage>;

/// Lists every object under `prefix` into a vector (convenience over [`Storage::list`]).
///
/// # Errors
/// The first listing error.
pub async fn list_all(storage: &dyn Storage, prefix: &str) -> Result<Vec<ObjectMeta>> {
    use futures::TryStreamExt;
    storage.list(prefix).try_collect().await
}

/// Builds the backend that a PBM `storage:` section describes, wrapped with the split of
/// objects above `maxObjSizeGB` into `.pbmpart.N` continuation parts.
///
/// `node` is this agent's `host:port`, used for `endpointUrlMap`.
///
/// # Errors
/// An invalid or unsupported configuration, or a backend that cannot be set up.
pub async fn from_config(conf: &StorageConf, node: Option<&str>) -> Result<DynStorage> {
    conf.validate()
        .map_err(|e| StorageError::config(conf.kind, e.to_string()))?;
    let gib = |gb: Option<f64>, default: f64| (gb.unwrap_or(default) * (1u64 << 30) as f64) as u64;
    let (inner, max_obj): (DynStorage, u64) = match conf.kind {
        StorageType::Filesystem => {
            let fs = conf.filesystem.as_ref().ok_or_else(|| {
                StorageError::config(conf.kind, "the filesystem section is missing")
            })?;
            (
                Arc::new(fs::Filesystem::new(fs).await?),
                gib(fs.max_obj_size_gb, rbm_protocol::FilesystemConf::DEFAULT_MAX_OBJ_SIZE_GB),
            )
        }
        StorageType::S3 => {
            let s3c = conf
                .s3
                .as_ref()
                .ok_or_else(|| StorageError::config(conf.kind, "the s3 section is missing"))?;
            (
                Arc::new(s3::S3::new(s3c, node).await?),
                gib(s3c.max_obj_size_gb, rbm_protocol::S3Conf::DEFAULT_MAX_OBJ_SIZE_GB),
            )
        }
        StorageType::Azure => {
            let az = conf
                .azure
                .as_ref()
                .ok_or_else(|| StorageError::config(conf.kind, "the azure section is missing"))?;
            (
                Arc::new(azure::Azure::new(az, node)?),
                gib(az.max_obj_size_gb, rbm_protocol::AzureConf::DEFAULT_MAX_OBJ_SIZE_GB),
            )
        }
        StorageType::Blackhole => (Arc::new(blackhole::Blackhole), u64::MAX),
        other => {
            return Err(StorageError::config(
                other,
                format!("storage type {other} is not supported by rbm yet (supported: s3, azure, filesystem, blackhole)"),
            ))
        }
    };
    Ok(Arc::new(split::Split::new(inner, max_obj)))
}

/// Object names are relative, `/`-separated paths that never leave the storage root:
/// no leading `/`, no empty, `.` or `..` components, no NUL.
pub(crate) fn check_name(storage: StorageType, op: &'static str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(StorageError::new(
            ErrorKind::Other,
            storage,
            op,
            name,
            "invalid object name (must be a relative path without empty, . or .. parts)",
        ));
    }
    Ok(())
}
