//! Streaming the dbPath's files to storage and back, several at once, through the
//! backup's codec, with the size and CRC-64 of every file's bytes recorded.

use super::incr::{BlockHasher, CopyOp, FileHashes, RestoreFile};
use super::{secantus, PhysicalError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rbm_protocol::meta::archive::CollectionCrc;
use rbm_protocol::meta::backup::File;
use rbm_protocol::names;
use rbm_storage::{ByteReader, Compression, DynStorage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// A `filelist.pbm` document: PBM's `File` plus rbm's CRC-64 of the file's bytes
/// (an extra field PBM's decoder ignores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedFile {
    #[serde(flatten)]
    pub file: File,
    #[serde(rename = "rbmCrc64", default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<i64>,
}

/// Encodes `filelist.pbm`: concatenated BSON documents.
///
/// # Errors
/// Encoding failures.
pub fn encode_filelist(files: &[ListedFile]) -> Result<Vec<u8>, PhysicalError> {
    let mut out = Vec::new();
    for f in files {
        bson::serialize_to_buffer(f, &mut out)
            .map_err(|e| PhysicalError::Other(format!("encode filelist.pbm: {e}")))?;
    }
    Ok(out)
}

/// Decodes `filelist.pbm` (PBM's or rbm's).
///
/// # Errors
/// A truncated or undecodable document.
pub fn decode_filelist(bytes: &[u8]) -> Result<Vec<ListedFile>, PhysicalError> {
    rbm_protocol::meta::backup::split_documents(bytes)
        .map_err(|_| PhysicalError::Check("filelist.pbm is truncated".into()))?
        .into_iter()
        .map(|(_, doc)| {
            bson::deserialize_from_slice(doc)
                .map_err(|e| PhysicalError::Check(format!("filelist.pbm: {e}")))
        })
        .collect()
}

/// Every regular file under `dbpath`, relative, sorted; lock files and diagnostics
/// excluded (see [`secantus::skip_entry`]).
///
/// # Errors
/// Unreadable directories, or anything but files and directories in the dbPath.
pub async fn list_dbpath(dbpath: &Path) -> Result<Vec<String>, PhysicalError> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel_dir) = dirs.pop() {
        let mut rd =
            tokio::fs::read_dir(dbpath.join(&rel_dir))
                .await
                .map_err(PhysicalError::io(format!(
                    "read {}",
                    dbpath.join(&rel_dir).display()
                )))?;
        while let Some(e) = rd
            .next_entry()
            .await
            .map_err(PhysicalError::io("read the dbPath"))?
        {
            let rel = rel_dir.join(e.file_name());
            let rel_s = rel.to_string_lossy().to_string();
            if secantus::skip_entry(&rel_s) {
                continue;
            }
            let t = e
                .file_type()
                .await
                .map_err(PhysicalError::io(format!("stat {rel_s}")))?;
            if t.is_dir() {
                dirs.push(rel);
            } else if t.is_file() {
                out.push(rel_s);
            } else {
                return Err(PhysicalError::Check(format!(
                    "{rel_s} in the dbPath is neither a file nor a directory"
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What a [`Tap`] saw: bytes, their CRC-64, and their block hashes when asked.
#[derive(Default)]
struct Seen {
    n: u64,
    crc: CollectionCrc,
    blocks: Option<BlockHasher>,
}

type SeenCell = Arc<Mutex<Seen>>;

/// Counts the bytes and CRC-64 (and block hashes) of what passes through.
struct Tap<R> {
    inner: R,
    seen: SeenCell,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if let Ok(mut g) = self.seen.lock() {
                g.n += new.len() as u64;
                g.crc.update(new);
                if let Some(h) = g.blocks.as_mut() {
                    h.update(new);
                }
            }
        }
        r
    }
}

fn tap<R: AsyncRead + Unpin>(inner: R, hash: bool) -> (Tap<R>, SeenCell) {
    let seen = Arc::new(Mutex::new(Seen {
        blocks: hash.then(BlockHasher::default),
        ..Seen::default()
    }));
    (
        Tap {
            inner,
            seen: seen.clone(),
        },
        seen,
    )
}

fn take_seen(seen: &SeenCell) -> (u64, i64, Option<FileHashes>) {
    match seen.lock() {
        Ok(mut g) => {
            let crc = std::mem::take(&mut g.crc);
            (g.n, crc.finish(), g.blocks.take().map(BlockHasher::finish))
        }
        Err(_) => (0, 0, None),
    }
}

/// Reads a file in [`super::incr::BLOCK`]s and hashes each (the hash mode of
/// incremental backups), one block in memory.
///
/// # Errors
/// Read failures.
pub async fn hash_file(path: &Path) -> Result<FileHashes, PhysicalError> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(PhysicalError::io(format!("open {}", path.display())))?;
    let mut h = BlockHasher::default();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(PhysicalError::io(format!("read {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// One object to store: a whole file, or `len` bytes of it from `off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub rel: String,
    pub range: Option<(u64, u64)>,
}

impl Piece {
    pub fn whole(rel: &str) -> Self {
        Self {
            rel: rel.to_string(),
            range: None,
        }
    }
}

/// Where the files go and how.
#[derive(Clone)]
pub struct Upload {
    pub storage: DynStorage,
    pub backup: String,
    pub replset: String,
    pub compression: Compression,
    pub level: Option<i32>,
    pub parallel: usize,
    pub cancel: CancellationToken,
    /// The file must not change while read (cold, fsyncLock). Under a backup cursor
    /// journal files may still grow: what was read is recorded.
    pub exact: bool,
}

impl Upload {
    /// The object of a stored range of a dbPath file (`0, 0`: the whole file).
    pub fn object_of(&self, rel: &str, off: i64, len: i64) -> String {
        names::physical_object(
            &self.backup,
            &self.replset,
            rel,
            self.compression.extension(),
            off,
            len,
        )
    }
}

/// Streams every file to storage, `parallel` at once. Returns the file list with
/// stored sizes and checksums, in `rels` order.
///
/// # Errors
/// The first failure; a file whose size changed while it was read fails (the copy
/// would not be consistent).
pub async fn upload_all(
    up: &Upload,
    dbpath: &Path,
    rels: &[String],
) -> Result<Vec<ListedFile>, PhysicalError> {
    let pieces: Vec<Piece> = rels.iter().map(|r| Piece::whole(r)).collect();
    Ok(upload_pieces(up, dbpath, &pieces, false)
        .await?
        .into_iter()
        .map(|(f, _)| f)
        .collect())
}

/// Streams every piece to storage, `parallel` at once, in `pieces` order. With `hash`,
/// whole files also get their block hashes, taken from the bytes as they are sent.
///
/// # Errors
/// As [`upload_all`].
pub async fn upload_pieces(
    up: &Upload,
    dbpath: &Path,
    pieces: &[Piece],
    hash: bool,
) -> Result<Vec<(ListedFile, Option<FileHashes>)>, PhysicalError> {
    let jobs: Vec<(usize, Upload, PathBuf, Piece)> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (i, up.clone(), dbpath.to_path_buf(), p.clone()))
        .collect();
    // Every upload runs to its end, also after one failed: a save dropped midway can
    // leave its temporary object behind, one that ends on an error cleans up. The
    // first failure cancels the rest through the token.
    let failed = up.cancel.child_token();
    type Done = (usize, (ListedFile, Option<FileHashes>));
    let results: Vec<Result<Done, PhysicalError>> = futures::stream::iter(jobs)
        .map(|(i, mut up, dbpath, piece)| {
            let failed = failed.clone();
            up.cancel = failed.clone();
            async move {
                let r = upload_one(&up, &dbpath, &piece, hash).await.map(|f| (i, f));
                if r.is_err() {
                    failed.cancel();
                }
                r
            }
        })
        .buffer_unordered(up.parallel.max(1))
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    let mut first_err: Option<PhysicalError> = None;
    for r in results {
        match r {
            Ok(v) => out.push(v),
            // Keep the first; a storage error may only be a follower's cancellation.
            Err(e) => match &first_err {
                None => first_err = Some(e),
                Some(PhysicalError::Storage(_)) if !matches!(e, PhysicalError::Storage(_)) => {
                    first_err = Some(e)
                }
                Some(_) => {}
            },
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, f)| f).collect())
}

async fn upload_one(
    up: &Upload,
    dbpath: &Path,
    piece: &Piece,
    hash: bool,
) -> Result<(ListedFile, Option<FileHashes>), PhysicalError> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let rel = piece.rel.as_str();
    let path = dbpath.join(rel);
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(PhysicalError::io(format!("open {}", path.display())))?;
    let md = f
        .metadata()
        .await
        .map_err(PhysicalError::io(format!("stat {}", path.display())))?;
    let file_size = md.len();
    let (off, len, want) = match piece.range {
        Some((off, len)) => (off, len, len),
        None => (0, 0, file_size),
    };
    let (reader, seen) = if piece.range.is_some() {
        f.seek(std::io::SeekFrom::Start(off))
            .await
            .map_err(PhysicalError::io(format!("seek {}", path.display())))?;
        let (t, s) = tap(f.take(len), false);
        (Box::new(t) as ByteReader, s)
    } else {
        let (t, s) = tap(f, hash);
        (Box::new(t) as ByteReader, s)
    };
    let body = rbm_storage::codec::compress_reader(reader, up.compression, up.level);
    let object = up.object_of(rel, off as i64, len as i64);
    let stored = if up.compression == Compression::None && up.exact {
        // The file cannot change under a cold copy: its size is the object's, which
        // lets S3 take it as one streamed PUT instead of parts joined afterwards.
        up.storage
            .save_sized(&object, body, want, &up.cancel)
            .await?
    } else {
        let hint = (up.compression == Compression::None).then_some(want);
        up.storage.save(&object, body, hint, &up.cancel).await?
    };
    let (read, crc, hashes) = take_seen(&seen);
    if up.exact && read != want {
        return Err(PhysicalError::Check(format!(
            "{rel} changed while it was copied: {want} bytes expected, {read} read"
        )));
    }
    Ok((
        ListedFile {
            file: File {
                name: rel.to_string(),
                offset: off as i64,
                length: len as i64,
                size: if piece.range.is_some() {
                    file_size as i64
                } else {
                    read as i64
                },
                stg_size: stored as i64,
                stg_size_uncompressed: read as i64,
                // Go's os.FileMode of a regular file is its permission bits.
                fmode: md.permissions().mode() & 0o777,
            },
            crc64: Some(crc),
        },
        hashes,
    ))
}

/// How restored files are read.
#[derive(Clone)]
pub struct Download {
    pub storage: DynStorage,
    pub replset: String,
    pub parallel: usize,
    pub chunk: u64,
    pub ahead: usize,
}

/// The object a restore reads for `op` of replica set `rs`.
pub fn restore_object(rs: &str, op: &CopyOp) -> String {
    let f = &op.entry.file;
    names::physical_object(
        &op.backup,
        rs,
        &f.name,
        op.compression.extension(),
        f.offset,
        f.length,
    )
}

/// Writes every planned file under `dbpath`, `parallel` files at once, each object read
/// with up to `ahead` ranged reads in flight; checks sizes and checksums. Returns the
/// bytes read from storage.
///
/// # Errors
/// A missing or short object, a size or checksum mismatch, a write failure.
pub async fn download_all(
    d: &Download,
    dbpath: &Path,
    files: &[RestoreFile],
) -> Result<u64, PhysicalError> {
    let jobs: Vec<(Download, PathBuf, RestoreFile)> = files
        .iter()
        .map(|f| (d.clone(), dbpath.to_path_buf(), f.clone()))
        .collect();
    let sizes: Vec<u64> = futures::stream::iter(jobs)
        .map(|(d, dbpath, f)| async move { download_one(&d, &dbpath, &f).await })
        .buffer_unordered(d.parallel.max(1))
        .try_collect()
        .await?;
    Ok(sizes.iter().sum())
}

async fn download_one(d: &Download, dbpath: &Path, f: &RestoreFile) -> Result<u64, PhysicalError> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncSeekExt;
    let rel = &f.name;
    if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
        return Err(PhysicalError::Check(format!(
            "file list entry {rel:?} points outside the dbPath"
        )));
    }
    let path = dbpath.join(rel);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(PhysicalError::io(format!("create {}", parent.display())))?;
    }
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(PhysicalError::io(format!("create {}", path.display())))?;
    let mut total = 0;
    // The base's copy first, then each increment's ranges over it.
    for op in &f.ops {
        let e = &op.entry;
        out.seek(std::io::SeekFrom::Start(e.file.offset.max(0) as u64))
            .await
            .map_err(PhysicalError::io(format!("seek {}", path.display())))?;
        total += download_op(d, op, &mut out).await?;
    }
    out.flush()
        .await
        .map_err(PhysicalError::io(format!("write {}", path.display())))?;
    // PBM cuts the file to each copied entry's size; the last one is the target's.
    out.set_len(f.size)
        .await
        .map_err(PhysicalError::io(format!("truncate {}", path.display())))?;
    out.sync_all()
        .await
        .map_err(PhysicalError::io(format!("sync {}", path.display())))?;
    if f.fmode != 0 {
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.fmode & 0o7777))
            .await
            .map_err(PhysicalError::io(format!("chmod {}", path.display())))?;
    }
    Ok(total)
}

/// Streams one object into `out` at its current position; checks its size and CRC.
async fn download_op(
    d: &Download,
    op: &CopyOp,
    out: &mut tokio::fs::File,
) -> Result<u64, PhysicalError> {
    let f = &op.entry;
    let rel = &f.file.name;
    let object = restore_object(&d.replset, op);
    let total = d.storage.stat(&object).await?.size;
    let chunk = d.chunk.max(1);
    let storage = d.storage.clone();
    let ranges = (0..total.div_ceil(chunk)).map(move |i| {
        let off = i * chunk;
        (off, chunk.min(total - off))
    });
    let obj = object.clone();
    let parts = futures::stream::iter(ranges)
        .map(move |(off, len)| {
            let storage = storage.clone();
            let obj = obj.clone();
            async move {
                let mut r = storage
                    .open_range(&obj, off, len)
                    .await
                    .map_err(std::io::Error::other)?;
                let mut buf = Vec::with_capacity(len as usize);
                tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf).await?;
                if buf.len() as u64 != len {
                    return Err(std::io::Error::other(format!(
                        "{obj}: range {off}+{len} returned {} bytes",
                        buf.len()
                    )));
                }
                Ok::<Bytes, std::io::Error>(Bytes::from(buf))
            }
        })
        .buffered(d.ahead.max(1));
    let raw: ByteReader = Box::new(tokio_util::io::StreamReader::new(parts));
    let (mut plain, seen) = tap(
        rbm_storage::codec::decompress_reader(raw, op.compression),
        false,
    );
    tokio::io::copy(&mut plain, out)
        .await
        .map_err(PhysicalError::io(format!("restore {rel} from {object}")))?;
    let (n, crc, _) = take_seen(&seen);
    let want = if f.file.length > 0 {
        f.file.length
    } else {
        f.file.size
    };
    if n as i64 != want {
        return Err(PhysicalError::Check(format!(
            "{object}: restored {n} bytes, the backup recorded {want}"
        )));
    }
    if let Some(want) = f.crc64 {
        if want != crc {
            return Err(PhysicalError::Check(format!(
                "{rel}: checksum mismatch (CRC-64 {crc:#x}, the backup recorded {want:#x})"
            )));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filelist_round_trip_and_pbm_reads_it() {
        let files = vec![
            ListedFile {
                file: File {
                    name: "collection-7--1.wt".into(),
                    offset: 0,
                    length: 0,
                    size: 4096,
                    stg_size: 812,
                    stg_size_uncompressed: 4096,
                    fmode: 0o644,
                },
                crc64: Some(-42),
            },
            ListedFile {
                file: File {
                    name: "journal/WiredTigerLog.0000000001".into(),
                    offset: 0,
                    length: 0,
                    size: 100,
                    stg_size: 20,
                    stg_size_uncompressed: 100,
                    fmode: 0o600,
                },
                crc64: None,
            },
        ];
        let bytes = encode_filelist(&files).unwrap();
        assert_eq!(decode_filelist(&bytes).unwrap(), files);
        // PBM's own reader (same document shape) ignores the extra checksum.
        let pbm = rbm_protocol::meta::read_filelist(&bytes).unwrap();
        assert_eq!(pbm[0], files[0].file);
        let first = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let d: bson::Document = bson::deserialize_from_slice(&bytes[..first]).unwrap();
        assert_eq!(d.get_str("filename").unwrap(), "collection-7--1.wt");
        assert_eq!(d.get_i64("fileSize").unwrap(), 4096);
        assert!(decode_filelist(&bytes[..bytes.len() - 3]).is_err());
    }
}
