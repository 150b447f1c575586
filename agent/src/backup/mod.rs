//! Backups. Logical backups follow PBM 2.x exactly (`pbm/backup/logical.go`): a fuzzy dump
//! of every collection plus the oplog slice that covers the dump window, in PBM's storage
//! layout, driven through PBM's `pbmBackups` state machine. Physical, incremental and
//! external backups are not in this build.

pub mod archive;
pub mod dump;
pub mod extjson;
pub mod logical;
pub mod state;
pub mod users;
pub mod watchdog;

use crate::control::ControlError;
use crate::node::NodeError;
use crate::oplog::read::OplogReadError;
use rbm_storage::StorageError;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub use logical::{run_logical, BackupJob};

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what}: {}", crate::node::concise(.source))]
    Db {
        what: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("{what}: {source}")]
    Bson {
        what: String,
        #[source]
        source: bson::error::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("oplog: {0}")]
    Oplog(#[from] OplogReadError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("backup canceled")]
    Cancelled,
    #[error("interrupted: the agent is shutting down")]
    Shutdown,
    #[error("lost the backup lock: another agent took it over (this agent looked dead)")]
    LockLost,
    #[error("check backup files: {0}")]
    Check(String),
    #[error("{0}")]
    Other(String),
}

/// The backups running in this agent, so `cancelBackup` can reach them.
#[derive(Debug, Clone, Default)]
pub struct RunningBackups(Arc<Mutex<Vec<(String, CancellationToken)>>>);

impl RunningBackups {
    /// Registers a backup; the token is cancelled by [`RunningBackups::cancel_all`].
    pub fn register(&self, name: &str) -> CancellationToken {
        let t = CancellationToken::new();
        self.lock().push((name.to_string(), t.clone()));
        t
    }

    pub fn unregister(&self, name: &str) {
        self.lock().retain(|(n, _)| n != name);
    }

    /// PBM's `cancelBackup`: cancels whatever backup this agent runs. Returns the names.
    pub fn cancel_all(&self) -> Vec<String> {
        let g = self.lock();
        for (_, t) in g.iter() {
            t.cancel();
        }
        g.iter().map(|(n, _)| n.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, CancellationToken)>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// Half the CPUs, at least one: PBM's default parallelism.
pub fn half_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}
