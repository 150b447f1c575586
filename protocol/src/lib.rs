//! What rbm agents and the `rbm` CLI agree on.
//!
//! Everything here mirrors Percona Backup for MongoDB 2.x byte for byte where PBM
//! defines it (collection names, field names, enum strings, YAML keys), so that the
//! Percona Operator and the real `pbm` CLI can read and write the same documents.

pub mod config;
pub mod secret;

pub use config::{
    AzureConf, AzureCredentials, FilesystemConf, GoDuration, Retryer, S3Conf, S3Credentials,
    ServerSideEncryption, StorageConf, StorageType,
};
pub use secret::Secret;
