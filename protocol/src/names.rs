//! Object names on storage (`pbm/defs`, `pbm/backup/chunk.go`, `pbm/oplog/chunk.go`,
//! `pbm/archive`), and the UTC time formats they embed.
//!
//! Compression appears only as a file-name suffix here (`".s2"`, `""` for none): the
//! codecs live in rbm-storage, which depends on this crate.
//!
//! UTC calendar conversion is written out below (Howard Hinnant's `days_from_civil`
//! / `civil_from_days`) rather than pulling a time crate into the crate every
//! component depends on: names need only whole-second UTC, for which the algorithm
//! is exact and short.

use bson::Timestamp;

/// PBM's `PITRfsPrefix`: folder of PITR chunks.
pub const PITR_PREFIX: &str = "pbmPitr";
/// PBM's `StorInitFile`: written on first use, content = PBM version.
pub const STORAGE_INIT_FILE: &str = ".pbm.init";
/// PBM's `MetadataFileSuffix`: `<bcp>.pbm.json`.
pub const BACKUP_META_SUFFIX: &str = ".pbm.json";
/// PBM's `PhysRestoresDir`: physical-restore coordination files.
pub const PHYS_RESTORES_DIR: &str = ".pbm.restore";
/// Logical v2 metadata, per replica set.
pub const META_FILE: &str = "meta.pbm";
/// mongodump-archive prelude derived from `meta.pbm`.
pub const METADATA_JSON: &str = "metadata.json";
/// Physical backups: list of files.
pub const FILELIST_FILE: &str = "filelist.pbm";
/// Continuation parts of an object split above `maxObjSizeGB`: `<name>.pbmpart.<N>`.
pub const PART_SUFFIX: &str = ".pbmpart.";

/// A name that does not follow PBM's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a PBM {what}: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub reason: &'static str,
}

fn err(what: &'static str, name: &str, reason: &'static str) -> NameError {
    NameError {
        what,
        name: name.to_string(),
        reason,
    }
}

/// A UTC civil time, second resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// Splits unix seconds into the UTC calendar.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Back to unix seconds; `None` if a field is out of range (Feb 30, hour 24, ...).
    pub fn to_unix(self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        Some(days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Go layout `20060102150405`, used in chunk names.
pub fn format_compact(secs: i64) -> String {
    let t = UtcTime::from_unix(secs);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Go layout `20060102`: the day folder of PITR chunks.
pub fn format_day(secs: i64) -> String {
    let t = UtcTime::from_unix(secs);
    format!("{:04}{:02}{:02}", t.year, t.month, t.day)
}

/// Parses `YYYYMMDDhhmmss` (exactly 14 digits, a real date) to unix seconds.
pub fn parse_compact(s: &str) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    UtcTime {
        year: i64::from(n(0..4)?),
        month: n(4..6)?,
        day: n(6..8)?,
        hour: n(8..10)?,
        minute: n(10..12)?,
        second: n(12..14)?,
    }
    .to_unix()
}

/// A backup's name: `time.Now().UTC().Format(time.RFC3339)`, e.g.
/// `2024-01-02T03:04:05Z`.
pub fn backup_name(unix_secs: i64) -> String {
    let t = UtcTime::from_unix(unix_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The unix seconds a backup name encodes (names made by [`backup_name`]).
pub fn parse_backup_name(name: &str) -> Result<i64, NameError> {
    let e = |reason| err("backup name", name, reason);
    let b = name.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(e("expected YYYY-MM-DDThh:mm:ssZ"));
    }
    let digits: String = name.chars().filter(|c| c.is_ascii_digit()).collect();
    parse_compact(&digits).ok_or_else(|| e("not a valid UTC time"))
}

/// A restore's name: `time.Now().UTC().Format(time.RFC3339Nano)` (fraction with
/// trailing zeros removed, none when zero).
pub fn restore_name(unix_secs: i64, nanos: u32) -> String {
    let base = backup_name(unix_secs);
    if nanos == 0 {
        return base;
    }
    let frac = format!("{:09}", nanos.min(999_999_999));
    format!("{}.{}Z", &base[..19], frac.trim_end_matches('0'))
}

/// `T-I` with `T` in [`format_compact`] form.
fn format_ts(ts: Timestamp) -> String {
    format!("{}-{}", format_compact(i64::from(ts.time)), ts.increment)
}

/// Parses `T-I`; `require_inc` as PBM's backup-chunk parser, else a missing `-I`
/// means 0 as PBM's PITR parser allows.
fn parse_ts(s: &str, require_inc: bool) -> Option<Timestamp> {
    let (t, i) = match s.split_once('-') {
        Some((t, i)) => (t, Some(i)),
        None if require_inc => return None,
        None => (s, None),
    };
    let secs = u32::try_from(parse_compact(t)?).ok()?;
    let increment = match i {
        Some(i) if !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) => i.parse().ok()?,
        Some(_) => return None,
        None => 0,
    };
    Some(Timestamp {
        time: secs,
        increment,
    })
}

/// File name of an oplog slice taken during a logical backup:
/// `<T1>-<I1>.<T2>-<I2><ext>` (PBM's `backup.FormatChunkName`).
pub fn backup_oplog_chunk_name(start: Timestamp, end: Timestamp, ext: &str) -> String {
    format!("{}.{}{}", format_ts(start), format_ts(end), ext)
}

/// `<bcp>/<rs>/oplog/<T1>-<I1>.<T2>-<I2><ext>`.
pub fn backup_oplog_chunk_path(
    bcp: &str,
    rs: &str,
    start: Timestamp,
    end: Timestamp,
    ext: &str,
) -> String {
    format!(
        "{}/{}",
        backup_oplog_dir(bcp, rs),
        backup_oplog_chunk_name(start, end, ext)
    )
}

/// `<bcp>/<rs>/oplog`: the value of the RS's `oplog_name` in a 2.4+ logical backup.
pub fn backup_oplog_dir(bcp: &str, rs: &str) -> String {
    format!("{bcp}/{rs}/oplog")
}

/// Parses a backup oplog slice file name (not the path) into start, end and the
/// compression suffix (`""` or `".s2"` etc.). PBM reads an unknown suffix as
/// uncompressed; rbm refuses it rather than feed compressed bytes to the applier.
pub fn parse_backup_oplog_chunk_name(
    name: &str,
) -> Result<(Timestamp, Timestamp, &str), NameError> {
    let e = |reason| err("backup oplog chunk name", name, reason);
    let mut parts = name.splitn(3, '.');
    let start = parts
        .next()
        .and_then(|s| parse_ts(s, true))
        .ok_or_else(|| e("bad start"))?;
    let end = parts
        .next()
        .and_then(|s| parse_ts(s, true))
        .ok_or_else(|| e("bad end"))?;
    let ext = match parts.next() {
        None => "",
        Some(x) if compression_for_suffix(&name[name.len() - x.len() - 1..]).is_some() => {
            &name[name.len() - x.len() - 1..]
        }
        Some(_) => return Err(e("unknown compression suffix")),
    };
    Ok((start, end, ext))
}

/// `<bcp>/<rs>/<db>.<coll><ext>`: one collection's documents.
pub fn collection_object(bcp: &str, rs: &str, db: &str, coll: &str, ext: &str) -> String {
    format!("{bcp}/{rs}/{db}.{coll}{ext}")
}

/// `<bcp>/<rs>/meta.pbm`.
pub fn meta_pbm(bcp: &str, rs: &str) -> String {
    format!("{bcp}/{rs}/{META_FILE}")
}

/// `<bcp>/<rs>/metadata.json`: the RS's `dump_name` in a 2.x logical backup.
pub fn metadata_json(bcp: &str, rs: &str) -> String {
    format!("{bcp}/{rs}/{METADATA_JSON}")
}

/// `<bcp>/<rs>/filelist.pbm`.
pub fn filelist(bcp: &str, rs: &str) -> String {
    format!("{bcp}/{rs}/{FILELIST_FILE}")
}

/// A physical backup file's object under `<bcp>/<rs>/` (PBM's `File.Path`):
/// `<path><ext>`, or `<path><ext>.<offset>-<length>` for an incremental block range.
pub fn physical_file_name(path: &str, ext: &str, offset: i64, length: i64) -> String {
    if length == 0 {
        format!("{path}{ext}")
    } else {
        format!("{path}{ext}.{offset}-{length}")
    }
}

/// `<bcp>/<rs>/` + [`physical_file_name`]: the object of a physical backup's file (or
/// of a block range of it).
pub fn physical_object(
    bcp: &str,
    rs: &str,
    path: &str,
    ext: &str,
    offset: i64,
    length: i64,
) -> String {
    format!(
        "{bcp}/{rs}/{}",
        physical_file_name(path, ext, offset, length)
    )
}

/// The `n`-th continuation part (n ≥ 1) of an object split above `maxObjSizeGB`.
pub fn part_name(object: &str, n: u32) -> String {
    format!("{object}{PART_SUFFIX}{n}")
}

/// `.pbm.restore/<restore>.json`: the meta of a physical restore.
pub fn phys_restore_meta(restore: &str) -> String {
    format!("{PHYS_RESTORES_DIR}/{restore}.json")
}

/// `.pbm.restore/<restore>`: a physical restore's coordination folder.
pub fn phys_restore_dir(restore: &str) -> String {
    format!("{PHYS_RESTORES_DIR}/{restore}")
}

/// `<bcp>.pbm.json`.
pub fn backup_meta_file(bcp: &str) -> String {
    format!("{bcp}{BACKUP_META_SUFFIX}")
}

/// The backup name of a `<bcp>.pbm.json` object, if it is one.
pub fn backup_from_meta_file(object: &str) -> Option<&str> {
    object
        .strip_suffix(BACKUP_META_SUFFIX)
        .filter(|b| !b.is_empty() && !b.contains('/'))
}

/// A PITR chunk's parsed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PitrChunkName {
    pub rs: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Compression suffix, `""` for none.
    pub ext: String,
}

impl PitrChunkName {
    /// `pbmPitr/<rs>/<YYYYMMDD of start>/<T1>-<I1>.<T2>-<I2>.oplog<ext>` (PBM's
    /// `FormatChunkFilepath`; the value of `fname` in `pbmPITRChunks`).
    pub fn path(&self) -> String {
        pitr_chunk_path(&self.rs, self.start, self.end, &self.ext)
    }
}

/// See [`PitrChunkName::path`].
pub fn pitr_chunk_path(rs: &str, start: Timestamp, end: Timestamp, ext: &str) -> String {
    format!(
        "{PITR_PREFIX}/{rs}/{}/{}.{}.oplog{ext}",
        format_day(i64::from(start.time)),
        format_ts(start),
        format_ts(end)
    )
}

/// Parses a PITR chunk path, with or without the leading `pbmPitr/` (PBM lists the
/// folder and parses names relative to it). Like PBM, the day folder is not checked
/// against the start time and a missing `-I` means increment 0; unlike PBM, an
/// unknown compression suffix is an error rather than "uncompressed".
pub fn parse_pitr_chunk_path(path: &str) -> Result<PitrChunkName, NameError> {
    let e = |reason| err("PITR chunk name", path, reason);
    let rel = path
        .strip_prefix(PITR_PREFIX)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(path);
    let segs: Vec<&str> = rel.split('/').collect();
    let (rs, file) = match segs.as_slice() {
        [rs, _day, file] => (*rs, *file),
        _ => return Err(e("expected [pbmPitr/]<rs>/<day>/<file>")),
    };
    if rs.is_empty() {
        return Err(e("empty replica set"));
    }
    let parts: Vec<&str> = file.split('.').collect();
    if !(parts.len() == 3 || parts.len() == 4) || parts[2] != "oplog" {
        return Err(e("expected <start>.<end>.oplog[.ext]"));
    }
    let start = parse_ts(parts[0], false).ok_or_else(|| e("bad start"))?;
    let end = parse_ts(parts[1], false).ok_or_else(|| e("bad end"))?;
    let ext = match parts.get(3) {
        None => String::new(),
        Some(x) => {
            let ext = format!(".{x}");
            compression_for_suffix(&ext).ok_or_else(|| e("unknown compression suffix"))?;
            ext
        }
    };
    Ok(PitrChunkName {
        rs: rs.to_string(),
        start,
        end,
        ext,
    })
}

/// PBM < 2.0: the single mongodump archive of a replica set,
/// `<bcp with ':' as '.'>_<rs>.dump<ext>` (e.g. `2022-02-07T14.05.59Z_rs1.dump.s2`).
pub fn legacy_dump_name(bcp: &str, rs: &str, ext: &str) -> String {
    format!("{}_{rs}.dump{ext}", bcp.replace(':', "."))
}

/// PBM < 2.4: the single oplog file of a replica set, `<bcp-with-dots>_<rs>.oplog<ext>`.
pub fn legacy_oplog_name(bcp: &str, rs: &str, ext: &str) -> String {
    format!("{}_{rs}.oplog{ext}", bcp.replace(':', "."))
}

/// What a legacy per-RS object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyKind {
    Dump,
    Oplog,
}

/// A parsed legacy object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyName {
    /// The backup name with `:` restored.
    pub backup: String,
    pub rs: String,
    pub kind: LegacyKind,
    pub ext: String,
}

/// Parses [`legacy_dump_name`] / [`legacy_oplog_name`] output.
pub fn parse_legacy_name(name: &str) -> Result<LegacyName, NameError> {
    let e = |reason| err("legacy backup object", name, reason);
    // The backup part has a fixed width, so the RS name may contain `_` or `.`.
    let (bcp, rest) = (name.get(..20).ok_or_else(|| e("too short"))?, &name[20..]);
    let bcp = bcp.replacen('.', ":", 2);
    parse_backup_name(&bcp).map_err(|_| e("no backup name prefix"))?;
    let rest = rest.strip_prefix('_').ok_or_else(|| e("expected _<rs>"))?;
    for (marker, kind) in [(".dump", LegacyKind::Dump), (".oplog", LegacyKind::Oplog)] {
        if let Some(pos) = rest.rfind(marker) {
            let ext = &rest[pos + marker.len()..];
            if ext.is_empty() || compression_for_suffix(ext).is_some() {
                let rs = &rest[..pos];
                if rs.is_empty() {
                    return Err(e("empty replica set"));
                }
                return Ok(LegacyName {
                    backup: bcp,
                    rs: rs.into(),
                    kind,
                    ext: ext.into(),
                });
            }
        }
    }
    Err(e("expected .dump or .oplog with a known suffix"))
}

/// PBM's `CompressionType.Suffix` for a compression name; `None` if the name is not
/// one PBM knows.
pub fn suffix_for_compression(compression: &str) -> Option<&'static str> {
    Some(match compression {
        "gzip" | "pgzip" => ".gz",
        "lz4" => ".lz4",
        "snappy" => ".snappy",
        "s2" => ".s2",
        "zstd" => ".zst",
        "none" | "" => "",
        _ => return None,
    })
}

/// PBM's `FileCompression` for a suffix (with its dot); `""` is `none`.
pub fn compression_for_suffix(ext: &str) -> Option<&'static str> {
    Some(match ext {
        ".gz" => "gzip",
        ".lz4" => "lz4",
        ".snappy" => "snappy",
        ".s2" => "s2",
        ".zst" => "zstd",
        "" => "none",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXTS: [&str; 6] = ["", ".gz", ".lz4", ".snappy", ".s2", ".zst"];

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    #[test]
    fn known_names() {
        assert_eq!(backup_name(1_795_693_253), "2026-11-26T11:40:53Z");
        assert_eq!(parse_backup_name("2026-11-26T11:40:53Z"), Ok(1_795_693_253));
        assert!(parse_backup_name("2026-02-30T11:40:53Z").is_err());
        assert_eq!(
            backup_oplog_chunk_path(
                "2026-11-26T11:40:53Z",
                "secantus",
                ts(1_795_693_255, 5),
                ts(1_795_693_259, 5),
                ".s2"
            ),
            "2026-11-26T11:40:53Z/secantus/oplog/20261126114055-5.20261126114059-5.s2"
        );
        assert_eq!(
            pitr_chunk_path(
                "rs1",
                ts(1_644_242_765, 18),
                ts(1_644_243_413, 1),
                ".snappy"
            ),
            "pbmPitr/rs1/20220207/20220207140605-18.20220207141653-1.oplog.snappy"
        );
        assert_eq!(
            legacy_dump_name("2022-02-07T14:05:59Z", "rs1", ".s2"),
            "2022-02-07T14.05.59Z_rs1.dump.s2"
        );
        assert_eq!(
            parse_legacy_name("2022-02-07T14.05.59Z_cfg.oplog.s2"),
            Ok(LegacyName {
                backup: "2022-02-07T14:05:59Z".into(),
                rs: "cfg".into(),
                kind: LegacyKind::Oplog,
                ext: ".s2".into()
            })
        );
        assert_eq!(
            restore_name(1_795_693_253, 120_000_000),
            "2026-11-26T11:40:53.12Z"
        );
        assert_eq!(restore_name(1_795_693_253, 0), "2026-11-26T11:40:53Z");
        assert_eq!(format_compact(0), "19700101000000");
        assert_eq!(
            physical_file_name("collection-7--1.wt", ".s2", 0, 0),
            "collection-7--1.wt.s2"
        );
        assert_eq!(
            physical_file_name("collection-7--1.wt", "", 16, 32),
            "collection-7--1.wt.16-32"
        );
        assert_eq!(part_name("b/rs/x.s2", 2), "b/rs/x.s2.pbmpart.2");
        assert_eq!(
            phys_restore_meta("2026-11-26T12:00:00.5Z"),
            ".pbm.restore/2026-11-26T12:00:00.5Z.json"
        );
        assert_eq!(
            UtcTime::from_unix(951_782_400).day,
            29,
            "2000-02-29 is a leap day"
        );
    }

    #[test]
    fn pitr_parser_tolerates_what_pbm_tolerates() {
        let p = parse_pitr_chunk_path("rs1/20220207/20220207140605.20220207141653-1.oplog")
            .expect("no inc");
        assert_eq!((p.start, p.ext.as_str()), (ts(1_644_242_765, 0), ""));
        assert!(parse_pitr_chunk_path(
            "pbmPitr/rs1/20220207/20220207140605-1.20220207141653-1.dump.s2"
        )
        .is_err());
        assert!(parse_pitr_chunk_path(
            "pbmPitr/rs1/20220207/20220207140605-1.20220207141653-1.oplog.br"
        )
        .is_err());
        assert!(parse_backup_oplog_chunk_name("20261126114055-5.20261126114059.s2").is_err());
    }

    proptest! {
        #[test]
        fn compact_time_round_trips(secs in 0i64..=i64::from(u32::MAX)) {
            prop_assert_eq!(parse_compact(&format_compact(secs)), Some(secs));
            prop_assert_eq!(parse_backup_name(&backup_name(secs)), Ok(secs));
        }

        #[test]
        fn pitr_chunk_round_trips(
            rs in "[a-zA-Z0-9_-]{1,20}",
            t1 in any::<u32>(), i1 in any::<u32>(), t2 in any::<u32>(), i2 in any::<u32>(),
            ext in prop::sample::select(EXTS.to_vec()),
        ) {
            let path = pitr_chunk_path(&rs, ts(t1, i1), ts(t2, i2), ext);
            let p = parse_pitr_chunk_path(&path).expect("own name parses");
            prop_assert_eq!(&p, &PitrChunkName { rs: rs.clone(), start: ts(t1, i1), end: ts(t2, i2), ext: ext.into() });
            prop_assert_eq!(p.path(), path);
        }

        #[test]
        fn backup_oplog_chunk_round_trips(
            t1 in any::<u32>(), i1 in any::<u32>(), t2 in any::<u32>(), i2 in any::<u32>(),
            ext in prop::sample::select(EXTS.to_vec()),
        ) {
            let name = backup_oplog_chunk_name(ts(t1, i1), ts(t2, i2), ext);
            prop_assert_eq!(parse_backup_oplog_chunk_name(&name), Ok((ts(t1, i1), ts(t2, i2), ext)));
        }

        #[test]
        fn legacy_names_round_trip(
            secs in 0i64..=i64::from(u32::MAX),
            rs in "[a-zA-Z0-9_.-]{1,20}",
            ext in prop::sample::select(EXTS.to_vec()),
        ) {
            let bcp = backup_name(secs);
            for (name, kind) in [(legacy_dump_name(&bcp, &rs, ext), LegacyKind::Dump), (legacy_oplog_name(&bcp, &rs, ext), LegacyKind::Oplog)] {
                let p = parse_legacy_name(&name).expect("own name parses");
                prop_assert_eq!(p, LegacyName { backup: bcp.clone(), rs: rs.clone(), kind, ext: ext.into() });
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,60}") {
            let _ = parse_pitr_chunk_path(&s);
            let _ = parse_backup_oplog_chunk_name(&s);
            let _ = parse_legacy_name(&s);
            let _ = parse_backup_name(&s);
        }
    }
}
