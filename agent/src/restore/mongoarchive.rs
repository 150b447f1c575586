//! A streaming reader of mongodump's archive format (mongo-tools `common/archive`), the
//! per-replica-set dump of PBM 1.x logical backups (`<name>_<rs>.dump.<ext>`):
//!
//! ```text
//! magic 6d e2 99 81 | header doc | collection metadata docs … | FF FF FF FF
//! then blocks: namespace header {db, collection, EOF, CRC} | body docs … | FF FF FF FF
//! ```
//! A namespace's blocks interleave with others'; its last block is a header with
//! `EOF: true` and the CRC-64/ECMA of all its body documents (the same checksum PBM 2.x
//! records in `meta.pbm`). Documents are yielded as the raw bytes read.

use bson::{Document, RawDocumentBuf};
use rbm_protocol::meta::archive::CollectionCrc;
use rbm_storage::bson_stream::MAX_DOC_SIZE;
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt};

/// mongodump's archive magic (`0x8199e26d`, little-endian on disk).
pub const MAGIC: [u8; 4] = [0x6d, 0xe2, 0x99, 0x81];
const TERMINATOR: i32 = -1;

/// Why an archive cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a mongodump archive (magic {0:02x?})")]
    Magic([u8; 4]),
    #[error("at byte {offset}: {why}")]
    Format { offset: u64, why: String },
    #[error("namespace {ns}: CRC-64 {got} differs from the archive's {want}")]
    Crc { ns: String, got: u64, want: u64 },
}

/// One entry of the archive prelude (mongo-tools' `CollectionMetadata`).
#[derive(Debug, Clone)]
pub struct CollectionMetadata {
    pub db: String,
    pub collection: String,
    /// Extended JSON: `{options, indexes, uuid, collectionName, type}`.
    pub metadata: String,
    pub size: i64,
    pub kind: String,
}

/// What [`ArchiveReader::next`] yields.
#[derive(Debug)]
pub enum ArchiveItem {
    /// A document of namespace `db.coll`.
    Doc { ns: String, doc: RawDocumentBuf },
    /// The namespace ended; its documents' CRC matched the archive's.
    End { ns: String, docs: u64, bytes: u64 },
}

/// Streams an archive: the prelude on [`open`](Self::open), then documents.
pub struct ArchiveReader<R> {
    inner: R,
    offset: u64,
    pub header: Document,
    pub collections: Vec<CollectionMetadata>,
    current: Option<String>,
    sums: HashMap<String, (CollectionCrc, u64, u64)>,
}

impl<R: AsyncRead + Unpin> ArchiveReader<R> {
    /// Reads the magic, the header and the collection metadata.
    ///
    /// # Errors
    /// Not an archive, or a malformed prelude.
    pub async fn open(mut inner: R) -> Result<Self, ArchiveError> {
        let mut magic = [0u8; 4];
        inner.read_exact(&mut magic).await?;
        if magic != MAGIC {
            return Err(ArchiveError::Magic(magic));
        }
        let mut me = Self {
            inner,
            offset: 4,
            header: Document::new(),
            collections: Vec::new(),
            current: None,
            sums: HashMap::new(),
        };
        let Some(h) = me.read_doc_or_terminator(false).await? else {
            return Err(me.bad("the header is missing"));
        };
        me.header = Document::try_from(h.as_ref()).map_err(|e| me.bad(&format!("header: {e}")))?;
        while let Some(d) = me.read_doc_or_terminator(false).await? {
            let d = Document::try_from(d.as_ref())
                .map_err(|e| me.bad(&format!("collection metadata: {e}")))?;
            let s = |k: &str| d.get_str(k).unwrap_or("").to_string();
            let size = match d.get("size") {
                Some(bson::Bson::Int32(v)) => i64::from(*v),
                Some(bson::Bson::Int64(v)) => *v,
                _ => 0,
            };
            me.collections.push(CollectionMetadata {
                db: s("db"),
                collection: s("collection"),
                metadata: s("metadata"),
                size,
                kind: s("type"),
            });
        }
        Ok(me)
    }

    fn bad(&self, why: &str) -> ArchiveError {
        ArchiveError::Format {
            offset: self.offset,
            why: why.to_string(),
        }
    }

    /// A document, or `None` for a terminator; `eof_ok` allows a clean end instead.
    async fn read_doc_or_terminator(
        &mut self,
        eof_ok: bool,
    ) -> Result<Option<RawDocumentBuf>, ArchiveError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.inner.read(&mut len[got..]).await?;
            if n == 0 {
                if got == 0 && eof_ok {
                    return Err(ArchiveError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                return Err(self.bad("the archive ends inside a length"));
            }
            got += n;
        }
        let n = i32::from_le_bytes(len);
        if n == TERMINATOR {
            self.offset += 4;
            return Ok(None);
        }
        let Ok(size) = usize::try_from(n) else {
            return Err(self.bad(&format!("{n} is neither a BSON length nor a terminator")));
        };
        if !(5..=MAX_DOC_SIZE).contains(&size) {
            return Err(self.bad(&format!("{n} is neither a BSON length nor a terminator")));
        }
        let mut buf = vec![0u8; size];
        buf[..4].copy_from_slice(&len);
        self.inner
            .read_exact(&mut buf[4..])
            .await
            .map_err(|_| self.bad("the archive ends inside a document"))?;
        self.offset += size as u64;
        RawDocumentBuf::from_bytes(buf)
            .map(Some)
            .map_err(|e| self.bad(&e.to_string()))
    }

    /// The next document or namespace end; `None` at the end of the archive.
    ///
    /// # Errors
    /// Malformed blocks, or a namespace whose CRC-64 differs from the archive's.
    pub async fn next(&mut self) -> Result<Option<ArchiveItem>, ArchiveError> {
        loop {
            if let Some(ns) = self.current.clone() {
                match self.read_doc_or_terminator(false).await? {
                    Some(doc) => {
                        let e = self
                            .sums
                            .entry(ns.clone())
                            .or_insert_with(|| (CollectionCrc::new(), 0, 0));
                        e.0.update(doc.as_bytes());
                        e.1 += 1;
                        e.2 += doc.as_bytes().len() as u64;
                        return Ok(Some(ArchiveItem::Doc { ns, doc }));
                    }
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            }
            let h = match self.read_doc_or_terminator(true).await {
                Ok(Some(h)) => h,
                Ok(None) => return Err(self.bad("consecutive terminators")),
                Err(ArchiveError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            let db = h
                .get_str("db")
                .map_err(|_| self.bad("block header without db"))?;
            let coll = h
                .get_str("collection")
                .map_err(|_| self.bad("block header without collection"))?;
            let ns = format!("{db}.{coll}");
            if h.get_bool("EOF").unwrap_or(false) {
                let want = h.get_i64("CRC").unwrap_or(0) as u64;
                let (crc, docs, bytes) = self
                    .sums
                    .remove(&ns)
                    .unwrap_or_else(|| (CollectionCrc::new(), 0, 0));
                let got = crc.finish() as u64;
                // mongodump writes CRC 0 when it did not compute one.
                if want != 0 && got != want {
                    return Err(ArchiveError::Crc { ns, got, want });
                }
                // The EOF header is followed by a terminator.
                if self.read_doc_or_terminator(false).await?.is_some() {
                    return Err(self.bad("an EOF block has a body"));
                }
                return Ok(Some(ArchiveItem::End { ns, docs, bytes }));
            }
            self.current = Some(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_bytes(d: &Document) -> Vec<u8> {
        bson::serialize_to_vec(d).expect("bson")
    }

    fn archive(crc_ok: bool) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend(doc_bytes(&bson::doc! {"version": "0.1"}));
        v.extend(doc_bytes(
            &bson::doc! {"db": "a", "collection": "b", "metadata": "{}", "size": 0, "type": "collection"},
        ));
        v.extend((-1i32).to_le_bytes());
        let d1 = doc_bytes(&bson::doc! {"_id": 1});
        let d2 = doc_bytes(&bson::doc! {"_id": 2});
        let mut crc = CollectionCrc::new();
        crc.update(&d1);
        crc.update(&d2);
        let sum = crc.finish();
        for d in [&d1, &d2] {
            v.extend(doc_bytes(
                &bson::doc! {"db": "a", "collection": "b", "EOF": false, "CRC": 0_i64},
            ));
            v.extend(d.iter());
            v.extend((-1i32).to_le_bytes());
        }
        let want = if crc_ok { sum } else { sum ^ 1 };
        v.extend(doc_bytes(
            &bson::doc! {"db": "a", "collection": "b", "EOF": true, "CRC": want},
        ));
        v.extend((-1i32).to_le_bytes());
        v
    }

    #[tokio::test]
    async fn reads_blocks_and_checks_crc() {
        let bytes = archive(true);
        let mut r = ArchiveReader::open(&bytes[..]).await.expect("open");
        assert_eq!(r.collections.len(), 1);
        let mut docs = 0;
        let mut ended = false;
        while let Some(it) = r.next().await.expect("next") {
            match it {
                ArchiveItem::Doc { ns, .. } => {
                    assert_eq!(ns, "a.b");
                    docs += 1;
                }
                ArchiveItem::End { docs: n, .. } => {
                    assert_eq!(n, 2);
                    ended = true;
                }
            }
        }
        assert_eq!((docs, ended), (2, true));

        let bytes = archive(false);
        let mut r = ArchiveReader::open(&bytes[..]).await.expect("open");
        let mut err = None;
        loop {
            match r.next().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(ArchiveError::Crc { .. })), "{err:?}");
        assert!(matches!(
            ArchiveReader::open(&b"\0\0\0\0"[..]).await,
            Err(ArchiveError::Magic(_))
        ));
    }

    /// The PBM 1.6 fixture (real MongoDB 5.0, sharded): every replica set's archive
    /// decodes with matching CRCs and holds what the fixture's README lists.
    #[tokio::test]
    async fn reads_the_pbm_legacy_fixture_archives() {
        let root = match std::env::var_os("RBM_FIXTURES") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        };
        let dir = root.join("pbm-legacy/pbm_disttxn_50");
        let dir = dir.display();
        for (rs, want) in [
            ("rs1", vec![("trx.test", 3)]),
            ("rs2", vec![("trx.test", 3), ("trx.test2", 7)]),
            ("cfg", vec![]),
        ] {
            let path = format!("{dir}/2022-02-07T14.05.59Z_{rs}.dump.s2");
            let raw = tokio::fs::File::open(&path).await.expect("open fixture");
            let plain =
                rbm_storage::codec::decompress_reader(Box::new(raw), rbm_storage::Compression::S2);
            let mut r = ArchiveReader::open(plain).await.expect("archive");
            assert_eq!(
                r.header.get_str("server_version").ok(),
                Some("5.0.5-4"),
                "{rs}"
            );
            let mut counts: HashMap<String, u64> = HashMap::new();
            while let Some(it) = r.next().await.expect("next") {
                if let ArchiveItem::End { ns, docs, .. } = it {
                    counts.insert(ns, docs);
                }
            }
            for (ns, n) in want {
                assert_eq!(counts.get(ns), Some(&n), "{rs} {ns}: {counts:?}");
            }
            assert_eq!(
                counts.get("admin.system.users"),
                Some(&2),
                "{rs}: {counts:?}"
            );
            let listed: Vec<String> = r
                .collections
                .iter()
                .map(|c| format!("{}.{}", c.db, c.collection))
                .collect();
            for ns in counts.keys() {
                assert!(
                    listed.contains(ns),
                    "{rs}: {ns} not in the prelude {listed:?}"
                );
            }
        }
    }
}
