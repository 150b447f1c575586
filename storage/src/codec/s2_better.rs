//! S2 "better" block encoding for blocks above 64 KiB (PBM's `--compression-level 3`),
//! byte for byte what minlz 1.2's `encode_better` writes (the tests check that).
//!
//! Why rbm has its own copy of minlz's loop: minlz keeps its hash tables in `Vec`s, so
//! every table access and every literal is bounds-checked and copied with an
//! exact-length `memmove`, which held this mode at ~0.87x Go's assembly per core.
//! Here the tables are fixed-size arrays indexed by hashes that cannot exceed them, and
//! short literals are copied in 16-byte strides into an output buffer reused across
//! blocks. Smaller blocks (the last one of a stream) still go through minlz.

const L_BITS: u32 = 17;
const S_BITS: u32 = 14;
const L_SIZE: usize = 1 << L_BITS;
const S_SIZE: usize = 1 << S_BITS;
const INPUT_MARGIN: usize = 8;
const TAG_LITERAL: u8 = 0;
const TAG_COPY1: usize = 1;
const TAG_COPY2: usize = 2;
const TAG_COPY4: usize = 3;

/// Blocks up to this size go through minlz (it uses other table sizes for them).
pub(super) const MIN_BLOCK: usize = 64 * 1024 + 1;

pub(super) struct Better {
    l: Box<[u32; L_SIZE]>,
    s: Box<[u32; S_SIZE]>,
    dst: Vec<u8>,
}

fn table<const N: usize>() -> Box<[u32; N]> {
    match vec![0u32; N].into_boxed_slice().try_into() {
        Ok(t) => t,
        Err(_) => unreachable!("a vec of N elements converts to [u32; N]"),
    }
}

impl Better {
    pub(super) fn new() -> Self {
        Self {
            l: table::<L_SIZE>(),
            s: table::<S_SIZE>(),
            dst: Vec::new(),
        }
    }

    /// The encoded block (length varint and body) of `src`, which must be at least
    /// [`MIN_BLOCK`] and below 4 GiB; `None` when it does not compress enough to be
    /// worth it (minlz then emits the block as one literal, which the S2 writer stores
    /// uncompressed anyway).
    pub(super) fn encode(&mut self, src: &[u8]) -> Option<&[u8]> {
        debug_assert!(src.len() >= MIN_BLOCK);
        // minlz's max_encoded_len, rounded up generously: the body never exceeds
        // dst_limit plus one element, and the wide copies need 64 bytes of slack.
        let cap = src.len() + src.len() / 6 + 64;
        if self.dst.len() < cap {
            self.dst.resize(cap, 0);
        }
        let mut h = 0;
        let mut v = src.len() as u64;
        while v >= 0x80 {
            self.dst[h] = v as u8 | 0x80;
            v >>= 7;
            h += 1;
        }
        self.dst[h] = v as u8;
        h += 1;
        self.l.fill(0);
        self.s.fill(0);
        let n = block(&mut self.dst[h..], src, &mut self.l, &mut self.s);
        (n > 0).then(|| &self.dst[..h + n])
    }
}

#[inline(always)]
fn load64(src: &[u8], i: usize) -> u64 {
    let b: [u8; 8] = match src[i..i + 8].try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("an 8-byte slice"),
    };
    u64::from_le_bytes(b)
}

#[inline(always)]
fn load32(src: &[u8], i: usize) -> u32 {
    let b: [u8; 4] = match src[i..i + 4].try_into() {
        Ok(b) => b,
        Err(_) => unreachable!("a 4-byte slice"),
    };
    u32::from_le_bytes(b)
}

#[inline(always)]
fn hash7(u: u64) -> usize {
    const PRIME_7_BYTES: u64 = 58295818150454627;
    ((u << (64 - 56)).wrapping_mul(PRIME_7_BYTES) >> (64 - L_BITS)) as usize
}

#[inline(always)]
fn hash4(u: u64) -> usize {
    const PRIME_4_BYTES: u32 = 2654435761;
    ((u as u32).wrapping_mul(PRIME_4_BYTES) >> (32 - S_BITS)) as usize
}

/// minlz's `encode_block_better` for blocks above 64 KiB; returns the body length, 0 to
/// give up.
fn block(
    dst: &mut [u8],
    src: &[u8],
    l_table: &mut [u32; L_SIZE],
    s_table: &mut [u32; S_SIZE],
) -> usize {
    let dst_limit = src.len() - src.len() / 32 - 6;
    let s_limit = src.len() - INPUT_MARGIN;
    let mut next_emit = 0;
    let mut s = 1;
    let mut d = 0;
    let mut repeat = 0;
    let mut cv = load64(src, s);

    'outer: loop {
        let mut candidate_l;
        let mut next_s;
        loop {
            next_s = s + (s - next_emit) / 128 + 1;
            if next_s > s_limit {
                break 'outer;
            }
            let hash_l = hash7(cv);
            let hash_s = hash4(cv);
            candidate_l = l_table[hash_l] as usize;
            let candidate_s = s_table[hash_s] as usize;
            l_table[hash_l] = s as u32;
            s_table[hash_s] = s as u32;

            let val_long = load64(src, candidate_l);
            let val_short = load64(src, candidate_s);
            if cv == val_long {
                break;
            }
            if cv == val_short {
                candidate_l = candidate_s;
                break;
            }
            if cv as u32 == val_long as u32 {
                break;
            }
            if cv as u32 == val_short as u32 {
                let hash_l = hash7(cv >> 8);
                let candidate_l_next = l_table[hash_l] as usize;
                l_table[hash_l] = (s + 1) as u32;
                if (cv >> 8) as u32 == load32(src, candidate_l_next) {
                    s += 1;
                    candidate_l = candidate_l_next;
                    break;
                }
                candidate_l = candidate_s;
                break;
            }
            cv = load64(src, next_s);
            s = next_s;
        }

        while candidate_l > 0 && s > next_emit && src[candidate_l - 1] == src[s - 1] {
            candidate_l -= 1;
            s -= 1;
        }
        if d + (s - next_emit) > dst_limit {
            return 0;
        }

        let base = s;
        let offset = base - candidate_l;
        s += 4;
        candidate_l += 4;
        while s < src.len() {
            if src.len() - s < 8 {
                if src[s] == src[candidate_l] {
                    s += 1;
                    candidate_l += 1;
                    continue;
                }
                break;
            }
            let diff = load64(src, s) ^ load64(src, candidate_l);
            if diff != 0 {
                s += (diff.trailing_zeros() / 8) as usize;
                break;
            }
            s += 8;
            candidate_l += 8;
        }

        if offset > 65535 && s - base <= 5 && repeat != offset {
            s = next_s + 1;
            if s >= s_limit {
                break;
            }
            cv = load64(src, s);
            continue;
        }

        d += emit_literal(dst, d, src, next_emit, base);
        if repeat == offset {
            d += emit_repeat(&mut dst[d..], offset, s - base);
        } else {
            d += emit_copy(&mut dst[d..], offset, s - base);
            repeat = offset;
        }

        next_emit = s;
        if s >= s_limit {
            break;
        }
        if d > dst_limit {
            return 0;
        }

        let index0 = base + 1;
        let index1 = s - 2;
        let cv0 = load64(src, index0);
        let cv1 = load64(src, index1);
        l_table[hash7(cv0)] = index0 as u32;
        s_table[hash4(cv0 >> 8)] = (index0 + 1) as u32;
        l_table[hash7(cv1)] = index1 as u32;
        s_table[hash4(cv1 >> 8)] = (index1 + 1) as u32;
        let mut index0 = index0 + 1;
        let index1 = index1 - 1;
        cv = load64(src, s);

        let mut index2 = (index0 + index1 + 1) >> 1;
        while index2 < index1 {
            l_table[hash7(load64(src, index0))] = index0 as u32;
            l_table[hash7(load64(src, index2))] = index2 as u32;
            index0 += 2;
            index2 += 2;
        }
    }

    if next_emit < src.len() {
        if d + src.len() - next_emit > dst_limit {
            return 0;
        }
        d += emit_literal(dst, d, src, next_emit, src.len());
    }
    d
}

/// Writes `src[from..to]` as a literal at `dst[at..]`; returns the bytes written.
#[inline(always)]
fn emit_literal(dst: &mut [u8], at: usize, src: &[u8], from: usize, to: usize) -> usize {
    let len = to - from;
    if len == 0 {
        return 0;
    }
    let n = len - 1;
    let head = match n {
        0..=59 => {
            dst[at] = (n as u8) << 2 | TAG_LITERAL;
            1
        }
        60..=255 => {
            dst[at] = 60 << 2 | TAG_LITERAL;
            dst[at + 1] = n as u8;
            2
        }
        256..=65535 => {
            dst[at] = 61 << 2 | TAG_LITERAL;
            dst[at + 1..at + 3].copy_from_slice(&(n as u16).to_le_bytes());
            3
        }
        65536..=16777215 => {
            dst[at] = 62 << 2 | TAG_LITERAL;
            dst[at + 1..at + 4].copy_from_slice(&(n as u32).to_le_bytes()[..3]);
            4
        }
        _ => {
            dst[at] = 63 << 2 | TAG_LITERAL;
            dst[at + 1..at + 5].copy_from_slice(&(n as u32).to_le_bytes());
            5
        }
    };
    let o = at + head;
    if len <= 32 && dst.len() - o >= 32 && src.len() - from >= 32 {
        // Bytes past the literal are overwritten by what follows.
        let out: &mut [u8; 32] = match (&mut dst[o..o + 32]).try_into() {
            Ok(a) => a,
            Err(_) => unreachable!("a 32-byte slice"),
        };
        let inp: &[u8; 32] = match src[from..from + 32].try_into() {
            Ok(a) => a,
            Err(_) => unreachable!("a 32-byte slice"),
        };
        out[..16].copy_from_slice(&inp[..16]);
        if len > 16 {
            out[16..].copy_from_slice(&inp[16..]);
        }
    } else {
        dst[o..o + len].copy_from_slice(&src[from..to]);
    }
    head + len
}

fn emit_repeat(dst: &mut [u8], offset: usize, length: usize) -> usize {
    let mut len = length - 4;
    if len <= 4 {
        dst[0] = (len << 2 | TAG_COPY1) as u8;
        dst[1] = 0;
        return 2;
    }
    if len < 8 && offset < 2048 {
        dst[0] = ((offset >> 8) << 5 | len << 2 | TAG_COPY1) as u8;
        dst[1] = offset as u8;
        return 2;
    }
    if len < (1 << 8) + 4 {
        len -= 4;
        dst[0] = (5 << 2 | TAG_COPY1) as u8;
        dst[1] = 0;
        dst[2] = len as u8;
        return 3;
    }
    if len < (1 << 16) + (1 << 8) {
        len -= 1 << 8;
        dst[0] = (6 << 2 | TAG_COPY1) as u8;
        dst[1] = 0;
        dst[2..4].copy_from_slice(&(len as u16).to_le_bytes());
        return 4;
    }
    len -= 1 << 16;
    dst[0] = (7 << 2 | TAG_COPY1) as u8;
    dst[1] = 0;
    dst[2] = len as u8;
    dst[3] = (len >> 8) as u8;
    dst[4] = (len >> 16) as u8;
    5
}

fn emit_copy4(dst: &mut [u8], offset: usize, length: usize) -> usize {
    let mut i = 0;
    let mut remaining = length;
    if remaining > 64 {
        dst[0] = (63 << 2 | TAG_COPY4) as u8;
        dst[1..5].copy_from_slice(&(offset as u32).to_le_bytes());
        remaining -= 64;
        i = 5;
        if remaining >= 4 {
            return i + emit_repeat(&mut dst[i..], offset, remaining);
        }
    }
    if remaining == 0 {
        return i;
    }
    dst[i] = ((remaining - 1) << 2 | TAG_COPY4) as u8;
    dst[i + 1..i + 5].copy_from_slice(&(offset as u32).to_le_bytes());
    i + 5
}

fn emit_copy(dst: &mut [u8], offset: usize, length: usize) -> usize {
    if offset >= 65536 {
        return emit_copy4(dst, offset, length);
    }
    if length > 64 {
        let (off, rest) = if offset < 2048 {
            dst[0] = ((offset >> 8) << 5 | (8 - 4) << 2 | TAG_COPY1) as u8;
            dst[1] = offset as u8;
            (2, length - 8)
        } else {
            dst[0] = (59 << 2 | TAG_COPY2) as u8;
            dst[1] = offset as u8;
            dst[2] = (offset >> 8) as u8;
            (3, length - 60)
        };
        return off + emit_repeat(&mut dst[off..], offset, rest);
    }
    if length >= 12 || offset >= 2048 {
        dst[0] = ((length - 1) << 2 | TAG_COPY2) as u8;
        dst[1] = offset as u8;
        dst[2] = (offset >> 8) as u8;
        return 3;
    }
    dst[0] = ((offset >> 8) << 5 | (length - 4) << 2 | TAG_COPY1) as u8;
    dst[1] = offset as u8;
    2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// BSON-ish bytes with near and far repeats, runs and random stretches.
    fn data(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 7 {
                0 | 1 => out.extend_from_slice(&x.to_le_bytes()[..(x >> 60) as usize % 8 + 1]),
                2 => out.extend(std::iter::repeat_n(
                    (x >> 8) as u8,
                    (x >> 16) as usize % 300,
                )),
                3 | 4 if out.len() > 8 => {
                    let back = 1 + (x >> 8) as usize % out.len().min(300_000);
                    let n = 3 + (x >> 32) as usize % 200;
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

    fn same_as_minlz(enc: &mut Better, raw: &[u8]) {
        let theirs = minlz::encode_better(raw);
        match enc.encode(raw) {
            Some(ours) => assert!(
                ours == &theirs[..],
                "differs from minlz, {} bytes",
                raw.len()
            ),
            // minlz's fallback: the whole block as one literal.
            None => assert!(theirs.len() > raw.len(), "gave up where minlz compressed"),
        }
    }

    #[test]
    fn byte_identical_to_minlz() {
        let mut enc = Better::new();
        for (seed, len) in [
            (1, MIN_BLOCK),
            (2, 100_000),
            (3, 1 << 20),
            (4, (1 << 20) + 3),
            (5, 4 << 20),
        ] {
            same_as_minlz(&mut enc, &data(seed, len));
        }
        // Incompressible input gives up, as minlz does.
        let mut x = 9u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        assert!(enc.encode(&noise).is_none());
        same_as_minlz(&mut enc, &vec![0u8; 300_000]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn matches_minlz(seed in any::<u64>(), len in MIN_BLOCK..1_200_000) {
            let mut enc = Better::new();
            same_as_minlz(&mut enc, &data(seed, len));
        }
    }
}
