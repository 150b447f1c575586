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

/// An endless-until-`limit` stream of concatenated raw BSON sample documents: what a
/// logical dump of a collection looks like on the wire.
pub struct SampleStream {
    rng: SampleRng,
    next_id: u64,
    limit: u64,
    produced: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl SampleStream {
    /// About `limit` bytes (whole documents, so it may end slightly past `limit`).
    pub fn new(seed: u64, limit: u64) -> Self {
        Self {
            rng: SampleRng::new(seed),
            next_id: 0,
            limit,
            produced: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        while self.buf.len() < 256 << 10 && self.produced + (self.buf.len() as u64) < self.limit {
            let d = sample_doc(&mut self.rng, self.next_id);
            self.next_id += 1;
            // Serialising a Document into a Vec cannot fail.
            if d.to_writer(&mut self.buf).is_err() {
                break;
            }
        }
        self.produced += self.buf.len() as u64;
    }
}

impl AsyncRead for SampleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos == self.buf.len() {
            if self.produced >= self.limit {
                return Poll::Ready(Ok(()));
            }
            self.refill();
        }
        let n = out.remaining().min(self.buf.len() - self.pos);
        let start = self.pos;
        out.put_slice(&self.buf[start..start + n]);
        self.pos += n;
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
    }
}
