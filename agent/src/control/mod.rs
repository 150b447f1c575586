//! The control protocol PBM agents speak through the `admin.pbm*` collections:
//! start-up set-up, heartbeats, command intake, locks, nomination and the `pbmLog`.

pub mod heartbeat;
pub mod intake;
pub mod lifecycle_op;
pub mod lock;
pub mod nominate;
pub mod ops;
pub mod pbmlog;
pub mod restore_op;
pub mod resync;
pub mod resync_profile;
pub mod setup;

use crate::node::NodeError;

/// Errors of the control protocol.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{what}: {source}")]
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
    /// The command cannot be carried out as sent.
    #[error("{0}")]
    Refused(String),
}

impl ControlError {
    pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> Self {
        let what = what.into();
        move |source| ControlError::Db { what, source }
    }
    pub(crate) fn bson(what: impl Into<String>) -> impl FnOnce(bson::error::Error) -> Self {
        let what = what.into();
        move |source| ControlError::Bson { what, source }
    }
}

/// The server error code of a write error, if it is a duplicate key (E11000).
pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

/// The server error code of a command error.
pub(crate) fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// Unix seconds of the local clock: only for fields PBM itself fills from the wall clock
/// (log `ts`, meta `start_ts`), never for liveness.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
