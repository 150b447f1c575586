//! The storage crate's one error type.

use rbm_protocol::StorageType;
use std::fmt;

/// What went wrong, coarse enough for callers to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// The configuration is invalid or unsupported.
    Config,
    /// Credentials were refused (401/403, bad signature).
    Auth,
    /// The bucket, container or directory does not exist.
    NoBucket,
    /// The endpoint could not be reached (DNS, connect, TLS).
    Unreachable,
    /// A failure that may pass: 5xx, throttling, timeouts, dropped connections.
    Transient,
    /// The operation was cancelled by the caller.
    Cancelled,
    /// Anything else: permanent.
    Other,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Auth => "access denied (check the credentials)",
            ErrorKind::NoBucket => "bucket or container does not exist",
            ErrorKind::Unreachable => "endpoint unreachable",
            ErrorKind::Transient => "temporary failure",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Other => "failed",
        }
    }
}

/// A storage failure, naming the storage, the operation and the object, and the cause.
/// Never carries credentials: backends build messages from redacted parts only.
#[derive(Debug, thiserror::Error)]
pub struct StorageError {
    pub kind: ErrorKind,
    /// The storage type.
    pub storage: StorageType,
    /// The operation (`save`, `open`, `stat`, `list`, `delete`, `copy`, `connect`).
    pub op: &'static str,
    /// The object name, or the prefix for `list`; empty for whole-storage errors.
    pub object: String,
    /// The cause, already free of secrets.
    pub message: String,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} storage: {}", self.storage, self.op)?;
        if !self.object.is_empty() {
            write!(f, " {:?}", self.object)?;
        }
        write!(f, ": {}", self.kind.describe())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl StorageError {
    pub fn new(
        kind: ErrorKind,
        storage: StorageType,
        op: &'static str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            storage,
            op,
            object: object.into(),
            message: message.into(),
        }
    }

    pub fn config(storage: StorageType, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, storage, "configure", "", message)
    }

    pub fn not_found(storage: StorageType, op: &'static str, object: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, storage, op, object, "")
    }

    pub fn cancelled(storage: StorageType, op: &'static str, object: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, storage, op, object, "")
    }

    /// Maps an I/O error; `NotFound` keeps its kind, interrupted/timeouts are transient.
    pub fn io(
        storage: StorageType,
        op: &'static str,
        object: impl Into<String>,
        e: &std::io::Error,
    ) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::Auth,
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof => ErrorKind::Transient,
            _ => ErrorKind::Other,
        };
        Self::new(kind, storage, op, object, e.to_string())
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::Unreachable)
    }

    /// Turns this error into an `io::Error` for use inside a reader.
    pub fn into_io(self) -> std::io::Error {
        let kind = match self.kind {
            ErrorKind::NotFound => std::io::ErrorKind::NotFound,
            ErrorKind::Cancelled => std::io::ErrorKind::Interrupted,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}
