//! PBM's compression codecs (`pbm/compress/compress.go`), as sync building blocks and as
//! streaming adapters over [`ByteReader`].
//!
//! Formats, and the Go readers PBM uses for them:
//!
//! | name            | ext       | format                               | PBM's Go reader              |
//! |-----------------|-----------|--------------------------------------|------------------------------|
//! | `none`          | (none)    | raw bytes                            | -                            |
//! | `gzip`, `pgzip` | `.gz`     | gzip, multi-member (rbm: 1 per MiB)  | `compress/gzip` (multistream)|
//! | `snappy`        | `.snappy` | Snappy framing format                | `golang/snappy`              |
//! | `lz4`           | `.lz4`    | LZ4 frame, independent blocks        | `pierrec/lz4` v2             |
//! | `s2`            | `.s2`     | klauspost S2 stream (Snappy framing superset) | `klauspost/compress/s2` |
//! | `zstd`          | `.zst`    | Zstandard frames                     | `klauspost/compress/zstd`    |
//!
//! Decoding S2 and Snappy goes through one framed reader (`FramedReader`): S2's block format
//! is a superset of Snappy's, so an S2 block decoder also decodes Snappy blocks. That is
//! what lets `.snappy` files written by PBM < 1.7 (which are really S2 streams) decode
//! without PBM's retry-on-`snappy: corrupt input`.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::ByteReader;

mod s2_better;
mod s2_block;

/// PBM's compression types (`pbm/compress/compress.go`), with PBM's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Compression {
    None,
    Gzip,
    Pgzip,
    Snappy,
    Lz4,
    /// PBM's default for backups and PITR.
    #[default]
    S2,
    Zstd,
}

/// A compression name or level that PBM would not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown compression type {0:?} (valid: none, gzip, pgzip, snappy, lz4, s2, zstd)")]
    UnknownType(String),
    #[error("compression level {level} is not valid for {compression} (valid: {valid})")]
    Level {
        compression: Compression,
        level: i32,
        valid: &'static str,
    },
}

impl From<CodecError> for io::Error {
    fn from(e: CodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl Compression {
    /// Every type, in PBM's order.
    pub const ALL: [Compression; 7] = [
        Compression::None,
        Compression::Gzip,
        Compression::Pgzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::S2,
        Compression::Zstd,
    ];

    /// PBM's name (`--compression`, `compression` in metas and configs).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Pgzip => "pgzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::S2 => "s2",
            Compression::Zstd => "zstd",
        }
    }

    /// The file name suffix PBM appends (`CompressionType.Suffix`), with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip | Compression::Pgzip => ".gz",
            Compression::Snappy => ".snappy",
            Compression::Lz4 => ".lz4",
            Compression::S2 => ".s2",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression of a stored file judged by its extension, as PBM's
    /// `FileCompression(filepath.Ext(name))`: `.gz` is pgzip (both decode the same way),
    /// an unknown or missing extension is `none`. Matching is case-sensitive, as in PBM.
    pub fn from_file_name(name: &str) -> Compression {
        let base = name.rsplit('/').next().unwrap_or(name);
        let ext = base.rfind('.').map_or("", |i| &base[i + 1..]);
        match ext {
            "gz" => Compression::Pgzip,
            "lz4" => Compression::Lz4,
            "snappy" => Compression::Snappy,
            "s2" => Compression::S2,
            "zst" => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Checks a `--compression-level` the way PBM's `Compress` does: rbm accepts exactly
    /// the levels PBM accepts, so that any PBM config keeps working. Only gzip and pgzip
    /// have a hard range (Go's `-2..=9`); PBM takes any level for the others and maps it
    /// (see [`Compression::level_meaning`]).
    ///
    /// # Errors
    /// [`CodecError::Level`] naming the valid range.
    pub fn check_level(self, level: Option<i32>) -> Result<(), CodecError> {
        self.settings(level).map(|_| ())
    }

    /// What a level means for this codec in PBM, and what rbm does with it.
    pub fn level_meaning(self) -> &'static str {
        match self {
            Compression::None | Compression::Snappy => "no levels; a level is ignored",
            Compression::Gzip | Compression::Pgzip => {
                "-1 default (6), 0 store, 1 fastest .. 9 best; -2 (Go's Huffman-only) is \
                 written at level 1 by rbm"
            }
            Compression::Lz4 => {
                "0 fast; PBM uses LZ4-HC for any other level, rbm always writes fast LZ4 \
                 (same format, larger output)"
            }
            Compression::S2 => "1 uncompressed, 3 better, 4 best, anything else default",
            Compression::Zstd => {
                "<3 fastest (zstd 1), 3..5 default (zstd 3), 6..9 better (zstd 7), \
                 >=10 best (zstd 11): PBM's EncoderLevelFromZstd buckets"
            }
        }
    }

    /// Resolves a PBM level into the codec's own setting.
    fn settings(self, level: Option<i32>) -> Result<Settings, CodecError> {
        Ok(match self {
            Compression::None => Settings::None,
            Compression::Gzip | Compression::Pgzip => {
                let l = level.unwrap_or(-1);
                let level = match l {
                    // Go's DefaultCompression is its level 6. libdeflate's 6 on the codecs
                    // bench's BSON: ratio 2.58 (Go's gzip 2.59, pgzip 2.58), 113 MB per
                    // CPU-second (Go's gzip 101, pgzip ~116).
                    -1 => 6,
                    // libdeflate has no Huffman-only mode; level 1 is the nearest in speed.
                    -2 => 1,
                    // 0 is stored blocks in both; 1..=9 run from fastest to best in both.
                    0..=9 => l,
                    _ => {
                        return Err(CodecError::Level {
                            compression: self,
                            level: l,
                            valid: "-2..=9 (-1 = default)",
                        })
                    }
                };
                Settings::Gzip(level)
            }
            Compression::Snappy => Settings::Snappy,
            Compression::Lz4 => Settings::Lz4,
            Compression::S2 => Settings::S2(match level {
                Some(1) => S2Level::Uncompressed,
                Some(3) => S2Level::Better,
                Some(4) => S2Level::Best,
                _ => S2Level::Default,
            }),
            Compression::Zstd => Settings::Zstd(match level {
                None => 3,
                Some(l) if l < 3 => 1,
                Some(l) if l < 6 => 3,
                Some(l) if l < 10 => 7,
                Some(_) => 11,
            }),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| CodecError::UnknownType(s.to_owned()))
    }
}

impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy)]
enum Settings {
    None,
    /// A libdeflate level (0..=9 here).
    Gzip(i32),
    Snappy,
    Lz4,
    S2(S2Level),
    /// A libzstd level.
    Zstd(i32),
}

/// klauspost S2's writer modes, which PBM selects by level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S2Level {
    Uncompressed,
    Default,
    Better,
    Best,
}

// ---------------------------------------------------------------------------------------
// Sync building blocks
// ---------------------------------------------------------------------------------------

/// A compressing writer. Dropping it without [`Encoder::finish`] leaves a truncated stream.
pub trait Encoder: Write + Send {
    /// Writes what is buffered and the format's trailer, and flushes the inner writer.
    ///
    /// # Errors
    /// Errors of the inner writer.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// A compressor for `c` at PBM level `level`, writing into `w`.
///
/// Fallible, unlike PBM's writers: a gzip level outside `-2..=9` is refused (as PBM does),
/// and libzstd may fail to allocate its context.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a level PBM would refuse.
pub fn encoder<'a, W: Write + Send + 'a>(
    c: Compression,
    level: Option<i32>,
    w: W,
) -> io::Result<Box<dyn Encoder + 'a>> {
    Ok(match c.settings(level)? {
        Settings::None => Box::new(Plain(w)),
        Settings::Gzip(l) => Box::new(GzipMembers::new(w, l)?),
        Settings::Snappy => Box::new(WholeBlocks::new(
            snap::write::FrameEncoder::new(w),
            SNAPPY_BLOCK,
        )),
        Settings::Lz4 => {
            // pierrec/lz4 v2 (PBM's reader) refuses linked blocks; 4 MiB blocks and the
            // content checksum are what its writer produces too.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max4MB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .content_checksum(true);
            Box::new(lz4_flex::frame::FrameEncoder::with_frame_info(info, w))
        }
        Settings::S2(l) => Box::new(S2Writer::new(w, l)),
        Settings::Zstd(l) => {
            let mut z = zstd::stream::write::Encoder::new(w, l)?;
            // klauspost's encoder writes the content checksum by default; keep the same
            // integrity check for files PBM reads back.
            z.include_checksum(true)?;
            Box::new(z)
        }
    })
}

/// A decompressor for `c` reading from `r`, reading what PBM's Go readers read:
/// concatenated gzip members, zstd frames, LZ4 frames and S2/Snappy streams; `snappy` also
/// reads S2 streams (see the module docs); 0 bytes is an empty stream except for gzip.
///
/// # Errors
/// For zstd, which reads one byte here to tell empty input apart, an input error or a
/// failed allocation of the decoder.
pub fn decoder<'a, R: Read + Send + 'a>(
    c: Compression,
    r: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip | Compression::Pgzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Snappy | Compression::S2 => Box::new(FramedReader::new(r)),
        Compression::Lz4 => Box::new(Lz4Frames::new(r)),
        Compression::Zstd => {
            // The zstd crate calls 0 bytes an incomplete frame; klauspost's reader (PBM's)
            // calls it an empty stream.
            let mut peek = Peek {
                inner: r,
                first: None,
            };
            match peek.has_more()? {
                true => Box::new(zstd::stream::read::Decoder::new(peek)?),
                false => Box::new(io::empty()),
            }
        }
    })
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write + Send> Encoder for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}

/// Input per gzip member: the compressor's and output buffers are what bounds memory
/// (~2 MiB per stream); a larger block gains < 0.1% ratio (each member restarts the 32 KiB
/// window).
const GZIP_BLOCK: usize = 1 << 20;

/// gzip as a series of members, each compressing [`GZIP_BLOCK`] bytes of input with
/// libdeflate (a whole-buffer compressor). A multi-member file is standard gzip (RFC 1952
/// §2.2): Go's `gzip.NewReader`, which PBM reads `.gz` with for both `gzip` and `pgzip`, is
/// multistream by default, as are zlib's `gunzip` and klauspost's pgzip reader. Cutting at
/// fixed input offsets makes the output independent of how writes arrive.
struct GzipMembers<W> {
    inner: W,
    z: libdeflater::Compressor,
    buf: Vec<u8>,
    out: Vec<u8>,
    members: u64,
}

impl<W: Write> GzipMembers<W> {
    fn new(inner: W, level: i32) -> io::Result<Self> {
        let lvl = libdeflater::CompressionLvl::new(level).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("gzip level {level} out of libdeflate's range"),
            )
        })?;
        let mut z = libdeflater::Compressor::new(lvl);
        let bound = z.gzip_compress_bound(GZIP_BLOCK);
        Ok(Self {
            inner,
            z,
            buf: Vec::with_capacity(GZIP_BLOCK),
            out: vec![0; bound],
            members: 0,
        })
    }

    fn member(&mut self) -> io::Result<()> {
        let n = self
            .z
            .gzip_compress(&self.buf, &mut self.out)
            .map_err(|e| io::Error::other(format!("libdeflate gzip: {e}")))?;
        self.inner.write_all(&self.out[..n])?;
        self.buf.clear();
        self.members += 1;
        Ok(())
    }
}

impl<W: Write> Write for GzipMembers<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(GZIP_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_BLOCK {
            self.member()?;
        }
        Ok(n)
    }

    /// Only flushes what whole members wrote; a partial block waits for `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write + Send> Encoder for GzipMembers<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        // Empty input still gets one (empty) member: Go's gzip reader refuses 0 bytes.
        if !self.buf.is_empty() || self.members == 0 {
            self.member()?;
        }
        self.inner.flush()
    }
}

/// Snappy's framing block size (64 KiB of uncompressed data per chunk).
const SNAPPY_BLOCK: usize = 1 << 16;

/// Feeds an encoder whole blocks only. `snap`'s encoder cuts a chunk at the end of every
/// large `write`, so its output would depend on how the input happened to arrive (a read
/// of 65,537 bytes yields a 1-byte chunk); with whole blocks the same input always gives
/// the same bytes, whatever the read sizes.
struct WholeBlocks<E> {
    inner: E,
    buf: Vec<u8>,
    block: usize,
}

impl<E> WholeBlocks<E> {
    fn new(inner: E, block: usize) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(block),
            block,
        }
    }
}

impl<E: Write> Write for WholeBlocks<E> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.block - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.block {
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(n)
    }

    /// Only flushes the inner encoder's output; a partial block waits for `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<E: Encoder + Write> Encoder for WholeBlocks<E> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.inner.write_all(&rest)?;
        }
        let inner: Box<E> = Box::new(self.inner);
        inner.finish()
    }
}

impl<W: Write + Send> Encoder for snap::write::FrameEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).into_inner().map_err(|e| e.into_error())?.flush()
    }
}

impl<W: Write + Send> Encoder for lz4_flex::frame::FrameEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish().map_err(io::Error::other)?.flush()
    }
}

impl<W: Write + Send> Encoder for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

/// LZ4 frames back to back, as pierrec/lz4 (PBM's reader) reads them. lz4_flex's
/// `FrameDecoder` stops after the first frame and ignores whatever follows.
struct Lz4Frames<R: Read> {
    frame: Option<lz4_flex::frame::FrameDecoder<Peek<R>>>,
}

impl<R: Read> Lz4Frames<R> {
    fn new(r: R) -> Self {
        let peek = Peek {
            inner: r,
            first: None,
        };
        Self {
            frame: Some(lz4_flex::frame::FrameDecoder::new(peek)),
        }
    }
}

impl<R: Read> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut rest = self.frame.take().map(|f| f.into_inner());
            if let Some(peek) = rest.as_mut() {
                if peek.has_more()? {
                    self.frame = rest.map(lz4_flex::frame::FrameDecoder::new);
                }
            }
        }
    }
}

/// A reader that can look one byte ahead (to tell the end of input from another frame).
struct Peek<R> {
    inner: R,
    first: Option<u8>,
}

impl<R: Read> Peek<R> {
    fn has_more(&mut self) -> io::Result<bool> {
        if self.first.is_some() {
            return Ok(true);
        }
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(false),
                Ok(_) => {
                    self.first = Some(b[0]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Read for Peek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.first.take(), buf.first_mut()) {
            (Some(b), Some(slot)) => {
                *slot = b;
                Ok(1)
            }
            (first, _) => {
                self.first = first;
                self.inner.read(buf)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// S2 / Snappy framing
// ---------------------------------------------------------------------------------------

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_STREAM_ID: u8 = 0xff;
const S2_MAGIC_CHUNK: &[u8; 10] = b"\xff\x06\x00\x00S2sTwO";
/// Klauspost's writer default, and what PBM writes.
const S2_BLOCK: usize = 1 << 20;
/// The largest block an S2 stream may hold (Snappy's is 64 KiB, which is smaller).
const S2_MAX_BLOCK: usize = 4 << 20;

/// The S2 stream writer, as klauspost's `s2.Writer` (single-threaded): 1 MiB blocks,
/// stored uncompressed when compression would not save at least 1/32 + 5 bytes.
///
/// minlz has a `Writer`, but only at the default level and it finishes in `Drop`, which
/// hides write errors; PBM's levels need better/best/uncompressed blocks.
struct S2Writer<W> {
    inner: W,
    level: S2Level,
    /// Keeps minlz's hash tables between blocks (its free functions allocate and zero
    /// them for every 1 MiB block).
    enc: minlz::Encoder,
    /// Level 3's encoder for full blocks (see `s2_better`), made on first use.
    better: Option<Box<s2_better::Better>>,
    buf: Vec<u8>,
    wrote_header: bool,
}

impl<W: Write> S2Writer<W> {
    fn new(inner: W, level: S2Level) -> Self {
        Self {
            inner,
            level,
            enc: minlz::Encoder::new(),
            better: None,
            buf: Vec::with_capacity(S2_BLOCK),
            wrote_header: false,
        }
    }

    fn write_block(&mut self) -> io::Result<()> {
        if !self.wrote_header {
            self.inner.write_all(S2_MAGIC_CHUNK)?;
            self.wrote_header = true;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let crc = masked_crc32c(&self.buf);
        let owned;
        let compressed: Option<&[u8]> = match self.level {
            S2Level::Uncompressed => None,
            S2Level::Better if self.buf.len() >= s2_better::MIN_BLOCK => self
                .better
                .get_or_insert_with(|| Box::new(s2_better::Better::new()))
                .encode(&self.buf),
            level => {
                owned = match level {
                    S2Level::Better => self.enc.encode_better(&self.buf),
                    S2Level::Best => self.enc.encode_best(&self.buf),
                    _ => self.enc.encode(&self.buf),
                };
                Some(owned.as_slice())
            }
        };
        let limit = self.buf.len() - self.buf.len() / 32 - 5.min(self.buf.len());
        let (kind, body) = match compressed {
            Some(c) if c.len() <= limit => (CHUNK_COMPRESSED, c),
            _ => (CHUNK_UNCOMPRESSED, self.buf.as_slice()),
        };
        let len = body.len() + 4;
        let header = [kind, len as u8, (len >> 8) as u8, (len >> 16) as u8];
        self.inner.write_all(&header)?;
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(body)?;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for S2Writer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == S2_BLOCK {
            self.write_block()?;
        }
        let n = data.len().min(S2_BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Only flushes the inner writer: cutting a block here would make the output depend
    /// on how callers happen to flush.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write + Send> Encoder for S2Writer<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        // Also for empty input: a lone stream identifier says "empty S2 stream" to every
        // reader, where a 0-byte object would be refused by PBM's storage layer.
        self.write_block()?;
        self.inner.flush()
    }
}

/// Reads the Snappy framing format and its S2 extension, like klauspost's `s2.Reader`:
/// the stream must start with a stream identifier (`sNaPpY` or `S2sTwO`, and may repeat
/// it, as concatenated streams do), blocks are CRC-checked, skippable chunks
/// (0x80..=0xfe: padding, S2 index) are skipped and reserved ones (0x02..=0x7f) refused.
///
/// minlz's `Reader` is not used: it takes a chunk header cut short by the end of input
/// for a clean end of stream, which would turn a truncated object into silently short
/// data.
struct FramedReader<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    scratch: Vec<u8>,
    seen_id: bool,
    /// The current stream said `sNaPpY`: its blocks are plain Snappy.
    snappy: bool,
    snap: snap::raw::Decoder,
}

/// The framing format's block checksum: CRC-32C, masked. minlz has one, but in software
/// at about 0.5 GB/s it would cap S2 decoding; crc-fast uses the CPU's CRC instructions.
fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32;
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("s2/snappy: corrupt input: {}", msg.into()),
    )
}

impl<R: Read> FramedReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            out: Vec::new(),
            pos: 0,
            scratch: Vec::new(),
            seen_id: false,
            snappy: false,
            snap: snap::raw::Decoder::new(),
        }
    }

    /// Fills `buf` completely; `Ok(false)` only when the input ended before its first byte.
    fn read_full(&mut self, buf: &mut [u8], eof_ok: bool) -> io::Result<bool> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) if n == 0 && eof_ok => return Ok(false),
                Ok(0) => return Err(corrupt("truncated stream")),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Decodes the next data chunk into `out`; `Ok(false)` at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        loop {
            let mut h = [0u8; 4];
            if !self.read_full(&mut h, true)? {
                return Ok(false);
            }
            let len = usize::from(h[1]) | usize::from(h[2]) << 8 | usize::from(h[3]) << 16;
            let kind = h[0];
            if kind != CHUNK_STREAM_ID && !self.seen_id {
                return Err(corrupt("missing stream identifier"));
            }
            let mut body = std::mem::take(&mut self.scratch);
            body.resize(len, 0);
            let res = self.read_full(&mut body, false);
            let res = res.and_then(|_| self.chunk(kind, &body));
            self.scratch = body;
            match res? {
                true => return Ok(true),
                false => continue,
            }
        }
    }

    /// Handles one chunk; `Ok(true)` when it produced data.
    fn chunk(&mut self, kind: u8, body: &[u8]) -> io::Result<bool> {
        match kind {
            CHUNK_STREAM_ID => {
                if body != b"S2sTwO" && body != b"sNaPpY" {
                    return Err(corrupt("bad stream identifier"));
                }
                self.seen_id = true;
                self.snappy = body == b"sNaPpY";
                Ok(false)
            }
            CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                let (crc, data) = body
                    .split_first_chunk::<4>()
                    .ok_or_else(|| corrupt("chunk shorter than its checksum"))?;
                if kind == CHUNK_COMPRESSED {
                    let (n, _) = minlz::decode_len(data).map_err(|e| corrupt(e.to_string()))?;
                    if n > S2_MAX_BLOCK {
                        return Err(corrupt(format!("block of {n} bytes exceeds 4 MiB")));
                    }
                    self.out.resize(n, 0);
                    // snap decodes Snappy blocks (at Go's speed or better); s2_block
                    // stays the fallback in case a writer put S2 blocks under the Snappy
                    // magic (PBM < 1.7 did).
                    let fast = match self.snappy {
                        true => self
                            .snap
                            .decompress(data, &mut self.out)
                            .ok()
                            .filter(|&got| got == n),
                        false => None,
                    };
                    if fast.is_none() {
                        let (_, head) =
                            minlz::decode_len(data).map_err(|e| corrupt(e.to_string()))?;
                        s2_block::decode(&mut self.out, &data[head..])
                            .map_err(|_| corrupt("bad S2 block"))?;
                    }
                } else {
                    if data.len() > S2_MAX_BLOCK {
                        return Err(corrupt("uncompressed block exceeds 4 MiB"));
                    }
                    self.out.clear();
                    self.out.extend_from_slice(data);
                }
                if masked_crc32c(&self.out) != u32::from_le_bytes(*crc) {
                    return Err(corrupt("checksum mismatch"));
                }
                self.pos = 0;
                Ok(!self.out.is_empty())
            }
            0x02..=0x7f => Err(corrupt(format!("unsupported chunk type {kind:#04x}"))),
            _ => Ok(false),
        }
    }
}

impl<R: Read> Read for FramedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.out.len() && !self.next_block()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Async streaming adapters
// ---------------------------------------------------------------------------------------

/// Output is handed over in chunks of this size...
const CHUNK: usize = 1 << 20;
/// ...with at most this many queued: memory stays bounded whatever the object's size.
const QUEUE: usize = 4;
/// How much input the compressing thread reads at a time.
const INPUT_BUF: usize = 256 << 10;

/// `Ok(None)` marks a clean end: a channel closed without it means the thread died.
type Msg = io::Result<Option<Bytes>>;

/// Wraps `input` so that reading it yields the compressed stream, `level` as PBM's
/// `--compression-level`. The codec runs on a blocking thread; an invalid level or any
/// error reaches the reader as an `io::Error`. `Compression::None` returns `input` as is.
///
/// Memory is bounded whatever the object's size: at most 6 output chunks of
/// 1 MiB, a 256 KiB input buffer and the codec's own state (S2 1 MiB blocks, LZ4 4 MiB
/// blocks, zstd's window). Dropping the returned reader stops the thread at its next read
/// or write, also while the input is stalled. Must be called within a Tokio runtime.
pub fn compress_reader(input: ByteReader, c: Compression, level: Option<i32>) -> ByteReader {
    if c == Compression::None {
        return input;
    }
    spawn_pipe(input, move |src, out| {
        let mut enc = encoder(c, level, ChannelWriter::new(out))?;
        let mut buf = vec![0u8; INPUT_BUF];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            enc.write_all(&buf[..n])?;
        }
        enc.finish()
    })
}

/// Wraps `input` so that reading it yields the decompressed stream. Corrupt or truncated
/// input reaches the reader as an `io::Error`. `Compression::None` returns `input` as is.
pub fn decompress_reader(input: ByteReader, c: Compression) -> ByteReader {
    if c == Compression::None {
        return input;
    }
    spawn_pipe(input, move |src, out| {
        let mut dec = decoder(c, src)?;
        let mut chunk = BytesMut::zeroed(CHUNK);
        let mut filled = 0;
        loop {
            match dec.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if filled == CHUNK {
                out.send(chunk.freeze())?;
                chunk = BytesMut::zeroed(CHUNK);
                filled = 0;
            }
        }
        chunk.truncate(filled);
        out.send(chunk.freeze())
    })
}

/// Runs `work` on a blocking thread with the input as a sync reader, and returns the
/// receiving end as an async reader.
fn spawn_pipe<F>(input: ByteReader, work: F) -> ByteReader
where
    F: FnOnce(&mut (dyn Read + Send), &Sink) -> io::Result<()> + Send + 'static,
{
    let Ok(handle) = Handle::try_current() else {
        return error_reader(io::Error::other(
            "codec adapters need a Tokio runtime (none is running)",
        ));
    };
    let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
    let watched = UntilClosed {
        inner: input,
        closed: Box::pin({
            let tx = tx.clone();
            async move { tx.closed().await }
        }),
    };
    let mut src = SyncIoBridge::new_with_handle(watched, handle.clone());
    handle.spawn_blocking(move || {
        let sink = Sink { tx };
        let res = work(&mut src, &sink);
        // A failed send means the reader is gone: nobody is left to tell.
        let _ = sink.tx.blocking_send(res.map(|()| None));
    });
    receiver_reader(rx)
}

fn receiver_reader(rx: mpsc::Receiver<Msg>) -> ByteReader {
    let stream = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Ok(Some(b))) => Some((Ok(b), Some(rx))),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some((Err(e), None)),
            None => Some((
                Err(io::Error::other(
                    "codec thread stopped before the end of the stream",
                )),
                None,
            )),
        }
    });
    Box::new(StreamReader::new(Box::pin(stream)))
}

fn error_reader(e: io::Error) -> ByteReader {
    let stream = futures::stream::once(async move { Err::<Bytes, _>(e) });
    Box::new(StreamReader::new(Box::pin(stream)))
}

/// The blocking thread's end of the channel.
struct Sink {
    tx: mpsc::Sender<Msg>,
}

impl Sink {
    fn send(&self, b: Bytes) -> io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        self.tx
            .blocking_send(Ok(Some(b)))
            .map_err(|_| reader_gone())
    }
}

fn reader_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the codec's output reader was dropped",
    )
}

/// Collects an encoder's output into [`CHUNK`]-sized pieces for the channel.
struct ChannelWriter<'a> {
    out: &'a Sink,
    buf: BytesMut,
}

impl<'a> ChannelWriter<'a> {
    fn new(out: &'a Sink) -> Self {
        Self {
            out,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }
}

impl Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK));
            self.out.send(full.freeze())?;
        }
        Ok(n)
    }

    /// Encoders flush only when finishing, so this is where the last piece leaves.
    fn flush(&mut self) -> io::Result<()> {
        let rest = self.buf.split().freeze();
        self.out.send(rest)
    }
}

/// The input as the blocking thread sees it: a read fails as soon as the output reader
/// is dropped, even while the input itself is stalled, so the thread stops promptly.
struct UntilClosed {
    inner: ByteReader,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl AsyncRead for UntilClosed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(reader_gone()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// Levels worth covering per codec: default, PBM's named extremes, and one that PBM
    /// maps silently.
    fn levels(c: Compression) -> &'static [Option<i32>] {
        match c {
            Compression::None | Compression::Snappy => &[None],
            Compression::Gzip | Compression::Pgzip => &[None, Some(-2), Some(0), Some(1), Some(9)],
            Compression::Lz4 => &[None, Some(0), Some(9)],
            Compression::S2 => &[None, Some(1), Some(2), Some(3), Some(4), Some(7)],
            Compression::Zstd => &[None, Some(-5), Some(1), Some(7), Some(22)],
        }
    }

    fn encode(c: Compression, level: Option<i32>, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = encoder(c, level, &mut out).expect("encoder");
        // Odd write sizes so that block boundaries never line up with writes.
        for piece in data.chunks(7919) {
            enc.write_all(piece).expect("compress write");
        }
        enc.finish().expect("finish");
        out
    }

    fn decode(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(c, data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Compressible, BSON-ish bytes with an incompressible stretch.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (i / 50_000) % 3 == 2 {
                    (x >> 16) as u8
                } else {
                    b"user000123 city street "[i % 23]
                }
            })
            .collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    /// Serves `data` in reads of the given sizes (cycled), to mimic network input.
    struct Chunky {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        i: usize,
    }

    impl AsyncRead for Chunky {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let want = self.sizes[self.i % self.sizes.len()].max(1);
            self.i += 1;
            let n = want.min(buf.remaining()).min(self.data.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    fn chunky(data: Vec<u8>, sizes: Vec<usize>) -> ByteReader {
        Box::new(Chunky {
            data,
            pos: 0,
            sizes,
            i: 0,
        })
    }

    /// Yields `ok` bytes, then fails.
    struct Failing(Vec<u8>);

    impl AsyncRead for Failing {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Ready(Err(io::Error::other("boom: input failed")));
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(mut r: ByteReader) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[test]
    fn names_extensions_and_parsing() {
        for c in Compression::ALL {
            assert_eq!(c.as_str().parse::<Compression>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
            let file = format!("2026-11-26T11:40:53Z/rs0/db.coll{}", c.extension());
            let expect = if c == Compression::Gzip {
                Compression::Pgzip
            } else {
                c
            };
            assert_eq!(Compression::from_file_name(&file), expect, "{file}");
        }
        assert_eq!(Compression::default(), Compression::S2);
        assert_eq!(Compression::Pgzip.extension(), ".gz");
        let err = "S2"
            .parse::<Compression>()
            .expect_err("PBM names are case-sensitive");
        assert!(
            err.to_string()
                .contains("none, gzip, pgzip, snappy, lz4, s2, zstd"),
            "{err}"
        );
        assert_eq!(
            Compression::from_file_name("pbmPitr/rs1/20220207/a-1.b-1.oplog.snappy"),
            Compression::Snappy
        );
        assert_eq!(
            Compression::from_file_name("x_rs1.dump.s2"),
            Compression::S2
        );
        assert_eq!(Compression::from_file_name("meta.pbm"), Compression::None);
        assert_eq!(
            Compression::from_file_name("dir.s2/file"),
            Compression::None
        );
        assert_eq!(Compression::from_file_name("s2"), Compression::None);
    }

    #[test]
    fn serde_uses_pbm_names() {
        let json = serde_json::to_string(&[Compression::Zstd, Compression::Pgzip]).expect("ser");
        assert_eq!(json, r#"["zstd","pgzip"]"#);
        let back: Vec<Compression> = serde_json::from_str(&json).expect("de");
        assert_eq!(back, [Compression::Zstd, Compression::Pgzip]);
        let err = serde_json::from_str::<Compression>(r#""brotli""#).expect_err("unknown");
        assert!(err.to_string().contains("valid: none, gzip"), "{err}");
    }

    #[test]
    fn levels_follow_pbm() {
        for l in -2..=9 {
            assert_eq!(Compression::Gzip.check_level(Some(l)), Ok(()));
            assert_eq!(Compression::Pgzip.check_level(Some(l)), Ok(()));
        }
        for l in [-3, 10, 42] {
            let err = Compression::Gzip
                .check_level(Some(l))
                .expect_err("out of range");
            assert!(err.to_string().contains("-2..=9"), "{err}");
        }
        // PBM maps every other level without complaint; so must rbm.
        for c in [
            Compression::S2,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            for l in [i32::MIN, -1, 0, 5, 100] {
                assert_eq!(c.check_level(Some(l)), Ok(()), "{c} {l}");
            }
        }
        let zstd = |l| match Compression::Zstd.settings(l) {
            Ok(Settings::Zstd(z)) => z,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            [
                None,
                Some(-1),
                Some(2),
                Some(3),
                Some(5),
                Some(6),
                Some(9),
                Some(10),
                Some(22)
            ]
            .map(zstd),
            [3, 1, 1, 3, 3, 7, 7, 11, 11]
        );
        let s2 = |l| match Compression::S2.settings(l) {
            Ok(Settings::S2(s)) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            [None, Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)].map(s2),
            [
                S2Level::Default,
                S2Level::Default,
                S2Level::Uncompressed,
                S2Level::Default,
                S2Level::Better,
                S2Level::Best,
                S2Level::Default
            ]
        );
    }

    #[test]
    fn sync_round_trip_every_codec_and_level() {
        let data = sample(3 * S2_BLOCK + 12_345);
        for c in Compression::ALL {
            for &level in levels(c) {
                let z = encode(c, level, &data);
                assert_eq!(decode(c, &z).expect("decode"), data, "{c} {level:?}");
                let empty = encode(c, level, &[]);
                assert_eq!(
                    decode(c, &empty).expect("decode empty"),
                    b"",
                    "{c} {level:?}"
                );
            }
        }
    }

    /// gzip is written as one member per `GZIP_BLOCK` of input, cut at fixed offsets
    /// (so the bytes do not depend on write sizes), which multistream readers join.
    #[test]
    fn gzip_members_cut_at_fixed_offsets() {
        let data = sample(2 * GZIP_BLOCK + 1);
        for c in [Compression::Gzip, Compression::Pgzip] {
            for &level in levels(c) {
                let z = encode(c, level, &data);
                let mut first = Vec::new();
                flate2::read::GzDecoder::new(&z[..])
                    .read_to_end(&mut first)
                    .expect("first member");
                assert_eq!(first, data[..GZIP_BLOCK], "{c} {level:?}");
                let mut one_write = Vec::new();
                let mut enc = encoder(c, level, &mut one_write).expect("encoder");
                enc.write_all(&data).expect("write");
                enc.finish().expect("finish");
                assert_eq!(one_write, z, "{c} {level:?}");
            }
        }
    }

    /// pgzip output and parallel writers produce several members/frames/streams back to
    /// back: a decoder that stops after the first one silently drops data.
    #[test]
    fn concatenated_streams_decode_whole() {
        let (a, b) = (sample(300_000), sample(70_000));
        for c in [
            Compression::Gzip,
            Compression::Pgzip,
            Compression::Snappy,
            Compression::S2,
            Compression::Zstd,
            Compression::Lz4,
        ] {
            let mut z = encode(c, None, &a);
            z.extend_from_slice(&encode(c, None, &b));
            let out = decode(c, &z).expect("concatenated decode");
            assert_eq!(out.len(), a.len() + b.len(), "{c}");
            assert!(out[..a.len()] == a[..] && out[a.len()..] == b[..], "{c}");
        }
    }

    /// A 0-byte input decodes as PBM's Go readers do: gzip fails (`EOF`), the others give
    /// an empty stream.
    #[test]
    fn zero_byte_input_matches_go() {
        for c in Compression::ALL {
            let r = decode(c, b"");
            match c {
                Compression::Gzip | Compression::Pgzip => {
                    assert!(r.is_err(), "{c}: Go's gzip.NewReader refuses empty input")
                }
                _ => match r {
                    Ok(out) => assert_eq!(out, b"", "{c}"),
                    Err(e) => panic!("{c}: {e}"),
                },
            }
        }
    }

    #[test]
    fn crc_matches_minlz() {
        for len in [0, 1, 7, 64, 1000, 65_537] {
            let data = sample(len);
            assert_eq!(masked_crc32c(&data), minlz::crc::crc(&data), "len {len}");
        }
    }

    #[test]
    fn s2_levels_compress_as_expected() {
        let data = sample(2 * S2_BLOCK);
        let size = |l| encode(Compression::S2, Some(l), &data).len();
        let (raw, default, better, best) = (size(1), size(2), size(3), size(4));
        assert!(raw > data.len(), "level 1 stores blocks uncompressed");
        // encode_best is not smaller than encode_better on every input; both beat default.
        assert!(
            default < raw && better < default && best < default,
            "{default} {better} {best}"
        );
    }

    #[test]
    fn s2_output_is_a_valid_snappy_framed_s2_stream() {
        let z = encode(Compression::S2, None, &sample(100_000));
        assert_eq!(&z[..10], S2_MAGIC_CHUNK);
        // The other S2 implementation in the tree must agree.
        let mut out = Vec::new();
        minlz::Reader::new(&z[..])
            .read_to_end(&mut out)
            .expect("minlz reads rbm's S2");
        assert_eq!(out, sample(100_000));
        // And rbm reads minlz's S2, and snap's Snappy framing, under either name.
        let mut m = Vec::new();
        {
            let mut w = minlz::Writer::new(&mut m);
            w.write_all(&sample(70_000)).expect("minlz write");
            w.flush().expect("minlz flush");
        }
        let mut s = Vec::new();
        {
            let mut w = snap::write::FrameEncoder::new(&mut s);
            w.write_all(&sample(70_000)).expect("snap write");
            w.flush().expect("snap flush");
        }
        for c in [Compression::S2, Compression::Snappy] {
            assert_eq!(decode(c, &m).expect("minlz stream"), sample(70_000));
            assert_eq!(decode(c, &s).expect("snappy stream"), sample(70_000));
        }
    }

    #[test]
    fn truncated_or_corrupt_input_is_an_error() {
        let data = sample(600_000);
        for c in Compression::ALL {
            if c == Compression::None {
                continue;
            }
            let z = encode(c, None, &data);
            // Cuts inside the stream: in the first header, mid-stream, and just before the
            // end (S2/Snappy framing has no end marker, so a cut exactly between chunks is
            // indistinguishable from a clean end, in Go's reader too).
            for cut in [1, 3, 11, z.len() / 2, z.len() - 1] {
                let r = decode(c, &z[..cut]);
                assert!(r.is_err(), "{c}: cut at {cut}/{} decoded cleanly", z.len());
            }
            let mut bad = z.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x5a;
            match decode(c, &bad) {
                Err(_) => {}
                Ok(out) => panic!("{c}: corruption undetected ({} bytes out)", out.len()),
            }
        }
        assert!(
            decode(Compression::S2, b"\x00\x05\x00\x00abcde").is_err(),
            "no stream id"
        );
        let mut reserved = S2_MAGIC_CHUNK.to_vec();
        reserved.extend_from_slice(b"\x02\x01\x00\x00x");
        assert!(
            decode(Compression::S2, &reserved).is_err(),
            "reserved chunk type"
        );
        let mut skippable = S2_MAGIC_CHUNK.to_vec();
        skippable.extend_from_slice(b"\xfe\x02\x00\x00\x00\x00");
        assert_eq!(decode(Compression::S2, &skippable).expect("padding"), b"");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn async_round_trip(
            data in prop_oneof![
                Just(Vec::new()),
                proptest::collection::vec(any::<u8>(), 0..5000),
                (0usize..2_500_000).prop_map(sample),
            ],
            sizes in proptest::collection::vec(1usize..70_000, 1..8),
            codec in proptest::sample::select(Compression::ALL.to_vec()),
            pick in any::<prop::sample::Index>(),
        ) {
            let level = *pick.get(levels(codec));
            let rt = runtime();
            let back = rt.block_on(async {
                let z = read_all(compress_reader(chunky(data.clone(), sizes.clone()), codec, level))
                    .await
                    .expect("compress");
                // The async and sync paths produce the same bytes, however input arrives.
                prop_assert_eq!(&z, &encode(codec, level, &data));
                let back = read_all(decompress_reader(chunky(z, sizes), codec))
                    .await
                    .expect("decompress");
                Ok(back)
            })?;
            prop_assert_eq!(back, data);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn errors_reach_the_reader() {
        for c in Compression::ALL {
            if c == Compression::None {
                continue;
            }
            let z = encode(c, None, &sample(300_000));
            let cut = z[..z.len() - 1].to_vec();
            let e = read_all(decompress_reader(chunky(cut, vec![4096]), c))
                .await
                .expect_err("truncated input must fail");
            assert!(!e.to_string().is_empty(), "{c}");

            let e = read_all(compress_reader(
                Box::new(Failing(vec![7; 100_000])),
                c,
                None,
            ))
            .await
            .expect_err("failing input must fail compression");
            assert!(e.to_string().contains("boom"), "{c}: {e}");
            let e = read_all(decompress_reader(Box::new(Failing(z[..100].to_vec())), c))
                .await
                .expect_err("failing input must fail decompression");
            assert!(e.to_string().contains("boom"), "{c}: {e}");
        }
        let e = read_all(compress_reader(
            chunky(vec![1], vec![1]),
            Compression::Gzip,
            Some(11),
        ))
        .await
        .expect_err("invalid level");
        assert!(e.to_string().contains("-2..=9"), "{e}");
    }

    /// A reader that never yields and reports when it is dropped.
    struct Stalled(Arc<AtomicBool>);

    impl AsyncRead for Stalled {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl Drop for Stalled {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_the_reader_stops_the_codec_thread() {
        for c in [Compression::S2, Compression::Zstd] {
            let dropped = Arc::new(AtomicBool::new(false));
            let input = Box::new(Stalled(dropped.clone()));
            let mut r = compress_reader(input, c, None);
            let mut buf = [0u8; 16];
            let read =
                tokio::time::timeout(std::time::Duration::from_millis(100), r.read(&mut buf));
            assert!(read.await.is_err(), "a stalled input yields nothing");
            drop(r);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !dropped.load(Ordering::SeqCst) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{c}: codec thread still running"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }

        // A producer blocked on a full channel stops too: infinite input, nobody reading.
        let dropped = Arc::new(AtomicBool::new(false));
        struct Endless(Arc<AtomicBool>);
        impl AsyncRead for Endless {
            fn poll_read(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                buf.put_slice(&vec![0u8; buf.remaining()]);
                Poll::Ready(Ok(()))
            }
        }
        impl Drop for Endless {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let r = compress_reader(Box::new(Endless(dropped.clone())), Compression::None, None);
        let r = decompress_reader(compress_reader(r, Compression::Lz4, None), Compression::Lz4);
        let mut r = r.take(10 << 20);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).await.expect("first 10 MiB");
        drop(r);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "producer still running"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn none_is_a_pass_through() {
        let data = sample(10_000);
        let out = read_all(decompress_reader(
            compress_reader(chunky(data.clone(), vec![333]), Compression::None, Some(5)),
            Compression::None,
        ))
        .await
        .expect("none");
        assert_eq!(out, data);
    }
}
