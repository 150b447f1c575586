//! Small I/O helpers shared by the backends.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Reads until `want` bytes are gathered or the input ends; returns the bytes read
/// (shorter than `want` only at end of input). This is how backends cut a stream into
/// upload parts without ever holding more than one part per call.
///
/// # Errors
/// The input's I/O error.
pub async fn read_part<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    want: usize,
) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(want);
    while buf.len() < want {
        // read_buf appends into spare capacity without zero-filling it first.
        let n = reader.read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

pin_project_lite::pin_project! {
    /// Counts the bytes that pass through a reader (shared counter, so the count can be
    /// read after the reader was moved into a backend).
    pub struct CountingReader<R> {
        #[pin]
        inner: R,
        count: Arc<AtomicU64>,
    }
}

impl<R> CountingReader<R> {
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: AsyncRead> AsyncRead for CountingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.count
                .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        }
        r
    }
}

/// A view of at most `limit` bytes of a reader shared behind a mutex, so that one
/// input stream can be handed out piece by piece to calls that take ownership of a
/// reader (the split into `.pbmpart.N` objects, a retried `save`).
pub struct SharedReader {
    pub inner: Arc<Mutex<crate::ByteReader>>,
    pub limit: u64,
}

impl SharedReader {
    pub fn new(inner: Arc<Mutex<crate::ByteReader>>, limit: u64) -> Self {
        Self { inner, limit }
    }
}

/// Puts `bytes` back in front of a shared reader (after a peek).
pub fn unread(shared: &Mutex<crate::ByteReader>, bytes: &[u8]) {
    let mut guard = match shared.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let rest = std::mem::replace(&mut *guard, Box::new(tokio::io::empty()));
    *guard = Box::new(std::io::Cursor::new(bytes.to_vec()).chain(rest));
}

impl AsyncRead for SharedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.limit == 0 || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let max = usize::try_from(self.limit)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        // Read into a bounded view so that a short limit is never exceeded.
        let mut tmp = ReadBuf::new(buf.initialize_unfilled_to(max));
        let r = {
            // Never held across an await: poll_read is synchronous.
            let mut guard = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            Pin::new(&mut **guard).poll_read(cx, &mut tmp)
        };
        let n = tmp.filled().len();
        if let Poll::Ready(Ok(())) = r {
            buf.advance(n);
            self.limit -= n as u64;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_part_fills_or_ends() {
        let data = vec![7u8; 10_000];
        let mut r: &[u8] = &data;
        let a = read_part(&mut r, 4096).await.expect("read");
        let b = read_part(&mut r, 8192).await.expect("read");
        let c = read_part(&mut r, 10).await.expect("read");
        assert_eq!((a.len(), b.len(), c.len()), (4096, 10_000 - 4096, 0));
    }

    #[tokio::test]
    async fn shared_reader_respects_limit() {
        let src: crate::ByteReader =
            Box::new(std::io::Cursor::new((0u8..=255).collect::<Vec<_>>()));
        let shared = Arc::new(Mutex::new(src));
        let mut a = Vec::new();
        SharedReader::new(shared.clone(), 100)
            .read_to_end(&mut a)
            .await
            .expect("read");
        let mut b = Vec::new();
        SharedReader::new(shared, u64::MAX)
            .read_to_end(&mut b)
            .await
            .expect("read");
        assert_eq!(a, (0u8..100).collect::<Vec<_>>());
        assert_eq!(b, (100u8..=255).collect::<Vec<_>>());
    }
}
