//! Reading a range of `local.oplog.rs` from one node (PBM's `oplog.OplogBackup`): the
//! oplog slices of a logical backup and the PITR chunks both come from here.
//!
//! Entries are handed out raw (`RawDocument` bytes, never decoded): they are only copied.
//! Noop entries are skipped, as PBM does, so a slice holds only what a replay applies.

use bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::ReadConcern;
use mongodb::{Client, Cursor};

/// Entries per `getMore`: large reads, yet bounded when entries are large (a server
/// that does not cap replies at 16 MiB would otherwise send the whole range at once).
const BATCH: u32 = 1_000;

/// Errors reading the oplog.
#[derive(Debug, thiserror::Error)]
pub enum OplogReadError {
    #[error("{what}: {source}")]
    Db {
        what: &'static str,
        #[source]
        source: mongodb::error::Error,
    },
    /// PBM's `InsuffRangeError`: the oplog no longer reaches back to `from`.
    #[error(
        "oplog has insufficient range, some records since {}:{} are missing (the oplog rolled over)",
        .0.time, .0.increment
    )]
    InsufficientRange(Timestamp),
    #[error("oplog entry without a valid ts: {0}")]
    Malformed(String),
    #[error("hello of the node has no lastWrite {0} timestamp")]
    NoLastWrite(&'static str),
}

fn db(what: &'static str) -> impl FnOnce(mongodb::error::Error) -> OplogReadError {
    move |source| OplogReadError::Db { what, source }
}

/// The node's last write (`hello.lastWrite`): the majority-committed one if `majority`.
///
/// # Errors
/// The node does not answer, or its reply has no such timestamp.
pub async fn last_write(node: &Client, majority: bool) -> Result<Timestamp, OplogReadError> {
    let reply = node
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .map_err(db("hello"))?;
    let key = if majority { "majorityOpTime" } else { "opTime" };
    reply
        .get_document("lastWrite")
        .ok()
        .and_then(|lw| lw.get_document(key).ok())
        .and_then(|op| op.get_timestamp("ts").ok())
        .filter(|ts| ts.time > 0)
        .ok_or(OplogReadError::NoLastWrite(key))
}

/// PBM's `GetOplogStartTime`: where a backup's oplog must start for the dump to be
/// consistent — the start of the oldest open (prepared or in-progress) transaction, else
/// the newest oplog entry.
///
/// # Errors
/// Read failures, or an empty oplog.
pub async fn backup_start_time(node: &Client) -> Result<Timestamp, OplogReadError> {
    let txn = node
        .database("config")
        .collection::<bson::Document>("transactions")
        .find_one(doc! {"state": {"$in": ["prepared", "inProgress"]}})
        .sort(doc! {"startOpTime": 1})
        .read_concern(ReadConcern::local())
        .await
        .map_err(db("query config.transactions"))?;
    if let Some(ts) = txn.as_ref().and_then(|t| {
        t.get_document("startOpTime")
            .ok()
            .and_then(|o| o.get_timestamp("ts").ok())
    }) {
        return Ok(ts);
    }
    let last = node
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await
        .map_err(db("query local.oplog.rs"))?
        .ok_or_else(|| OplogReadError::Malformed("the oplog is empty".into()))?;
    entry_ts(&last)
}

/// The `ts` of a raw oplog entry.
///
/// # Errors
/// [`OplogReadError::Malformed`].
pub fn entry_ts(entry: &bson::RawDocument) -> Result<Timestamp, OplogReadError> {
    entry
        .get_timestamp("ts")
        .map_err(|e| OplogReadError::Malformed(e.to_string()))
}

/// Whether the oplog still holds an entry at or before `from` (PBM's `IsSufficient`).
///
/// # Errors
/// The query fails.
pub async fn reaches_back_to(node: &Client, from: Timestamp) -> Result<bool, OplogReadError> {
    let n = node
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .count_documents(doc! {"ts": {"$lte": from}})
        .limit(1)
        .await
        .map_err(db("check the oplog range"))?;
    Ok(n > 0)
}

/// A stream of the oplog entries with `from <= ts <= till`, noops left out.
pub struct OplogRange {
    node: Client,
    cursor: Cursor<RawDocumentBuf>,
    from: Timestamp,
    checked: bool,
    entries: u64,
}

impl OplogRange {
    /// Opens the range on `node` (a direct connection to the member being read).
    ///
    /// # Errors
    /// The query fails.
    pub async fn open(
        node: &Client,
        from: Timestamp,
        till: Timestamp,
    ) -> Result<Self, OplogReadError> {
        let cursor = node
            .database("local")
            .collection::<RawDocumentBuf>("oplog.rs")
            .find(doc! {"ts": {"$gte": from, "$lte": till}})
            .batch_size(BATCH)
            .await
            .map_err(db("open a cursor on local.oplog.rs"))?;
        Ok(Self {
            node: node.clone(),
            cursor,
            from,
            checked: false,
            entries: 0,
        })
    }

    /// The next entry's raw bytes, or `None` at the end of the range.
    ///
    /// # Errors
    /// Cursor failures; [`OplogReadError::InsufficientRange`] when entries since `from`
    /// were already truncated from the oplog.
    pub async fn next(&mut self) -> Result<Option<&bson::RawDocument>, OplogReadError> {
        loop {
            if !self
                .cursor
                .advance()
                .await
                .map_err(db("read local.oplog.rs"))?
            {
                if !self.checked && !reaches_back_to(&self.node, self.from).await? {
                    return Err(OplogReadError::InsufficientRange(self.from));
                }
                return Ok(None);
            }
            // Checked after the first entry arrived, as PBM does: checking before could
            // miss a truncation between the check and the read. A first entry at exactly
            // `from` is the proof itself (ranges start at an entry's `ts`: a backup's
            // first write, the previous chunk's end), which saves a query per range;
            // SecantusDB answers every oplog query with a full scan of its oplog.
            if !self.checked {
                let first = entry_ts(self.cursor.current())?;
                if first != self.from && !reaches_back_to(&self.node, self.from).await? {
                    return Err(OplogReadError::InsufficientRange(self.from));
                }
                self.checked = true;
            }
            if self.cursor.current().get_str("op").ok() != Some("n") {
                break;
            }
        }
        self.entries += 1;
        Ok(Some(self.cursor.current()))
    }

    /// Entries handed out so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}
