//! Where a slicer starts (PBM's `Slicer.Catchup` and `OplogOnlyCatchup`).
//!
//! - With a base backup (the default): the newest `done`, non-selective, non-external
//!   backup on the main storage must contain this replica set and be newer than the
//!   last restore. Start at the end of this replica set's last chunk; with no chunk (or
//!   only chunks older than the last restore) at the backup's `last_write_ts`. When the
//!   backup ended after the last chunk, fill up to it: the oplog between the chunk and
//!   the backup's `first_write_ts` from `oplog.rs`, then the backup's own oplog slices
//!   copied into `pbmPitr/`, and continue from the backup's `last_write_ts`.
//! - `oplogOnly`: continue from the last chunk, or start now.
//!
//! [`plan`] is the decision, without a database; [`start_point`] carries it out.

use super::slicer::SlicerError;
use super::slicer_chunk::{self, ChunkTarget};
use crate::node::Node;
use crate::oplog::ts_lt;
use bson::{doc, Timestamp};
use rbm_protocol::defs::{BackupType, Status, BACKUPS_COLLECTION, DB, RESTORES_COLLECTION};
use rbm_protocol::meta::{BackupMeta, PitrChunk, RestoreMeta};
use tokio_util::sync::CancellationToken;

/// The parts of the base backup the start point depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub name: String,
    pub logical: bool,
    /// Unix seconds.
    pub start_ts: i64,
    /// The backup's (cluster) `last_write_ts`.
    pub last_write: Timestamp,
    /// This replica set's window and oplog folder.
    pub rs_first_write: Timestamp,
    pub rs_last_write: Timestamp,
    pub oplog_dir: String,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Slice from this timestamp on.
    From(Timestamp),
    /// The base backup ended after the last chunk: fill the chunk's end up to the
    /// backup, then slice from the backup's `last_write_ts` for this replica set.
    Fill { chunk_end: Timestamp, base: Base },
    /// PITR cannot start (PBM's Catchup errors); the message says why.
    Refuse(String),
}

/// PBM's Catchup decision.
pub fn plan(
    base: Option<&Base>,
    last_restore_start: Option<i64>,
    chunk: Option<Timestamp>,
) -> Plan {
    let Some(base) = base else {
        return Plan::Refuse("no backup found. full backup is required to start PITR".into());
    };
    if let Some(r) = last_restore_start {
        if base.start_ts < r {
            return Plan::Refuse(format!(
                "no backup found after the last restore, a new backup is required to resume PITR \
                 (the newest base backup is {})",
                base.name
            ));
        }
    }
    let Some(end) = chunk else {
        return Plan::From(base.last_write);
    };
    if last_restore_start.is_some_and(|r| i64::from(end.time) < r) {
        return Plan::From(base.last_write);
    }
    if !ts_lt(end, base.rs_last_write) {
        return Plan::From(end);
    }
    Plan::Fill {
        chunk_end: end,
        base: base.clone(),
    }
}

/// PBM's OplogOnlyCatchup decision: `now` is the cluster time.
pub fn plan_oplog_only(
    chunk: Option<Timestamp>,
    last_restore_start: Option<i64>,
    now: Timestamp,
) -> Timestamp {
    match chunk {
        None => now,
        // After a restore the old chunks describe another history: start afresh.
        Some(end) if last_restore_start.is_some_and(|r| r > i64::from(end.time)) => now,
        Some(end) => end,
    }
}

/// PBM's `GetLastBackup`.
async fn last_backup(node: &Node, rs: &str) -> Result<Option<Base>, SlicerError> {
    let b: Option<BackupMeta> = node
        .pbm
        .database(DB)
        .collection::<BackupMeta>(BACKUPS_COLLECTION)
        .find_one(doc! {
            "nss": null,
            "type": {"$ne": BackupType::External.as_str()},
            "store.profile": null,
            "status": Status::Done.as_str(),
        })
        .sort(doc! {"start_ts": -1})
        .await
        .map_err(SlicerError::db("read admin.pbmBackups"))?;
    let Some(b) = b else { return Ok(None) };
    let Some(r) = b.replsets.iter().find(|r| r.name == rs) else {
        return Err(SlicerError::Other(format!(
            "no replset {rs:?} in the last backup {:?}. full backup is required to start PITR",
            b.name
        )));
    };
    Ok(Some(Base {
        name: b.name.clone(),
        logical: b.kind == BackupType::Logical,
        start_ts: b.start_ts,
        last_write: b.last_write_ts,
        rs_first_write: r.first_write_ts,
        rs_last_write: r.last_write_ts,
        oplog_dir: r.oplog_name.clone(),
    }))
}

/// PBM's `GetLastRestore`: its `start_ts`.
async fn last_restore(node: &Node) -> Result<Option<i64>, SlicerError> {
    let r: Option<RestoreMeta> = node
        .pbm
        .database(DB)
        .collection::<RestoreMeta>(RESTORES_COLLECTION)
        .find_one(doc! {"status": Status::Done.as_str()})
        .sort(doc! {"start_ts": -1})
        .await
        .map_err(SlicerError::db("read admin.pbmRestores"))?;
    Ok(r.map(|r| r.start_ts))
}

/// What the catch-up did, for the log.
#[derive(Debug)]
pub struct Catchup {
    pub from: Timestamp,
    pub notes: Vec<String>,
    /// Gaps that could not be filled (the oplog no longer held them).
    pub gaps: Vec<(Timestamp, Timestamp)>,
}

impl Catchup {
    fn at(from: Timestamp) -> Self {
        Self {
            from,
            notes: Vec::new(),
            gaps: Vec::new(),
        }
    }
}

/// Finds the start point, filling up to the base backup where needed.
///
/// # Errors
/// PITR cannot start ([`SlicerError::Other`] with PBM's reason) or the fill failed for
/// another reason than a rolled-over oplog.
pub async fn start_point(
    node: &Node,
    target: &ChunkTarget,
    oplog_only: bool,
    cancel: &CancellationToken,
) -> Result<Catchup, SlicerError> {
    let rs = node.info.replset.as_str();
    let chunk: Option<PitrChunk> = slicer_chunk::last_chunk(node, rs).await?;
    let restore = last_restore(node).await?;
    if oplog_only {
        let now = node.cluster_time().await?;
        return Ok(Catchup::at(plan_oplog_only(
            chunk.map(|c| c.end_ts),
            restore,
            now,
        )));
    }
    let base = last_backup(node, rs).await?;
    let (chunk_end, base) = match plan(base.as_ref(), restore, chunk.map(|c| c.end_ts)) {
        Plan::From(ts) => return Ok(Catchup::at(ts)),
        Plan::Refuse(msg) => return Err(SlicerError::Other(msg)),
        Plan::Fill { chunk_end, base } => (chunk_end, base),
    };
    let mut out = Catchup::at(base.rs_last_write);
    if ts_lt(base.rs_first_write, chunk_end) {
        // The last chunk ends inside the backup window: copying the backup's slices
        // would overlap it, so take the rest of the window from the oplog.
        match slicer_chunk::upload(node, target, chunk_end, base.rs_last_write, cancel).await {
            Ok(_) => out.notes.push(format!(
                "uploaded chunk {} - {}",
                fmt_ts(chunk_end),
                fmt_ts(base.rs_last_write)
            )),
            Err(e) if slicer_chunk::is_insufficient_range(&e) => {
                out.gaps.push((chunk_end, base.rs_last_write));
            }
            Err(e) => return Err(e),
        }
        return Ok(out);
    }
    let mut filled = chunk_end;
    if ts_lt(chunk_end, base.rs_first_write) {
        match slicer_chunk::upload(node, target, chunk_end, base.rs_first_write, cancel).await {
            Ok(_) => {
                out.notes.push(format!(
                    "uploaded chunk {} - {}",
                    fmt_ts(chunk_end),
                    fmt_ts(base.rs_first_write)
                ));
                filled = base.rs_first_write;
            }
            Err(e) if slicer_chunk::is_insufficient_range(&e) => {
                out.gaps.push((chunk_end, base.rs_first_write));
                filled = base.rs_first_write;
            }
            Err(e) => return Err(e),
        }
    }
    if base.logical {
        match slicer_chunk::copy_backup_oplog(node, &target.storage, rs, &base.oplog_dir).await {
            Ok(n) => out.notes.push(format!(
                "copied {n} chunks {} - {} of backup {}",
                fmt_ts(base.rs_first_write),
                fmt_ts(base.rs_last_write),
                base.name
            )),
            Err(e) => {
                // PBM: go on from the oplog instead; a rolled-over oplog shows as a gap.
                out.notes
                    .push(format!("copy oplog from {:?} backup: {e}", base.name));
                out.from = filled;
            }
        }
    }
    Ok(out)
}

/// PBM's `formatts`.
pub fn fmt_ts(t: Timestamp) -> String {
    rbm_protocol::names::backup_name(i64::from(t.time))
        .trim_end_matches('Z')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32) -> Timestamp {
        Timestamp { time, increment: 1 }
    }

    fn base() -> Base {
        Base {
            name: "b".into(),
            logical: true,
            start_ts: 100,
            last_write: ts(130),
            rs_first_write: ts(110),
            rs_last_write: ts(130),
            oplog_dir: "b/rs/oplog".into(),
        }
    }

    #[test]
    fn needs_a_base_backup_newer_than_the_last_restore() {
        assert!(matches!(plan(None, None, Some(ts(50))), Plan::Refuse(_)));
        assert!(matches!(
            plan(Some(&base()), Some(101), None),
            Plan::Refuse(_)
        ));
    }

    #[test]
    fn continues_from_the_last_chunk_or_the_backup() {
        assert_eq!(plan(Some(&base()), None, None), Plan::From(ts(130)));
        assert_eq!(
            plan(Some(&base()), None, Some(ts(200))),
            Plan::From(ts(200))
        );
        assert_eq!(
            plan(Some(&base()), None, Some(ts(130))),
            Plan::From(ts(130))
        );
        // Chunks older than the last restore describe another history.
        assert_eq!(
            plan(Some(&base()), Some(90), Some(ts(80))),
            Plan::From(ts(130))
        );
    }

    #[test]
    fn fills_up_to_a_newer_backup() {
        assert_eq!(
            plan(Some(&base()), None, Some(ts(110))),
            Plan::Fill {
                chunk_end: ts(110),
                base: base()
            }
        );
    }

    #[test]
    fn oplog_only_starts_now_without_chunks_or_after_a_restore() {
        assert_eq!(plan_oplog_only(None, None, ts(500)), ts(500));
        assert_eq!(plan_oplog_only(Some(ts(400)), None, ts(500)), ts(400));
        assert_eq!(plan_oplog_only(Some(ts(400)), Some(450), ts(500)), ts(500));
    }
}
