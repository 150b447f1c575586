//! PBM's configuration document (`admin.pbmConfig`, `pbm config --file`,
//! `pbm/config/config.go`): storage, PITR, backup and restore sections plus the
//! config epoch, and the storage-profile documents that share the collection.

mod schedule;
mod storage;

pub use schedule::{parse_age, ScheduleConf, ScheduleTask};

pub use storage::{
    AzureConf, AzureCredentials, FilesystemConf, GoDuration, Retryer, S3Conf, S3Credentials,
    ServerSideEncryption, StorageConf, StorageType,
};

use crate::defs::{DEFAULT_COMPRESSION, DEFAULT_PITR_INTERVAL, WAIT_BACKUP_START};
use crate::gojson;
use crate::serde_util::is_false;
use bson::oid::ObjectId;
use bson::{Bson, Document, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Errors found while validating a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The YAML text could not be parsed, or a key is unknown or has the wrong type.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A key parsed but its value is not acceptable.
    #[error("invalid config: {key}: {reason}")]
    Invalid { key: String, reason: String },
    /// `pbm config <key>` / `--set <key>=...` with a key PBM does not have.
    #[error("invalid config key: {0}")]
    UnknownKey(String),
    /// `pbm config <key>` for a key that is valid but not set.
    #[error("config key {0} is not set")]
    NotSet(String),
}

/// Compression names PBM accepts (`compress.IsValidCompressionType`).
pub const COMPRESSION_TYPES: [&str; 7] = ["none", "gzip", "pgzip", "snappy", "lz4", "s2", "zstd"];

/// PBM's `config.Config`: the main document (no `profile` field) or a storage
/// profile (`{name, profile: true, storage}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Document `_id` in `pbmConfig`; never in YAML.
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    /// Profile name; empty for the main config.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "profile", default, skip_serializing_if = "is_false")]
    pub is_profile: bool,
    pub storage: StorageConf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreConf>,
    /// rbm's backup schedule (not PBM's; PBM ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleConf>,
    /// Cluster time of the last config change; operations carry the epoch they
    /// started under. Set by whoever writes the document, never by YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Timestamp>,
}

/// PBM's `PITRConf`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrConf {
    #[serde(default)]
    pub enabled: bool,
    /// Chunk span in minutes (may be fractional); default 10.
    #[serde(
        rename = "oplogSpanMin",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oplog_span_min: Option<f64>,
    #[serde(rename = "oplogOnly", default, skip_serializing_if = "is_false")]
    pub oplog_only: bool,
    /// `host:port` → priority; higher wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priority: BTreeMap<String, f64>,
    /// Defaults to the backup compression.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compression: String,
    #[serde(
        rename = "compressionLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compression_level: Option<i32>,
}

/// PBM's `BackupConf`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConf {
    /// Span of the oplog slices taken during a logical backup; 0 = the PITR span.
    #[serde(rename = "oplogSpanMin", default)]
    pub oplog_span_min: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub priority: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<BackupTimeouts>,
    /// Default `s2`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compression: String,
    #[serde(
        rename = "compressionLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compression_level: Option<i32>,
    #[serde(
        rename = "numParallelCollections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_collections: Option<i32>,
    #[serde(
        rename = "numParallelFiles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_files: Option<i32>,
}

/// PBM's `BackupTimeouts` (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTimeouts {
    /// Wait for every RS to reach `running`; default 33 s.
    #[serde(
        rename = "startingStatus",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub starting_status: Option<u32>,
    #[serde(
        rename = "balancerStop",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub balancer_stop: Option<u32>,
}

/// PBM's `RestoreConf`. PBM writes the integer fields even when zero, so they are
/// `Option` here to keep a stored document unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConf {
    /// Documents per insert batch; default 500.
    #[serde(rename = "batchSize", default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i32>,
    /// Insertion workers per collection; default 10.
    #[serde(
        rename = "numInsertionWorkers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_insertion_workers: Option<i32>,
    /// Default NumCPU/2.
    #[serde(
        rename = "numParallelCollections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_collections: Option<i32>,
    #[serde(
        rename = "numParallelFiles",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_parallel_files: Option<i32>,
    /// `votingMembers` (default), `majority` or 1..50.
    #[serde(
        rename = "indexCommitQuorum",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub index_commit_quorum: String,
    #[serde(
        rename = "numDownloadWorkers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_download_workers: Option<i32>,
    #[serde(
        rename = "maxDownloadBufferMb",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_download_buffer_mb: Option<i32>,
    /// Default 32.
    #[serde(
        rename = "downloadChunkMb",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub download_chunk_mb: Option<i32>,
    #[serde(
        rename = "mongodLocation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mongod_location: Option<String>,
    /// `host:port` → path of the `mongod` binary.
    #[serde(
        rename = "mongodLocationMap",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mongod_location_map: Option<BTreeMap<String, String>>,
    /// Default false.
    #[serde(
        rename = "fallbackEnabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fallback_enabled: Option<bool>,
    /// Default true.
    #[serde(
        rename = "allowPartlyDone",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_partly_done: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RestoreTimeouts>,
}

/// PBM's `RestoreTimeouts` (seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTimeouts {
    #[serde(
        rename = "balancerStop",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub balancer_stop: Option<u32>,
}

impl RestoreConf {
    /// PBM's default `batchSize` (mongorestore's bulk buffer).
    pub const DEFAULT_BATCH_SIZE: i32 = 500;
    /// PBM's default `numInsertionWorkers` per collection.
    pub const DEFAULT_INSERTION_WORKERS: i32 = 10;
    /// PBM's default `downloadChunkMb` for physical restores.
    pub const DEFAULT_DOWNLOAD_CHUNK_MB: i32 = 32;
    /// PBM's `DefaultRestoreIndexCommitQuorum`.
    pub const DEFAULT_INDEX_COMMIT_QUORUM: &'static str = "votingMembers";
    /// PBM's `MaxIndexCommitQuorum`.
    pub const MAX_INDEX_COMMIT_QUORUM: i64 = 50;

    /// `batchSize`, or 500 when unset or not positive.
    pub fn batch_size(&self) -> i32 {
        positive_or(self.batch_size, Self::DEFAULT_BATCH_SIZE)
    }
    /// `numInsertionWorkers`, or 10 when unset or not positive.
    pub fn num_insertion_workers(&self) -> i32 {
        positive_or(self.num_insertion_workers, Self::DEFAULT_INSERTION_WORKERS)
    }
    /// PBM's `GetNumParallelFiles`: at least 1.
    pub fn num_parallel_files(&self) -> i32 {
        positive_or(self.num_parallel_files, 1)
    }
    /// `numParallelCollections`, or PBM's default of half the CPUs (at least 1).
    pub fn num_parallel_collections(&self, num_cpu: usize) -> i32 {
        positive_or(self.num_parallel_collections, half_cpus(num_cpu))
    }
    /// `numDownloadWorkers`, or PBM's default of GOMAXPROCS (the CPU count).
    pub fn num_download_workers(&self, num_cpu: usize) -> i32 {
        positive_or(
            self.num_download_workers,
            i32::try_from(num_cpu.max(1)).unwrap_or(i32::MAX),
        )
    }
    /// `downloadChunkMb`, or 32.
    pub fn download_chunk_mb(&self) -> i32 {
        positive_or(self.download_chunk_mb, Self::DEFAULT_DOWNLOAD_CHUNK_MB)
    }
    /// PBM's `GetFallbackEnabled` (default false).
    pub fn fallback_enabled(&self) -> bool {
        self.fallback_enabled.unwrap_or(false)
    }
    /// PBM's `GetAllowPartlyDone` (default true).
    pub fn allow_partly_done(&self) -> bool {
        self.allow_partly_done.unwrap_or(true)
    }
    /// PBM's `GetIndexCommitQuorum` (default `votingMembers`).
    pub fn index_commit_quorum(&self) -> &str {
        if self.index_commit_quorum.is_empty() {
            Self::DEFAULT_INDEX_COMMIT_QUORUM
        } else {
            &self.index_commit_quorum
        }
    }
}

impl BackupConf {
    /// `numParallelCollections`, or PBM's default of half the CPUs (at least 1).
    pub fn num_parallel_collections(&self, num_cpu: usize) -> i32 {
        positive_or(self.num_parallel_collections, half_cpus(num_cpu))
    }
    /// PBM's `GetNumParallelFiles`: at least 1.
    pub fn num_parallel_files(&self) -> i32 {
        positive_or(self.num_parallel_files, 1)
    }
}

fn half_cpus(num_cpu: usize) -> i32 {
    i32::try_from((num_cpu / 2).max(1)).unwrap_or(i32::MAX)
}

fn positive_or(v: Option<i32>, default: i32) -> i32 {
    v.filter(|n| *n > 0).unwrap_or(default)
}

/// The types `--set` knows how to parse, as PBM's `SetConfigVar` does per Go kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    /// Go `int`/`int32`: a signed 32-bit integer.
    Int,
    /// Go `uint32`.
    Uint,
    /// Go `uint64`/`int64` sizes.
    Int64,
    Float,
    /// Go `time.Duration`: `30s` or nanoseconds.
    Duration,
    /// A map: valid key, but only settable with `--file`.
    Map,
}

/// Every key `pbm config --set` and `pbm config <key>` accept, from the Go structs'
/// BSON tags. Storage backends rbm keeps as free-form documents (minio, gcs, oss,
/// oci) are not listed: configure them with `--file`.
const KEYS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("profile", Kind::Bool),
    ("storage.type", Kind::Str),
    ("storage.s3.provider", Kind::Str),
    ("storage.s3.region", Kind::Str),
    ("storage.s3.endpointUrl", Kind::Str),
    ("storage.s3.endpointUrlMap", Kind::Map),
    ("storage.s3.forcePathStyle", Kind::Bool),
    ("storage.s3.bucket", Kind::Str),
    ("storage.s3.prefix", Kind::Str),
    ("storage.s3.credentials.access-key-id", Kind::Str),
    ("storage.s3.credentials.secret-access-key", Kind::Str),
    ("storage.s3.credentials.session-token", Kind::Str),
    ("storage.s3.serverSideEncryption.sseAlgorithm", Kind::Str),
    ("storage.s3.serverSideEncryption.kmsKeyID", Kind::Str),
    (
        "storage.s3.serverSideEncryption.sseCustomerAlgorithm",
        Kind::Str,
    ),
    ("storage.s3.serverSideEncryption.sseCustomerKey", Kind::Str),
    ("storage.s3.uploadPartSize", Kind::Int64),
    ("storage.s3.maxUploadParts", Kind::Uint),
    ("storage.s3.storageClass", Kind::Str),
    ("storage.s3.maxObjSizeGB", Kind::Float),
    ("storage.s3.insecureSkipTLSVerify", Kind::Bool),
    ("storage.s3.debugLogLevels", Kind::Str),
    ("storage.s3.retryer.numMaxRetries", Kind::Uint),
    ("storage.s3.retryer.minRetryDelay", Kind::Duration),
    ("storage.s3.retryer.maxRetryDelay", Kind::Duration),
    ("storage.s3.uploadConcurrency", Kind::Uint),
    ("storage.azure.account", Kind::Str),
    ("storage.azure.container", Kind::Str),
    ("storage.azure.endpointUrl", Kind::Str),
    ("storage.azure.endpointUrlMap", Kind::Map),
    ("storage.azure.prefix", Kind::Str),
    ("storage.azure.credentials.key", Kind::Str),
    ("storage.azure.credentials.sasToken", Kind::Str),
    ("storage.azure.credentials.useAzureIdentity", Kind::Bool),
    ("storage.azure.maxObjSizeGB", Kind::Float),
    ("storage.azure.retryer.numMaxRetries", Kind::Uint),
    ("storage.azure.retryer.minRetryDelay", Kind::Duration),
    ("storage.azure.retryer.maxRetryDelay", Kind::Duration),
    ("storage.azure.uploadConcurrency", Kind::Uint),
    ("storage.azure.uploadPartSize", Kind::Int64),
    ("storage.filesystem.path", Kind::Str),
    ("storage.filesystem.maxObjSizeGB", Kind::Float),
    ("storage.filesystem.backupBuffSize", Kind::Int64),
    ("storage.filesystem.restoreBuffSize", Kind::Int64),
    ("pitr.enabled", Kind::Bool),
    ("pitr.oplogSpanMin", Kind::Float),
    ("pitr.oplogOnly", Kind::Bool),
    ("pitr.priority", Kind::Map),
    ("pitr.compression", Kind::Str),
    ("pitr.compressionLevel", Kind::Int),
    ("backup.oplogSpanMin", Kind::Float),
    ("backup.priority", Kind::Map),
    ("backup.timeouts.startingStatus", Kind::Uint),
    ("backup.timeouts.balancerStop", Kind::Uint),
    ("backup.compression", Kind::Str),
    ("backup.compressionLevel", Kind::Int),
    ("backup.numParallelCollections", Kind::Int),
    ("backup.numParallelFiles", Kind::Int),
    ("restore.batchSize", Kind::Int),
    ("restore.numInsertionWorkers", Kind::Int),
    ("restore.numParallelCollections", Kind::Int),
    ("restore.numParallelFiles", Kind::Int),
    ("restore.indexCommitQuorum", Kind::Str),
    ("restore.numDownloadWorkers", Kind::Int),
    ("restore.maxDownloadBufferMb", Kind::Int),
    ("restore.downloadChunkMb", Kind::Int),
    ("restore.mongodLocation", Kind::Str),
    ("restore.mongodLocationMap", Kind::Map),
    ("restore.fallbackEnabled", Kind::Bool),
    ("restore.allowPartlyDone", Kind::Bool),
    ("restore.timeouts.balancerStop", Kind::Uint),
];

/// Keys whose values are credentials: masked as `***` in every rendering.
const SECRET_KEYS: [&str; 19] = [
    // PBM's S3 `credentials.vault` block: the Vault token and secret path.
    "token",
    "secret",
    "access-key-id",
    "secret-access-key",
    "session-token",
    "sseCustomerKey",
    "key",
    "sasToken",
    "clientEmail",
    "privateKey",
    "hmacAccessKey",
    "hmacSecret",
    "accessKeyId",
    "accessKeySecret",
    "encryptionKeyId",
    "tenancy",
    "user",
    "fingerprint",
    "privateKeyPassphrase",
];

fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind)
}

impl Config {
    /// A storage-profile document (`pbm profile add`).
    pub fn profile(name: impl Into<String>, storage: StorageConf) -> Self {
        Self {
            name: name.into(),
            is_profile: true,
            storage,
            ..Self::default()
        }
    }

    /// Parses `pbm config --file` YAML: every key must be one of PBM's (the error
    /// names the unknown one), then the whole document is validated.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        // `_id` and `epoch` belong to the stored document; PBM's YAML has neither.
        for key in ["_id", "epoch"] {
            if value.get(key).is_some() {
                return Err(ConfigError::Parse(format!("unknown field `{key}`")));
            }
        }
        // Parsed again from the text rather than from `value`, because only then do
        // errors carry the section path and position ("pitr: unknown field ...").
        let c: Config =
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads the `pbmConfig` document.
    pub fn from_document(doc: Document) -> Result<Self, ConfigError> {
        bson::deserialize_from_document(doc).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// The `pbmConfig` document.
    pub fn to_document(&self) -> Result<Document, ConfigError> {
        bson::serialize_to_document(self).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks what serde cannot (PBM's `SetConfig` checks plus storage rules).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.storage.validate()?;
        if let Some(p) = &self.pitr {
            check_compression("pitr.compression", &p.compression)?;
            check_priority("pitr.priority", &p.priority)?;
            if let Some(span) = p.oplog_span_min {
                if !(span.is_finite() && span >= 0.0) {
                    return Err(invalid(
                        "pitr.oplogSpanMin",
                        format!("{span} is not a number of minutes"),
                    ));
                }
            }
        }
        if let Some(b) = &self.backup {
            check_compression("backup.compression", &b.compression)?;
            check_priority("backup.priority", &b.priority)?;
            if !(b.oplog_span_min.is_finite() && b.oplog_span_min >= 0.0) {
                return Err(invalid(
                    "backup.oplogSpanMin",
                    format!("{} is not a number of minutes", b.oplog_span_min),
                ));
            }
        }
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        if let Some(r) = &self.restore {
            check_index_commit_quorum(&r.index_commit_quorum)?;
            if r.fallback_enabled == Some(false) && r.allow_partly_done == Some(false) {
                return Err(invalid(
                    "restore",
                    "fallbackEnabled=false together with allowPartlyDone=false is not allowed"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// PBM's `OplogSlicerInterval`: the PITR chunk span.
    pub fn pitr_span(&self) -> Duration {
        match self.pitr.as_ref().and_then(|p| p.oplog_span_min) {
            Some(m) if m > 0.0 => minutes(m),
            _ => DEFAULT_PITR_INTERVAL,
        }
    }

    /// PBM's `BackupSlicerInterval`: the span of a logical backup's oplog slices.
    pub fn backup_oplog_span(&self) -> Duration {
        match &self.backup {
            Some(b) if b.oplog_span_min > 0.0 => minutes(b.oplog_span_min),
            _ => self.pitr_span(),
        }
    }

    /// PBM's `StartingStatus`: how long the backup leader waits for `running`.
    pub fn backup_starting_timeout(&self) -> Duration {
        match self
            .backup
            .as_ref()
            .and_then(|b| b.timeouts.as_ref())
            .and_then(|t| t.starting_status)
        {
            Some(s) if s > 0 => Duration::from_secs(u64::from(s)),
            _ => WAIT_BACKUP_START,
        }
    }

    /// The backup compression (default `s2`).
    pub fn backup_compression(&self) -> &str {
        match &self.backup {
            Some(b) if !b.compression.is_empty() => &b.compression,
            _ => DEFAULT_COMPRESSION,
        }
    }

    /// PBM's `GetConfig` normalisation: every section present, backup compression
    /// defaulted to `s2`, PITR compression and level inherited from backup. This is
    /// what `pbm config` prints and what agents act on.
    pub fn with_defaults(&self) -> Self {
        let mut c = self.clone();
        let backup = c.backup.get_or_insert_with(BackupConf::default);
        if backup.compression.is_empty() {
            backup.compression = DEFAULT_COMPRESSION.to_string();
        }
        let (bc, bl) = (backup.compression.clone(), backup.compression_level);
        let pitr = c.pitr.get_or_insert_with(PitrConf::default);
        if pitr.compression.is_empty() {
            pitr.compression = bc;
        }
        if pitr.compression_level.is_none() {
            pitr.compression_level = bl;
        }
        c.restore.get_or_insert_with(RestoreConf::default);
        c
    }

    /// True for the keys whose `--set` must also move the epoch to the current
    /// cluster time (PBM's `confSetPITR`); the caller owns the clock.
    pub fn set_bumps_epoch(key: &str) -> bool {
        key == "pitr.enabled"
    }

    /// `pbm config --set key=value`: the key must exist in PBM's tree (error names
    /// it), the value must parse as the key's type, and the result must validate.
    /// Storage bucket/container/prefix values are trimmed of `/` as PBM does.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let kind = kind_of(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        let bad = |what: &str| invalid(key, format!("{value:?} is not {what}"));
        let v = match kind {
            Kind::Str => {
                let is_path = key.starts_with("storage.")
                    && (key.ends_with(".bucket")
                        || key.ends_with(".container")
                        || key.ends_with(".prefix"));
                Bson::String(
                    if is_path {
                        value.trim_matches('/')
                    } else {
                        value
                    }
                    .to_string(),
                )
            }
            Kind::Bool => Bson::Boolean(parse_go_bool(value).ok_or_else(|| bad("a boolean"))?),
            Kind::Int => Bson::Int32(value.parse().map_err(|_| bad("a 32-bit integer"))?),
            Kind::Uint => Bson::Int64(i64::from(
                value
                    .parse::<u32>()
                    .map_err(|_| bad("an unsigned 32-bit integer"))?,
            )),
            Kind::Int64 => Bson::Int64(value.parse().map_err(|_| bad("an integer"))?),
            Kind::Float => {
                let f: f64 = value.parse().map_err(|_| bad("a number"))?;
                if !f.is_finite() {
                    return Err(bad("a finite number"));
                }
                Bson::Double(f)
            }
            Kind::Duration => {
                let d = GoDuration::parse(value)
                    .or_else(|e| {
                        value
                            .parse::<u64>()
                            .map(|n| GoDuration(Duration::from_nanos(n)))
                            .map_err(|_| e)
                    })
                    .map_err(|e| invalid(key, e))?;
                Bson::Int64(
                    i64::try_from(d.0.as_nanos()).map_err(|_| bad("a representable duration"))?,
                )
            }
            Kind::Map => {
                return Err(invalid(key, "is a map; set it with `config --file`".into()));
            }
        };
        if key == "storage.filesystem.path" && value.is_empty() {
            return Err(invalid(key, "can't be empty".into()));
        }
        let mut doc = self.to_document()?;
        set_path(&mut doc, key, v).map_err(|reason| invalid(key, reason))?;
        let next: Config =
            bson::deserialize_from_document(doc).map_err(|e| invalid(key, e.to_string()))?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// `pbm config <key>`: a scalar value. Credentials come back as `***`; unlike
    /// PBM, rbm never prints them.
    pub fn get(&self, key: &str) -> Result<Bson, ConfigError> {
        let kind = kind_of(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        let doc = self.to_document()?;
        let mut cur = &doc;
        let parts: Vec<&str> = key.split('.').collect();
        let (last, parents) = parts
            .split_last()
            .ok_or_else(|| ConfigError::UnknownKey(key.into()))?;
        for p in parents {
            cur = cur
                .get_document(p)
                .map_err(|_| ConfigError::NotSet(key.to_string()))?;
        }
        let v = cur
            .get(last)
            .ok_or_else(|| ConfigError::NotSet(key.to_string()))?;
        if kind == Kind::Map {
            return Err(invalid(key, "is a map, not a single value".into()));
        }
        match v {
            Bson::String(s)
                if SECRET_KEYS.contains(last) && key.starts_with("storage.") && !s.is_empty() =>
            {
                Ok(Bson::String("***".into()))
            }
            other => Ok(other.clone()),
        }
    }

    /// The tree `pbm config` prints: normalised with [`Config::with_defaults`],
    /// without `_id`/`epoch`, zero values of PBM's `omitempty` YAML/JSON keys dropped,
    /// credentials masked.
    fn display_tree(&self) -> Result<Document, ConfigError> {
        let mut doc = self.with_defaults().to_document()?;
        doc.remove("_id");
        doc.remove("epoch");
        for (section, keep) in [
            ("pitr", "enabled"),
            ("backup", "oplogSpanMin"),
            ("restore", ""),
        ] {
            if let Ok(d) = doc.get_document_mut(section) {
                prune_zero(d, keep);
            }
        }
        if let Ok(s) = doc.get_document_mut("storage") {
            mask_secrets(s);
        }
        Ok(doc)
    }

    /// `pbm config` / `pbm config --list` text: YAML with secrets masked.
    pub fn to_masked_yaml(&self) -> Result<String, ConfigError> {
        let tree = go_yaml_numbers(Bson::Document(self.display_tree()?));
        serde_norway::to_string(&tree).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// `pbm config -o json`: Go's JSON with secrets masked.
    pub fn to_masked_json(&self) -> Result<String, ConfigError> {
        gojson::to_string_compact(&Bson::Document(self.display_tree()?))
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

fn minutes(m: f64) -> Duration {
    Duration::try_from_secs_f64(m * 60.0).unwrap_or(DEFAULT_PITR_INTERVAL)
}

fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason,
    }
}

fn check_compression(key: &str, c: &str) -> Result<(), ConfigError> {
    if c.is_empty() || COMPRESSION_TYPES.contains(&c) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "unsupported compression type {c:?}; one of {}",
                COMPRESSION_TYPES.join(", ")
            ),
        ))
    }
}

fn check_priority(key: &str, p: &BTreeMap<String, f64>) -> Result<(), ConfigError> {
    match p.iter().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        Some((node, v)) => Err(invalid(
            &format!("{key}.{node}"),
            format!("{v} is not a priority"),
        )),
        None => Ok(()),
    }
}

/// PBM's `ValidateIndexCommitQuorum`.
fn check_index_commit_quorum(q: &str) -> Result<(), ConfigError> {
    let key = "restore.indexCommitQuorum";
    if q.trim() != q {
        return Err(invalid(
            key,
            "must not contain leading or trailing whitespace".into(),
        ));
    }
    if matches!(q, "" | "majority" | "votingMembers") {
        return Ok(());
    }
    match q.parse::<i64>() {
        Ok(n) if n > 0 && n <= RestoreConf::MAX_INDEX_COMMIT_QUORUM => Ok(()),
        _ => Err(invalid(
            key,
            format!("invalid value {q:?}; votingMembers, majority or 1..50"),
        )),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn set_path(doc: &mut Document, key: &str, v: Bson) -> Result<(), String> {
    let mut parts = key.split('.').peekable();
    let mut cur = doc;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p, v);
            return Ok(());
        }
        if !cur.contains_key(p) {
            cur.insert(p, Document::new());
        }
        cur = match cur.get_mut(p) {
            Some(Bson::Document(d)) => d,
            _ => return Err(format!("{p} is not a section")),
        };
    }
    Ok(())
}

/// Drops Go zero values (`omitempty`) from a section, except the key PBM always
/// writes.
fn prune_zero(d: &mut Document, keep: &str) {
    let zero: Vec<String> = d
        .iter()
        .filter(|(k, v)| {
            k.as_str() != keep
                && match v {
                    Bson::Int32(0) | Bson::Int64(0) | Bson::Boolean(false) | Bson::Null => true,
                    Bson::Double(f) => *f == 0.0,
                    Bson::String(s) => s.is_empty(),
                    Bson::Document(d) => d.is_empty(),
                    _ => false,
                }
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in zero {
        d.remove(&k);
    }
    for (_, v) in d.iter_mut() {
        if let Bson::Document(sub) = v {
            prune_zero(sub, "");
        }
    }
}

fn mask_secrets(d: &mut Document) {
    for (k, v) in d.iter_mut() {
        match v {
            Bson::String(s) if SECRET_KEYS.contains(&k.as_str()) && !s.is_empty() => {
                *s = "***".into()
            }
            Bson::Document(sub) => mask_secrets(sub),
            _ => {}
        }
    }
}

/// Go's YAML encoder prints integral floats without a fraction (`0`, not `0.0`);
/// below 1e6 that is an integer literal (from 1e6 Go switches to `1e+06`).
fn go_yaml_numbers(v: Bson) -> Bson {
    match v {
        Bson::Document(d) => Bson::Document(
            d.into_iter()
                .map(|(k, v)| (k, go_yaml_numbers(v)))
                .collect(),
        ),
        Bson::Array(a) => Bson::Array(a.into_iter().map(go_yaml_numbers).collect()),
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e6 => {
            Bson::Int64(f as i64)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FS: &str = "storage:\n  type: filesystem\n  filesystem:\n    path: /opt/backups\n";

    #[test]
    fn whole_pbm_config_parses() {
        let y = r#"
storage:
  type: s3
  s3:
    region: us-east-1
    bucket: b
    credentials:
      access-key-id: AKIA
      secret-access-key: s3cr3t
pitr:
  enabled: true
  oplogSpanMin: 0.5
  oplogOnly: false
  priority:
    "rs1:27017": 2.0
  compression: zstd
  compressionLevel: 3
backup:
  oplogSpanMin: 1
  priority:
    "rs1:27018": 1.5
  timeouts:
    startingStatus: 60
    balancerStop: 30
  compression: s2
  numParallelCollections: 4
restore:
  batchSize: 100
  numInsertionWorkers: 4
  numParallelCollections: 2
  indexCommitQuorum: majority
  numDownloadWorkers: 8
  maxDownloadBufferMb: 512
  downloadChunkMb: 16
  mongodLocation: /usr/bin/mongod
  mongodLocationMap:
    "rs1:27017": /opt/mongod
  fallbackEnabled: true
  allowPartlyDone: false
  timeouts:
    balancerStop: 10
"#;
        let c = Config::from_yaml(y).expect("valid");
        assert_eq!(c.pitr_span(), Duration::from_secs(30));
        assert_eq!(c.backup_oplog_span(), Duration::from_secs(60));
        assert_eq!(c.backup_starting_timeout(), Duration::from_secs(60));
        let r = c.restore.as_ref().expect("restore");
        assert_eq!((r.batch_size(), r.allow_partly_done()), (100, false));
        let doc = c.to_document().expect("bson");
        assert_eq!(Config::from_document(doc).expect("back"), c);
        let yaml = c.to_masked_yaml().expect("yaml");
        assert!(!yaml.contains("s3cr3t") && !yaml.contains("AKIA"), "{yaml}");
        assert!(yaml.contains("secret-access-key: '***'"), "{yaml}");
        assert!(!c.to_masked_json().expect("json").contains("s3cr3t"));
    }

    #[test]
    fn vault_credentials_are_masked() {
        let y = "storage:\n  type: s3\n  s3:\n    region: us-east-1\n    bucket: b\n    credentials:\n      vault:\n        server: https://vault:8200\n        secret: VAULTSECRETPATH\n        token: VAULTTOKEN-XYZ\n";
        let c = Config::from_yaml(y).expect("valid");
        for out in [
            c.to_masked_yaml().expect("yaml"),
            c.to_masked_json().expect("json"),
        ] {
            assert!(
                !out.contains("VAULTTOKEN-XYZ") && !out.contains("VAULTSECRETPATH"),
                "{out}"
            );
            assert!(out.contains("https://vault:8200"), "{out}");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_yaml(FS).expect("valid");
        assert_eq!(c.pitr_span(), DEFAULT_PITR_INTERVAL);
        assert_eq!(c.backup_starting_timeout(), WAIT_BACKUP_START);
        assert_eq!(c.backup_compression(), "s2");
        let r = RestoreConf::default();
        assert_eq!((r.batch_size(), r.num_insertion_workers()), (500, 10));
        assert_eq!((r.fallback_enabled(), r.allow_partly_done()), (false, true));
        assert_eq!(r.index_commit_quorum(), "votingMembers");
        assert_eq!(
            (r.num_parallel_collections(8), r.num_parallel_collections(1)),
            (4, 1)
        );
        assert_eq!((r.num_download_workers(6), r.download_chunk_mb()), (6, 32));
        assert_eq!(BackupConf::default().num_parallel_files(), 1);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_yaml(&format!("{FS}pitr:\n  enabled: true\n  spanMin: 3\n"))
            .expect_err("unknown");
        assert!(
            e.to_string().contains("pitr: unknown field `spanMin`"),
            "{e}"
        );
        let e = Config::from_yaml(&format!("{FS}bakup: {{}}\n")).expect_err("unknown");
        assert!(e.to_string().contains("bakup"), "{e}");
        let e = Config::from_yaml(&format!("{FS}epoch: 1\n")).expect_err("epoch");
        assert!(e.to_string().contains("epoch"), "{e}");
    }

    #[test]
    fn set_and_get() {
        let mut c = Config::from_yaml(FS).expect("valid");
        c.set("pitr.enabled", "true").expect("set");
        c.set("pitr.oplogSpanMin", "0.5").expect("set");
        c.set("backup.timeouts.startingStatus", "90").expect("set");
        c.set("restore.batchSize", "100").expect("set");
        c.set("storage.filesystem.path", "/mnt/b").expect("set");
        assert!(Config::set_bumps_epoch("pitr.enabled"));
        assert_eq!(c.get("pitr.enabled"), Ok(Bson::Boolean(true)));
        assert_eq!(c.get("pitr.oplogSpanMin"), Ok(Bson::Double(0.5)));
        assert_eq!(c.get("backup.timeouts.startingStatus"), Ok(Bson::Int64(90)));
        assert_eq!(
            c.get("storage.filesystem.path"),
            Ok(Bson::String("/mnt/b".into()))
        );
        assert_eq!(c.backup_starting_timeout(), Duration::from_secs(90));

        assert_eq!(
            c.set("pitr.nope", "1"),
            Err(ConfigError::UnknownKey("pitr.nope".into()))
        );
        assert!(matches!(
            c.get("pitr.nope"),
            Err(ConfigError::UnknownKey(_))
        ));
        assert!(matches!(
            c.get("restore.numParallelFiles"),
            Err(ConfigError::NotSet(_))
        ));
        let e = c.set("pitr.enabled", "yes").expect_err("bool");
        assert!(e.to_string().contains("pitr.enabled"), "{e}");
        assert!(c.set("restore.batchSize", "1.5").is_err());
        assert!(c.set("pitr.compression", "brotli").is_err());
        assert!(c.set("restore.indexCommitQuorum", "51").is_err());
        assert!(c.set("pitr.priority", "x").is_err());
        assert!(c.set("storage.filesystem.path", "").is_err());
        // A failed set leaves the config as it was.
        assert_eq!(c.get("pitr.enabled"), Ok(Bson::Boolean(true)));
    }

    #[test]
    fn set_type_checks_storage_and_masks_secrets() {
        let mut c =
            Config::from_yaml("storage:\n  type: s3\n  s3:\n    bucket: b\n").expect("valid");
        c.set("storage.s3.bucket", "/bkt/").expect("set");
        c.set("storage.s3.credentials.secret-access-key", "shh")
            .expect("set");
        c.set("storage.s3.retryer.maxRetryDelay", "5m")
            .expect("set");
        assert_eq!(c.get("storage.s3.bucket"), Ok(Bson::String("bkt".into())));
        assert_eq!(
            c.get("storage.s3.credentials.secret-access-key"),
            Ok(Bson::String("***".into()))
        );
        let s3 = c.storage.s3.as_ref().expect("s3");
        assert_eq!(s3.credentials.secret_access_key.expose(), "shh");
        assert!(c.set("storage.s3.maxUploadParts", "-1").is_err());
    }

    #[test]
    fn profile_document() {
        let p = Config::profile("p1", Config::from_yaml(FS).expect("fs").storage);
        let d = p.to_document().expect("bson");
        assert_eq!(d.get_str("name").ok(), Some("p1"));
        assert_eq!(d.get_bool("profile").ok(), Some(true));
        assert!(!d.contains_key("pitr"));
    }
}
