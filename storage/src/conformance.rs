//! The storage conformance suite: the promises of [`Storage`] checked against a real
//! backend. Every backend runs every check (see `tests/` at the workspace root, which
//! runs them against the filesystem, s3s-fs, moto and Azurite).
//!
//! Each check works under its own prefix, cleans up after itself, and panics with a
//! message naming the backend, the object and what differed.

use crate::fault::{FaultPlan, Faulty};
use crate::retry::{Retry, RetryPolicy};
use crate::split::Split;
use crate::{list_all, ByteReader, DynStorage, ErrorKind, Storage};
use futures::stream::{self, StreamExt};
use rand::{RngCore, SeedableRng};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// A deterministic pseudo-random byte stream of a given length: large inputs without
/// holding them in memory, and re-creatable for comparison.
pub struct RandomReader {
    rng: rand::rngs::SmallRng,
    remaining: u64,
    chunk: Vec<u8>,
    pos: usize,
}

impl RandomReader {
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            remaining: len,
            chunk: Vec::new(),
            pos: 0,
        }
    }

    /// The whole stream in memory (for small sizes).
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let mut r = Self::new(seed, len as u64);
        let mut off = 0;
        while off < len {
            off += r.fill(&mut v[off..]);
        }
        v
    }

    fn fill(&mut self, out: &mut [u8]) -> usize {
        if self.remaining == 0 {
            return 0;
        }
        if self.pos == self.chunk.len() {
            // Fixed-size chunks keep the stream identical however it is read.
            self.chunk.resize(64 << 10, 0);
            self.rng.fill_bytes(&mut self.chunk);
            self.pos = 0;
        }
        let n = out
            .len()
            .min(self.chunk.len() - self.pos)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        n
    }
}

impl AsyncRead for RandomReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// An input that yields `ok_bytes` bytes and then fails: an upload interrupted midway.
pub struct FailingReader {
    inner: RandomReader,
    left: u64,
}

impl FailingReader {
    pub fn new(ok_bytes: u64) -> Self {
        Self {
            inner: RandomReader::new(99, u64::MAX),
            left: ok_bytes,
        }
    }
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other(
                "source failed (injected by the conformance suite)",
            )));
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut sub = ReadBuf::new(&mut buf.initialize_unfilled()[..max]);
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut sub);
        let n = sub.filled().len();
        buf.advance(n);
        self.left -= n as u64;
        r
    }
}

/// An input that yields bytes slowly forever, until dropped: for cancellation.
struct EndlessReader(RandomReader);

impl AsyncRead for EndlessReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Settings of one conformance run.
#[derive(Debug, Clone)]
pub struct Suite {
    /// A unique prefix for this run (objects are created below it).
    pub prefix: String,
    /// The backend's upload part or block size, for the "part size ± 1" objects.
    pub part_size: u64,
    /// Size of the large random object.
    pub big_size: u64,
    /// Keys to list.
    pub list_keys: usize,
}

impl Suite {
    /// A suite under a fresh random prefix.
    pub fn new(label: &str, part_size: u64) -> Self {
        let tag: u32 = rand::random();
        Self {
            prefix: format!("conformance-{label}-{tag:08x}"),
            part_size,
            big_size: 64 << 20,
            list_keys: 2_500,
        }
    }

    fn name(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }
}

async fn save_bytes(s: &dyn Storage, name: &str, data: Vec<u8>) -> u64 {
    let len = data.len() as u64;
    let r: ByteReader = Box::new(std::io::Cursor::new(data));
    let n = s
        .save(name, r, Some(len), &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{}: save {name}: {e}", s.location()));
    assert_eq!(n, len, "{}: save {name} reported {n} bytes", s.location());
    n
}

async fn read_all(s: &dyn Storage, name: &str) -> Vec<u8> {
    let mut r = s
        .open(name)
        .await
        .unwrap_or_else(|e| panic!("{}: open {name}: {e}", s.location()));
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .await
        .unwrap_or_else(|e| panic!("{}: read {name}: {e}", s.location()));
    v
}

async fn read_range(s: &dyn Storage, name: &str, off: u64, len: u64) -> Vec<u8> {
    let mut r = s
        .open_range(name, off, len)
        .await
        .unwrap_or_else(|e| panic!("{}: open_range {name} {off}+{len}: {e}", s.location()));
    let mut v = Vec::new();
    r.read_to_end(&mut v)
        .await
        .unwrap_or_else(|e| panic!("{}: read range {name}: {e}", s.location()));
    v
}

/// Compares a reader with the [`RandomReader`] stream of `seed`, chunk by chunk.
///
/// # Panics
/// On the first differing byte, or a length mismatch.
pub async fn assert_matches_random(mut r: ByteReader, seed: u64, len: u64, what: &str) {
    let mut expected = RandomReader::new(seed, len);
    let mut got = vec![0u8; 1 << 20];
    let mut want = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = r
            .read(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{what}: read at {offset}: {e}"));
        if n == 0 {
            break;
        }
        let mut filled = 0;
        while filled < n {
            let m = expected.fill(&mut want[filled..n]);
            assert!(m > 0, "{what}: more data than the {len} bytes written");
            filled += m;
        }
        if got[..n] != want[..n] {
            let i = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b);
            panic!(
                "{what}: content differs at byte {}",
                offset + i.unwrap_or(0) as u64
            );
        }
        offset += n as u64;
    }
    assert_eq!(offset, len, "{what}: read {offset} bytes, wrote {len}");
}

/// Compares bytes without printing megabytes of them on failure.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            at.or(Some(got.len().min(want.len())))
        );
    }
}

async fn cleanup(s: &dyn Storage, prefix: &str) {
    let objs = list_all(s, prefix).await.unwrap_or_default();
    stream::iter(objs)
        .for_each_concurrent(16, |m| async move {
            let _ = s.delete(&m.name).await;
        })
        .await;
}

/// Objects of 0 B, 1 B, part size − 1, part size, part size + 1 and `big_size`
/// random bytes: stored, stat'ed, read whole and by ranges.
pub async fn sizes_and_ranges(s: DynStorage, suite: &Suite) {
    let p = suite.part_size;
    for (i, size) in [0, 1, p - 1, p, p + 1, 2 * p + 3].into_iter().enumerate() {
        let name = suite.name(&format!("size-{size}"));
        let data = RandomReader::bytes(i as u64, size as usize);
        save_bytes(&*s, &name, data.clone()).await;
        let st = s
            .stat(&name)
            .await
            .unwrap_or_else(|e| panic!("stat {name}: {e}"));
        assert_eq!(st.size, size, "{}: stat {name}", s.location());
        assert_bytes(
            &read_all(&*s, &name).await,
            &data,
            &format!("{}: content of {name}", s.location()),
        );
        if size > 2 {
            let mid = size / 2;
            assert_bytes(
                &read_range(&*s, &name, 0, 1).await,
                &data[..1],
                &format!("first byte of {name}"),
            );
            assert_bytes(
                &read_range(&*s, &name, mid - 1, 2).await,
                &data[(mid - 1) as usize..(mid + 1) as usize],
                &format!("middle of {name}"),
            );
            assert_bytes(
                &read_range(&*s, &name, size - 1, 10).await,
                &data[(size - 1) as usize..],
                &format!("range past the end of {name} is cut at the end"),
            );
        }
        assert!(
            read_range(&*s, &name, 0, 0).await.is_empty(),
            "zero-length range of {name}"
        );
    }
    // The same sizes through save_sized (a streamed single PUT on S3 above one part).
    for (i, size) in [0, p, p + 1, 2 * p + 3].into_iter().enumerate() {
        let name = suite.name(&format!("sized-{size}"));
        let data = RandomReader::bytes(100 + i as u64, size as usize);
        let r: ByteReader = Box::new(std::io::Cursor::new(data.clone()));
        let n = s
            .save_sized(&name, r, size, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{}: save_sized {name}: {e}", s.location()));
        assert_eq!(n, size, "{}: save_sized {name}", s.location());
        assert_bytes(
            &read_all(&*s, &name).await,
            &data,
            &format!("{}: content of {name}", s.location()),
        );
    }
    let big = suite.name("big");
    let r: ByteReader = Box::new(RandomReader::new(7, suite.big_size));
    // The big object goes through save_sized, the smaller ones above through save.
    let n = s
        .save_sized(&big, r, suite.big_size, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("save {big}: {e}"));
    assert_eq!(n, suite.big_size);
    assert_eq!(
        s.stat(&big).await.map(|m| m.size).ok(),
        Some(suite.big_size)
    );
    let reader = s
        .open(&big)
        .await
        .unwrap_or_else(|e| panic!("open {big}: {e}"));
    assert_matches_random(
        reader,
        7,
        suite.big_size,
        &format!("{}: {big}", s.location()),
    )
    .await;
    // A range spanning a part boundary, well inside the object.
    let off = suite.part_size - 100;
    let got = read_range(&*s, &big, off, 1000).await;
    let all = RandomReader::bytes(7, (off + 1000) as usize);
    assert_bytes(
        &got,
        &all[off as usize..],
        &format!("range across a part boundary of {big}"),
    );
    cleanup(&*s, &suite.prefix).await;
}

/// Lists `list_keys` objects under a prefix (several pages on every backend), a
/// sub-prefix, and an empty prefix.
pub async fn listing(s: DynStorage, suite: &Suite) {
    let dir = suite.name("list");
    let names: Vec<String> = (0..suite.list_keys)
        .map(|i| format!("{dir}/k{:05}", i))
        .collect();
    stream::iter(names.clone())
        .map(|n| {
            let s = s.clone();
            async move {
                let data = n.clone().into_bytes();
                save_bytes(&*s, &n, data).await
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    // A sibling whose name shares the prefix string but not the "directory".
    save_bytes(&*s, &format!("{dir}-sibling"), b"x".to_vec()).await;

    let listed = list_all(&*s, &format!("{dir}/")).await.expect("list");
    let got: Vec<&str> = listed.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(got.len(), names.len(), "{}: listed count", s.location());
    assert_eq!(
        got,
        names.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "listing order and names"
    );
    assert!(
        listed
            .iter()
            .zip(&names)
            .all(|(m, n)| m.size == n.len() as u64),
        "listed sizes"
    );
    let sub = list_all(&*s, &format!("{dir}/k001"))
        .await
        .expect("list sub-prefix");
    assert_eq!(sub.len(), 100, "sub-prefix k001 lists k00100..k00199");
    let with_sibling = list_all(&*s, &dir).await.expect("list stem");
    assert_eq!(
        with_sibling.len(),
        names.len() + 1,
        "a bare stem also matches the sibling"
    );
    let none = list_all(&*s, &suite.name("nothing-here/"))
        .await
        .expect("list empty");
    assert!(none.is_empty(), "empty prefix lists nothing");
    cleanup(&*s, &suite.prefix).await;
    let left = list_all(&*s, &suite.prefix)
        .await
        .expect("list after delete");
    assert!(
        left.is_empty(),
        "{}: {} objects left after deleting",
        s.location(),
        left.len()
    );
}

/// Overwrite, delete of a missing object, and errors for missing objects.
pub async fn overwrite_delete_missing(s: DynStorage, suite: &Suite) {
    let name = suite.name("over");
    save_bytes(&*s, &name, vec![1u8; 5000]).await;
    save_bytes(&*s, &name, vec![2u8; 300]).await;
    assert_eq!(
        read_all(&*s, &name).await,
        vec![2u8; 300],
        "overwrite replaces the object"
    );
    s.delete(&name).await.expect("delete");
    s.delete(&name)
        .await
        .expect("delete of a missing object succeeds");
    let missing = suite.name("never-written");
    let e = s
        .stat(&missing)
        .await
        .expect_err("stat of a missing object fails");
    assert_eq!(e.kind, ErrorKind::NotFound, "stat missing: {e}");
    let e = s
        .open(&missing)
        .await
        .err()
        .expect("open of a missing object fails");
    assert_eq!(e.kind, ErrorKind::NotFound, "open missing: {e}");
    let e = s.open_range(&missing, 0, 10).await.err();
    assert_eq!(
        e.map(|e| e.kind),
        Some(ErrorKind::NotFound),
        "open_range missing"
    );
    let copy_to = suite.name("copy-dst");
    save_bytes(&*s, &name, b"copy me".to_vec()).await;
    s.copy(&name, &copy_to).await.expect("copy");
    assert_bytes(&read_all(&*s, &copy_to).await, b"copy me", "copied content");
    cleanup(&*s, &suite.prefix).await;
}

/// Objects above the size limit are stored as `.pbmpart.N` parts and read as one.
pub async fn split_parts(s: DynStorage, suite: &Suite) {
    let max = 256 << 10;
    let split: DynStorage = Arc::new(Split::new(s.clone(), max));
    let name = suite.name("split.s2");
    let size = 3 * max + 1234;
    let data = RandomReader::bytes(11, size as usize);
    save_bytes(&*split, &name, data.clone()).await;
    // Checked by name: `s` itself may fold parts in listings (backends built by
    // `from_config` are wrapped in a `Split` with their own, larger limit).
    for i in 0..4u64 {
        let part = crate::split::part_name(&name, i);
        let want = if i < 3 { max } else { 1234 };
        let got = s.stat(&part).await.map(|m| m.size);
        assert_eq!(got.ok(), Some(want), "part {part} as PBM names it");
    }
    assert!(
        s.stat(&format!("{name}.pbmpart.4")).await.is_err(),
        "no part 4"
    );
    assert_bytes(
        &read_all(&*split, &name).await,
        &data,
        "parts read back as one object",
    );
    assert_eq!(
        split.stat(&name).await.map(|m| m.size).ok(),
        Some(size),
        "stat sums parts"
    );
    let off = max - 10;
    assert_bytes(
        &read_range(&*split, &name, off, max + 20).await,
        &data[off as usize..(off + max + 20) as usize],
        "range across two part boundaries",
    );
    let listed = list_all(&*split, &suite.prefix).await.expect("list");
    assert_eq!(listed.len(), 1, "parts are folded into one listed object");
    assert_eq!(listed[0].size, size, "listed size sums parts");
    // Exactly one full part: no empty trailing part.
    let exact = suite.name("exact");
    save_bytes(&*split, &exact, vec![5u8; max as usize]).await;
    assert!(
        s.stat(&format!("{exact}.pbmpart.1")).await.is_err(),
        "no empty trailing part"
    );
    // Overwriting with a smaller object removes the stale parts.
    save_bytes(&*split, &name, vec![9u8; 100]).await;
    assert_eq!(read_all(&*split, &name).await, vec![9u8; 100]);
    for i in 1..4u64 {
        let part = crate::split::part_name(&name, i);
        assert!(
            s.stat(&part).await.is_err(),
            "stale part {part} removed on overwrite"
        );
    }
    save_bytes(&*split, &name, data).await;
    split.delete(&name).await.expect("delete split object");
    for i in 0..4u64 {
        let part = crate::split::part_name(&name, i);
        assert!(s.stat(&part).await.is_err(), "delete removes part {part}");
    }
    cleanup(&*s, &suite.prefix).await;
}

/// Several writers at once: distinct objects all land intact; writers racing on one
/// name leave one of the complete objects, never a mix.
pub async fn concurrent_writers(s: DynStorage, suite: &Suite) {
    let size = suite.part_size + suite.part_size / 2;
    let tasks = (0..6u64).map(|i| {
        let s = s.clone();
        let name = suite.name(&format!("conc-{i}"));
        async move {
            let r: ByteReader = Box::new(RandomReader::new(100 + i, size));
            s.save(&name, r, Some(size), &CancellationToken::new())
                .await
                .unwrap_or_else(|e| panic!("save {name}: {e}"));
            (i, name)
        }
    });
    let done = futures::future::join_all(tasks).await;
    for (i, name) in done {
        let r = s
            .open(&name)
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        assert_matches_random(r, 100 + i, size, &name).await;
    }
    // Writers racing on one name: on Azure the first block-list commit discards the
    // others' staged blocks, so a loser may fail; what must never happen is a mix, or
    // a failure of every writer.
    let same = suite.name("same-name");
    let racers = (0..4u64).map(|i| {
        let s = s.clone();
        let same = same.clone();
        async move {
            let r: ByteReader = Box::new(RandomReader::new(200 + i, size));
            let res = s
                .save(&same, r, Some(size), &CancellationToken::new())
                .await;
            (i, res)
        }
    });
    let results = futures::future::join_all(racers).await;
    let winners: Vec<u64> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect();
    assert!(
        !winners.is_empty(),
        "{}: every racing writer failed: {results:?}",
        s.location()
    );
    let got = read_all(&*s, &same).await;
    let matches = winners
        .iter()
        .filter(|i| got == RandomReader::bytes(200 + **i, size as usize))
        .count();
    assert_eq!(
        matches,
        1,
        "{}: racing writers left a mixed object",
        s.location()
    );
    cleanup(&*s, &suite.prefix).await;
}

/// An upload whose input fails, or that is cancelled, leaves nothing under its name.
pub async fn interrupted_upload(s: DynStorage, suite: &Suite) {
    let name = suite.name("interrupted");
    // Fails after two and a half parts: multipart uploads are under way by then.
    let r: ByteReader = Box::new(FailingReader::new(suite.part_size * 5 / 2));
    let e = s
        .save(&name, r, None, &CancellationToken::new())
        .await
        .expect_err("a failing input fails the save");
    assert_ne!(e.kind, ErrorKind::NotFound, "unexpected kind: {e}");
    assert_not_present(&*s, &name, &suite.prefix, "after a failed input").await;

    // An earlier complete object under the same name survives a failed overwrite.
    save_bytes(&*s, &name, b"old".to_vec()).await;
    let r: ByteReader = Box::new(FailingReader::new(suite.part_size * 2 + 7));
    let _ = s
        .save(&name, r, None, &CancellationToken::new())
        .await
        .expect_err("a failing input fails the save");
    assert_bytes(
        &read_all(&*s, &name).await,
        b"old",
        "failed overwrite kept the old object",
    );
    s.delete(&name).await.expect("delete");

    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let r: ByteReader = Box::new(EndlessReader(RandomReader::new(5, u64::MAX)));
    let res = tokio::time::timeout(Duration::from_secs(60), s.save(&name, r, None, &cancel))
        .await
        .expect("a cancelled save returns promptly");
    let e = res.expect_err("a cancelled save fails");
    assert_eq!(e.kind, ErrorKind::Cancelled, "cancelled save: {e}");
    assert_not_present(&*s, &name, &suite.prefix, "after cancellation").await;
    cleanup(&*s, &suite.prefix).await;
}

async fn assert_not_present(s: &dyn Storage, name: &str, prefix: &str, when: &str) {
    let st = s.stat(name).await;
    assert!(
        matches!(&st, Err(e) if e.kind == ErrorKind::NotFound),
        "{}: {name} exists {when}: {st:?}",
        s.location()
    );
    let listed = list_all(s, prefix).await.expect("list");
    assert!(
        listed.iter().all(|m| m.name != name),
        "{}: {name} listed {when}",
        s.location()
    );
}

/// Transient failures injected below the retry wrapper are absorbed; persistent
/// ones surface as transient errors once retries run out.
pub async fn retries(s: DynStorage, suite: &Suite) {
    let policy = RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
    };
    let faulty = Arc::new(Faulty::new(s.clone(), FaultPlan::FailFirst(2)));
    let st: DynStorage = Arc::new(Retry::new(faulty.clone(), policy.clone()));
    let name = suite.name("retried");
    let data = RandomReader::bytes(3, (suite.part_size + 10) as usize);
    save_bytes(&*st, &name, data.clone()).await;
    assert_bytes(
        &read_all(&*st, &name).await,
        &data,
        "content through retries",
    );
    assert_eq!(
        st.stat(&name).await.map(|m| m.size).ok(),
        Some(data.len() as u64)
    );
    assert_bytes(
        &read_range(&*st, &name, 5, 5).await,
        &data[5..10],
        "range through retries",
    );
    assert_eq!(
        list_all(&*st, &suite.prefix).await.map(|v| v.len()).ok(),
        Some(1)
    );
    st.copy(&name, &suite.name("retried-copy"))
        .await
        .expect("copy through retries");
    st.delete(&name).await.expect("delete through retries");
    let sized = suite.name("retried-sized");
    let n = st
        .save_sized(
            &sized,
            Box::new(std::io::Cursor::new(data.clone())),
            data.len() as u64,
            &CancellationToken::new(),
        )
        .await
        .expect("save_sized through retries");
    assert_eq!(n, data.len() as u64);
    assert_bytes(
        &read_all(&*st, &sized).await,
        &data,
        "sized save through retries",
    );
    assert!(
        faulty.injected() >= 16,
        "faults were injected: {}",
        faulty.injected()
    );

    let hopeless = Arc::new(Faulty::new(s.clone(), FaultPlan::FailFirst(10)));
    let st: DynStorage = Arc::new(Retry::new(hopeless, policy));
    let e = st.stat(&name).await.expect_err("retries run out");
    assert_eq!(e.kind, ErrorKind::Transient, "{e}");
    // The wrapper hands a sized save to the backend's own save_sized (S3 streams
    // it in one PUT), not to its plain save.
    let e = st
        .save_sized(
            &name,
            Box::new(std::io::Cursor::new(vec![1u8; 10])),
            10,
            &CancellationToken::new(),
        )
        .await
        .expect_err("retries run out");
    assert!(e.to_string().contains("save_sized"), "{e}");

    let ratio = Arc::new(Faulty::new(
        s.clone(),
        FaultPlan::FailRatio {
            ratio: 0.3,
            seed: 42,
        },
    ));
    let patient = RetryPolicy {
        max_retries: 12,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    let st: DynStorage = Arc::new(Retry::new(ratio.clone(), patient));
    for i in 0..20 {
        let n = suite.name(&format!("ratio-{i}"));
        save_bytes(&*st, &n, vec![i as u8; 100]).await;
        assert_eq!(read_all(&*st, &n).await, vec![i as u8; 100]);
    }
    assert!(ratio.injected() > 0, "the ratio plan injected faults");
    cleanup(&*s, &suite.prefix).await;
}

/// Runs every check above in turn (each under its own sub-prefix).
pub async fn run_all(s: DynStorage, suite: &Suite) {
    let sub = |n: &str| Suite {
        prefix: format!("{}/{n}", suite.prefix),
        ..suite.clone()
    };
    sizes_and_ranges(s.clone(), &sub("sizes")).await;
    listing(s.clone(), &sub("listing")).await;
    overwrite_delete_missing(s.clone(), &sub("overwrite")).await;
    split_parts(s.clone(), &sub("split")).await;
    concurrent_writers(s.clone(), &sub("concurrent")).await;
    interrupted_upload(s.clone(), &sub("interrupted")).await;
    retries(s.clone(), &sub("retries")).await;
}

/// Peak-memory readers for the bounded-memory check (see [`crate::procstat`]).
pub use crate::procstat as memory;
