//! backupCursor mode (Percona Server for MongoDB, PBM's `pbm/backup/physical.go`):
//! `aggregate([{$backupCursor: opts}])` lists the files of a checkpoint while the node
//! keeps running; the cursor must stay open (a `getMore` every minute) until the files
//! are copied, then `$backupCursorExtend {backupId, timestamp}` adds the journal files
//! needed to recover up to the cluster's common point.
//!
//! Built here: the options (full, incremental base, incremental with `srcBackupName`,
//! PBM's retry naming), opening with PBM's retries on codes 50915/50917, draining the
//! batches, parsing the metadata and file documents (paths made relative to dbPath),
//! the extend call, keep-alive and close, and PBM's upload plan (block coalescing,
//! unchanged files recorded as -1/-1). Tested over replies shaped like PSMDB's
//! (`testdata/backup_cursor_*.json`); never run against a real Percona Server here
//! (the test server answers $backupCursor with code 40324).

use super::admin::{AdminCommands, CmdFailure};
use super::PhysicalError;
use bson::{doc, Bson, Document, Timestamp};
use rbm_protocol::meta::backup::File;
use std::time::Duration;

/// PBM's `cursorCreateRetries`.
pub const CREATE_RETRIES: u32 = 10;
/// `BackupCursorOpenConflictWithCheckpoint`.
pub const CHECKPOINT_CONFLICT: i32 = 50915;
/// The oplog rolled over while the cursor was being opened.
pub const OPLOG_ROLLED_OVER: i32 = 50917;
#[cfg(not(test))]
const BACKOFF: Duration = Duration::from_secs(1);
#[cfg(test)]
const BACKOFF: Duration = Duration::from_millis(1);
/// How often the open cursor is touched so the server keeps it.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// PBM's `backupCursorName`: the backup name without `-` and `:`.
pub fn cursor_name(backup: &str) -> String {
    backup.replace(['-', ':'], "")
}

/// What kind of cursor to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKind {
    Full,
    /// `--base`: a new incremental chain.
    IncrementalBase {
        backup: String,
    },
    /// The next increment; `src_this_id` is the previous backup's `this_id` for this
    /// replica set, or empty when it used the default name.
    Incremental {
        backup: String,
        src_backup: String,
        src_this_id: String,
    },
}

/// The `$backupCursor` options, as PBM builds them.
pub fn options(kind: &CursorKind) -> Document {
    match kind {
        CursorKind::Full => Document::new(),
        CursorKind::IncrementalBase { backup } => {
            doc! {"thisBackupName": cursor_name(backup), "incrementalBackup": true}
        }
        CursorKind::Incremental {
            backup,
            src_backup,
            src_this_id,
        } => {
            let src = if src_this_id.is_empty() {
                cursor_name(src_backup)
            } else {
                src_this_id.clone()
            };
            doc! {"thisBackupName": cursor_name(backup), "incrementalBackup": true, "srcBackupName": src}
        }
    }
}

/// The options of attempt `n` (0-based): from the second on, `thisBackupName` gets a
/// `.n` suffix (WiredTiger refuses a name it has seen: "Incremental identifier already
/// exists"); the suffixed name is the replica set's `this_id`.
pub fn options_for_attempt(opts: &Document, n: u32) -> (Document, Option<String>) {
    if n == 0 {
        return (opts.clone(), None);
    }
    let mut out = Document::new();
    let mut custom = None;
    for (k, v) in opts {
        match (k.as_str(), v) {
            ("thisBackupName", Bson::String(s)) => {
                let id = format!("{s}.{n}");
                custom = Some(id.clone());
                out.insert(k, id);
            }
            _ => {
                out.insert(k, v.clone());
            }
        }
    }
    (out, custom)
}

/// The cursor's first document.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorMeta {
    /// The backup id (a UUID), passed back to `$backupCursorExtend` as is.
    pub backup_id: Bson,
    pub dbpath: String,
    pub oplog_start: Timestamp,
    pub oplog_end: Timestamp,
    pub checkpoint: Option<Timestamp>,
}

/// An open backup cursor with everything it listed.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenCursor {
    pub id: i64,
    pub meta: CursorMeta,
    pub files: Vec<File>,
    /// The `thisBackupName` actually used when a retry changed it.
    pub this_id: Option<String>,
}

fn reply_err(what: &str) -> impl Fn(bson::error::Error) -> PhysicalError + '_ {
    move |e| PhysicalError::Reply(format!("{what}: {e}"))
}

/// Parses the `metadata` document.
///
/// # Errors
/// A field is missing or mistyped.
pub fn parse_meta(d: &Document) -> Result<CursorMeta, PhysicalError> {
    let m = d
        .get_document("metadata")
        .map_err(reply_err("$backupCursor metadata"))?;
    let ts = |k: &str| -> Result<Timestamp, PhysicalError> {
        m.get_document(k)
            .and_then(|o| o.get_timestamp("ts"))
            .map_err(|e| PhysicalError::Reply(format!("$backupCursor metadata.{k}: {e}")))
    };
    Ok(CursorMeta {
        backup_id: m
            .get("backupId")
            .cloned()
            .ok_or_else(|| PhysicalError::Reply("$backupCursor metadata has no backupId".into()))?,
        dbpath: m
            .get_str("dbpath")
            .map_err(reply_err("$backupCursor metadata.dbpath"))?
            .to_string(),
        oplog_start: ts("oplogStart")?,
        oplog_end: ts("oplogEnd")?,
        checkpoint: m.get_timestamp("checkpointTimestamp").ok(),
    })
}

fn int(d: &Document, k: &str) -> Option<i64> {
    match d.get(k)? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// PBM's `trimFilePrefix`: the path relative to dbPath, without a leading `/`.
pub fn relative(filename: &str, dbpath: &str) -> String {
    let rest = filename.strip_prefix(dbpath).unwrap_or(filename);
    rest.trim_start_matches('/').to_string()
}

/// Parses a file document (`{filename, fileSize[, offset, length]}`).
///
/// # Errors
/// A field is missing or mistyped, or the path leaves the dbPath.
pub fn parse_file(d: &Document, dbpath: &str) -> Result<File, PhysicalError> {
    let name = d
        .get_str("filename")
        .map_err(reply_err("$backupCursor file"))?;
    let rel = relative(name, dbpath);
    if rel.is_empty() || rel.split('/').any(|p| p == "..") {
        return Err(PhysicalError::Reply(format!(
            "$backupCursor file {name:?} is not inside dbPath {dbpath:?}"
        )));
    }
    Ok(File {
        name: rel,
        offset: int(d, "offset").unwrap_or(0),
        length: int(d, "length").unwrap_or(0),
        size: int(d, "fileSize").ok_or_else(|| {
            PhysicalError::Reply(format!("$backupCursor file {name:?} has no fileSize"))
        })?,
        stg_size: 0,
        stg_size_uncompressed: 0,
        fmode: 0,
    })
}

fn batch(reply: &Document, key: &str) -> Result<(i64, Vec<Document>), PhysicalError> {
    let c = reply
        .get_document("cursor")
        .map_err(reply_err("cursor reply"))?;
    let id = int(c, "id").unwrap_or(0);
    let docs = c
        .get_array(key)
        .map_err(reply_err("cursor reply"))?
        .iter()
        .map(|b| {
            b.as_document()
                .cloned()
                .ok_or_else(|| PhysicalError::Reply("cursor batch holds a non-document".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((id, docs))
}

fn aggregate(stage: Document) -> Document {
    doc! {"aggregate": 1, "pipeline": [stage], "cursor": {}}
}

fn get_more(id: i64) -> Document {
    doc! {"getMore": id, "collection": "$cmd.aggregate"}
}

/// Opens the cursor with PBM's retries and reads every listed file: batches until an
/// empty one (the cursor itself stays open for [`keep_alive`] and [`close`]).
///
/// # Errors
/// A non-retryable failure, too many retries, or an unreadable reply.
pub async fn open<C: AdminCommands>(
    cmds: &C,
    opts: &Document,
) -> Result<OpenCursor, PhysicalError> {
    let mut last: Option<CmdFailure> = None;
    for n in 0..CREATE_RETRIES {
        let (o, this_id) = options_for_attempt(opts, n);
        match cmds.run(aggregate(doc! {"$backupCursor": o})).await {
            Ok(reply) => return drain(cmds, &reply, this_id).await,
            Err(e) if matches!(e.code, Some(CHECKPOINT_CONFLICT | OPLOG_ROLLED_OVER)) => {
                last = Some(e);
                if n + 1 < CREATE_RETRIES {
                    tokio::time::sleep(BACKOFF * (n + 1)).await;
                }
            }
            Err(e) if e.code == Some(40324) => {
                return Err(PhysicalError::Config(format!(
                    "this server has no $backupCursor (Percona Server for MongoDB only): {e}"
                )))
            }
            Err(e) => return Err(PhysicalError::Reply(format!("open $backupCursor: {e}"))),
        }
    }
    Err(PhysicalError::Reply(format!(
        "open $backupCursor: tries limit exceeded ({})",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

async fn drain<C: AdminCommands>(
    cmds: &C,
    first: &Document,
    this_id: Option<String>,
) -> Result<OpenCursor, PhysicalError> {
    let (id, mut docs) = batch(first, "firstBatch")?;
    if docs.is_empty() {
        return Err(PhysicalError::Reply(
            "$backupCursor returned nothing".into(),
        ));
    }
    let meta = parse_meta(&docs.remove(0))?;
    let mut files = docs
        .iter()
        .map(|d| parse_file(d, &meta.dbpath))
        .collect::<Result<Vec<_>, _>>()?;
    let mut live = id;
    while live != 0 {
        let r = cmds
            .run(get_more(live))
            .await
            .map_err(|e| PhysicalError::Reply(format!("$backupCursor getMore: {e}")))?;
        let (next, docs) = batch(&r, "nextBatch")?;
        if docs.is_empty() {
            break;
        }
        for d in &docs {
            files.push(parse_file(d, &meta.dbpath)?);
        }
        live = next;
    }
    Ok(OpenCursor {
        id,
        meta,
        files,
        this_id,
    })
}

/// `$backupCursorExtend`: the journal files up to `upto`.
///
/// # Errors
/// The server refused or the reply is unreadable.
pub async fn extend<C: AdminCommands>(
    cmds: &C,
    cur: &OpenCursor,
    upto: Timestamp,
) -> Result<Vec<File>, PhysicalError> {
    let r = cmds
        .run(aggregate(
            doc! {"$backupCursorExtend": {"backupId": cur.meta.backup_id.clone(), "timestamp": upto}},
        ))
        .await
        .map_err(|e| PhysicalError::Reply(format!("$backupCursorExtend: {e}")))?;
    let (mut id, docs) = batch(&r, "firstBatch")?;
    let mut files = docs
        .iter()
        .map(|d| parse_file(d, &cur.meta.dbpath))
        .collect::<Result<Vec<_>, _>>()?;
    while id != 0 {
        let r = cmds
            .run(get_more(id))
            .await
            .map_err(|e| PhysicalError::Reply(format!("$backupCursorExtend getMore: {e}")))?;
        let (next, docs) = batch(&r, "nextBatch")?;
        for d in &docs {
            files.push(parse_file(d, &cur.meta.dbpath)?);
        }
        id = next;
    }
    Ok(files)
}

/// One keep-alive touch (PBM's `TryNext` every minute).
///
/// # Errors
/// The cursor is gone.
pub async fn keep_alive<C: AdminCommands>(cmds: &C, cur: &OpenCursor) -> Result<(), PhysicalError> {
    if cur.id == 0 {
        return Ok(());
    }
    cmds.run(get_more(cur.id))
        .await
        .map(|_| ())
        .map_err(|e| PhysicalError::Reply(format!("backup cursor keep-alive: {e}")))
}

/// Closes the cursor (the server then lets checkpoints delete files again).
///
/// # Errors
/// The server refused.
pub async fn close<C: AdminCommands>(cmds: &C, cur: &OpenCursor) -> Result<(), PhysicalError> {
    if cur.id == 0 {
        return Ok(());
    }
    cmds.run(doc! {"killCursors": "$cmd.aggregate", "cursors": [cur.id]})
        .await
        .map(|_| ())
        .map_err(|e| PhysicalError::Reply(format!("close the backup cursor: {e}")))
}

/// PBM's `planUploads`: consecutive blocks of a file are coalesced into one upload; in
/// an incremental backup unchanged files (length 0, or an offset past the end) are not
/// uploaded but recorded with offset and length -1. `(file, upload?)`.
pub fn plan_uploads(files: &[File], incr: bool) -> Vec<(File, bool)> {
    let Some(first) = files.first() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(files.len());
    let mut w = first.clone();
    for f in &files[1..] {
        if incr && (f.length == 0 || f.offset >= f.size) {
            let mut f = f.clone();
            f.offset = -1;
            f.length = -1;
            out.push((f, false));
            continue;
        }
        if w.name == f.name && w.offset + w.length == f.offset {
            w.length += f.length;
            w.size = f.size;
            continue;
        }
        out.push((std::mem::replace(&mut w, f.clone()), true));
    }
    if !incr || w.offset != 0 || w.length != 0 {
        out.push((w, true));
    }
    out
}

/// The upload plan as pieces to store and -1/-1 entries that are only listed. A block
/// entry stores its range; a whole-file entry (length 0) the whole file.
pub fn plan_pieces(plan: &[(File, bool)]) -> (Vec<super::files::Piece>, Vec<File>) {
    let mut pieces = Vec::new();
    let mut listed = Vec::new();
    for (f, upload) in plan {
        if !*upload {
            listed.push(f.clone());
        } else if f.length > 0 {
            pieces.push(super::files::Piece {
                rel: f.name.clone(),
                range: Some((f.offset.max(0) as u64, f.length as u64)),
            });
        } else {
            pieces.push(super::files::Piece::whole(&f.name));
        }
    }
    (pieces, listed)
}

#[cfg(test)]
mod tests {
    use super::super::admin::fake::{fail, Scripted};
    use super::*;

    fn fixture(name: &str) -> Document {
        let text = match name {
            "full" => include_str!("testdata/backup_cursor_full.json"),
            _ => include_str!("testdata/backup_cursor_incremental.json"),
        };
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        match Bson::try_from(v).unwrap() {
            Bson::Document(d) => d,
            other => panic!("fixture is {other:?}"),
        }
    }

    #[test]
    fn options_as_pbm_builds_them() {
        assert_eq!(options(&CursorKind::Full), doc! {});
        assert_eq!(
            options(&CursorKind::IncrementalBase {
                backup: "2026-11-26T12:00:00Z".into()
            }),
            doc! {"thisBackupName": "20261126T120000Z", "incrementalBackup": true}
        );
        let inc = options(&CursorKind::Incremental {
            backup: "2026-11-26T13:00:00Z".into(),
            src_backup: "2026-11-26T12:00:00Z".into(),
            src_this_id: String::new(),
        });
        assert_eq!(inc.get_str("srcBackupName").unwrap(), "20261126T120000Z");
        let inc2 = options(&CursorKind::Incremental {
            backup: "2026-11-26T13:00:00Z".into(),
            src_backup: "2026-11-26T12:00:00Z".into(),
            src_this_id: "20261126T120000Z.2".into(),
        });
        assert_eq!(inc2.get_str("srcBackupName").unwrap(), "20261126T120000Z.2");
        let (o, id) = options_for_attempt(&inc, 3);
        assert_eq!(o.get_str("thisBackupName").unwrap(), "20261126T130000Z.3");
        assert_eq!(id.as_deref(), Some("20261126T130000Z.3"));
        assert_eq!(o.get_str("srcBackupName").unwrap(), "20261126T120000Z");
        assert_eq!(options_for_attempt(&inc, 0), (inc.clone(), None));
    }

    #[tokio::test]
    async fn full_cursor_over_recorded_replies() {
        let f = fixture("full");
        let s = Scripted::new(vec![
            fail(
                CHECKPOINT_CONFLICT,
                "BackupCursorOpenConflictWithCheckpoint",
            ),
            Ok(f.get_document("aggregate").unwrap().clone()),
            Ok(f.get_document("getMore1").unwrap().clone()),
            Ok(f.get_document("getMore2").unwrap().clone()),
            Ok(f.get_document("extend").unwrap().clone()),
            Ok(doc! {"ok": 1.0}),
        ]);
        let cur = open(&s, &doc! {}).await.unwrap();
        assert_eq!(cur.id, 6271234567890123);
        assert_eq!(cur.meta.dbpath, "/data/db");
        assert_eq!(
            cur.meta.oplog_end,
            Timestamp {
                time: 1700000600,
                increment: 4
            }
        );
        assert!(matches!(cur.meta.backup_id, Bson::Binary(_)));
        let names: Vec<&str> = cur.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "journal/WiredTigerLog.0000000001",
                "WiredTiger",
                "WiredTiger.backup",
                "WiredTigerHS.wt",
                "collection-0-8313424287651436291.wt",
                "index-1-8313424287651436291.wt"
            ]
        );
        assert_eq!(cur.files[1].size, 47);
        let j = extend(
            &s,
            &cur,
            Timestamp {
                time: 1700000700,
                increment: 1,
            },
        )
        .await
        .unwrap();
        assert_eq!(j[0].name, "journal/WiredTigerLog.0000000002");
        close(&s, &cur).await.unwrap();
        let sent = s.sent();
        assert_eq!(
            sent[0],
            doc! {"aggregate": 1, "pipeline": [{"$backupCursor": {}}], "cursor": {}}
        );
        assert_eq!(
            sent[2],
            doc! {"getMore": 6271234567890123_i64, "collection": "$cmd.aggregate"}
        );
        let ext = sent[4].get_array("pipeline").unwrap()[0]
            .as_document()
            .unwrap();
        let ext = ext.get_document("$backupCursorExtend").unwrap();
        assert_eq!(ext.get("backupId"), Some(&cur.meta.backup_id));
        assert_eq!(
            sent[5],
            doc! {"killCursors": "$cmd.aggregate", "cursors": [6271234567890123_i64]}
        );
        // Only the plan decides what is uploaded: a full backup uploads every file.
        assert!(plan_uploads(&cur.files, false).iter().all(|(_, up)| *up));
    }

    #[tokio::test]
    async fn incremental_cursor_blocks_are_coalesced() {
        let f = fixture("incremental");
        let first = f.get_array("firstBatch").unwrap().clone();
        let reply = doc! {"cursor": {"id": 0_i64, "ns": "admin.$cmd.aggregate", "firstBatch": first}, "ok": 1.0};
        let s = Scripted::new(vec![
            fail(OPLOG_ROLLED_OVER, "oplog rolled over"),
            Ok(reply),
        ]);
        let opts = options(&CursorKind::IncrementalBase {
            backup: "2026-11-26T12:00:00Z".into(),
        });
        let cur = open(&s, &opts).await.unwrap();
        assert_eq!(cur.this_id.as_deref(), Some("20261126T120000Z.1"));
        assert_eq!(cur.meta.dbpath, "/var/lib/mongo/");
        let plan = plan_uploads(&cur.files, true);
        let got: Vec<(&str, i64, i64, bool)> = plan
            .iter()
            .map(|(f, up)| (f.name.as_str(), f.offset, f.length, *up))
            .collect();
        assert_eq!(
            got,
            // PBM's order: an unchanged file is recorded before the pending block.
            [
                ("collection-7--123.wt", 0, 33554432, true),
                ("index-8--123.wt", -1, -1, false),
                ("collection-7--123.wt", 50331648, 16777216, true),
                ("sizeStorer.wt", 0, 36864, true),
            ]
        );
        let (pieces, listed) = plan_pieces(&plan);
        assert_eq!(
            pieces
                .iter()
                .map(|p| (p.rel.as_str(), p.range))
                .collect::<Vec<_>>(),
            [
                ("collection-7--123.wt", Some((0, 33554432))),
                ("collection-7--123.wt", Some((50331648, 16777216))),
                ("sizeStorer.wt", Some((0, 36864))),
            ]
        );
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "index-8--123.wt");
        assert_eq!(
            rbm_protocol::names::physical_file_name(
                &plan[2].0.name,
                ".s2",
                plan[2].0.offset,
                plan[2].0.length
            ),
            "collection-7--123.wt.s2.50331648-16777216"
        );
    }

    #[tokio::test]
    async fn failures_are_reported() {
        // The test server's answer.
        let s = Scripted::new(vec![fail(
            40324,
            "Unrecognized pipeline stage name: '$backupCursor'",
        )]);
        let e = open(&s, &doc! {}).await.unwrap_err().to_string();
        assert!(e.contains("Percona Server"), "{e}");
        let s = Scripted::new(
            (0..CREATE_RETRIES)
                .map(|_| fail(CHECKPOINT_CONFLICT, "checkpoint"))
                .collect(),
        );
        let e = open(&s, &doc! {}).await.unwrap_err().to_string();
        assert!(e.contains("tries limit"), "{e}");
        assert_eq!(s.sent().len() as u32, CREATE_RETRIES);
        assert!(parse_file(
            &doc! {"filename": "/etc/passwd/../x", "fileSize": 1_i64},
            "/data/db"
        )
        .is_err());
        assert!(parse_file(&doc! {"filename": "/data/db/x"}, "/data/db").is_err());
    }
}
