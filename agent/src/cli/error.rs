//! The CLI's one error type. Every variant renders as a single line a user can act
//! on; connection strings in messages are always redacted first.

use rbm_protocol::config::ConfigError;

/// Why an `rbm` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No `--mongodb-uri` and no `PBM_MONGODB_URI`.
    #[error("no MongoDB connection string: pass --mongodb-uri or set PBM_MONGODB_URI")]
    NoUri,
    /// The connection string does not parse.
    #[error("invalid MongoDB connection string {uri}: {reason}")]
    BadUri { uri: String, reason: String },
    /// A deployment PBM refuses too (mongos, `mongodb+srv://`, standalone).
    #[error("{0}")]
    Unsupported(String),
    /// The server could not be reached within the selection timeout.
    #[error("connect to {uri}: {reason}")]
    Connect { uri: String, reason: String },
    /// The server refused the credentials.
    #[error("authentication failed for {uri}: {reason}")]
    Auth { uri: String, reason: String },
    /// A database operation failed after connecting.
    #[error("{context}: {reason}")]
    Mongo { context: String, reason: String },
    /// The config is invalid (the message names the key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No config stored yet.
    #[error("no PBM config found in admin.pbmConfig: store one with `rbm config --file`")]
    NoConfig,
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
    /// A flag value is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// PBM's `checkForAnotherOperation`: a non-stale lock exists.
    #[error("another operation in progress, {kind}/{opid} [{replset}/{node}]")]
    AnotherOperation {
        kind: String,
        opid: String,
        replset: String,
        node: String,
    },
    /// The command was sent but no agent acted on it in time.
    #[error("no agent executed the command: are rbm-agents running? ({what}, op id {opid})")]
    NoAgent { what: String, opid: String },
    /// The operation ran and ended in error.
    #[error("{0}")]
    OperationFailed(String),
    /// Waiting for an operation took longer than allowed.
    #[error("{0}")]
    Timeout(String),
    /// A named backup or restore does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A document in the control collections does not have PBM's shape.
    #[error("{0}")]
    BadDocument(String),
    /// Writing the output failed.
    #[error("write output: {0}")]
    Output(String),
}

impl CliError {
    /// The process exit code: 1 for failures of the operation, 2 for bad input
    /// (the code clap uses for usage errors), 3 when the cluster or storage cannot be
    /// reached or refuses us, so scripts can tell "fix the flags" from "try again".
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoUri
            | CliError::BadUri { .. }
            | CliError::Config(_)
            | CliError::InvalidArgument(_) => 2,
            CliError::Connect { .. } | CliError::Auth { .. } | CliError::Unsupported(_) => 3,
            _ => 1,
        }
    }

    pub(crate) fn mongo(context: impl Into<String>, e: &mongodb::error::Error) -> Self {
        CliError::Mongo {
            context: context.into(),
            reason: one_line(&e.to_string()),
        }
    }
}

/// Driver messages can span lines; the CLI promises one error line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
