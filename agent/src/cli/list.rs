//! `rbm list`: finished backups and PITR ranges, or the restore history, in PBM's
//! `cmd/pbm/list.go` text and JSON.

use super::conn::Conn;
use super::error::CliError;
use super::text::fmt_ts;
use super::OutputFormat;
use bson::{doc, Timestamp};
use rbm_protocol::cli::{
    ListOutput, PitrList, PitrRange, PrintStatus, RestoreListEntry, SnapshotStat, Timeline,
};
use rbm_protocol::defs::{self, BackupType, Status};
use rbm_protocol::meta::{BackupMeta, PitrChunk, RestoreMeta};
use std::collections::BTreeMap;

/// PITR chunks of one replica set as continuous timelines with their stored size
/// (PBM's `PITRGetValidTimelines`; see [`crate::pitr::timeline`]).
pub fn timelines(chunks: &[PitrChunk]) -> (Vec<Timeline>, i64) {
    let t = crate::pitr::timeline::rs_timelines(chunks);
    let size = t.iter().map(|t| t.size).sum();
    (t.iter().map(cli_timeline).collect(), size)
}

fn cli_timeline(t: &crate::pitr::timeline::Timeline) -> Timeline {
    Timeline {
        start: t.start,
        end: t.end,
    }
}

/// PBM's `MergeTimelines`: the spans covered by every replica set.
pub fn merge_timelines(per_rs: &[Vec<Timeline>]) -> Vec<Timeline> {
    let per_rs: Vec<Vec<crate::pitr::timeline::Timeline>> = per_rs
        .iter()
        .map(|v| {
            v.iter()
                .map(|t| crate::pitr::timeline::Timeline {
                    start: t.start,
                    end: t.end,
                    size: 0,
                })
                .collect()
        })
        .collect();
    crate::pitr::timeline::merge(&per_rs)
        .iter()
        .map(cli_timeline)
        .collect()
}

/// PBM's `isValidBaseSnapshot`, without the version-compatibility cases.
fn is_base(b: &BackupMeta) -> bool {
    b.status == Status::Done && b.kind != BackupType::External && b.namespaces.is_empty()
}

/// PBM's `splitByBaseSnapshot`.
fn split_by_base(last_write: Option<Timestamp>, tl: Timeline) -> Vec<PitrRange> {
    let range = |start, end, no_base| PitrRange {
        error: None,
        range: Timeline { start, end },
        no_base_snapshot: no_base,
    };
    let lw = match last_write {
        Some(lw) if lw.time >= tl.start && lw.time <= tl.end && lw.time != 0 => lw.time,
        _ => return vec![range(tl.start, tl.end, true)],
    };
    let mut out = Vec::new();
    if lw > tl.start {
        out.push(range(tl.start, lw, true));
    }
    if lw < tl.end {
        out.push(range(lw + 1, tl.end, false));
    }
    out
}

/// PITR ranges across the cluster (PBM's `getPITRranges`), per replica set too,
/// and the total size of the chunks.
///
/// # Errors
/// Read failures.
pub async fn pitr_ranges(
    conn: &Conn,
    backups: &[BackupMeta],
) -> Result<(Vec<PitrRange>, BTreeMap<String, Vec<PitrRange>>, i64), CliError> {
    pitr_ranges_as(conn, backups, BaseRule::Status, 0).await
}

/// How `list` and `status` find the base snapshot of a merged timeline: they differ
/// in PBM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaseRule {
    /// `status` (`getPITRranges`): the earliest-ending base whose snapshot overlaps the
    /// timeline.
    Status,
    /// `list` (`getBaseSnapshotLastWrite`): the first base (by start) whose last write
    /// is at or after the timeline's start, wherever it ends.
    List,
}

async fn pitr_ranges_as(
    conn: &Conn,
    backups: &[BackupMeta],
    rule: BaseRule,
    size_limit: usize,
) -> Result<(Vec<PitrRange>, BTreeMap<String, Vec<PitrRange>>, i64), CliError> {
    let chunks: Vec<PitrChunk> =
        super::find_all(conn, defs::PITR_CHUNKS_COLLECTION, doc! {}, None).await?;
    let mut by_rs: BTreeMap<String, Vec<PitrChunk>> = BTreeMap::new();
    for c in chunks {
        by_rs.entry(c.rs.clone()).or_default().push(c);
    }
    let mut bases: Vec<&BackupMeta> = backups.iter().filter(|b| is_base(b)).collect();
    bases.sort_by_key(|b| (b.last_write_ts.time, b.last_write_ts.increment));
    let mut by_start: Vec<&BackupMeta> = bases.clone();
    by_start.sort_by_key(|b| b.start_ts);
    let split = |tl: Timeline| {
        let base = match rule {
            BaseRule::Status => bases
                .iter()
                .find(|b| b.last_write_ts.time >= tl.start && b.first_write_ts.time <= tl.end),
            BaseRule::List => by_start.iter().find(|b| b.last_write_ts.time >= tl.start),
        }
        .map(|b| b.last_write_ts);
        split_by_base(base, tl)
    };
    let mut size = 0;
    let mut per_rs = Vec::new();
    let mut rs_ranges = BTreeMap::new();
    for (rs, c) in &by_rs {
        let (mut tls, s) = timelines(c);
        size += s;
        // `list --size N` keeps each replica set's last N timelines.
        if size_limit > 0 && tls.len() > size_limit {
            tls.drain(..tls.len() - size_limit);
        }
        // PBM lists each replica set's timelines whole, not split by base snapshot.
        rs_ranges.insert(
            rs.clone(),
            tls.iter()
                .map(|t| PitrRange {
                    error: None,
                    range: *t,
                    no_base_snapshot: false,
                })
                .collect::<Vec<_>>(),
        );
        per_rs.push(tls);
    }
    let ranges = merge_timelines(&per_rs)
        .into_iter()
        .flat_map(split)
        .collect();
    Ok((ranges, rs_ranges, size))
}

/// Every backup meta, oldest first.
///
/// # Errors
/// Read or decode failures.
pub async fn all_backups(conn: &Conn) -> Result<Vec<BackupMeta>, CliError> {
    super::find_all(
        conn,
        defs::BACKUPS_COLLECTION,
        doc! {},
        Some(doc! {"start_ts": 1}),
    )
    .await
}

/// The `snapshotStat` of a backup, as `list` and `status` show it.
pub fn snapshot_stat(b: &BackupMeta) -> SnapshotStat {
    let error = b.error.clone().unwrap_or_default();
    SnapshotStat {
        name: b.name.clone(),
        profile: if b.store.is_profile {
            b.store.name.clone()
        } else {
            String::new()
        },
        store_name: if b.store.is_profile {
            b.store.name.clone()
        } else {
            String::new()
        },
        namespaces: b.namespaces.clone(),
        size: 0,
        status: b.status,
        print_status: PrintStatus::of(b.status, false),
        error,
        restore_to: i64::from(b.last_write_ts.time),
        pbm_version: b.pbm_version.clone(),
        kind: b.kind,
        src: b.src_backup.clone(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The `BASE` column: an incremental backup that starts a chain.
pub fn is_incr_base(s: &SnapshotStat) -> bool {
    s.kind == BackupType::Incremental && s.src.is_empty()
}

/// `rbm list` flags.
#[derive(Debug, Clone, Default)]
pub struct ListArgs {
    pub restore: bool,
    pub full: bool,
    /// `--size N`: only the last N entries (0 = all).
    pub size: usize,
    pub unbacked: bool,
}

/// `rbm list`.
///
/// # Errors
/// Read failures.
pub async fn list(conn: &Conn, args: &ListArgs, out: OutputFormat) -> Result<String, CliError> {
    if args.restore {
        return list_restores(conn, args.size, out).await;
    }
    let backups = all_backups(conn).await?;
    let mut snaps: Vec<SnapshotStat> = backups
        .iter()
        .filter(|b| b.status == Status::Done)
        .map(snapshot_stat)
        .collect();
    snaps.sort_by_key(|s| s.restore_to);
    if args.size > 0 && snaps.len() > args.size {
        snaps.drain(..snaps.len() - args.size);
    }
    let on = super::config::get_config(conn)
        .await?
        .and_then(|c| c.pitr.map(|p| p.enabled))
        .unwrap_or(false);
    let (mut ranges, rs_ranges, _) =
        pitr_ranges_as(conn, &backups, BaseRule::List, args.size).await?;
    if !args.unbacked {
        ranges.retain(|r| !r.no_base_snapshot);
    }
    // PBM prints them by end, earliest first.
    ranges.sort_by_key(|r| r.range.end);
    let listed = ListOutput {
        snapshots: snaps,
        pitr: Some(PitrList {
            on,
            ranges,
            rs_ranges: args.full.then_some(rs_ranges),
        }),
    };
    if out != OutputFormat::Text {
        return out.json(&listed);
    }
    let mut s = String::from("Backup snapshots:\n");
    s.push_str(&format!(
        "  {:<26}{:<14}{:<22}{:<12}{:<8}{}\n  {}\n",
        "NAME",
        "TYPE",
        "PROFILE",
        "SELECTIVE",
        "BASE",
        "RESTORE TIME",
        "-".repeat(101)
    ));
    for b in &listed.snapshots {
        s.push_str(&format!(
            "  {:<26}{:<14}{:<22}{:<12}{:<8}{}\n",
            b.name,
            b.kind.as_str(),
            b.profile,
            yes_no(!b.namespaces.is_empty()),
            yes_no(is_incr_base(b)),
            fmt_ts(b.restore_to)
        ));
    }
    if let Some(p) = &listed.pitr {
        s.push_str(&format!("\nPITR <{}>:\n", if p.on { "on" } else { "off" }));
        for r in &p.ranges {
            s.push_str(&format!("  {}\n", range_text(r)));
        }
        if let Some(rs) = &p.rs_ranges {
            // Go's `%s` of a []pitrRange: `[{ start - end } { start - end }]`.
            s.push('\n');
            for (name, rr) in rs {
                let items: Vec<String> = rr
                    .iter()
                    .map(|r| {
                        format!(
                            "{{ {} - {} }}",
                            fmt_ts(i64::from(r.range.start)),
                            fmt_ts(i64::from(r.range.end))
                        )
                    })
                    .collect();
                s.push_str(&format!("  {name}: [{}]\n", items.join(" ")));
            }
        }
    }
    Ok(s.trim_end().to_string())
}

/// `start - end[ (no base snapshot)]`.
pub fn range_text(r: &PitrRange) -> String {
    format!(
        "{} - {}{}",
        fmt_ts(i64::from(r.range.start)),
        fmt_ts(i64::from(r.range.end)),
        if r.no_base_snapshot {
            " (no base snapshot)"
        } else {
            ""
        }
    )
}

async fn list_restores(conn: &Conn, size: usize, out: OutputFormat) -> Result<String, CliError> {
    let mut rs: Vec<RestoreMeta> = super::find_all(
        conn,
        defs::RESTORES_COLLECTION,
        doc! {},
        Some(doc! {"start_ts": 1}),
    )
    .await?;
    if size > 0 && rs.len() > size {
        rs.drain(..rs.len() - size);
    }
    let entries: Vec<RestoreListEntry> = rs
        .iter()
        .map(|r| {
            let kind = if r.pitr != 0 && r.backup.is_empty() && r.start_pitr != 0 {
                "replay"
            } else if r.pitr != 0 {
                "pitr"
            } else {
                "snapshot"
            };
            RestoreListEntry {
                start: r.start_ts,
                status: r.status,
                kind: kind.into(),
                snapshot: r.backup.clone(),
                start_point_in_time: if kind == "replay" { r.start_pitr } else { 0 },
                point_in_time: r.pitr,
                name: r.name.clone(),
                namespaces: r.namespaces.clone(),
                error: r.error.clone().unwrap_or_default(),
            }
        })
        .collect();
    if out != OutputFormat::Text {
        return out.json(&entries);
    }
    let mut s = String::from("Restores history:\n");
    for e in &entries {
        let head = match e.kind.as_str() {
            "pitr" => format!(
                "PITR: {} [restore time: {}]",
                e.name,
                fmt_ts(e.point_in_time)
            ),
            "replay" => format!(
                "Oplog Replay: {} - {}",
                fmt_ts(e.start_point_in_time),
                fmt_ts(e.point_in_time)
            ),
            _ => format!(
                "{} [backup: {}{}]",
                e.name,
                e.snapshot,
                if e.namespaces.is_empty() {
                    ""
                } else {
                    ", selective"
                }
            ),
        };
        let st = match e.status {
            Status::Done => "done".to_string(),
            Status::PartlyDone => "partlyDone".to_string(),
            Status::Error => format!("Failed with \"{}\"", e.error),
            other => format!("In progress [{other}] (Launched at {})", fmt_ts(e.start)),
        };
        s.push_str(&format!("  {head}\t{st}\n"));
    }
    Ok(s.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rs: &str, s: u32, e: u32) -> PitrChunk {
        PitrChunk {
            id: None,
            rs: rs.into(),
            file_name: String::new(),
            compression: "s2".into(),
            start_ts: Timestamp {
                time: s,
                increment: 1,
            },
            end_ts: Timestamp {
                time: e,
                increment: 1,
            },
            size: 10,
        }
    }

    #[test]
    fn gaps_split_timelines_and_sizes_add_up() {
        let (tl, size) = timelines(&[chunk("a", 20, 30), chunk("a", 10, 20), chunk("a", 40, 50)]);
        assert_eq!(
            tl,
            vec![
                Timeline { start: 10, end: 30 },
                Timeline { start: 40, end: 50 }
            ]
        );
        assert_eq!(size, 30);
    }

    #[test]
    fn merged_timelines_are_what_every_replset_covers() {
        let a = vec![Timeline { start: 10, end: 50 }];
        let b = vec![
            Timeline { start: 5, end: 20 },
            Timeline { start: 30, end: 60 },
        ];
        assert_eq!(
            merge_timelines(&[a, b]),
            vec![
                Timeline { start: 10, end: 20 },
                Timeline { start: 30, end: 50 }
            ]
        );
    }

    #[test]
    fn ranges_split_at_the_base_snapshot_as_pbm() {
        let tl = Timeline {
            start: 100,
            end: 200,
        };
        let at = |t| {
            Some(Timestamp {
                time: t,
                increment: 1,
            })
        };
        // PBM's fixture case: the chunk starts at the backup's last write.
        let r = split_by_base(at(100), tl);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].range,
            Timeline {
                start: 101,
                end: 200
            }
        );
        assert!(!r[0].no_base_snapshot);
        let r = split_by_base(at(150), tl);
        assert_eq!(r.len(), 2);
        assert!(r[0].no_base_snapshot && !r[1].no_base_snapshot);
        assert!(split_by_base(None, tl)[0].no_base_snapshot);
    }
}
