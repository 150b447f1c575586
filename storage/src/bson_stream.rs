//! Concatenated BSON documents over a byte stream: the format of every collection dump,
//! oplog slice and PITR chunk PBM writes. A reader yields one raw document at a time
//! (no decoding into `Document`: restores must write back exactly the bytes that were
//! dumped), with bounded memory.

use bson::RawDocumentBuf;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest document accepted. MongoDB caps user documents at 16 MiB, but oplog entries
/// and internal documents may exceed it slightly (PBM's reader allows 16 MiB + 16 KiB;
/// mongodump archives use the same bound); anything far beyond is corruption.
pub const MAX_DOC_SIZE: usize = 16 * 1024 * 1024 + 16 * 1024;

/// Why a stream is not a sequence of BSON documents.
#[derive(Debug, thiserror::Error)]
pub enum BsonStreamError {
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "document {index} at byte {offset}: length {len} is out of range (5..={MAX_DOC_SIZE})"
    )]
    BadLength { index: u64, offset: u64, len: i64 },
    #[error("document {index} at byte {offset}: the stream ends {missing} bytes short")]
    Truncated {
        index: u64,
        offset: u64,
        missing: usize,
    },
    #[error("document {index} at byte {offset}: {reason}")]
    Invalid {
        index: u64,
        offset: u64,
        reason: String,
    },
}

/// Reads documents one by one from `R`.
pub struct BsonReader<R> {
    inner: R,
    index: u64,
    offset: u64,
}

impl<R: AsyncRead + Unpin> BsonReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            index: 0,
            offset: 0,
        }
    }

    /// Documents read so far.
    pub fn count(&self) -> u64 {
        self.index
    }

    /// Bytes read so far (the sum of the documents' lengths).
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// The next document, or `None` at a clean end of stream.
    ///
    /// # Errors
    /// I/O errors, a length prefix out of range, a stream ending inside a document, or
    /// a document that does not end with its NUL byte.
    pub async fn next(&mut self) -> Result<Option<RawDocumentBuf>, BsonStreamError> {
        let mut len_buf = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = self.inner.read(&mut len_buf[got..]).await?;
            if n == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(BsonStreamError::Truncated {
                    index: self.index,
                    offset: self.offset,
                    missing: 4 - got,
                });
            }
            got += n;
        }
        let len = i32::from_le_bytes(len_buf);
        let Ok(ulen) = usize::try_from(len) else {
            return Err(self.bad_len(i64::from(len)));
        };
        if !(5..=MAX_DOC_SIZE).contains(&ulen) {
            return Err(self.bad_len(i64::from(len)));
        }
        let mut buf = vec![0u8; ulen];
        buf[..4].copy_from_slice(&len_buf);
        let mut filled = 4;
        while filled < ulen {
            let n = self.inner.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Err(BsonStreamError::Truncated {
                    index: self.index,
                    offset: self.offset,
                    missing: ulen - filled,
                });
            }
            filled += n;
        }
        let doc = RawDocumentBuf::from_bytes(buf).map_err(|e| BsonStreamError::Invalid {
            index: self.index,
            offset: self.offset,
            reason: e.to_string(),
        })?;
        self.index += 1;
        self.offset += ulen as u64;
        Ok(Some(doc))
    }

    fn bad_len(&self, len: i64) -> BsonStreamError {
        BsonStreamError::BadLength {
            index: self.index,
            offset: self.offset,
            len,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[tokio::test]
    async fn reads_concatenated_docs_and_flags_truncation() {
        let a = rawdoc! {"_id": 1, "s": "x"};
        let b = rawdoc! {"_id": 2};
        let mut bytes = a.as_bytes().to_vec();
        bytes.extend_from_slice(b.as_bytes());
        let mut r = BsonReader::new(&bytes[..]);
        assert_eq!(r.next().await.unwrap().unwrap(), a);
        assert_eq!(r.next().await.unwrap().unwrap(), b);
        assert!(r.next().await.unwrap().is_none());
        assert_eq!(r.count(), 2);
        assert_eq!(r.bytes(), bytes.len() as u64);

        let cut = &bytes[..bytes.len() - 2];
        let mut r = BsonReader::new(cut);
        r.next().await.unwrap();
        assert!(matches!(
            r.next().await,
            Err(BsonStreamError::Truncated {
                index: 1,
                missing: 2,
                ..
            })
        ));

        let junk = [0xffu8, 0xff, 0xff, 0x7f, 0];
        assert!(matches!(
            BsonReader::new(&junk[..]).next().await,
            Err(BsonStreamError::BadLength { .. })
        ));
    }
}
