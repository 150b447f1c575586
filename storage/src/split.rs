//! Objects larger than a backend's object size limit (PBM's `maxObjSizeGB`) are stored
//! as `name`, `name.pbmpart.1`, `name.pbmpart.2`, ... and read back as one object, as
//! PBM's split/merge middleware does (`pbm/storage/split_merge_mw.go`).
//!
//! Every part but the last is exactly `max_obj_size` bytes, so a `name` shorter than
//! that has no continuation parts: the common case costs one `stat`, not a listing.

use crate::io::SharedReader;
use crate::{ByteReader, DynStorage, ObjectMeta, Result, Storage, StorageType};
use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};
use tokio_util::sync::CancellationToken;

/// PBM's continuation-part marker.
pub const PART_MARK: &str = ".pbmpart.";

/// The name of part `index` of `name` (part 0 is `name` itself).
pub fn part_name(name: &str, index: u64) -> String {
    if index == 0 {
        name.to_string()
    } else {
        format!("{name}{PART_MARK}{index}")
    }
}

/// Splits `obj.pbmpart.N` into (`obj`, N).
pub fn parse_part_name(name: &str) -> Option<(&str, u64)> {
    let i = name.rfind(PART_MARK)?;
    let n: u64 = name[i + PART_MARK.len()..].parse().ok()?;
    (n > 0).then(|| (&name[..i], n))
}

/// Wraps a backend with the split of large objects.
#[derive(Debug)]
pub struct Split {
    inner: DynStorage,
    max_obj_size: u64,
}

impl Split {
    pub fn new(inner: DynStorage, max_obj_size: u64) -> Self {
        Self {
            inner,
            max_obj_size: max_obj_size.max(1),
        }
    }

    /// The parts of `name` with their sizes, in order; `NotFound` if `name` is missing.
    async fn parts(&self, op: &'static str, name: &str) -> Result<Vec<ObjectMeta>> {
        let first = self.inner.stat(name).await.map_err(|mut e| {
            e.op = op;
            e
        })?;
        if first.size < self.max_obj_size {
            return Ok(vec![first]);
        }
        let prefix = format!("{name}{PART_MARK}");
        let mut more: Vec<(u64, ObjectMeta)> = self
            .inner
            .list(&prefix)
            .try_filter_map(|m| async move {
                Ok(parse_part_name(&m.name)
                    .filter(|(base, _)| *base == name)
                    .map(|(_, n)| (n, m.clone())))
            })
            .try_collect()
            .await?;
        more.sort_by_key(|(n, _)| *n);
        let mut out = vec![first];
        // Parts must be contiguous from 1; a gap means a part was lost.
        for (expect, (n, m)) in (1u64..).zip(more) {
            if n != expect {
                return Err(crate::StorageError::new(
                    crate::ErrorKind::Other,
                    self.kind(),
                    op,
                    name,
                    format!("continuation part {expect} is missing (found part {n})"),
                ));
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Deletes parts of `name` numbered `from` and above (left over from an older,
    /// larger object under the same name).
    async fn delete_parts_from(&self, name: &str, from: u64) -> Result<()> {
        let probe = part_name(name, from);
        match self.inner.stat(&probe).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let prefix = format!("{name}{PART_MARK}");
        let stale: Vec<String> = self
            .inner
            .list(&prefix)
            .try_filter_map(|m| async move {
                Ok(parse_part_name(&m.name)
                    .filter(|(base, n)| *base == name && *n >= from)
                    .map(|_| m.name.clone()))
            })
            .try_collect()
            .await?;
        for p in stale {
            self.inner.delete(&p).await?;
        }
        Ok(())
    }

    fn chain(&self, pieces: Vec<(String, u64, u64)>) -> ByteReader {
        // Opens each piece lazily, when the previous one is exhausted, so a
        // many-part object holds one connection at a time.
        let inner = self.inner.clone();
        let s = stream::iter(pieces)
            .then(move |(name, off, len)| {
                let inner = inner.clone();
                async move {
                    inner
                        .open_range(&name, off, len)
                        .await
                        .map(ReaderStream::new)
                        .map_err(|e| e.into_io())
                }
            })
            .try_flatten()
            .boxed();
        Box::new(StreamReader::new(s))
    }
}

#[async_trait]
impl Storage for Split {
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
        let shared = Arc::new(Mutex::new(data));
        let mut total = 0u64;
        let mut index = 0u64;
        loop {
            let part = SharedReader {
                inner: shared.clone(),
                limit: self.max_obj_size,
            };
            let hint = size_hint.map(|h| h.saturating_sub(total).min(self.max_obj_size));
            let pname = part_name(name, index);
            let n = match self.inner.save(&pname, Box::new(part), hint, cancel).await {
                Ok(n) => n,
                Err(e) => {
                    // Best effort: take back the parts already written, so that no
                    // half object stays behind under this name.
                    for i in 0..index {
                        let _ = self.inner.delete(&part_name(name, i)).await;
                    }
                    return Err(e);
                }
            };
            total += n;
            index += 1;
            if n < self.max_obj_size {
                break;
            }
            // A full part: more may follow. Peek one byte to tell "exactly full" from
            // "continues" without writing an empty trailing part.
            let mut probe = [0u8; 1];
            let got = {
                let mut r = SharedReader {
                    inner: shared.clone(),
                    limit: 1,
                };
                r.read(&mut probe)
                    .await
                    .map_err(|e| crate::StorageError::io(self.kind(), "save", name, &e))?
            };
            if got == 0 {
                break;
            }
            crate::io::unread(&shared, &probe);
        }
        self.delete_parts_from(name, index).await?;
        Ok(total)
    }

    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        if size >= self.max_obj_size {
            return self.save(name, data, Some(size), cancel).await;
        }
        let n = self.inner.save_sized(name, data, size, cancel).await?;
        self.delete_parts_from(name, 1).await?;
        Ok(n)
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        let parts = self.parts("open", name).await?;
        if parts.len() == 1 {
            return self.inner.open(name).await;
        }
        Ok(self.chain(parts.into_iter().map(|m| (m.name, 0, m.size)).collect()))
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        let parts = self.parts("open", name).await?;
        if parts.len() == 1 {
            return self.inner.open_range(name, offset, len).await;
        }
        let end = offset.saturating_add(len);
        let mut pieces = Vec::new();
        let mut start = 0u64;
        for m in parts {
            let stop = start + m.size;
            if stop > offset && start < end {
                let from = offset.max(start) - start;
                let to = end.min(stop) - start;
                pieces.push((m.name, from, to - from));
            }
            start = stop;
        }
        Ok(self.chain(pieces))
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let parts = self.parts("stat", name).await?;
        Ok(ObjectMeta {
            name: name.to_string(),
            size: parts.iter().map(|m| m.size).sum(),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        // Continuation parts are folded into their object. Parts of an object sort
        // after names that share its stem, so the whole listing is gathered first.
        stream::once(async move {
            let all: Vec<ObjectMeta> = self.inner.list(prefix).try_collect().await?;
            let mut objects: BTreeMap<String, u64> = BTreeMap::new();
            let mut extra: Vec<(String, String, u64)> = Vec::new();
            for m in all {
                match parse_part_name(&m.name) {
                    Some((base, _)) => extra.push((m.name.clone(), base.to_string(), m.size)),
                    None => {
                        objects.insert(m.name, m.size);
                    }
                }
            }
            for (name, base, size) in extra {
                match objects.get_mut(&base) {
                    Some(total) => *total += size,
                    // The head is outside this listing's prefix (or gone): show the
                    // part as itself rather than hide bytes that exist.
                    None => {
                        objects.insert(name, size);
                    }
                }
            }
            Ok::<_, crate::StorageError>(
                objects
                    .into_iter()
                    .map(|(name, size)| Ok(ObjectMeta { name, size })),
            )
        })
        .map_ok(stream::iter)
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, name: &str) -> Result<()> {
        match self.inner.stat(name).await {
            Ok(m) if m.size >= self.max_obj_size => self.delete_parts_from(name, 1).await?,
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                // Orphan parts from an interrupted delete are still cleaned up.
                self.delete_parts_from(name, 1).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.inner.delete(name).await
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let parts = self.parts("copy", from).await?;
        let count = parts.len() as u64;
        for i in 0..count {
            self.inner
                .copy(&part_name(from, i), &part_name(to, i))
                .await?;
        }
        self.delete_parts_from(to, count).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names() {
        assert_eq!(part_name("a/b.s2", 0), "a/b.s2");
        assert_eq!(part_name("a/b.s2", 3), "a/b.s2.pbmpart.3");
        assert_eq!(parse_part_name("a/b.s2.pbmpart.3"), Some(("a/b.s2", 3)));
        assert_eq!(parse_part_name("a/b.s2.pbmpart.0"), None);
        assert_eq!(parse_part_name("a/b.s2.pbmpart.x"), None);
        assert_eq!(parse_part_name("a/b.s2"), None);
    }
}
