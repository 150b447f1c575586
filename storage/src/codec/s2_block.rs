//! The S2 block decoder (klauspost's `s2Decode`, which also decodes Snappy blocks).
//!
//! Why rbm has its own: minlz 1.2 (used for encoding and kept as the reference in the
//! tests below) copies every literal and match with an exact-length `memmove`, a library
//! call per 5-50 byte element; on BSON that made S2 decoding about half as fast as Go's
//! assembly decoder. This one copies in fixed 16-byte strides while the output and the
//! input have room for the overshoot (bytes written past the element are overwritten by
//! the next ones before anything reads them), and falls back to exact copies near the
//! ends. It accepts and refuses exactly what `s2Decode` does: a match's offset must be
//! non-zero and within the output so far, lengths must fit, and the output must come
//! out at exactly the length the block header announced.
//!
//! Safe Rust: fixed-size array views give the compiler one bounds check per element.

/// The block is not a valid S2/Snappy block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Corrupt;

const TAG_LITERAL: u8 = 0;
const TAG_COPY1: u8 = 1;
const TAG_COPY2: u8 = 2;

/// Room needed after an element's start for the wide copies.
const SLACK: usize = 64;

/// Decodes `src` (a block without its length varint) into all of `dst`, whose length is
/// the block's announced decoded length.
pub(super) fn decode(dst: &mut [u8], src: &[u8]) -> Result<(), Corrupt> {
    let (mut d, mut s) = (0usize, 0usize);
    let mut offset = 0usize;
    while s < src.len() {
        let tag = src[s];
        let length;
        if tag & 3 == TAG_LITERAL {
            let x = usize::from(tag >> 2);
            let (len, head) = match x {
                0..=59 => (x + 1, 1),
                60 => (usize::from(*src.get(s + 1).ok_or(Corrupt)?) + 1, 2),
                61 => (le::<2>(src, s + 1)? + 1, 3),
                62 => (le::<3>(src, s + 1)? + 1, 4),
                _ => (le::<4>(src, s + 1)? + 1, 5),
            };
            s += head;
            if len > dst.len() - d || len > src.len() - s {
                return Err(Corrupt);
            }
            if len <= SLACK && dst.len() - d >= SLACK && src.len() - s >= SLACK {
                let out: &mut [u8; SLACK] =
                    (&mut dst[d..d + SLACK]).try_into().map_err(|_| Corrupt)?;
                let inp: &[u8; SLACK] = src[s..s + SLACK].try_into().map_err(|_| Corrupt)?;
                out[..16].copy_from_slice(&inp[..16]);
                if len > 16 {
                    out[16..32].copy_from_slice(&inp[16..32]);
                    if len > 32 {
                        out[32..].copy_from_slice(&inp[32..]);
                    }
                }
            } else {
                dst[d..d + len].copy_from_slice(&src[s..s + len]);
            }
            d += len;
            s += len;
            continue;
        }
        match tag & 3 {
            TAG_COPY1 => {
                let b1 = usize::from(*src.get(s + 1).ok_or(Corrupt)?);
                s += 2;
                let toffset = (usize::from(tag) & 0xe0) << 3 | b1;
                let mut len = usize::from(tag >> 2 & 7);
                if toffset == 0 {
                    // S2's repeat: the previous offset again.
                    match len {
                        5 => {
                            len = usize::from(*src.get(s).ok_or(Corrupt)?) + 4;
                            s += 1;
                        }
                        6 => {
                            len = le::<2>(src, s)? + (1 << 8);
                            s += 2;
                        }
                        7 => {
                            len = le::<3>(src, s)? + (1 << 16);
                            s += 3;
                        }
                        _ => {}
                    }
                } else {
                    offset = toffset;
                }
                length = len + 4;
            }
            TAG_COPY2 => {
                offset = le::<2>(src, s + 1)?;
                length = 1 + usize::from(tag >> 2);
                s += 3;
            }
            _ => {
                offset = le::<4>(src, s + 1)?;
                length = 1 + usize::from(tag >> 2);
                s += 5;
            }
        }
        if offset == 0 || d < offset || length > dst.len() - d {
            return Err(Corrupt);
        }
        copy_match(dst, d, offset, length);
        d += length;
    }
    if d != dst.len() {
        return Err(Corrupt);
    }
    Ok(())
}

/// `N` (2..=4) little-endian bytes at `at`.
#[inline(always)]
fn le<const N: usize>(src: &[u8], at: usize) -> Result<usize, Corrupt> {
    let b: &[u8; N] = src
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(Corrupt)?;
    let mut v = [0u8; 4];
    v[..N].copy_from_slice(b);
    Ok(u32::from_le_bytes(v) as usize)
}

/// Copies `length` bytes from `offset` back, forwards: where the ranges overlap the
/// pattern repeats (the format's run-length encoding). The caller checked the bounds.
#[inline(always)]
fn copy_match(dst: &mut [u8], d: usize, offset: usize, length: usize) {
    let from = d - offset;
    if offset >= 16 && length <= SLACK && dst.len() - d >= SLACK {
        // Each 16-byte stride reads only bytes before the ones it writes (offset >= 16),
        // so striding forwards gives the format's forward-copy semantics.
        let mut i = 0;
        while i < length {
            dst.copy_within(from + i..from + i + 16, d + i);
            i += 16;
        }
    } else if offset >= 8 && length <= SLACK && dst.len() - d >= SLACK {
        let mut i = 0;
        while i < length {
            dst.copy_within(from + i..from + i + 8, d + i);
            i += 8;
        }
    } else if offset >= length {
        dst.copy_within(from..from + length, d);
    } else if offset == 1 {
        let b = dst[from];
        dst[d..d + length].fill(b);
    } else {
        // Overlapping: each round doubles the bytes available to copy from.
        let mut done = 0;
        while done < length {
            let n = (length - done).min(offset + done);
            dst.copy_within(from..from + n, d + done);
            done += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(block: &[u8]) -> Result<Vec<u8>, Corrupt> {
        let (n, h) = minlz::decode_len(block).map_err(|_| Corrupt)?;
        if n > 1 << 24 {
            return Err(Corrupt);
        }
        let mut out = vec![0xa5; n];
        decode(&mut out, &block[h..])?;
        Ok(out)
    }

    /// BSON-like, compressible bytes with runs, near and far repeats.
    fn data(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 6 {
                0 => out.extend_from_slice(&x.to_le_bytes()),
                1 => out.extend(std::iter::repeat_n((x >> 8) as u8, (x >> 16) as usize % 40)),
                2 | 3 if out.len() > 8 => {
                    let back = 1 + (x >> 8) as usize % out.len().min(70_000);
                    let n = 3 + (x >> 32) as usize % 90;
                    let start = out.len() - back;
                    for i in 0..n {
                        out.push(out[start + i]);
                    }
                }
                _ => out.extend_from_slice(b"\x02name\x00\x05\x00\x00\x00user\x00\x10n\x00"),
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn matches_minlz_on_every_encoder() {
        for (seed, len) in [
            (1, 0),
            (2, 1),
            (3, 17),
            (4, 100),
            (5, 70_000),
            (6, 1 << 20),
            (7, 4 << 20),
        ] {
            let raw = data(seed, len);
            for block in [
                minlz::encode(&raw),
                minlz::encode_better(&raw),
                minlz::encode_best(&raw),
                minlz::encode_snappy(&raw),
                snap::raw::Encoder::new().compress_vec(&raw).expect("snap"),
            ] {
                assert_eq!(
                    ours(&block).as_deref(),
                    Ok(&raw[..]),
                    "seed {seed} len {len}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        // Copy before any output, zero offset (copy2), repeat with no previous offset,
        // literal running past the input, output short of the announced length.
        for bad in [
            &b"\x04\x01\x01"[..],
            b"\x04\x00\x61\x0a\x00\x00",
            b"\x04\x00\x61\x01\x00",
            b"\x04\x0cab",
            b"\x05\x0cabcd",
        ] {
            assert_eq!(ours(bad), Err(Corrupt), "{bad:?}");
            assert!(minlz::decode(bad).is_err(), "minlz agrees: {bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn round_trips_like_minlz(seed in any::<u64>(), len in 0usize..300_000, mode in 0u8..3) {
            let raw = data(seed, len);
            let block = match mode {
                0 => minlz::encode(&raw),
                1 => minlz::encode_better(&raw),
                _ => minlz::encode_best(&raw),
            };
            prop_assert_eq!(ours(&block), Ok(raw));
        }

        /// Damaged blocks: whatever minlz says, this decoder says the same.
        #[test]
        fn agrees_with_minlz_on_damage(seed in any::<u64>(), len in 1usize..20_000,
                                       flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                       cut in any::<prop::sample::Index>(), do_cut in any::<bool>()) {
            let raw = data(seed, len);
            let mut block = minlz::encode_better(&raw);
            for (i, v) in flips {
                let i = i.index(block.len());
                block[i] ^= v;
            }
            if do_cut {
                block.truncate(cut.index(block.len() + 1));
            }
            let theirs = match minlz::decode_len(&block) {
                Ok((n, _)) if n <= 1 << 24 => minlz::decode(&block).ok(),
                _ => None,
            };
            prop_assert_eq!(ours(&block).ok(), theirs);
        }

        /// Arbitrary bytes as a block.
        #[test]
        fn agrees_with_minlz_on_garbage(mut block in proptest::collection::vec(any::<u8>(), 0..400), n in 0u8..200) {
            block.insert(0, n & 0x7f);
            let theirs = minlz::decode(&block).ok();
            prop_assert_eq!(ours(&block).ok(), theirs);
        }
    }
}
