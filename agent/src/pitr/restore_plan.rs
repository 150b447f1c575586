//! What a restore to a point in time (`restore --time`) and an oplog replay
//! (`oplog-replay`) need, checked before anything is written: the base backup (PBM's
//! `GetLastBackup` before the target, or the one named by `--base-snapshot`) and, per
//! replica set, the chain of PITR chunks from the base's last write to the target with
//! no gap (PBM's restore `chunks()`). The CLI and the agent both run these checks, so a
//! target in a gap or outside every range fails with one error and nothing touched.

use super::timeline::{self, TimelineError};
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use mongodb::Database;
use rbm_protocol::defs::{BackupType, Status, BACKUPS_COLLECTION};
use rbm_protocol::meta::{BackupMeta, PitrChunk};
use std::collections::BTreeMap;

/// Why a point-in-time restore or replay cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("read admin.{BACKUPS_COLLECTION}: {0}")]
    Db(#[source] mongodb::error::Error),
    #[error("a document in admin.{BACKUPS_COLLECTION}: {0}")]
    BadDocument(String),
    /// PBM: "no base snapshot found".
    #[error("no base snapshot found: no finished full backup ends at or before {0}")]
    NoBase(String),
    #[error("backup '{0}' not found")]
    BaseNotFound(String),
    #[error("backup '{name}' cannot be the base of a point-in-time restore: {why}")]
    BaseUnusable { name: String, why: String },
    /// PBM's message, word for word.
    #[error("snapshot's last write is later than the target time. Try to set an earlier snapshot. Or leave the snapshot empty so PBM will choose one.")]
    BaseTooLate,
    /// The target (or replay range) is not covered by chunks reachable from the start.
    #[error("{what} is not restorable: {source}; restorable PITR ranges: {ranges}")]
    NotCovered {
        what: String,
        #[source]
        source: Box<TimelineError>,
        ranges: String,
    },
    #[error(transparent)]
    Chunks(#[from] Box<TimelineError>),
}

impl From<TimelineError> for PlanError {
    fn from(e: TimelineError) -> Self {
        PlanError::Chunks(Box::new(e))
    }
}

impl From<PlanError> for crate::cli::CliError {
    fn from(e: PlanError) -> Self {
        use crate::cli::CliError;
        match e {
            PlanError::Db(source) => CliError::mongo("read the backups and PITR chunks", &source),
            PlanError::Chunks(t) => match *t {
                TimelineError::Db(source) => CliError::mongo("read admin.pbmPITRChunks", &source),
                other => CliError::BadDocument(other.to_string()),
            },
            PlanError::BaseNotFound(_) => CliError::NotFound(e.to_string()),
            PlanError::BadDocument(_) => CliError::BadDocument(e.to_string()),
            _ => CliError::InvalidArgument(e.to_string()),
        }
    }
}

/// The time of a `--time` target as PBM sends it (`{T: unix, I: 0}`, `parseTS`).
pub fn target_ts(unix: u32) -> Timestamp {
    Timestamp {
        time: unix,
        increment: 0,
    }
}

/// PBM's `GetLastBackup(before: {T+1, 0})`: the newest (by start) finished backup
/// that is not selective, not external and not on a profile storage, whose last write
/// is at or before `{target.T + 1, 0}`. Logical and physical backups alike, as PBM
/// picks them; [`check_base`] then refuses what this build cannot restore.
pub fn pick_base(backups: &[BackupMeta], target: Timestamp) -> Option<&BackupMeta> {
    let before = (target.time.saturating_add(1), 0u32);
    backups
        .iter()
        .filter(|b| {
            b.status == Status::Done
                && b.kind != BackupType::External
                && b.namespaces.is_empty()
                && !b.store.is_profile
                && (b.last_write_ts.time, b.last_write_ts.increment) <= before
        })
        .max_by_key(|b| b.start_ts)
}

/// Checks a base: finished, logical or full physical, and ending strictly before the
/// target.
///
/// # Errors
/// [`PlanError::BaseUnusable`], [`PlanError::BaseTooLate`].
pub fn check_base(b: &BackupMeta, target: Timestamp) -> Result<(), PlanError> {
    if b.status != Status::Done {
        return Err(PlanError::BaseUnusable {
            name: b.name.clone(),
            why: format!("its status is '{}'", b.status),
        });
    }
    if !matches!(
        b.kind,
        BackupType::Logical | BackupType::Physical | BackupType::Incremental
    ) {
        return Err(PlanError::BaseUnusable {
            name: b.name.clone(),
            why: format!(
                "it is a {} backup; this build replays onto logical and physical backups only",
                b.kind.as_str()
            ),
        });
    }
    if (b.last_write_ts.time, b.last_write_ts.increment) >= (target.time, target.increment) {
        return Err(PlanError::BaseTooLate);
    }
    Ok(())
}

fn ranges_text(chunks: &[PitrChunk], replsets: &[String]) -> String {
    let t = timeline::timelines(chunks, Some(replsets));
    if t.is_empty() {
        return "none".into();
    }
    t.iter().map(|t| t.text()).collect::<Vec<_>>().join(", ")
}

/// The chunks each replica set replays from `from` to `to`, every chain checked.
///
/// # Errors
/// [`PlanError::NotCovered`] naming the first replica set that has a gap or ends early,
/// with the cluster's restorable ranges.
pub fn chains(
    what: &str,
    replsets: &[String],
    chunks: &[PitrChunk],
    from: Timestamp,
    to: Timestamp,
) -> Result<BTreeMap<String, Vec<PitrChunk>>, PlanError> {
    let mut out = BTreeMap::new();
    for rs in replsets {
        match timeline::chain(rs, chunks, from, to) {
            Ok(c) => {
                out.insert(rs.clone(), c);
            }
            Err(e) => {
                return Err(PlanError::NotCovered {
                    what: what.to_string(),
                    source: Box::new(e),
                    ranges: ranges_text(chunks, replsets),
                })
            }
        }
    }
    Ok(out)
}

/// Every backup meta.
///
/// # Errors
/// Read or decode failures.
pub async fn load_backups(admin: &Database) -> Result<Vec<BackupMeta>, PlanError> {
    let docs: Vec<Document> = admin
        .collection::<Document>(BACKUPS_COLLECTION)
        .find(doc! {})
        .await
        .map_err(PlanError::Db)?
        .try_collect()
        .await
        .map_err(PlanError::Db)?;
    docs.into_iter()
        .map(|d| {
            bson::deserialize_from_document(d).map_err(|e| PlanError::BadDocument(e.to_string()))
        })
        .collect()
}

/// A checked point-in-time restore.
#[derive(Debug, Clone)]
pub struct PitrPlan {
    pub base: BackupMeta,
    pub target: Timestamp,
    /// Per replica set of the base, the chunks from its last write to the target.
    pub chunks: BTreeMap<String, Vec<PitrChunk>>,
}

/// Resolves and checks a restore to `target`: the base (named, or PBM's choice) and the
/// chunk chain of each of `replsets` (the base's replica sets when `None`).
///
/// # Errors
/// See [`PlanError`].
pub async fn plan_restore(
    admin: &Database,
    base_name: Option<&str>,
    target: Timestamp,
    replsets: Option<&[String]>,
) -> Result<PitrPlan, PlanError> {
    let backups = load_backups(admin).await?;
    let base = match base_name.filter(|n| !n.is_empty()) {
        Some(n) => backups
            .iter()
            .find(|b| b.name == n)
            .ok_or_else(|| PlanError::BaseNotFound(n.to_string()))?,
        None => pick_base(&backups, target)
            .ok_or_else(|| PlanError::NoBase(timeline::ts_text(target)))?,
    };
    check_base(base, target)?;
    let rss: Vec<String> = match replsets {
        Some(r) => r.to_vec(),
        None => base.replsets.iter().map(|r| r.name.clone()).collect(),
    };
    let chunks = timeline::load_chunks(admin, None, Some(base.last_write_ts), Some(target)).await?;
    let what = format!(
        "point in time {} from base snapshot '{}' (last write {})",
        timeline::ts_text(target),
        base.name,
        timeline::ts_text(base.last_write_ts)
    );
    let chunks = match chains(&what, &rss, &chunks, base.last_write_ts, target) {
        Ok(c) => c,
        Err(PlanError::NotCovered { what, source, .. }) => {
            // The ranges in the message are the cluster's, not only those in the window.
            let all = timeline::load_chunks(admin, None, None, None).await?;
            return Err(PlanError::NotCovered {
                what,
                source,
                ranges: ranges_text(&all, &rss),
            });
        }
        Err(e) => return Err(e),
    };
    Ok(PitrPlan {
        base: base.clone(),
        target,
        chunks,
    })
}

/// Checks an oplog replay of `start..=end`: the replica sets with chunks in the window
/// (PBM's `AllOplogRSNames`), or only `replset` when given, each chained without a gap.
///
/// # Errors
/// See [`PlanError`]; no chunk at all in the window is [`PlanError::NotCovered`].
pub async fn plan_replay(
    admin: &Database,
    start: Timestamp,
    end: Timestamp,
    replset: Option<&str>,
) -> Result<BTreeMap<String, Vec<PitrChunk>>, PlanError> {
    let chunks = timeline::load_chunks(admin, None, Some(start), Some(end)).await?;
    let mut rss: Vec<String> = match replset {
        Some(r) => vec![r.to_string()],
        None => timeline::by_replset(&chunks).into_keys().collect(),
    };
    let what = format!(
        "oplog replay {} - {}",
        timeline::ts_text(start),
        timeline::ts_text(end)
    );
    if rss.is_empty() {
        rss.push(String::new());
    }
    match chains(&what, &rss, &chunks, start, end) {
        Ok(c) => Ok(c),
        Err(PlanError::NotCovered { what, source, .. }) => {
            let all = timeline::load_chunks(admin, None, None, None).await?;
            let names: Vec<String> = timeline::by_replset(&all).into_keys().collect();
            Err(PlanError::NotCovered {
                what,
                source,
                ranges: ranges_text(&all, &names),
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, start: i64, lw: u32, kind: BackupType, status: Status) -> BackupMeta {
        let mut d = doc! {
            "type": kind.as_str(), "opid": "x", "name": name, "replsets": [],
            "compression": "s2", "store": {"type": "filesystem", "filesystem": {"path": "/x"}},
            "mongodb_version": "8.0", "start_ts": start, "last_transition_ts": start,
            "first_write_ts": Timestamp { time: lw - 1, increment: 1 },
            "last_write_ts": Timestamp { time: lw, increment: 3 },
            "hb": Timestamp { time: lw, increment: 0 }, "status": status.as_str(),
            "conditions": [], "pbm_version": "2.15.0",
        };
        d.insert("nss", bson::Bson::Array(vec![]));
        bson::deserialize_from_document(d).expect("meta")
    }

    #[test]
    fn base_is_the_newest_full_done_backup_ending_before_the_next_second_as_pbm_picks_it() {
        let b = vec![
            meta("a", 100, 110, BackupType::Logical, Status::Done),
            meta("b", 200, 210, BackupType::Logical, Status::Done),
            meta("c", 300, 310, BackupType::Logical, Status::Error),
            meta("p", 250, 260, BackupType::Physical, Status::Done),
            meta("x", 270, 280, BackupType::External, Status::Done),
            meta("i", 290, 300, BackupType::Incremental, Status::Done),
        ];
        // b's last write {210, 3} is after {209 + 1, 0}.
        assert_eq!(
            pick_base(&b, target_ts(209)).map(|b| b.name.as_str()),
            Some("a")
        );
        assert_eq!(
            pick_base(&b, target_ts(211)).map(|b| b.name.as_str()),
            Some("b")
        );
        // A physical backup is a base like a logical one; an external one never is.
        assert_eq!(
            pick_base(&b, target_ts(265)).map(|b| b.name.as_str()),
            Some("p")
        );
        assert_eq!(
            pick_base(&b, target_ts(285)).map(|b| b.name.as_str()),
            Some("p")
        );
        // PBM picks the incremental one too, restored through its chain.
        let inc = pick_base(&b, target_ts(400)).expect("i");
        assert_eq!(inc.name, "i");
        assert!(check_base(inc, target_ts(400)).is_ok());
        assert!(matches!(
            check_base(&b[4], target_ts(400)),
            Err(PlanError::BaseUnusable { .. })
        ));
        assert!(pick_base(&b, target_ts(50)).is_none());
        // At T=210 PBM picks b, which ends inside the target second, then refuses it as
        // "later than the target" (PBM's quirk, kept).
        let at = pick_base(&b, target_ts(210)).expect("b");
        assert!(matches!(
            check_base(at, target_ts(210)),
            Err(PlanError::BaseTooLate)
        ));
        assert!(check_base(&b[1], target_ts(211)).is_ok());
        assert!(check_base(&b[3], target_ts(400)).is_ok());
        assert!(matches!(
            check_base(&b[4], target_ts(400)),
            Err(PlanError::BaseUnusable { .. })
        ));
    }
}
