//! Small I/O helpers shared by the backends.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
}
