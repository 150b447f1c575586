//! What rbm agents and the `rbm` CLI agree on.
//!
//! Everything here mirrors Percona Backup for MongoDB 2.x byte for byte where PBM
//! defines it (collection names, field names, enum strings, YAML keys), so that the
//! Percona Operator and the real `pbm` CLI can read and write the same documents.
//!
//! - [`defs`]: collection names and specs, statuses, backup types, timing constants;
//! - [`command`]: the `pbmCmd` document;
//! - [`lock`]: `pbmLock` / `pbmLockOp` / `pbmOpLog` and the staleness rule;
//! - [`meta`]: backup, restore, PITR, agent and log documents, `meta.pbm`;
//! - [`config`]: the `pbmConfig` document and `pbm config` semantics;
//! - [`names`]: object names on storage;
//! - [`cli`]: `pbm status` / `pbm list` JSON output;
//! - [`gojson`]: PBM's JSON rendering of its BSON documents.

pub mod cli;
pub mod command;
pub mod config;
pub mod defs;
pub mod gojson;
pub mod lock;
pub mod meta;
pub mod names;
pub mod ns;
pub mod secret;
mod serde_util;

pub use config::{
    AzureConf, AzureCredentials, Config, ConfigError, FilesystemConf, GoDuration, Retryer, S3Conf,
    S3Credentials, ServerSideEncryption, StorageConf, StorageType,
};
pub use secret::Secret;
