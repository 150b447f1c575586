//! `<bcp>/<rs>/meta.pbm`: PBM's logical backup metadata, v2 (`pbm/archive/backup.go`).
//! Stored as one uncompressed BSON document.

use super::backup::null_as_empty;
use serde::{Deserialize, Serialize};

/// PBM's `archive.MetaFileV2`.
pub const META_FILE_V2: &str = "meta.pbm";

/// PBM's `ArchiveMetaV2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveMetaV2 {
    /// PBM version that wrote the backup.
    pub version: String,
    #[serde(rename = "serverVersion")]
    pub server_version: String,
    pub fcv: String,
    #[serde(rename = "specifications", default, deserialize_with = "null_as_empty")]
    pub namespaces: Vec<NamespaceV2>,
}

impl ArchiveMetaV2 {
    /// Parses the bytes of a `meta.pbm` object.
    pub fn from_bson_bytes(bytes: &[u8]) -> Result<Self, bson::error::Error> {
        bson::deserialize_from_slice(bytes)
    }

    /// The bytes of a `meta.pbm` object.
    pub fn to_bson_bytes(&self) -> Result<Vec<u8>, bson::error::Error> {
        bson::serialize_to_vec(self)
    }
}

/// PBM's `NamespaceV2`: one collection, view or time-series collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceV2 {
    pub db: String,
    /// Collection name (`system.buckets.<coll>` for a time-series collection).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NamespaceType,
    /// Collection UUID as 32 hex digits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// `listCollections` options, in server order.
    #[serde(default, skip_serializing_if = "bson::Document::is_empty")]
    pub options: bson::Document,
    /// Index specs, reduced to the keys PBM keeps.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub indexes: Vec<bson::Document>,
    /// CRC-64 of the dumped document bytes ([`CollectionCrc`]), as Go's int64.
    pub crc: i64,
    /// Uncompressed bytes of the dumped documents.
    pub size: i64,
}

impl NamespaceV2 {
    /// `db.coll`, with the time-series bucket prefix removed (PBM's `NS`).
    pub fn ns(&self) -> String {
        let coll = self
            .name
            .strip_prefix("system.buckets.")
            .unwrap_or(&self.name);
        format!("{}.{}", self.db, coll)
    }
}

/// PBM's namespace `type` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceType {
    Collection,
    View,
    Timeseries,
}

/// The running checksum PBM keeps over every document of a collection dump: Go's
/// `crc64.New(crc64.MakeTable(crc64.ECMA))`, i.e. the ECMA-182 polynomial, reflected,
/// with all-ones init and final xor — the catalogue's CRC-64/XZ. Computed with
/// crc-fast's carry-less-multiply kernels: every byte of every backup and restore goes
/// through here, and a table-driven CRC costs more CPU than the s2 codec.
pub struct CollectionCrc(crc_fast::Digest);

impl CollectionCrc {
    /// An empty checksum.
    pub fn new() -> Self {
        Self(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Xz))
    }

    /// Adds the bytes of the next documents.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The value stored in `crc`: Go converts the `uint64` sum with `int64(...)`.
    pub fn finish(self) -> i64 {
        self.0.finalize() as i64
    }
}

impl Default for CollectionCrc {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_go_ecma() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ECMA)).
        let mut c = CollectionCrc::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish() as u64, 0x995d_c9bb_df19_39fa);
        assert_eq!(CollectionCrc::new().finish(), 0);
    }
}
