//! Operation metadata, as stored in the control collections and on storage.

pub mod agent;
pub mod archive;
pub mod backup;
pub mod describe;
pub mod log;
pub mod pitr;
pub mod progress;
pub mod restore;

pub use agent::{AgentStat, SubsysStatus};
pub use archive::{ArchiveMetaV2, CollectionCrc, NamespaceType, NamespaceV2, META_FILE_V2};
pub use backup::{
    read_filelist, write_filelist, BackupMeta, BackupReplset, BackupRsNomination, BackupStorage,
    BalancerMode, Condition, File, FilelistError,
};
pub use describe::{BackupDescription, ReplsetDescription};
pub use log::{LogEntry, Severity};
pub use pitr::{PitrChunk, PitrMeta, PitrNomination, PitrReplset, PitrStatus};
pub use restore::{RestoreMeta, RestoreNode, RestoreReplset, RestoreTxn};

/// A `pbmOpLog` document is a lock header; re-exported here with the other
/// metadata.
pub use crate::lock::OpLogHeader;
