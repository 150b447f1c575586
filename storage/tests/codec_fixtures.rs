//! Every compressed file PBM wrote in `shared/fixtures/` decodes through rbm's streaming
//! decoder to what PBM put in: BSON document streams for collection files and oplog
//! chunks, the mongodump archive format for PBM 1.x `*.dump.*` files.
//!
//! Fixtures are found at `RBM_FIXTURES`, else at `../../shared/fixtures` from this crate
//! (the repository clone has `shared/` beside it in CI).

use std::path::{Path, PathBuf};

use rbm_storage::codec::decompress_reader;
use rbm_storage::{ByteReader, Compression};
use tokio::io::AsyncReadExt;

const MONGODUMP_ARCHIVE_MAGIC: u32 = 0x8199_e26d;

fn fixtures_dir() -> PathBuf {
    std::env::var_os("RBM_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        PathBuf::from,
    )
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {} (set RBM_FIXTURES?): {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Checks that `data` is a whole number of BSON documents; returns how many.
fn bson_docs(data: &[u8]) -> Result<usize, String> {
    let (mut pos, mut n) = (0usize, 0usize);
    while pos < data.len() {
        let head = data
            .get(pos..pos + 4)
            .ok_or_else(|| format!("{} stray bytes at offset {pos}", data.len() - pos))?;
        let len = i32::from_le_bytes(head.try_into().expect("4 bytes"));
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l >= 5)
            .ok_or_else(|| format!("bad document length {len} at offset {pos}"))?;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| format!("document at {pos} ({len} B) runs past the end"))?;
        if data[end - 1] != 0 {
            return Err(format!("document at {pos} does not end with 0x00"));
        }
        pos = end;
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pbm_fixture_decodes() {
    let root = fixtures_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();

    let mut seen = std::collections::BTreeMap::<Compression, usize>::new();
    for path in &files {
        let name = path.to_string_lossy();
        let c = Compression::from_file_name(&name);
        if c == Compression::None {
            continue;
        }
        *seen.entry(c).or_default() += 1;
        let file = tokio::fs::File::open(path)
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        let mut r = decompress_reader(Box::new(file) as ByteReader, c);
        let mut data = Vec::new();
        r.read_to_end(&mut data)
            .await
            .unwrap_or_else(|e| panic!("{name} ({c}) does not decode: {e}"));
        assert!(!data.is_empty(), "{name} decoded to nothing");

        let base = path
            .file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default();
        if base.contains(".dump.") {
            let head = data
                .get(..4)
                .unwrap_or_else(|| panic!("{name}: under 4 bytes"));
            let magic = u32::from_le_bytes(head.try_into().expect("4 bytes"));
            assert_eq!(
                magic, MONGODUMP_ARCHIVE_MAGIC,
                "{name} is not a mongodump archive"
            );
        } else {
            let n = bson_docs(&data)
                .unwrap_or_else(|e| panic!("{name} is not a clean BSON stream: {e}"));
            assert!(n > 0, "{name}: no documents");
        }
    }
    // The fixtures hold PBM 2.15 s2 and zstd backups and PBM 1.6 .snappy chunks that are S2.
    for c in [Compression::S2, Compression::Zstd, Compression::Snappy] {
        assert!(
            seen.get(&c).copied().unwrap_or(0) > 0,
            "no {c} fixture under {} (found {seen:?})",
            root.display()
        );
    }
    eprintln!("decoded fixtures per codec: {seen:?}");
}

#[test]
fn bson_walk_rejects_garbage() {
    assert_eq!(
        bson_docs(b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00"),
        Ok(2)
    );
    assert!(bson_docs(b"\x05\x00\x00\x00\x00\x05").is_err());
    assert!(bson_docs(b"\x06\x00\x00\x00\x00\x01").is_err());
    assert!(bson_docs(b"\x09\x00\x00\x00\x00").is_err());
}
