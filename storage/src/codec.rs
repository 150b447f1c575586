//! PBM's compression codecs as streaming adapters. STUB: being written.

use crate::ByteReader;

/// PBM's compression types (`pbm/compress/compress.go`), with PBM's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    None,
    Gzip,
    Pgzip,
    Snappy,
    Lz4,
    #[default]
    S2,
    Zstd,
}

/// Wraps `input` so that reading it yields the compressed stream.
pub fn compress_reader(input: ByteReader, _c: Compression, _level: Option<i32>) -> ByteReader {
    input
}

/// Wraps `input` so that reading it yields the decompressed stream.
pub fn decompress_reader(input: ByteReader, _c: Compression) -> ByteReader {
    input
}
