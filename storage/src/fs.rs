//! The `filesystem` storage: a directory, usually a shared mount seen by every agent.
//!
//! Writes go to a temporary name in the same directory, are fsynced, then renamed,
//! so a reader never sees a partial object and a crash leaves at most a temporary file
//! (which listings hide).

use crate::{
    check_name, ByteReader, ErrorKind, ObjectMeta, Result, Storage, StorageError, StorageType,
};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use rbm_protocol::FilesystemConf;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};
use tokio_util::sync::CancellationToken;

const KIND: StorageType = StorageType::Filesystem;
/// Marks in-flight writes; never a suffix PBM uses, and hidden from listings.
const TMP_MARK: &str = ".rbm-tmp.";
const DEFAULT_BUF: usize = 1 << 20;
const MIN_BUF: u64 = 32 << 10;
const MAX_BUF: u64 = 10 << 20;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory used as object storage.
#[derive(Debug)]
pub struct Filesystem {
    root: PathBuf,
    write_buf: usize,
    read_buf: usize,
}

fn clamp_buf(v: Option<u64>) -> usize {
    v.map(|b| b.clamp(MIN_BUF, MAX_BUF) as usize)
        .unwrap_or(DEFAULT_BUF)
}

impl Filesystem {
    /// Opens (creating if missing) the directory at `conf.path`; a symlink is resolved.
    ///
    /// # Errors
    /// The path cannot be created or is not a directory.
    pub async fn new(conf: &FilesystemConf) -> Result<Self> {
        let path = PathBuf::from(&conf.path);
        fs::create_dir_all(&path)
            .await
            .map_err(|e| StorageError::io(KIND, "connect", &conf.path, &e))?;
        let root = fs::canonicalize(&path)
            .await
            .map_err(|e| StorageError::io(KIND, "connect", &conf.path, &e))?;
        let md = fs::metadata(&root)
            .await
            .map_err(|e| StorageError::io(KIND, "connect", &conf.path, &e))?;
        if !md.is_dir() {
            return Err(StorageError::new(
                ErrorKind::Config,
                KIND,
                "connect",
                &conf.path,
                "not a directory",
            ));
        }
        Ok(Self {
            root,
            write_buf: clamp_buf(conf.backup_buff_size),
            read_buf: clamp_buf(conf.restore_buff_size),
        })
    }

    fn path(&self, op: &'static str, name: &str) -> Result<PathBuf> {
        check_name(KIND, op, name)?;
        Ok(self.root.join(name))
    }

    fn tmp_path(path: &Path) -> PathBuf {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut s = path.as_os_str().to_owned();
        s.push(format!("{TMP_MARK}{}.{seq}", std::process::id()));
        PathBuf::from(s)
    }

    async fn write_tmp(
        &self,
        name: &str,
        tmp: &Path,
        data: &mut ByteReader,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let io = |e: std::io::Error| StorageError::io(KIND, "save", name, &e);
        let file = fs::File::create(tmp).await.map_err(io)?;
        let mut w = BufWriter::with_capacity(self.write_buf, file);
        let n = tokio::select! {
            r = tokio::io::copy(data, &mut w) => r.map_err(io)?,
            _ = cancel.cancelled() => return Err(StorageError::cancelled(KIND, "save", name)),
        };
        w.flush().await.map_err(io)?;
        let file = w.into_inner();
        file.sync_all().await.map_err(io)?;
        Ok(n)
    }

    async fn sync_dir(dir: &Path) {
        // Makes the rename durable; best effort, as some filesystems refuse it.
        if let Ok(d) = fs::File::open(dir).await {
            let _ = d.sync_all().await;
        }
    }

    /// Removes now-empty directories from `dir` up to (not including) the root, so
    /// deleting a backup leaves no empty folders behind.
    async fn prune_dirs(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) || fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// Walks the directory that holds `prefix` and returns matching objects, sorted.
    async fn walk(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let start_rel = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if start_rel.is_empty() {
            self.root.clone()
        } else {
            check_name(KIND, "list", start_rel)?;
            self.root.join(start_rel)
        };
        let mut out = Vec::new();
        let mut dirs = vec![start];
        while let Some(dir) = dirs.pop() {
            let mut rd = match fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io(KIND, "list", prefix, &e)),
            };
            while let Some(entry) = rd
                .next_entry()
                .await
                .map_err(|e| StorageError::io(KIND, "list", prefix, &e))?
            {
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let Some(rel) = rel.to_str() else { continue };
                let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
                let ft = entry
                    .file_type()
                    .await
                    .map_err(|e| StorageError::io(KIND, "list", prefix, &e))?;
                if ft.is_dir() {
                    // Descend only where names under it can still match the prefix.
                    let as_dir = format!("{rel}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        dirs.push(path);
                    }
                } else if rel.starts_with(prefix) && !rel.contains(TMP_MARK) {
                    let md = entry
                        .metadata()
                        .await
                        .map_err(|e| StorageError::io(KIND, "list", prefix, &e))?;
                    out.push(ObjectMeta {
                        name: rel,
                        size: md.len(),
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl Storage for Filesystem {
    fn kind(&self) -> StorageType {
        KIND
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn save(
        &self,
        name: &str,
        mut data: ByteReader,
        _size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let path = self.path("save", name)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .await
                .map_err(|e| StorageError::io(KIND, "save", name, &e))?;
        }
        let tmp = Self::tmp_path(&path);
        match self.write_tmp(name, &tmp, &mut data, cancel).await {
            Ok(n) => {
                if let Err(e) = fs::rename(&tmp, &path).await {
                    let _ = fs::remove_file(&tmp).await;
                    return Err(StorageError::io(KIND, "save", name, &e));
                }
                if let Some(parent) = path.parent() {
                    Self::sync_dir(parent).await;
                }
                Ok(n)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        let path = self.path("open", name)?;
        let f = fs::File::open(&path)
            .await
            .map_err(|e| StorageError::io(KIND, "open", name, &e))?;
        if f.metadata().await.map(|m| m.is_dir()).unwrap_or(false) {
            return Err(StorageError::not_found(KIND, "open", name));
        }
        Ok(Box::new(BufReader::with_capacity(self.read_buf, f)))
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        let path = self.path("open", name)?;
        let mut f = fs::File::open(&path)
            .await
            .map_err(|e| StorageError::io(KIND, "open", name, &e))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| StorageError::io(KIND, "open", name, &e))?;
        let buf = self
            .read_buf
            .min(usize::try_from(len).unwrap_or(usize::MAX).max(1));
        Ok(Box::new(BufReader::with_capacity(buf, f).take(len)))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let path = self.path("stat", name)?;
        let md = fs::metadata(&path)
            .await
            .map_err(|e| StorageError::io(KIND, "stat", name, &e))?;
        if md.is_dir() {
            return Err(StorageError::not_found(KIND, "stat", name));
        }
        Ok(ObjectMeta {
            name: name.to_string(),
            size: md.len(),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        stream::once(self.walk(prefix))
            .flat_map(|r| match r {
                Ok(v) => stream::iter(v.into_iter().map(Ok)).boxed(),
                Err(e) => stream::once(async { Err(e) }).boxed(),
            })
            .boxed()
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path("delete", name)?;
        match fs::remove_file(&path).await {
            Ok(()) => {
                self.prune_dirs(path.parent()).await;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(KIND, "delete", name, &e)),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let src = self.path("copy", from)?;
        let dst = self.path("copy", to)?;
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .await
                .map_err(|e| StorageError::io(KIND, "copy", to, &e))?;
        }
        let tmp = Self::tmp_path(&dst);
        let res = async {
            fs::copy(&src, &tmp)
                .await
                .map_err(|e| StorageError::io(KIND, "copy", from, &e))?;
            fs::rename(&tmp, &dst)
                .await
                .map_err(|e| StorageError::io(KIND, "copy", to, &e))
        }
        .await;
        if res.is_err() {
            let _ = fs::remove_file(&tmp).await;
        }
        res
    }
}
