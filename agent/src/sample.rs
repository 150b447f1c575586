//! Synthetic BSON documents for speed tests and the demo: shaped like the documents of
//! `pbm-peer-gendata.py` (orders with strings, numbers, dates, nested arrays), seeded so
//! that every run sees the same bytes.

use bson::{doc, DateTime, Document};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "espresso", "latte", "mocha",
];
const STATUSES: &[&str] = &["new", "paid", "shipped", "closed"];
const CITIES: &[&str] = &[
    "Lisbon", "Porto", "Berlin", "Austin", "Osaka", "Nairobi", "Lima",
];

/// A small deterministic generator (xorshift64*); sample data needs no better.
#[derive(Debug, Clone)]
pub struct SampleRng(u64);

impl SampleRng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }

    fn sentence(&mut self, words: u64) -> String {
        (0..words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Document number `i` of the sample set.
pub fn sample_doc(rng: &mut SampleRng, i: u64) -> Document {
    let items: Vec<Document> = (0..1 + rng.below(5))
        .map(|_| {
            doc! {
                "sku": format!("SKU-{:06}", rng.below(100_000)),
                "qty": (1 + rng.below(9)) as i32,
                "price": (rng.below(100_000) as f64) / 100.0,
            }
        })
        .collect();
    let words = 20 + rng.below(60);
    let note = rng.sentence(words);
    doc! {
        "_id": i as i64,
        "customer": {
            "name": format!("{} {}", rng.word(), rng.word()),
            "email": format!("{}.{}@example.com", rng.word(), i),
            "city": CITIES[rng.below(CITIES.len() as u64) as usize],
        },
        "status": STATUSES[rng.below(4) as usize],
        "placed": DateTime::from_millis(1_700_000_000_000 + (rng.below(86_400_000 * 365)) as i64),
        "items": items,
        "total": (rng.below(1_000_000) as f64) / 100.0,
        "tags": (0..rng.below(4)).map(|_| rng.word()).collect::<Vec<_>>(),
        "note": note,
    }
}

/// Bytes of distinct documents generated before the stream starts repeating them:
/// building BSON documents costs more than compressing them, so a speed test that
/// generated every document would measure the generator (PBM's speed test likewise
/// cycles a fixed data set).
const POOL_BYTES: usize = 16 << 20;

/// A stream of concatenated raw BSON sample documents, about `limit` bytes long and
/// always ending on a document boundary: what a logical dump of a collection looks
/// like on the wire.
pub struct SampleStream {
    pool: std::sync::Arc<Vec<u8>>,
    /// End offset of every document in `pool`.
    ends: std::sync::Arc<Vec<usize>>,
    limit: u64,
    produced: u64,
    pos: usize,
    /// Where the current pass over the pool stops (a document end).
    stop: usize,
}

impl SampleStream {
    /// About `limit` bytes (whole documents, so it may end slightly past `limit`).
    pub fn new(seed: u64, limit: u64) -> Self {
        let mut rng = SampleRng::new(seed);
        let mut pool = Vec::with_capacity(POOL_BYTES + 4096);
        let mut ends = Vec::new();
        let mut id = 0u64;
        while pool.len() < POOL_BYTES && (pool.len() as u64) < limit {
            // Serialising a Document into a Vec cannot fail.
            if sample_doc(&mut rng, id).to_writer(&mut pool).is_err() {
                break;
            }
            ends.push(pool.len());
            id += 1;
        }
        let mut s = Self {
            pool: std::sync::Arc::new(pool),
            ends: std::sync::Arc::new(ends),
            limit,
            produced: 0,
            pos: 0,
            stop: 0,
        };
        s.stop = s.pass_stop();
        s
    }

    /// The end of this pass: the whole pool, or the first document end at or past
    /// the limit if the limit falls inside this pass.
    fn pass_stop(&self) -> usize {
        let left = self.limit.saturating_sub(self.produced);
        if left >= self.pool.len() as u64 {
            return self.pool.len();
        }
        let i = self.ends.partition_point(|&e| (e as u64) < left);
        self.ends.get(i).copied().unwrap_or(self.pool.len())
    }
}

impl AsyncRead for SampleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos == self.stop {
            if self.produced >= self.limit || self.pool.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.pos = 0;
            self.stop = self.pass_stop();
        }
        let n = out.remaining().min(self.stop - self.pos);
        let start = self.pos;
        out.put_slice(&self.pool[start..start + n]);
        self.pos += n;
        self.produced += n as u64;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn stream_is_valid_bson_and_deterministic() {
        let mut a = Vec::new();
        SampleStream::new(3, 100_000)
            .read_to_end(&mut a)
            .await
            .expect("read");
        let mut b = Vec::new();
        SampleStream::new(3, 100_000)
            .read_to_end(&mut b)
            .await
            .expect("read");
        assert_eq!(a, b);
        assert!(a.len() >= 100_000);
        let mut off = 0;
        let mut docs = 0;
        while off < a.len() {
            let len = i32::from_le_bytes([a[off], a[off + 1], a[off + 2], a[off + 3]]) as usize;
            bson::RawDocument::from_bytes(&a[off..off + len]).expect("valid BSON");
            off += len;
            docs += 1;
        }
        assert_eq!(off, a.len());
        assert!(docs > 100);
        // Past the pool the documents repeat, still whole.
        let mut c = Vec::new();
        SampleStream::new(3, (POOL_BYTES as u64) * 2 + 1)
            .read_to_end(&mut c)
            .await
            .expect("read");
        let mut off = 0;
        while off < c.len() {
            let len = i32::from_le_bytes([c[off], c[off + 1], c[off + 2], c[off + 3]]) as usize;
            bson::RawDocument::from_bytes(&c[off..off + len]).expect("valid BSON");
            off += len;
        }
        assert_eq!(off, c.len());
        assert!(c.len() as u64 > (POOL_BYTES as u64) * 2);
    }
}
