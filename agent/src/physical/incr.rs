//! Incremental physical backups: chains of backups linked by `src_backup`, each one
//! storing only what changed since the previous one, in PBM's layout (changed ranges as
//! `<path><ext>.<off>-<len>`, unchanged files listed with offset and length -1).
//!
//! Where the changes come from:
//! - `backupCursor` mode: WiredTiger's block tracking (`$backupCursor` with
//!   `incrementalBackup` / `srcBackupName`), exactly as PBM ([`super::cursor`]);
//! - `cold` and `fsyncLock` modes (an rbm extension; PBM has no incremental backups
//!   there): every file is read in [`BLOCK`]-sized blocks and each block hashed; the
//!   hashes of a backup are kept in one rbm-only object beside `filelist.pbm`
//!   ([`hash_object`], PBM ignores it) and the next increment stores only the blocks
//!   whose hash differs, plus whatever the file grew by.
//!
//! Restores ([`copy_plan`]) are PBM's `setBcpFiles` / `planCopyFiles`: only the files
//! of the target's list, the base's copy first, then each increment's ranges at their
//! offsets, the file cut to the size the target recorded.

use super::files::ListedFile;
use super::PhysicalError;
use rbm_storage::Compression;
use std::collections::HashMap;

/// Bytes per hashed block. WiredTiger rewrites pages of a few KiB to a few hundred KiB
/// scattered over a file, so smaller blocks would find fewer unchanged bytes only in
/// the rare case of sparse writes, while every block costs 16 bytes of hash kept in
/// memory during the diff (16 KiB per GiB of data) and breaks coalescing into more
/// objects. 1 MiB keeps both small; PBM's backup cursor hands out 16 MiB blocks.
pub const BLOCK: u64 = 1 << 20;

/// The rbm-only object with a backup's block hashes, beside `filelist.pbm`.
pub fn hash_object(backup: &str, rs: &str) -> String {
    format!("{backup}/{rs}/rbm.blockhashes.bson")
}

/// The block hashes of one file: BLAKE3, cut to 128 bits. A block whose hash matches
/// the source's is not stored, so a collision would silently restore old bytes; the
/// blocks hold application data, which users who can write to the database control,
/// so the hash must resist crafted collisions, not only accidental ones. BLAKE3 is
/// cryptographic and still runs at several GB/s per core (SIMD), faster than the dbPath
/// is read from disk; 128 bits leave a second preimage (matching a given old block)
/// out of reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    pub size: u64,
    pub blocks: Vec<u128>,
}

/// Hashes what passes through in [`BLOCK`]s, in order, from offset 0.
#[derive(Default)]
pub struct BlockHasher {
    state: Option<blake3::Hasher>,
    in_block: u64,
    size: u64,
    blocks: Vec<u128>,
}

impl BlockHasher {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (BLOCK - self.in_block) as usize;
            let n = room.min(data.len());
            self.state
                .get_or_insert_with(blake3::Hasher::new)
                .update(&data[..n]);
            self.in_block += n as u64;
            self.size += n as u64;
            data = &data[n..];
            if self.in_block == BLOCK {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if let Some(s) = self.state.take() {
            self.blocks.push(hash128(&s));
        }
        self.in_block = 0;
    }

    pub fn finish(mut self) -> FileHashes {
        if self.in_block > 0 {
            self.flush();
        }
        FileHashes {
            size: self.size,
            blocks: self.blocks,
        }
    }
}

/// The first 128 bits of a BLAKE3 hash.
fn hash128(h: &blake3::Hasher) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&h.finalize().as_bytes()[..16]);
    u128::from_le_bytes(a)
}

/// The hash of the object's entries; an entry made with another is refused.
const ALGORITHM: &str = "blake3-128";

#[derive(serde::Serialize, serde::Deserialize)]
struct HashDoc {
    #[serde(rename = "a")]
    algorithm: String,
    #[serde(rename = "f")]
    name: String,
    #[serde(rename = "s")]
    size: i64,
    #[serde(rename = "b")]
    block: i64,
    #[serde(rename = "h")]
    hashes: bson::Binary,
}

/// Encodes the hash object: one BSON document per file, concatenated.
///
/// # Errors
/// Encoding failures.
pub fn encode_hashes(files: &[(String, FileHashes)]) -> Result<Vec<u8>, PhysicalError> {
    let mut out = Vec::new();
    for (name, h) in files {
        let mut bytes = Vec::with_capacity(h.blocks.len() * 16);
        for b in &h.blocks {
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        let d = HashDoc {
            algorithm: ALGORITHM.into(),
            name: name.clone(),
            size: h.size as i64,
            block: BLOCK as i64,
            hashes: bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes,
            },
        };
        bson::serialize_to_buffer(&d, &mut out)
            .map_err(|e| PhysicalError::Other(format!("encode block hashes: {e}")))?;
    }
    Ok(out)
}

/// Decodes the hash object.
///
/// # Errors
/// A truncated or undecodable object, or one made with another block size.
pub fn decode_hashes(bytes: &[u8]) -> Result<HashMap<String, FileHashes>, PhysicalError> {
    let mut out = HashMap::new();
    let bad = |m: String| PhysicalError::Check(format!("block hashes: {m}"));
    let docs =
        rbm_protocol::meta::backup::split_documents(bytes).map_err(|_| bad("truncated".into()))?;
    for (_, doc) in docs {
        let d: HashDoc = bson::deserialize_from_slice(doc).map_err(|e| bad(e.to_string()))?;
        if d.algorithm != ALGORITHM
            || d.block != BLOCK as i64
            || !d.hashes.bytes.len().is_multiple_of(16)
            || d.size < 0
        {
            return Err(bad(format!(
                "entry of {} is not in this build's format",
                d.name
            )));
        }
        let blocks = d
            .hashes
            .bytes
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                u128::from_le_bytes(a)
            })
            .collect();
        out.insert(
            d.name,
            FileHashes {
                size: d.size as u64,
                blocks,
            },
        );
    }
    Ok(out)
}

/// What to store of one file in an increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilePlan {
    /// New to the chain: the whole file (`off` = `len` = 0, as in a full backup).
    Whole,
    /// Nothing changed: listed with -1/-1, nothing stored.
    Unchanged,
    /// These `(offset, length)` ranges, coalesced, in order.
    Ranges(Vec<(u64, u64)>),
}

/// The hash diff: blocks whose hash differs from the source's, and every block past the
/// source's end (growth), consecutive ones coalesced. A file that only shrank still
/// gets its last block stored, so that the restore has an entry that cuts it to size
/// (PBM truncates after every copied range, not for -1/-1 entries).
pub fn diff(old: Option<&FileHashes>, new: &FileHashes) -> FilePlan {
    let Some(old) = old else {
        return FilePlan::Whole;
    };
    if new.size == 0 {
        // Nothing to store at an offset; a whole empty file resets it.
        return if old.size == 0 {
            FilePlan::Unchanged
        } else {
            FilePlan::Whole
        };
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (i, h) in new.blocks.iter().enumerate() {
        let off = i as u64 * BLOCK;
        let len = BLOCK.min(new.size - off);
        if old.blocks.get(i) == Some(h) && (off + len <= old.size) {
            continue;
        }
        match ranges.last_mut() {
            Some((o, l)) if *o + *l == off => *l += len,
            _ => ranges.push((off, len)),
        }
    }
    if ranges.is_empty() {
        if new.size == old.size {
            return FilePlan::Unchanged;
        }
        let last = (new.blocks.len() as u64 - 1) * BLOCK;
        ranges.push((last, new.size - last));
    }
    FilePlan::Ranges(ranges)
}

/// One restore step: the object of `backup` holding `entry`'s bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOp {
    pub backup: String,
    /// Each backup of a chain has its own.
    pub compression: Compression,
    pub entry: ListedFile,
}

/// Everything written to one dbPath file, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreFile {
    pub name: String,
    /// The size the target recorded: the file is cut to it at the end.
    pub size: u64,
    pub fmode: u32,
    pub ops: Vec<CopyOp>,
}

/// PBM's `setBcpFiles` + `planCopyFiles`. `chain` is target first, base last, each with
/// its file list. Only files in the target's list; entries with offset or length -1
/// skipped; the base's copy first, then each increment in order.
///
/// # Errors
/// A target file no member of the chain stores (the chain is broken).
pub fn copy_plan(
    chain: &[(String, Compression, Vec<ListedFile>)],
) -> Result<Vec<RestoreFile>, PhysicalError> {
    let Some((_, _, target)) = chain.first() else {
        return Ok(Vec::new());
    };
    let mut out: Vec<RestoreFile> = Vec::new();
    let mut idx: HashMap<&str, usize> = HashMap::new();
    for f in target {
        if idx.contains_key(f.file.name.as_str()) {
            continue;
        }
        idx.insert(&f.file.name, out.len());
        out.push(RestoreFile {
            name: f.file.name.clone(),
            size: f.file.size.max(0) as u64,
            fmode: f.file.fmode,
            ops: Vec::new(),
        });
    }
    for (backup, compression, list) in chain.iter().rev() {
        for f in list {
            if f.file.offset < 0 || f.file.length < 0 {
                continue;
            }
            if let Some(&i) = idx.get(f.file.name.as_str()) {
                out[i].ops.push(CopyOp {
                    backup: backup.clone(),
                    compression: *compression,
                    entry: f.clone(),
                });
            }
        }
    }
    for f in &out {
        // A file present in every member only as -1/-1 has no bytes anywhere.
        if f.ops.is_empty() && f.size > 0 {
            return Err(PhysicalError::Check(format!(
                "{}: no backup of the chain stores its data (broken incremental chain)",
                f.name
            )));
        }
    }
    Ok(out)
}

/// A file list of a full backup as a restore plan (a chain of one).
pub fn single(
    backup: &str,
    compression: Compression,
    list: &[ListedFile],
) -> Result<Vec<RestoreFile>, PhysicalError> {
    copy_plan(&[(backup.to_string(), compression, list.to_vec())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_protocol::meta::backup::File;

    fn hashes(data: &[u8]) -> FileHashes {
        let mut h = BlockHasher::default();
        // Odd pieces: block boundaries must not depend on how the bytes arrive.
        for c in data.chunks(333_333) {
            h.update(c);
        }
        h.finish()
    }

    #[test]
    fn hasher_splits_in_blocks_whatever_the_reads() {
        let data: Vec<u8> = (0..(2 * BLOCK + 10)).map(|i| (i % 251) as u8).collect();
        let h = hashes(&data);
        assert_eq!(h.size, data.len() as u64);
        assert_eq!(h.blocks.len(), 3);
        assert_eq!(h.blocks[1], {
            let mut h = blake3::Hasher::new();
            h.update(&data[BLOCK as usize..2 * BLOCK as usize]);
            hash128(&h)
        });
        assert_eq!(hashes(&[]).blocks.len(), 0);
    }

    #[test]
    fn hash_object_round_trips_and_refuses_garbage() {
        let files = vec![
            ("a.wt".to_string(), hashes(&[1; 3000])),
            ("journal/x".to_string(), hashes(&[])),
        ];
        let bytes = encode_hashes(&files).unwrap();
        let back = decode_hashes(&bytes).unwrap();
        assert_eq!(back["a.wt"], files[0].1);
        assert_eq!(back["journal/x"], files[1].1);
        assert!(decode_hashes(&bytes[..bytes.len() - 1]).is_err());
        // Hashes made with another algorithm (an older build's) are never compared.
        let other = bson::serialize_to_vec(&bson::doc! {
            "a": "xxh3-128", "f": "a.wt", "s": 3000_i64, "b": BLOCK as i64,
            "h": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 16] },
        })
        .unwrap();
        let e = decode_hashes(&other).expect_err("another algorithm");
        assert!(e.to_string().contains("a.wt"), "{e}");
    }

    #[test]
    fn diff_stores_changed_blocks_growth_and_shrinking() {
        let b = BLOCK as usize;
        let old: Vec<u8> = (0..4 * b).map(|i| (i % 253) as u8).collect();
        let oh = hashes(&old);
        assert_eq!(diff(None, &oh), FilePlan::Whole);
        assert_eq!(diff(Some(&oh), &oh), FilePlan::Unchanged);
        // Blocks 1 and 2 changed: one coalesced range; block 0 and 3 kept.
        let mut new = old.clone();
        new[b + 5] ^= 1;
        new[2 * b + 7] ^= 1;
        assert_eq!(
            diff(Some(&oh), &hashes(&new)),
            FilePlan::Ranges(vec![(BLOCK, 2 * BLOCK)])
        );
        // Grown by half a block: the new tail only.
        let mut grown = old.clone();
        grown.extend(std::iter::repeat_n(9u8, b / 2));
        assert_eq!(
            diff(Some(&oh), &hashes(&grown)),
            FilePlan::Ranges(vec![(4 * BLOCK, BLOCK / 2)])
        );
        // A partial last block that grew is stored whole.
        let short = &old[..3 * b + 10];
        let sh = hashes(short);
        assert_eq!(
            diff(Some(&sh), &hashes(&old[..3 * b + 20])),
            FilePlan::Ranges(vec![(3 * BLOCK, 20)])
        );
        // Shrunk on a block boundary: the last block, so the restore cuts the file.
        assert_eq!(
            diff(Some(&oh), &hashes(&old[..2 * b])),
            FilePlan::Ranges(vec![(BLOCK, BLOCK)])
        );
        assert_eq!(diff(Some(&oh), &hashes(&[])), FilePlan::Whole);
    }

    fn lf(name: &str, off: i64, len: i64, size: i64) -> ListedFile {
        ListedFile {
            file: File {
                name: name.into(),
                offset: off,
                length: len,
                size,
                stg_size: len.max(0),
                stg_size_uncompressed: len.max(0),
                fmode: 0o600,
            },
            crc64: None,
        }
    }

    #[test]
    fn copy_plan_applies_base_then_increments_for_target_files_only() {
        let base = vec![lf("a", 0, 0, 100), lf("b", 0, 0, 50), lf("gone", 0, 0, 9)];
        let i1 = vec![
            lf("a", 10, 5, 100),
            lf("b", -1, -1, 50),
            lf("gone", -1, -1, 9),
        ];
        let i2 = vec![
            lf("a", -1, -1, 120),
            lf("a", 100, 20, 120),
            lf("b", -1, -1, 50),
            lf("new", 0, 0, 7),
        ];
        let chain = vec![
            ("i2".to_string(), Compression::None, i2),
            ("i1".to_string(), Compression::None, i1),
            ("base".to_string(), Compression::S2, base),
        ];
        let plan = copy_plan(&chain).unwrap();
        let names: Vec<&str> = plan.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "new"]);
        let a: Vec<(&str, i64, i64)> = plan[0]
            .ops
            .iter()
            .map(|o| (o.backup.as_str(), o.entry.file.offset, o.entry.file.length))
            .collect();
        assert_eq!(a, [("base", 0, 0), ("i1", 10, 5), ("i2", 100, 20)]);
        assert_eq!(plan[0].ops[0].compression, Compression::S2);
        assert_eq!(plan[0].size, 120);
        assert_eq!(plan[1].ops.len(), 1);
        assert_eq!(plan[2].ops[0].backup, "i2");

        // A file the chain never stored.
        let broken = vec![
            (
                "i1".to_string(),
                Compression::None,
                vec![lf("a", -1, -1, 100)],
            ),
            (
                "base".to_string(),
                Compression::None,
                vec![lf("b", 0, 0, 5)],
            ),
        ];
        assert!(copy_plan(&broken).is_err());
    }
}
