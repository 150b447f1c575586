//! Applying oplog entries. SKELETON: the real applier lands with the oplog work; this
//! file only fixes the API the restore and PITR engines call.

use bson::RawDocument;
use mongodb::Client;
use rbm_protocol::ns::NsFilter;
use rbm_storage::bson_stream::BsonStreamError;

/// Why an entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum OplogError {
    #[error("oplog stream: {0}")]
    Stream(#[from] BsonStreamError),
    #[error("malformed oplog entry: {0}")]
    Malformed(String),
    #[error("oplog replay is not built yet")]
    NotBuilt,
}

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Only these namespaces (selective restore); others are skipped.
    pub filter: NsFilter,
    /// `--ns-from`/`--ns-to`: entries for the first namespace are applied to the second.
    pub remap: Option<(String, String)>,
}

/// Counts of what was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub applied: u64,
    pub skipped: u64,
    pub transactions: u64,
}

/// Applies entries to the database behind `client`.
pub struct Applier {
    _client: Client,
    _opts: ApplyOptions,
    stats: ReplayStats,
}

impl Applier {
    /// # Errors
    /// When the server cannot be probed.
    pub async fn new(client: Client, opts: ApplyOptions) -> Result<Self, OplogError> {
        Ok(Self {
            _client: client,
            _opts: opts,
            stats: ReplayStats::default(),
        })
    }

    /// # Errors
    /// Always, in this skeleton.
    pub async fn apply(&mut self, _entry: &RawDocument) -> Result<(), OplogError> {
        Err(OplogError::NotBuilt)
    }

    /// # Errors
    /// A transaction left open at the end of the range.
    pub async fn finish(self) -> Result<ReplayStats, OplogError> {
        Ok(self.stats)
    }
}
