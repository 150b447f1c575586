//! Logical restore of PBM-format backups, and `rbm verify`.
//!
//! Safety rule: no user collection is dropped or replaced before the data that replaces
//! it was read from storage and verified (size and CRC-64 of every dumped document).
//! Each collection is loaded into a temporary collection in its target database; only
//! when every selected collection is loaded and verified is each temporary renamed onto
//! its target (`renameCollection` with `dropTarget`). A failure before that point drops
//! only the temporaries.
//!
//! Order after the switch, as PBM's `Snapshot`: users and roles, oplog slice to the
//! backup's consistency point, indexes, then views.

pub mod legacy;
pub mod logical;
pub mod mongoarchive;
pub mod secantus;
pub mod source;
pub mod verify;

pub use logical::{LogicalRestore, RestoreOptions};

use rbm_storage::bson_stream::BsonStreamError;

/// Why a restore or verification stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("backup '{0}' not found (neither in admin.pbmBackups nor on the storage)")]
    UnknownBackup(String),
    #[error("backup '{backup}' cannot be restored: {why}")]
    Incompatible { backup: String, why: String },
    #[error("backup object {object} is missing")]
    MissingObject { object: String },
    #[error("backup object {object}: {source}")]
    Storage {
        object: String,
        #[source]
        source: rbm_storage::StorageError,
    },
    #[error("backup object {object}: read failed: {why}")]
    Read { object: String, why: String },
    #[error("backup object {object} is corrupted: {why}")]
    Corrupted { object: String, why: String },
    #[error("backup metadata {object} is invalid: {why}")]
    BadMeta { object: String, why: String },
    #[error("invalid namespace selection: {0}")]
    BadNs(String),
    #[error("{what}: {source}")]
    Db {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("oplog replay: {0}")]
    Oplog(Box<crate::oplog::OplogError>),
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::oplog::OplogError> for RestoreError {
    fn from(e: crate::oplog::OplogError) -> Self {
        RestoreError::Oplog(Box::new(e))
    }
}

impl RestoreError {
    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let what = what.into();
        move |source| RestoreError::Db { what, source }
    }

    pub(crate) fn stream(object: &str, e: BsonStreamError) -> Self {
        match e {
            BsonStreamError::Io(io) => RestoreError::Corrupted {
                object: object.to_string(),
                why: format!("cannot decompress/read: {io}"),
            },
            other => RestoreError::Corrupted {
                object: object.to_string(),
                why: other.to_string(),
            },
        }
    }
}

/// PBM's `ExcludeFromRestore` and the databases a logical restore never writes: the
/// control collections, `admin.system.*`, `config`, `local`. Users and roles travel as
/// `admin.pbmRUsers`/`admin.pbmRRoles` and are restored separately.
pub fn excluded(db: &str, coll: &str) -> bool {
    match db {
        "local" | "config" => true,
        "admin" => coll.starts_with("pbm") || coll.starts_with("system."),
        _ => coll.starts_with("system.") && coll != "system.js",
    }
}
