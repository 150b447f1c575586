//! What may be deleted: PBM's safety rules for `delete-backup`, `delete-pitr` and
//! `cleanup` (`pbm/backup/delete.go`: `CanDeleteBackup`, `MakeCleanupInfo`) and rbm's
//! retention of scheduled backups, as pure functions over the backup metas and PITR
//! chunk documents, so every rule is unit-tested without a server.

use bson::Timestamp;
use rbm_protocol::defs::{BackupType, Status};
use rbm_protocol::meta::pitr::PitrChunk;
use rbm_protocol::meta::BackupMeta;
use std::collections::BTreeMap;

/// Whether PITR slicing is on, from the main config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PitrMode {
    pub enabled: bool,
    pub oplog_only: bool,
}

impl PitrMode {
    /// PBM's `IsPITREnabled` seen by the delete rules: slicing that needs a base snapshot.
    fn needs_base(self) -> bool {
        self.enabled && !self.oplog_only
    }
}

/// Why a backup may not be deleted (PBM's error texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("backup is in progress")]
    InProgress,
    #[error("backup is incremental")]
    Incremental,
    #[error("cannot delete the last PITR base snapshot while PITR is enabled")]
    BaseForPitr,
    #[error("backup is the base of incremental backup {0}")]
    IncrementBase(String),
    #[error("backup is not base increment")]
    NotBaseIncrement,
}

/// PBM's `FetchAllIncrements` + `CanDeleteIncrementalChain`: an incremental backup is
/// deleted only as a whole chain, from its base. Returns the base and every increment
/// built on it (each step follows the newest done increment, as PBM), base first.
///
/// # Errors
/// Not a base, a member running, or the chain is the last PITR base.
pub fn incremental_chain(
    base: &BackupMeta,
    backups: &[BackupMeta],
    chunks: &[PitrChunk],
    pitr: PitrMode,
) -> Result<Vec<BackupMeta>, Refusal> {
    if base.status.is_running() {
        return Err(Refusal::InProgress);
    }
    if base.kind != BackupType::Incremental || !base.src_backup.is_empty() {
        return Err(Refusal::NotBaseIncrement);
    }
    let mut out = vec![base.clone()];
    let mut last = base;
    loop {
        let incs: Vec<&BackupMeta> = backups
            .iter()
            .filter(|b| b.src_backup == last.name && !out.iter().any(|o| o.name == b.name))
            .collect();
        if incs.is_empty() {
            break;
        }
        if incs.iter().any(|b| b.status.is_running()) {
            return Err(Refusal::InProgress);
        }
        out.extend(incs.iter().map(|b| (*b).clone()));
        let Some(succ) = incs.iter().rev().find(|b| b.status == Status::Done) else {
            break;
        };
        last = succ;
    }
    if required_for_pitr(
        backups,
        chunks,
        pitr,
        last.last_write_ts,
        base.last_write_ts,
    ) {
        return Err(Refusal::BaseForPitr);
    }
    Ok(out)
}

/// One restorable oplog range, in unix seconds (PBM's `oplog.Timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub start: u32,
    pub end: u32,
}

fn key(t: Timestamp) -> (u32, u32) {
    (t.time, t.increment)
}

/// PBM's `isValidBaseSnapshot`: a finished, full, non-external backup.
pub fn is_valid_base(b: &BackupMeta) -> bool {
    b.status == Status::Done && b.kind != BackupType::External && b.namespaces.is_empty()
}

fn is_main_store(b: &BackupMeta) -> bool {
    !b.store.is_profile
}

/// PBM's `gettimelines` for the chunks of one replica set, sorted by start: chunks that
/// touch (end == next start) continue a timeline, a hole starts a new one.
fn rs_timelines(chunks: &[&PitrChunk]) -> Vec<Timeline> {
    let mut out: Vec<Timeline> = Vec::new();
    let mut prev_end: Option<Timestamp> = None;
    for c in chunks {
        match (prev_end, out.last_mut()) {
            (Some(pe), Some(last)) if key(pe) >= key(c.start_ts) => last.end = c.end_ts.time,
            _ => out.push(Timeline {
                start: c.start_ts.time,
                end: c.end_ts.time,
            }),
        }
        prev_end = Some(c.end_ts);
    }
    out
}

fn intersect(a: &[Timeline], b: &[Timeline]) -> Vec<Timeline> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let start = x.start.max(y.start);
            let end = x.end.min(y.end);
            if start < end {
                out.push(Timeline { start, end });
            }
        }
    }
    out.sort_by_key(|t| t.start);
    out
}

/// Cluster-wide timelines (PBM's `MergeTimelines`): the ranges every replica set covers.
pub fn timelines<'a>(chunks: impl IntoIterator<Item = &'a PitrChunk>) -> Vec<Timeline> {
    let mut by_rs: BTreeMap<&str, Vec<&PitrChunk>> = BTreeMap::new();
    for c in chunks {
        by_rs.entry(c.rs.as_str()).or_default().push(c);
    }
    let mut merged: Option<Vec<Timeline>> = None;
    for (_, mut cs) in by_rs {
        cs.sort_by_key(|c| key(c.start_ts));
        let t = rs_timelines(&cs);
        merged = Some(match merged {
            None => t,
            Some(m) => intersect(&m, &t),
        });
    }
    merged.unwrap_or_default()
}

/// PBM's `HasSingleTimelineToCover`.
fn single_timeline_covers(chunks: &[PitrChunk], from: u32, till: u32) -> bool {
    timelines(chunks)
        .iter()
        .any(|t| t.start <= from && till <= t.end)
}

fn base_after(backups: &[BackupMeta], lw: Timestamp) -> Option<Timestamp> {
    backups
        .iter()
        .filter(|b| is_valid_base(b) && is_main_store(b) && key(b.last_write_ts) > key(lw))
        .map(|b| b.last_write_ts)
        .min_by_key(|t| key(*t))
}

fn base_before(backups: &[BackupMeta], lw: Timestamp, exclude: Timestamp) -> Option<Timestamp> {
    backups
        .iter()
        .filter(|b| {
            is_valid_base(b)
                && is_main_store(b)
                && key(b.last_write_ts) < key(lw)
                && b.last_write_ts != exclude
        })
        .map(|b| b.last_write_ts)
        .max_by_key(|t| key(*t))
}

/// PBM's `isRequiredForOplogSlicing`: the backup ending at `lw` is the base the current
/// PITR timeline hangs from (no newer base, and no older base reaches the timeline).
pub fn required_for_pitr(
    backups: &[BackupMeta],
    chunks: &[PitrChunk],
    pitr: PitrMode,
    lw: Timestamp,
    base_lw: Timestamp,
) -> bool {
    if !pitr.needs_base() || base_after(backups, lw).is_some() {
        return false;
    }
    let prev = base_before(backups, lw, base_lw).unwrap_or(Timestamp {
        time: 0,
        increment: 0,
    });
    // PBM's `PITRGetChunksSlice(from=prev, to=lw)`.
    let between: Vec<&PitrChunk> = chunks
        .iter()
        .filter(|c| (prev.time == 0 || key(c.end_ts) >= key(prev)) && key(c.start_ts) <= key(lw))
        .collect();
    let tl = timelines(between);
    tl.len() == 1 && prev.time < tl[0].start
}

/// PBM's `CanDeleteBackup` plus its incremental-chain rule: refuses a running backup,
/// the last PITR base while PITR is on, and a backup increments are built on.
///
/// # Errors
/// The [`Refusal`].
pub fn can_delete(
    b: &BackupMeta,
    backups: &[BackupMeta],
    chunks: &[PitrChunk],
    pitr: PitrMode,
) -> Result<(), Refusal> {
    if b.status.is_running() {
        return Err(Refusal::InProgress);
    }
    if let Some(inc) = backups
        .iter()
        .find(|i| i.src_backup == b.name && !matches!(i.status, Status::Canceled | Status::Error))
    {
        return Err(Refusal::IncrementBase(inc.name.clone()));
    }
    if !is_valid_base(b) {
        return Ok(());
    }
    if b.kind == BackupType::Incremental && !b.src_backup.is_empty() {
        return Err(Refusal::Incremental);
    }
    if required_for_pitr(
        backups,
        chunks,
        pitr,
        b.last_write_ts,
        Timestamp {
            time: 0,
            increment: 0,
        },
    ) {
        return Err(Refusal::BaseForPitr);
    }
    Ok(())
}

/// What `cleanup` / `delete-pitr` / `delete-backup --older-than` may delete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanupInfo {
    pub backups: Vec<BackupMeta>,
    pub chunks: Vec<PitrChunk>,
}

/// Drops from `bcps` every backup some other, kept backup is built on (PBM's
/// `extractLastIncrementalChain`, generalised: a chain with a member after `ts` stays).
fn keep_chains(mut bcps: Vec<BackupMeta>, all: &[BackupMeta]) -> Vec<BackupMeta> {
    loop {
        let deleting: Vec<String> = bcps.iter().map(|b| b.name.clone()).collect();
        let needed: Vec<String> = all
            .iter()
            .filter(|i| {
                !i.src_backup.is_empty()
                    && !deleting.contains(&i.name)
                    && !matches!(i.status, Status::Canceled | Status::Error)
            })
            .map(|i| i.src_backup.clone())
            .collect();
        let before = bcps.len();
        bcps.retain(|b| !needed.contains(&b.name));
        if bcps.len() == before {
            return bcps;
        }
    }
}

/// PBM's `MakeCleanupInfo`: the backups and chunks before `ts` whose loss keeps a
/// restore to any time from `ts` on possible. `profile` empty means the main storage
/// (the only one with PITR chunks).
pub fn cleanup_info(
    all: &[BackupMeta],
    chunks: &[PitrChunk],
    pitr: PitrMode,
    ts: Timestamp,
    profile: &str,
) -> CleanupInfo {
    let limit = Timestamp {
        time: ts.time.saturating_add(1),
        increment: 0,
    };
    let mut backups: Vec<BackupMeta> = all
        .iter()
        .filter(|b| {
            key(b.last_write_ts) < key(limit)
                && !b.status.is_running()
                && if profile.is_empty() {
                    is_main_store(b)
                } else {
                    b.store.is_profile && b.store.name == profile
                }
        })
        .cloned()
        .collect();
    backups.sort_by_key(|b| key(b.last_write_ts));
    let mut chunks: Vec<PitrChunk> = if profile.is_empty() {
        chunks
            .iter()
            .filter(|c| key(c.start_ts) < key(ts))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    chunks.sort_by_key(|c| key(c.start_ts));
    if backups.is_empty() {
        return CleanupInfo { backups, chunks };
    }
    if let Some(last) = backups.last().cloned() {
        if last.last_write_ts.time == ts.time {
            backups.pop();
            if is_valid_base(&last) {
                chunks.retain(|c| key(c.end_ts) <= key(last.last_write_ts));
                return CleanupInfo {
                    backups: keep_chains(backups, all),
                    chunks,
                };
            }
        }
    }
    if !profile.is_empty() {
        return CleanupInfo {
            backups: keep_chains(backups, all),
            chunks,
        };
    }
    let Some(base) = backups.iter().rposition(is_valid_base) else {
        chunks.retain(|c| key(c.end_ts) <= key(ts));
        return CleanupInfo { backups, chunks };
    };
    let base_lw = backups[base].last_write_ts;
    let (before, after): (Vec<PitrChunk>, Vec<PitrChunk>) = chunks
        .into_iter()
        .partition(|c| key(c.end_ts) <= key(base_lw));
    let mut chunks = after.clone();
    // The base stays (with the chunks after it) when a restore to `ts` goes through
    // it, or when it is the base the running PITR slicing will hang from.
    if single_timeline_covers(&after, base_lw.time, ts.time)
        || (pitr.needs_base() && base_after(all, ts).is_none())
    {
        backups.remove(base);
        chunks = before;
    } else {
        chunks.splice(0..0, before);
    }
    CleanupInfo {
        backups: keep_chains(backups, all),
        chunks,
    }
}

/// PBM's `ListDeleteBackupBefore` type filter (`selective` is PBM's pseudo-type).
pub fn matches_type(b: &BackupMeta, kind: Option<BackupType>) -> bool {
    match kind {
        None => true,
        Some(BackupType::Logical) => b.kind == BackupType::Logical && b.namespaces.is_empty(),
        Some(k) => b.kind == k,
    }
}

/// Retention of one schedule task: of the backups the task made (`owned`, any order),
/// those beyond the newest `keep` finished ones, or whose snapshot ends before
/// `older_than` (unix seconds). The newest finished backup is never pruned by age,
/// and every candidate must pass [`can_delete`] (so the PITR base and the base of
/// increments stay).
pub fn retention(
    owned: &[String],
    all: &[BackupMeta],
    chunks: &[PitrChunk],
    pitr: PitrMode,
    keep: Option<usize>,
    older_than: Option<u32>,
) -> Vec<String> {
    let mut mine: Vec<&BackupMeta> = all
        .iter()
        .filter(|b| owned.contains(&b.name) && b.status == Status::Done)
        .collect();
    mine.sort_by_key(|b| std::cmp::Reverse(key(b.last_write_ts)));
    let mut out = Vec::new();
    let mut remaining: Vec<BackupMeta> = all.to_vec();
    for (i, b) in mine.iter().enumerate() {
        let over_count = keep.is_some_and(|k| i >= k);
        let too_old = i > 0 && older_than.is_some_and(|t| b.last_write_ts.time < t);
        if !(over_count || too_old) {
            continue;
        }
        if can_delete(b, &remaining, chunks, pitr).is_ok() {
            out.push(b.name.clone());
            remaining.retain(|r| r.name != b.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: u32) -> Timestamp {
        Timestamp {
            time: t,
            increment: 1,
        }
    }

    fn bcp(name: &str, lw: u32, status: Status) -> BackupMeta {
        let m: BackupMeta = bson::deserialize_from_document(bson::doc! {
            "type": "logical", "opid": "", "name": name, "compression": "s2",
            "store": {"type": "filesystem"}, "start_ts": i64::from(lw), "last_transition_ts": i64::from(lw),
            "first_write_ts": ts(lw), "last_write_ts": ts(lw), "hb": ts(lw), "status": status.as_str(),
            "mongodb_version": "7.0", "pbm_version": "2.15.0",
        })
        .expect("meta");
        m
    }

    fn chunk(rs: &str, s: u32, e: u32) -> PitrChunk {
        PitrChunk {
            id: None,
            rs: rs.into(),
            file_name: format!("pbmPitr/{rs}/{s}.{e}.oplog.s2"),
            compression: "s2".into(),
            start_ts: ts(s),
            end_ts: ts(e),
            size: 1,
        }
    }

    const ON: PitrMode = PitrMode {
        enabled: true,
        oplog_only: false,
    };

    #[test]
    fn timelines_join_touching_chunks_and_intersect_replica_sets() {
        let c = [
            chunk("a", 10, 20),
            chunk("a", 20, 30),
            chunk("a", 40, 50),
            chunk("b", 15, 45),
        ];
        assert_eq!(
            timelines(&c),
            vec![
                Timeline { start: 15, end: 30 },
                Timeline { start: 40, end: 45 }
            ]
        );
    }

    #[test]
    fn last_base_of_the_pitr_window_is_refused_only_while_pitr_is_on() {
        let b = vec![bcp("b1", 100, Status::Done)];
        let c = vec![chunk("rs", 100, 200)];
        assert_eq!(can_delete(&b[0], &b, &c, ON), Err(Refusal::BaseForPitr));
        assert_eq!(can_delete(&b[0], &b, &c, PitrMode::default()), Ok(()));
        // No chunk yet: PBM lets the base go.
        assert_eq!(can_delete(&b[0], &b, &[], ON), Ok(()));
        // A newer base takes over.
        let b2 = vec![bcp("b1", 100, Status::Done), bcp("b2", 150, Status::Done)];
        assert_eq!(can_delete(&b2[0], &b2, &c, ON), Ok(()));
        assert_eq!(
            can_delete(&b2[1], &b2, &c, ON),
            Ok(()),
            "b1 reaches the timeline, so b2 is not the only base"
        );
    }

    #[test]
    fn running_backups_and_bases_of_increments_are_refused() {
        let r = bcp("r", 100, Status::Running);
        assert_eq!(
            can_delete(&r, std::slice::from_ref(&r), &[], ON),
            Err(Refusal::InProgress)
        );
        let base = bcp("base", 100, Status::Done);
        let mut inc = bcp("inc", 120, Status::Done);
        inc.kind = BackupType::Incremental;
        inc.src_backup = "base".into();
        let all = vec![base.clone(), inc];
        assert_eq!(
            can_delete(&base, &all, &[], PitrMode::default()),
            Err(Refusal::IncrementBase("inc".into()))
        );
    }

    #[test]
    fn incremental_backups_are_deleted_as_a_chain_from_the_base() {
        let mut base = bcp("base", 100, Status::Done);
        base.kind = BackupType::Incremental;
        let inc = |n: &str, src: &str, t: u32, st: Status| {
            let mut b = bcp(n, t, st);
            b.kind = BackupType::Incremental;
            b.src_backup = src.into();
            b
        };
        let all = vec![
            base.clone(),
            inc("i1", "base", 120, Status::Done),
            inc("i1x", "base", 125, Status::Error),
            inc("i2", "i1", 140, Status::Done),
            bcp("other", 150, Status::Done),
        ];
        let chain = incremental_chain(&base, &all, &[], PitrMode::default()).unwrap();
        let names: Vec<&str> = chain.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["base", "i1", "i1x", "i2"]);
        assert_eq!(
            incremental_chain(&all[1], &all, &[], PitrMode::default()),
            Err(Refusal::NotBaseIncrement)
        );
        assert_eq!(
            incremental_chain(&all[4], &all, &[], PitrMode::default()),
            Err(Refusal::NotBaseIncrement)
        );
        let mut running = all.clone();
        running.push(inc("i3", "i2", 160, Status::Running));
        assert_eq!(
            incremental_chain(&base, &running, &[], PitrMode::default()),
            Err(Refusal::InProgress)
        );
    }

    #[test]
    fn cleanup_keeps_the_base_and_chunks_a_restore_to_the_cut_needs() {
        let all = vec![
            bcp("b1", 100, Status::Done),
            bcp("b2", 200, Status::Done),
            bcp("b3", 400, Status::Done),
        ];
        let c = vec![
            chunk("rs", 100, 200),
            chunk("rs", 200, 300),
            chunk("rs", 300, 500),
        ];
        // Cut at 250: b2 + chunk 200-300 restore to 250; b1 and chunk 100-200 go.
        let info = cleanup_info(&all, &c, ON, ts(250), "");
        let names: Vec<&str> = info.backups.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["b1"]);
        assert_eq!(info.chunks, vec![chunk("rs", 100, 200)]);
        // Cut exactly at b3: everything before it goes, chunks up to b3 too.
        let all3 = vec![
            bcp("b1", 100, Status::Done),
            bcp("b2", 200, Status::Done),
            bcp("b3", 300, Status::Done),
        ];
        let info = cleanup_info(
            &all3,
            &c,
            ON,
            Timestamp {
                time: 300,
                increment: 9,
            },
            "",
        );
        let names: Vec<&str> = info.backups.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["b1", "b2"]);
        assert_eq!(info.chunks.len(), 2);
    }

    #[test]
    fn cleanup_with_a_gap_keeps_the_last_base_when_pitr_needs_it() {
        let all = vec![bcp("b1", 100, Status::Done)];
        let c = vec![chunk("rs", 300, 400)];
        let info = cleanup_info(&all, &c, ON, ts(350), "");
        assert!(
            info.backups.is_empty(),
            "the only base stays while PITR is on"
        );
        let info = cleanup_info(&all, &c, PitrMode::default(), ts(350), "");
        assert_eq!(info.backups.len(), 1);
    }

    #[test]
    fn retention_keeps_count_and_age_but_never_the_pitr_base_or_newest() {
        let all = vec![
            bcp("a", 100, Status::Done),
            bcp("b", 200, Status::Done),
            bcp("c", 300, Status::Done),
            bcp("manual", 250, Status::Done),
        ];
        let owned = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let off = PitrMode::default();
        assert_eq!(retention(&owned, &all, &[], off, Some(1), None), ["b", "a"]);
        assert_eq!(
            retention(&owned, &all, &[], off, None, Some(250)),
            ["b", "a"]
        );
        assert!(retention(&owned, &all, &[], off, None, Some(1000)).len() == 2);
        // PITR on with a timeline from b onwards and no newer base than c: c is newest and
        // kept; b is deletable only because c (newer) exists.
        let c = vec![chunk("rs", 300, 400)];
        assert_eq!(retention(&owned, &all, &c, ON, Some(1), None), ["b", "a"]);
        // Timeline hanging from the oldest: with keep=0 the newest base c is still refused.
        let only_c = vec![bcp("c", 300, Status::Done)];
        assert!(retention(&["c".into()], &only_c, &c, ON, Some(0), None).is_empty());
    }
}
