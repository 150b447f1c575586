//! PITR timelines: restorable ranges and gaps computed from `pbmPITRChunks`
//! (PBM's `pbm/oplog/chunk.go`: `gettimelines`, `MergeTimelines`,
//! `HasSingleTimelineToCover`, and the restore's chunk-chain check in
//! `pbm/restore/restore.go` `chunks`).
//!
//! - Per replica set, chunks sorted by `start_ts` form one timeline as long as each
//!   chunk starts at or before the previous chunk's end; a chunk starting later opens
//!   a new timeline (the space between is a gap).
//! - Across replica sets a second is restorable only if every replica set covers it
//!   ([`merge`], PBM's algorithm exactly).
//! - Timelines are in whole seconds (as PBM shows and checks them); the chain check
//!   for a restore ([`chain`]) works on exact timestamps.
//!
//! Nothing here bridges a gap: a gap in any replica set splits the cluster's range.

use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use mongodb::Database;
use rbm_protocol::defs::PITR_CHUNKS_COLLECTION;
use rbm_protocol::meta::PitrChunk;
use std::collections::BTreeMap;

/// A continuous span of oplog coverage, in unix seconds, both ends inclusive (PBM's
/// `oplog.Timeline`), with the stored size of the chunks in it (per replica set only;
/// merged timelines have size 0, as in PBM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub start: u32,
    pub end: u32,
    pub size: i64,
}

impl Timeline {
    /// Whether the second `t` lies in this timeline.
    pub fn contains(&self, t: u32) -> bool {
        self.start <= t && t <= self.end
    }

    /// PBM's `Timeline.String()`: `2006-01-02T15:04:05 - 2006-01-02T15:04:05`.
    pub fn text(&self) -> String {
        format!(
            "{} - {}",
            crate::cli::text::fmt_ts(i64::from(self.start)),
            crate::cli::text::fmt_ts(i64::from(self.end))
        )
    }
}

/// A span with no coverage between two timelines (`start` = end of the earlier
/// timeline, `end` = start of the later one, in unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub start: u32,
    pub end: u32,
}

/// Why a range of chunks cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("read admin.{PITR_CHUNKS_COLLECTION}: {0}")]
    Db(#[source] mongodb::error::Error),
    #[error("a document in admin.{PITR_CHUNKS_COLLECTION}: {0}")]
    BadDocument(String),
    /// PBM: "no chunks found".
    #[error("no PITR chunks of replica set {rs} cover {from} - {to}")]
    NoChunks {
        rs: String,
        from: String,
        to: String,
    },
    /// PBM: "no chunk with the target time, the last chunk ends on ...".
    #[error("no chunk with the target time {to}: the last PITR chunk of replica set {rs} ends on {last_end}")]
    EndsBefore {
        rs: String,
        to: String,
        last_end: String,
    },
    /// PBM: "integrity vilolated, expect chunk with start_ts ..., but got ...".
    #[error("PITR chunks of replica set {rs} have a gap: nothing covers {gap_start} - {gap_end} (expected a chunk starting at or before {gap_start})")]
    Gap {
        rs: String,
        gap_start: String,
        gap_end: String,
    },
}

fn ts_key(t: Timestamp) -> (u32, u32) {
    (t.time, t.increment)
}

/// `T:I` with the second as a UTC date, for messages.
pub fn ts_text(t: Timestamp) -> String {
    format!(
        "{} ({}:{})",
        crate::cli::text::fmt_ts(i64::from(t.time)),
        t.time,
        t.increment
    )
}

/// PBM's `gettimelines`: the timelines of ONE replica set's chunks (any order). A chunk
/// that starts after the previous chunk's end timestamp opens a new timeline.
pub fn rs_timelines(chunks: &[PitrChunk]) -> Vec<Timeline> {
    let mut sorted: Vec<&PitrChunk> = chunks.iter().collect();
    sorted.sort_by_key(|c| ts_key(c.start_ts));
    let mut out: Vec<Timeline> = Vec::new();
    let mut prev_end: Option<Timestamp> = None;
    for c in sorted {
        match (out.last_mut(), prev_end) {
            (Some(t), Some(pe)) if ts_key(pe) >= ts_key(c.start_ts) => {
                t.end = c.end_ts.time;
                t.size += c.size;
            }
            _ => out.push(Timeline {
                start: c.start_ts.time,
                end: c.end_ts.time,
                size: c.size,
            }),
        }
        prev_end = Some(c.end_ts);
    }
    out
}

/// PBM's `MergeTimelines`: the seconds every replica set covers. The available range
/// runs from the latest first start to the earliest last end; every replica set's
/// gaps are cut out of it.
pub fn merge(per_rs: &[Vec<Timeline>]) -> Vec<Timeline> {
    let sets: Vec<&Vec<Timeline>> = per_rs.iter().filter(|t| !t.is_empty()).collect();
    match sets.len() {
        0 => return Vec::new(),
        1 => return sets[0].clone(),
        _ => {}
    }
    let mut start = 0u32;
    let mut end = 0u32;
    let mut gaps: Vec<(u32, u32)> = Vec::new();
    for tln in &sets {
        start = start.max(tln[0].start);
        let last = tln[tln.len() - 1].end;
        if end == 0 || last < end {
            end = last;
        }
        for w in tln.windows(2) {
            gaps.push((w[0].end, w[1].start));
        }
    }
    gaps.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (s, e) in gaps {
        if e <= start {
            continue;
        }
        if s >= end {
            break;
        }
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut out = Vec::new();
    for (s, e) in merged {
        if start < s {
            out.push(Timeline {
                start,
                end: s,
                size: 0,
            });
        }
        start = e;
    }
    if start < end {
        out.push(Timeline {
            start,
            end,
            size: 0,
        });
    }
    out
}

/// Chunks grouped by replica set (sorted by start).
pub fn by_replset(chunks: &[PitrChunk]) -> BTreeMap<String, Vec<PitrChunk>> {
    let mut m: BTreeMap<String, Vec<PitrChunk>> = BTreeMap::new();
    for c in chunks {
        m.entry(c.rs.clone()).or_default().push(c.clone());
    }
    for v in m.values_mut() {
        v.sort_by_key(|c| ts_key(c.start_ts));
    }
    m
}

/// The cluster's restorable timelines: per replica set timelines, merged. With
/// `replsets`, only those replica sets count (PBM looks at the cluster's members);
/// chunks of other replica sets are ignored.
pub fn timelines(chunks: &[PitrChunk], replsets: Option<&[String]>) -> Vec<Timeline> {
    let per_rs: Vec<Vec<Timeline>> = by_replset(chunks)
        .into_iter()
        .filter(|(rs, _)| replsets.is_none_or(|r| r.contains(rs)))
        .map(|(_, c)| rs_timelines(&c))
        .collect();
    merge(&per_rs)
}

/// The gaps between consecutive timelines.
pub fn gaps(timelines: &[Timeline]) -> Vec<Gap> {
    timelines
        .windows(2)
        .map(|w| Gap {
            start: w[0].end,
            end: w[1].start,
        })
        .collect()
}

/// PBM's `HasSingleTimelineToCover`: one merged timeline holds `from..=till` (seconds).
pub fn covers(chunks: &[PitrChunk], from: u32, till: u32) -> bool {
    timelines(chunks, None)
        .iter()
        .any(|t| t.start <= from && till <= t.end)
}

/// PBM's restore `chunks()`: the chunks of ONE replica set needed to replay from `from`
/// to `to` (exact timestamps), checked to chain without a gap: the first must start at
/// or before `from`, each next one at or before the previous end, and the last must
/// reach `to`. Chunks wholly outside `from..=to` are left out.
///
/// # Errors
/// [`TimelineError::NoChunks`], [`TimelineError::EndsBefore`], [`TimelineError::Gap`].
pub fn chain(
    rs: &str,
    chunks: &[PitrChunk],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<PitrChunk>, TimelineError> {
    let mut sel: Vec<PitrChunk> = chunks
        .iter()
        .filter(|c| {
            c.rs == rs && ts_key(c.end_ts) >= ts_key(from) && ts_key(c.start_ts) <= ts_key(to)
        })
        .cloned()
        .collect();
    sel.sort_by_key(|c| ts_key(c.start_ts));
    let Some(last) = sel.last() else {
        return Err(TimelineError::NoChunks {
            rs: rs.to_string(),
            from: ts_text(from),
            to: ts_text(to),
        });
    };
    let max_end = sel
        .iter()
        .map(|c| ts_key(c.end_ts))
        .max()
        .unwrap_or(ts_key(last.end_ts));
    if max_end < ts_key(to) {
        return Err(TimelineError::EndsBefore {
            rs: rs.to_string(),
            to: ts_text(to),
            last_end: ts_text(Timestamp {
                time: max_end.0,
                increment: max_end.1,
            }),
        });
    }
    let mut reached = from;
    for c in &sel {
        if ts_key(reached) < ts_key(c.start_ts) {
            return Err(TimelineError::Gap {
                rs: rs.to_string(),
                gap_start: ts_text(reached),
                gap_end: ts_text(c.start_ts),
            });
        }
        if ts_key(c.end_ts) > ts_key(reached) {
            reached = c.end_ts;
        }
    }
    Ok(sel)
}

/// PBM's `MakeChunkMetaFromFilepath`: the index entry of a chunk object found on
/// storage (for a resync), `None` if the name is not a chunk's. `size` is the object's.
pub fn chunk_from_path(path: &str, size: i64) -> Option<PitrChunk> {
    let n = rbm_protocol::names::parse_pitr_chunk_path(path).ok()?;
    let compression = rbm_storage::Compression::from_file_name(&n.ext)
        .as_str()
        .to_string();
    Some(PitrChunk {
        id: None,
        file_name: n.path(),
        rs: n.rs,
        compression,
        start_ts: n.start,
        end_ts: n.end,
        size,
    })
}

/// Reads chunk index entries from `admin.pbmPITRChunks` (`admin` = the PBM database):
/// of one replica set or all, those with `end_ts >= from` and `start_ts <= to` when
/// given (PBM's `PITRGetChunksSlice`), sorted by `start_ts`.
///
/// # Errors
/// Read or decode failures.
pub async fn load_chunks(
    admin: &Database,
    rs: Option<&str>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<Vec<PitrChunk>, TimelineError> {
    let mut q = Document::new();
    if let Some(rs) = rs {
        q.insert("rs", rs);
    }
    if let Some(f) = from {
        q.insert("end_ts", doc! {"$gte": f});
    }
    if let Some(t) = to {
        q.insert("start_ts", doc! {"$lte": t});
    }
    let docs: Vec<Document> = admin
        .collection::<Document>(PITR_CHUNKS_COLLECTION)
        .find(q)
        .sort(doc! {"start_ts": 1})
        .await
        .map_err(TimelineError::Db)?
        .try_collect()
        .await
        .map_err(TimelineError::Db)?;
    docs.into_iter()
        .map(|d| {
            bson::deserialize_from_document(d)
                .map_err(|e| TimelineError::BadDocument(e.to_string()))
        })
        .collect()
}

/// The cluster's timelines from `admin.pbmPITRChunks` (see [`timelines`]).
///
/// # Errors
/// Read or decode failures.
pub async fn load_timelines(
    admin: &Database,
    replsets: Option<&[String]>,
) -> Result<Vec<Timeline>, TimelineError> {
    let chunks = load_chunks(admin, None, None, None).await?;
    Ok(timelines(&chunks, replsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    fn chunk(rs: &str, s: (u32, u32), e: (u32, u32)) -> PitrChunk {
        PitrChunk {
            id: None,
            rs: rs.into(),
            file_name: format!("pbmPitr/{rs}/{}-{}", s.0, e.0),
            compression: "s2".into(),
            start_ts: ts(s.0, s.1),
            end_ts: ts(e.0, e.1),
            size: 10,
        }
    }

    fn tl(start: u32, end: u32) -> Timeline {
        Timeline {
            start,
            end,
            size: 0,
        }
    }

    fn spans(t: &[Timeline]) -> Vec<(u32, u32)> {
        t.iter().map(|t| (t.start, t.end)).collect()
    }

    #[test]
    fn a_replset_timeline_breaks_only_where_a_chunk_starts_after_the_previous_end() {
        let c = vec![
            chunk("rs", (20, 1), (30, 2)),
            chunk("rs", (10, 1), (20, 1)),
            // Overlapping the previous end is still continuous.
            chunk("rs", (30, 1), (40, 1)),
            // Same second, later increment: a gap (PBM compares full timestamps).
            chunk("rs", (40, 5), (50, 1)),
            chunk("rs", (60, 1), (70, 1)),
        ];
        let t = rs_timelines(&c);
        assert_eq!(spans(&t), vec![(10, 40), (40, 50), (60, 70)]);
        assert_eq!(t[0].size, 30);
        assert_eq!(
            gaps(&t),
            vec![Gap { start: 40, end: 40 }, Gap { start: 50, end: 60 }]
        );
    }

    /// The example in PBM's `MergeTimelines` comment.
    #[test]
    fn merge_is_pbms_algorithm() {
        let a = vec![tl(1, 4), tl(7, 11), tl(16, 20)];
        let b = vec![tl(3, 12), tl(15, 17)];
        let c = vec![tl(1, 12), tl(16, 18)];
        assert_eq!(spans(&merge(&[a, b, c])), vec![(3, 4), (7, 11), (16, 17)]);
        assert_eq!(spans(&merge(&[vec![tl(5, 9)]])), vec![(5, 9)]);
        assert!(merge(&[]).is_empty());
        // Disjoint replica sets: nothing is restorable.
        assert!(merge(&[vec![tl(1, 5)], vec![tl(6, 9)]]).is_empty());
    }

    #[test]
    fn cluster_timelines_filter_replsets_and_a_gap_in_one_splits_all() {
        let c = vec![
            chunk("a", (10, 0), (20, 0)),
            chunk("a", (20, 0), (40, 0)),
            chunk("b", (5, 0), (25, 0)),
            chunk("b", (30, 0), (50, 0)),
            chunk("other", (0, 0), (1, 0)),
        ];
        let ab = ["a".to_string(), "b".to_string()];
        assert_eq!(spans(&timelines(&c, Some(&ab))), vec![(10, 25), (30, 40)]);
        assert!(covers(&c[..4], 12, 24));
        assert!(!covers(&c[..4], 24, 31));
    }

    #[test]
    fn chain_checks_exact_timestamps_and_names_the_gap() {
        let c = vec![
            chunk("rs", (10, 1), (20, 3)),
            chunk("rs", (20, 3), (30, 1)),
            chunk("rs", (35, 1), (40, 1)),
        ];
        let got = chain("rs", &c, ts(15, 0), ts(30, 0)).expect("covered");
        assert_eq!(got.len(), 2);
        match chain("rs", &c, ts(15, 0), ts(36, 0)) {
            Err(TimelineError::Gap { gap_start, .. }) => assert!(gap_start.contains("30:1")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            chain("rs", &c, ts(15, 0), ts(41, 0)),
            Err(TimelineError::EndsBefore { .. })
        ));
        assert!(matches!(
            chain("rs", &c, ts(5, 0), ts(12, 0)),
            Err(TimelineError::Gap { .. })
        ));
        assert!(matches!(
            chain("x", &c, ts(15, 0), ts(20, 0)),
            Err(TimelineError::NoChunks { .. })
        ));
    }

    #[test]
    fn chunk_meta_from_a_pbm_object_name() {
        let c = chunk_from_path(
            "pbmPitr/secantus/20261126/20261126114113-4.20261126114220-9.oplog.s2",
            42,
        )
        .expect("a chunk name");
        assert_eq!(c.rs, "secantus");
        assert_eq!(c.start_ts, ts(1_795_693_273, 4));
        assert_eq!(c.end_ts, ts(1_795_693_340, 9));
        assert_eq!(c.compression, "s2");
        assert_eq!(
            c.file_name,
            "pbmPitr/secantus/20261126/20261126114113-4.20261126114220-9.oplog.s2"
        );
        assert!(chunk_from_path("pbmPitr/secantus/x.oplog", 1).is_none());
    }
}
