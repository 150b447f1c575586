//! Physical backups and restores: the files of the node's dbPath, streamed to storage
//! in PBM's layout (`<name>/<rs>/<path><ext>`, `<name>/<rs>/filelist.pbm`,
//! `<name>.pbm.json`) and back.
//!
//! Three ways to get a consistent set of files (see [`mode`]):
//! - `backupCursor` (Percona Server): `$backupCursor` / `$backupCursorExtend` list the
//!   files of a checkpoint while the node keeps running ([`cursor`]);
//! - `fsyncLock` (MongoDB Community, secondary or hidden member): writes are blocked
//!   while the files are copied, unlocked on every path ([`fsync`]);
//! - `cold`: the node is stopped through its stop command, copied, and started again
//!   ([`cold`], [`nodectl`]). The only mode the test server allows.
//!
//! Restores ([`restore`]) always stop the node, move the old dbPath aside as the
//! fallback, stream the files back, start the node and put the fallback back if
//! anything fails. What differs on SecantusDB lives in [`secantus`].

pub mod admin;
pub mod cli_wait;
pub mod cold;
pub mod cursor;
pub mod files;
pub mod fsync;
pub mod incr;
pub mod mode;
pub mod nodectl;
pub mod restore;
pub mod rsreset;
pub mod secantus;
pub mod stopmark;

use std::path::PathBuf;
use std::time::Duration;

pub use mode::{Mode, ModeOverride};

/// Node-local settings: they differ per mongod, so they are agent flags, not part of
/// the cluster-wide config.
#[derive(Debug, Clone)]
pub struct PhysicalSettings {
    /// The mongod's dbPath (`--dbpath`). Read from `getCmdLineOpts` when not given.
    pub dbpath: Option<PathBuf>,
    /// Shell command that stops the mongod and returns once it is gone
    /// (`--mongod-stop-cmd`). Without it the agent sends `shutdown`.
    pub stop_cmd: Option<String>,
    /// Shell command that starts the mongod (`--mongod-start-cmd`); it may return at once
    /// (`systemctl start mongod`) or keep running. Required for cold backups and restores.
    pub start_cmd: Option<String>,
    /// `--physical-backup-mode`: `auto` (default) or one mode.
    pub mode: ModeOverride,
    /// How long the node may take to stop or to come back.
    pub node_timeout: Duration,
    /// Files copied at once (`--physical-parallel-files`; default: half the CPUs, ≥ 2).
    pub parallel_files: usize,
    /// Restores: bytes per ranged read, and ranged reads in flight per file.
    pub download_chunk: u64,
    pub download_ahead: usize,
}

impl Default for PhysicalSettings {
    fn default() -> Self {
        Self {
            dbpath: None,
            stop_cmd: None,
            start_cmd: None,
            mode: ModeOverride::Auto,
            node_timeout: Duration::from_secs(300),
            parallel_files: crate::backup::half_cpus().max(2),
            download_chunk: 8 << 20,
            download_ahead: 4,
        }
    }
}

/// Why a physical operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    #[error("{0}")]
    Config(String),
    #[error("{what}: {}", crate::node::concise(.source))]
    Db {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] rbm_storage::StorageError),
    #[error("node control: {0}")]
    NodeControl(String),
    #[error("{0}")]
    Backup(#[from] crate::backup::BackupError),
    #[error("check: {0}")]
    Check(String),
    #[error("server reply: {0}")]
    Reply(String),
    #[error("interrupted: {0}")]
    Interrupted(String),
    #[error("{0}")]
    Other(String),
}

impl PhysicalError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| PhysicalError::Io { what, source }
    }

    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let what = what.into();
        move |source| PhysicalError::Db { what, source }
    }
}
