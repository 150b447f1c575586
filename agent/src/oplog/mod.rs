//! The oplog: reading ranges of it from a node (backup slices, PITR chunks) and applying
//! entries onto a database (restore, PITR, `oplog-replay`).
//!
//! Contract shared by the engines (restore and PITR call only this):
//! - [`ReplayRange`]: entries with `start <= ts <= end` are applied; earlier ones are
//!   skipped, and reading stops at the first entry after `end` (PBM's semantics).
//! - [`Applier`] applies one entry at a time and keeps transaction state across chunks;
//!   [`Applier::finish`] applies what is still buffered and returns the counts
//!   (transactions with no commit by the end are counted, not applied, as in PBM).
//! - [`replay_stream`] feeds a decompressed chunk (concatenated BSON oplog entries) to an
//!   applier. Chunks may repeat their boundary entries; the applier applies them once.
//! - Sharded clusters (PBM's distributed-transaction exchange): after every shard's
//!   replay, collect all shards' [`Applier::distributed_commits`], call
//!   [`Applier::apply_committed_elsewhere`] on each shard's applier, then `finish`.
//! - Index commands (`createIndexes`, `commitIndexBuild`, `dropIndexes`, index `collMod`)
//!   are applied as they come, where PBM records them in its index catalog and builds
//!   after the replay: a restore builds the backup's indexes *before* replaying, so a
//!   later `dropIndexes` in the oplog finds what it drops.
//! - With `applyOps` (mongod) entries keep their `ui`: the restored collections must
//!   carry the source UUIDs (as mongorestore's preserveUUID), or set
//!   [`ApplyOptions::drop_uuids`].
//!
//! Modules: [`apply`] (the applier), [`filter`] (PBM's skip rules, `--ns`, cloning),
//! [`translate`] and [`update`] (entries as ordinary commands, for servers without
//! `applyOps`), [`secantus`] (everything specific to the test server's oplog).

pub mod entry;
pub mod filter;
pub mod read;
pub mod secantus;
pub mod translate;
pub mod update;
// `apply` last: the backup branch adds `read` right after it.
pub mod apply;

pub use apply::{
    txn_id, Applier, ApplyOptions, CommittedTxn, EntryError, Mode, OplogError, ReplayStats,
};

use bson::Timestamp;
use rbm_storage::bson_stream::BsonReader;
use tokio::io::AsyncRead;

/// Which entries to apply, by `ts`, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRange {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// What [`replay_stream`] did with one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEnd {
    /// The chunk ended; later chunks may still hold entries in range.
    Exhausted,
    /// An entry after `range.end` was met: nothing further is in range.
    PastEnd,
}

/// Applies the in-range entries of one decompressed chunk.
///
/// # Errors
/// A malformed stream or an entry that cannot be applied (the error names its `ts`).
pub async fn replay_stream<R: AsyncRead + Unpin>(
    applier: &mut Applier,
    chunk: R,
    range: ReplayRange,
) -> Result<ChunkEnd, OplogError> {
    let mut reader = BsonReader::new(chunk);
    while let Some(entry) = reader.next().await? {
        let ts = entry
            .get_timestamp("ts")
            .map_err(|e| OplogError::Malformed(format!("oplog entry without ts: {e}")))?;
        if ts_lt(ts, range.start) {
            continue;
        }
        if ts_lt(range.end, ts) {
            return Ok(ChunkEnd::PastEnd);
        }
        applier.apply(&entry).await?;
    }
    Ok(ChunkEnd::Exhausted)
}

/// `a < b` in oplog order.
pub fn ts_lt(a: Timestamp, b: Timestamp) -> bool {
    (a.time, a.increment) < (b.time, b.increment)
}
