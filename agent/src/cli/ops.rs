//! Commands the agents carry out (`backup`, `restore`, `delete-backup`, ...): the CLI
//! checks flags, refuses to start while another operation holds a lock, inserts the
//! typed `pbmCmd` document, then follows the operation the way PBM's CLI does.

use super::conn::Conn;
use super::error::CliError;
use super::OutputFormat;
use bson::oid::ObjectId;
use bson::{doc, Document, Timestamp};
use rbm_protocol::command::{BackupCmd, Command, CommandDoc, ReplayCmd, RestoreCmd};
use rbm_protocol::defs::{self, BackupType, Status};
use rbm_protocol::lock::LockData;
use rbm_protocol::meta::{BackupMeta, LogEntry, RestoreMeta};
use rbm_protocol::names::UtcTime;
use rbm_protocol::Config;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the CLI polls while it waits.
const POLL: Duration = Duration::from_millis(500);
/// `backup --wait` and `restore --wait` look at the meta this often (PBM: 1 s): a read
/// of one document (and of the progress, when shown), and the end is seen sooner.
const META_WAIT_POLL: Duration = Duration::from_millis(100);
/// How often `backup --wait` checks the backup's heartbeat against the cluster time: a
/// heartbeat goes stale only after `STALE_FRAME_SEC`, so every poll would be waste.
const STUCK_CHECK: Duration = Duration::from_secs(1);

/// PBM's progress dots, one a second however often the wait polls.
#[derive(Default)]
struct Dots(Option<tokio::time::Instant>);

impl Dots {
    fn tick(&mut self, progress: &mut dyn Write) {
        if self.0.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.0 = Some(tokio::time::Instant::now());
        let _ = write!(progress, ".");
        let _ = progress.flush();
    }
}

fn now_unix() -> (i64, u32) {
    // The wall clock is right here: PBM names backups and stamps commands with the
    // CLI's own `time.Now()`; liveness never uses it.
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// PBM's `checkForAnotherOperation`: fails when any `pbmLock` lock is alive on
/// cluster time.
///
/// # Errors
/// [`CliError::AnotherOperation`], or a read failure.
pub async fn check_for_another_operation(conn: &Conn) -> Result<(), CliError> {
    let locks: Vec<LockData> = super::find_all(conn, defs::LOCK_COLLECTION, doc! {}, None).await?;
    if locks.is_empty() {
        return Ok(());
    }
    let now = conn.cluster_time().await?;
    match locks.into_iter().find(|l| !l.is_stale(now)) {
        Some(l) => Err(CliError::AnotherOperation {
            kind: l.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
            opid: l.opid,
            replset: l.replset,
            node: l.node,
        }),
        None => Ok(()),
    }
}

/// Inserts a command into `admin.pbmCmd` and returns its OPID.
///
/// # Errors
/// [`CliError::Mongo`].
pub async fn send_command(conn: &Conn, command: Command) -> Result<ObjectId, CliError> {
    let id = ObjectId::new();
    let cmd = CommandDoc {
        id: Some(id),
        command,
        ts: now_unix().0,
    };
    let d = bson::serialize_to_document(&cmd)
        .map_err(|e| CliError::BadDocument(format!("encode command: {e}")))?;
    conn.coll(defs::CMD_COLLECTION)
        .insert_one(d)
        .await
        .map_err(|e| CliError::mongo("send command to admin.pbmCmd", &e))?;
    Ok(id)
}

async fn stored_config(conn: &Conn) -> Result<Config, CliError> {
    super::config::get_config(conn)
        .await?
        .ok_or(CliError::NoConfig)
}

/// PBM's `parseCLINSOption`: comma-separated `db.coll` or `db.*`; `*.*` (or
/// nothing) means everything.
///
/// # Errors
/// [`CliError::InvalidArgument`] naming the bad pattern.
pub fn parse_ns(s: &str) -> Result<Vec<String>, CliError> {
    rbm_protocol::ns::NsFilter::parse(&[s])
        .map(|f| f.to_strings())
        .map_err(|e| CliError::InvalidArgument(format!("invalid --ns {:?}: {}", e.ns, e.why)))
}

/// `YYYY-MM-DDTHH:MM:SS` (PBM's restore `--time`, also with a space instead of `T`).
///
/// # Errors
/// [`CliError::InvalidArgument`].
pub fn parse_datetime(flag: &str, s: &str) -> Result<i64, CliError> {
    let bad = || {
        CliError::InvalidArgument(format!(
            "invalid {flag} {s:?}: expected YYYY-MM-DDTHH:MM:SS (UTC)"
        ))
    };
    let s = s.trim();
    let (date, time) = s
        .split_once('T')
        .or_else(|| s.split_once(' '))
        .ok_or_else(bad)?;
    parse_date_time_parts(date, Some(time)).ok_or_else(bad)
}

fn parse_date_time_parts(date: &str, time: Option<&str>) -> Option<i64> {
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 || d[1].len() != 2 || d[2].len() != 2 {
        return None;
    }
    let (h, m, sec) = match time {
        Some(t) => {
            let t: Vec<&str> = t.split(':').collect();
            if t.len() != 3 || t.iter().any(|p| p.len() != 2) {
                return None;
            }
            (t[0].parse().ok()?, t[1].parse().ok()?, t[2].parse().ok()?)
        }
        None => (0, 0, 0),
    };
    let u = UtcTime {
        year: d[0].parse().ok()?,
        month: d[1].parse().ok()?,
        day: d[2].parse().ok()?,
        hour: h,
        minute: m,
        second: sec,
    };
    if !(1..=12).contains(&u.month)
        || !(1..=31).contains(&u.day)
        || u.hour > 23
        || u.minute > 59
        || u.second > 59
    {
        return None;
    }
    let t = u.to_unix()?;
    // Rejects 2024-02-31 and the like, which would otherwise roll over.
    (UtcTime::from_unix(t) == u).then_some(t)
}

/// PBM's `--older-than`: `YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD`, or `<N>d` days before now.
///
/// # Errors
/// [`CliError::InvalidArgument`].
pub fn parse_older_than(s: &str) -> Result<i64, CliError> {
    let s = s.trim();
    if let Some(days) = s.strip_suffix('d') {
        let n: i64 = days.parse().map_err(|_| {
            CliError::InvalidArgument(format!("invalid --older-than {s:?}: expected <N>d"))
        })?;
        if n < 0 {
            return Err(CliError::InvalidArgument(format!(
                "invalid --older-than {s:?}: negative days"
            )));
        }
        return Ok(now_unix().0 - n * 86_400);
    }
    if s.contains('T') || s.contains(' ') {
        return parse_datetime("--older-than", s);
    }
    parse_date_time_parts(s, None).ok_or_else(|| {
        CliError::InvalidArgument(format!(
            "invalid --older-than {s:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or <N>d"
        ))
    })
}

/// `rbm backup` flags.
#[derive(Debug, Clone, Default)]
pub struct BackupArgs {
    pub kind: String,
    pub base: bool,
    pub compression: Option<String>,
    pub compression_level: Option<i32>,
    pub ns: Option<String>,
    pub with_users_and_roles: bool,
    pub num_parallel_collections: Option<i32>,
    pub profile: String,
    pub wait: bool,
    pub wait_time: Option<Duration>,
}

/// `rbm backup`: PBM's `runBackup`. Progress goes to `progress` (stdout in text mode);
/// the returned string is the final output.
///
/// # Errors
/// Flag errors, a concurrent operation, no agent, or the backup's own error.
pub async fn backup(
    conn: &Conn,
    args: &BackupArgs,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    let kind: BackupType = args.kind.parse().map_err(|_| {
        CliError::InvalidArgument(format!(
            "invalid --type {:?}: expected logical, physical, incremental or external",
            args.kind
        ))
    })?;
    let nss = parse_ns(args.ns.as_deref().unwrap_or(""))?;
    if !nss.is_empty() && kind != BackupType::Logical {
        return Err(CliError::InvalidArgument(
            "--ns is only supported with --type=logical".into(),
        ));
    }
    if args.base && kind != BackupType::Incremental {
        return Err(CliError::InvalidArgument(
            "--base is only for --type=incremental".into(),
        ));
    }
    if args.with_users_and_roles && nss.is_empty() {
        return Err(CliError::InvalidArgument(
            "--with-users-and-roles only applies to selective (--ns) backups".into(),
        ));
    }
    if let Some(n) = args.num_parallel_collections {
        if n < 1 {
            return Err(CliError::InvalidArgument(format!(
                "invalid --num-parallel-collections {n}: must be at least 1"
            )));
        }
    }
    let cfg = stored_config(conn).await?;
    let compression = match &args.compression {
        Some(c) => c.clone(),
        None => cfg.backup_compression().to_string(),
    };
    let codec: rbm_storage::Compression = compression.parse().map_err(|_| {
        CliError::InvalidArgument(format!(
            "invalid --compression {compression:?}: expected one of {}",
            rbm_protocol::config::COMPRESSION_TYPES.join(", ")
        ))
    })?;
    codec
        .check_level(args.compression_level)
        .map_err(|e| CliError::InvalidArgument(format!("invalid --compression-level: {e}")))?;
    check_for_another_operation(conn).await?;

    let name = unused_backup_name(conn).await?;
    let cmd = BackupCmd {
        kind,
        incr_base: args.base,
        name: name.clone(),
        namespaces: nss,
        compression: compression.clone(),
        compression_level: args.compression_level,
        num_parallel_colls: args.num_parallel_collections,
        num_parallel_files: None,
        filelist: false,
        profile: args.profile.clone(),
        users_and_roles: args.with_users_and_roles,
    };
    let opid = send_command(conn, Command::Backup(cmd)).await?;
    let text = out == OutputFormat::Text;
    if text {
        // Go's %q: double quotes, and the profile when there is one.
        let pinfo = if args.profile.is_empty() {
            String::new()
        } else {
            format!(" (profile: {:?})", args.profile)
        };
        let _ = write!(progress, "Starting backup {name:?}{pinfo}");
        let _ = progress.flush();
    }
    // As PBM: the start is bounded by `backup.timeouts.startingStatus`; `--wait-time`
    // bounds only the `--wait` for the end.
    let start_wait = cfg.backup_starting_timeout();
    let meta = wait_backup_started(conn, &name, &opid, start_wait, text, progress)
        .await
        .map_err(|e| match e {
            WaitErr::NoMeta => CliError::NoAgent {
                what: format!("backup '{name}' did not start within {start_wait:?}"),
                opid: opid.to_hex(),
            },
            WaitErr::Cli(e) => e,
        })?;
    if meta.status == Status::Error {
        if text {
            let _ = writeln!(progress);
        }
        return Err(backup_failed(&name, &meta));
    }
    let storage_path = super::text::storage_path(&cfg.storage);
    if args.wait {
        if text {
            let _ = write!(progress, "\nWaiting for '{name}' backup...");
            let _ = progress.flush();
        }
        let deadline = args.wait_time.map(|d| tokio::time::Instant::now() + d);
        let mut shown = crate::progress::cli::WaitProgress::new(text);
        let mut outage = crate::physical::cli_wait::Outage::default();
        let mut last_stuck_check = tokio::time::Instant::now();
        let mut dots = Dots::default();
        let meta = loop {
            let m = match get_backup(conn, &name).await {
                Ok(m) => {
                    outage.ok();
                    m
                }
                // A cold backup of a single-member set takes the database down.
                Err(_) if kind == BackupType::Physical && outage.failed() => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(Status::Done | Status::Error | Status::Canceled) =
                m.as_ref().map(|m| m.status)
            {
                break m;
            }
            if let Some(m) = m
                .as_ref()
                .filter(|_| last_stuck_check.elapsed() >= STUCK_CHECK)
            {
                last_stuck_check = tokio::time::Instant::now();
                let stuck = match fail_if_stuck(conn, m).await {
                    Ok(s) => s,
                    Err(_) if kind == BackupType::Physical && outage.failed() => None,
                    Err(e) => return Err(e),
                };
                if let Some(e) = stuck {
                    if text {
                        let _ = writeln!(progress);
                    }
                    return Err(e);
                }
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(CliError::Timeout(format!(
                    "backup '{name}' is still running after --wait-time; check `rbm status`"
                )));
            }
            if text && !shown.draws_bars() {
                dots.tick(progress);
            }
            shown.poll(conn, defs::BACKUPS_COLLECTION, &name).await;
            tokio::time::sleep(META_WAIT_POLL).await;
        };
        shown.finish(conn, defs::BACKUPS_COLLECTION, &name).await;
        let meta = meta.ok_or_else(|| CliError::NotFound(format!("backup '{name}' vanished")))?;
        match meta.status {
            Status::Done => {
                if text {
                    let _ = writeln!(progress, " done");
                }
            }
            Status::Canceled => {
                return Err(CliError::OperationFailed(format!(
                    "backup '{name}' was canceled"
                )))
            }
            _ => {
                if text {
                    let _ = writeln!(progress);
                }
                return Err(backup_failed(&name, &meta));
            }
        }
    } else if text {
        let _ = writeln!(progress);
    }
    match out {
        OutputFormat::Text => Ok(format!("Backup '{name}' to remote store '{storage_path}'")),
        _ => out.json(&serde_json::json!({"name": name, "storage": storage_path})),
    }
}

/// PBM's "backup stuck": the meta heartbeat of a running backup is stale on cluster
/// time, so the agent running it is gone. The CLI marks it `error` (only if nobody
/// beat or ended it meanwhile) so that it is never taken for a live one.
async fn fail_if_stuck(conn: &Conn, m: &BackupMeta) -> Result<Option<CliError>, CliError> {
    // A replica set whose node is stopped for a cold copy cannot beat.
    if m.replsets.iter().any(|r| r.status == Status::Down) {
        return Ok(None);
    }
    let now = conn.cluster_time().await?;
    if m.hb.time.saturating_add(defs::STALE_FRAME_SEC) >= now.time {
        return Ok(None);
    }
    let msg = format!(
        "backup stuck: the agent running it stopped (last heartbeat at cluster time {})",
        m.hb.time
    );
    let ts = now_unix().0;
    let marked = conn
        .coll(defs::BACKUPS_COLLECTION)
        .update_one(
            doc! {"name": &m.name, "hb": m.hb, "status": {"$nin": ["done", "error", "canceled"]}},
            doc! {
                "$set": {"status": "error", "error": &msg, "last_transition_ts": ts},
                "$push": {"conditions": {"timestamp": ts, "status": "error", "error": &msg}},
            },
        )
        .await
        .map_err(|e| CliError::mongo("mark the stuck backup failed", &e))?;
    if marked.modified_count == 1 {
        // As an agent would on error: no partial backup stays on the storage.
        if let Ok(st) = rbm_storage::from_config(&m.store.storage, None).await {
            if let Err(e) = crate::backup::logical::delete_backup_files(st.as_ref(), &m.name).await
            {
                tracing::warn!("delete the files of stuck backup {}: {e}", m.name);
            }
        }
    }
    // Its lock is as dead as its heartbeat: remove it so the next operation can start.
    let stale_before = Timestamp {
        time: now.time.saturating_sub(defs::STALE_FRAME_SEC),
        increment: 0,
    };
    conn.coll(defs::LOCK_COLLECTION)
        .delete_many(doc! {"opid": &m.opid, "hb": {"$lt": stale_before}})
        .await
        .map_err(|e| CliError::mongo("remove the stuck backup's lock", &e))?;
    Ok(Some(CliError::OperationFailed(format!(
        "backup '{}' failed: {msg}",
        m.name
    ))))
}

fn backup_failed(name: &str, meta: &BackupMeta) -> CliError {
    let err = meta
        .error
        .clone()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "unknown error".into());
    CliError::OperationFailed(format!("backup '{name}' failed: {err}"))
}

enum WaitErr {
    NoMeta,
    Cli(CliError),
}

/// PBM's `waitForBcpStatus`: the meta must appear and leave the starting states.
async fn wait_backup_started(
    conn: &Conn,
    name: &str,
    opid: &ObjectId,
    timeout: Duration,
    text: bool,
    progress: &mut dyn Write,
) -> Result<BackupMeta, WaitErr> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<BackupMeta> = None;
    loop {
        if let Some(m) = get_backup(conn, name).await.map_err(WaitErr::Cli)? {
            // Another `backup` sent in the same second took the name first: its
            // outcome is not this command's.
            if m.opid != opid.to_hex() {
                return Err(WaitErr::Cli(CliError::OperationFailed(format!(
                    "backup name '{name}' was taken by another backup command (opid {}) \
                     sent in the same second; this one was not run",
                    m.opid
                ))));
            }
            match m.status {
                Status::Running
                | Status::DumpDone
                | Status::Done
                | Status::Error
                | Status::Canceled => return Ok(m),
                _ => last = Some(m),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return match last {
                // The meta exists but never reached `running`: the agents did pick the
                // command up, so this is no "no agent" case.
                Some(m) => Err(WaitErr::Cli(CliError::Timeout(format!(
                    "backup '{name}' is still in state '{}' after {timeout:?}; check `rbm status` and `rbm logs`",
                    m.status
                )))),
                None => Err(WaitErr::NoMeta),
            };
        }
        if text {
            let _ = write!(progress, ".");
            let _ = progress.flush();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A backup name (the current second, as PBM names them) that no backup has yet. A
/// backup sent within the second of the previous one would otherwise share its name,
/// and the agents would take it for that backup's command.
///
/// # Errors
/// Read failures.
async fn unused_backup_name(conn: &Conn) -> Result<String, CliError> {
    loop {
        let (secs, nanos) = now_unix();
        let name = rbm_protocol::names::backup_name(secs);
        let taken = conn
            .coll(defs::BACKUPS_COLLECTION)
            .find_one(doc! {"name": &name})
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| CliError::mongo("read admin.pbmBackups", &e))?;
        if taken.is_none() {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_nanos(u64::from(
            1_000_000_000 - nanos.min(999_999_999),
        )))
        .await;
    }
}

/// The backup meta named `name`, if any.
///
/// # Errors
/// Read or decode failures.
pub async fn get_backup(conn: &Conn, name: &str) -> Result<Option<BackupMeta>, CliError> {
    let d = conn
        .coll(defs::BACKUPS_COLLECTION)
        .find_one(doc! {"name": name})
        .await
        .map_err(|e| CliError::mongo("read admin.pbmBackups", &e))?;
    d.map(|d| {
        bson::deserialize_from_document(d)
            .map_err(|e| CliError::BadDocument(format!("backup '{name}' in admin.pbmBackups: {e}")))
    })
    .transpose()
}

/// `rbm cancel-backup`.
///
/// # Errors
/// Write failures.
pub async fn cancel_backup(conn: &Conn, out: OutputFormat) -> Result<String, CliError> {
    send_command(conn, Command::CancelBackup).await?;
    out.msg("Backup cancellation has started")
}

/// `rbm restore` flags.
#[derive(Debug, Clone, Default)]
pub struct RestoreArgs {
    pub backup: Option<String>,
    pub time: Option<String>,
    pub base_snapshot: Option<String>,
    pub ns: Option<String>,
    pub ns_from: Option<String>,
    pub ns_to: Option<String>,
    pub with_users_and_roles: bool,
    pub num_parallel_collections: Option<i32>,
    pub num_insertion_workers: Option<i32>,
    /// Documents per insert batch (rbm extension).
    pub batch_size: Option<i32>,
    pub wait: bool,
    pub wait_time: Option<Duration>,
}

fn full_ns(flag: &str, ns: &str) -> Result<(), CliError> {
    match ns.split_once('.') {
        Some((db, coll)) if !db.is_empty() && !coll.is_empty() && !ns.contains('*') => Ok(()),
        _ => Err(CliError::InvalidArgument(format!(
            "invalid {flag} {ns:?}: expected a full <db>.<collection> name"
        ))),
    }
}

/// `rbm restore`: PBM's `runRestore`.
///
/// # Errors
/// Flag errors, a missing backup, a concurrent operation, no agent, or the restore's
/// own error.
pub async fn restore(
    conn: &Conn,
    args: &RestoreArgs,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    let nss = parse_ns(args.ns.as_deref().unwrap_or(""))?;
    let (ns_from, ns_to) = match (&args.ns_from, &args.ns_to) {
        (Some(f), Some(t)) => {
            full_ns("--ns-from", f)?;
            full_ns("--ns-to", t)?;
            (f.clone(), t.clone())
        }
        (None, None) => (String::new(), String::new()),
        _ => {
            return Err(CliError::InvalidArgument(
                "--ns-from and --ns-to must be given together".into(),
            ))
        }
    };
    if !ns_from.is_empty() && !nss.is_empty() {
        return Err(CliError::InvalidArgument(
            "--ns cannot be combined with --ns-from/--ns-to".into(),
        ));
    }
    let pitr = args
        .time
        .as_deref()
        .map(|t| parse_datetime("--time", t))
        .transpose()?;
    let backup_name = match (&args.backup, pitr) {
        (Some(_), Some(_)) => {
            return Err(CliError::InvalidArgument(
                "give either a backup name or --time, not both".into(),
            ))
        }
        (None, None) => {
            return Err(CliError::InvalidArgument(
                "give a backup name or --time=YYYY-MM-DDTHH:MM:SS".into(),
            ))
        }
        (Some(b), None) => b.clone(),
        (None, Some(t)) => {
            // The base and the chunks to the target, checked before anything is sent.
            let target = crate::pitr::restore_plan::target_ts(u32::try_from(t).unwrap_or(0));
            crate::pitr::restore_plan::plan_restore(
                conn.admin(),
                args.base_snapshot.as_deref(),
                target,
                None,
            )
            .await?
            .base
            .name
        }
    };
    if !backup_name.is_empty() {
        let m = get_backup(conn, &backup_name)
            .await?
            .ok_or_else(|| CliError::NotFound(format!("backup '{backup_name}' not found")))?;
        if m.status != Status::Done {
            return Err(CliError::InvalidArgument(format!(
                "backup '{backup_name}' is not usable: status '{}'",
                m.status
            )));
        }
    }
    stored_config(conn).await?;
    check_for_another_operation(conn).await?;
    let (secs, nanos) = now_unix();
    let name = rbm_protocol::names::restore_name(secs, nanos);
    let cmd = RestoreCmd {
        name: name.clone(),
        backup_name: backup_name.clone(),
        namespaces: nss,
        ns_from,
        ns_to,
        users_and_roles: args.with_users_and_roles,
        rs_map: BTreeMap::new(),
        fallback_enabled: None,
        allow_partly_done: None,
        num_parallel_colls: args.num_parallel_collections,
        num_parallel_files: None,
        num_insertion_workers: args.num_insertion_workers,
        index_commit_quorum: String::new(),
        oplog_ts: pitr.map(|t| Timestamp {
            time: u32::try_from(t).unwrap_or(u32::MAX),
            increment: 0,
        }),
        external: false,
        ext_conf: None,
        ext_ts: Timestamp {
            time: 0,
            increment: 0,
        },
        exit: false,
        batch_size: args.batch_size,
    };
    let opid = send_command(conn, Command::Restore(cmd)).await?;
    let text = out == OutputFormat::Text;
    if text {
        match &args.time {
            Some(t) => {
                let _ = write!(
                    progress,
                    "Starting restore {name} to point-in-time {t} from '{backup_name}'"
                );
            }
            None => {
                let _ = write!(progress, "Starting restore {name} from '{backup_name}'");
            }
        }
        let _ = progress.flush();
    }
    let meta = wait_restore(
        conn,
        &name,
        |_| true,
        defs::WAIT_BACKUP_START,
        text,
        progress,
    )
    .await?
    .ok_or_else(|| CliError::NoAgent {
        what: format!("restore '{name}' did not start"),
        opid: opid.to_hex(),
    })?;
    if meta.status == Status::Error {
        return Err(restore_failed(&name, &meta));
    }
    if args.wait {
        if text {
            let _ = write!(progress, "\nWaiting for restore to finish");
        }
        let t = args.wait_time.unwrap_or(Duration::MAX);
        let mut shown = crate::progress::cli::WaitProgress::new(text);
        let m = wait_restore_shown(
            conn,
            &name,
            |m| matches!(m.status, Status::Done | Status::Error | Status::PartlyDone),
            t,
            text,
            progress,
            Some(&mut shown),
        )
        .await?;
        shown.finish(conn, defs::RESTORES_COLLECTION, &name).await;
        match m {
            Some(m) if m.status == Status::Error => return Err(restore_failed(&name, &m)),
            Some(m) if m.status == Status::Done || m.status == Status::PartlyDone => {
                if text {
                    let _ = writeln!(progress);
                }
                return out.msg("Restore successfully finished!");
            }
            _ => {
                return Err(CliError::Timeout(format!(
                    "restore '{name}' is still running after --wait-time"
                )))
            }
        }
    }
    if text {
        let _ = writeln!(progress);
    }
    match out {
        OutputFormat::Text if args.time.is_some() => Ok(format!(
            "Restore to the point in time '{}' has started.\nCheck restore status with: rbm describe-restore {name}",
            args.time.as_deref().unwrap_or_default()
        )),
        OutputFormat::Text => Ok(format!(
            "Restore of the snapshot from '{backup_name}' has started.\nCheck restore status with: rbm describe-restore {name}"
        )),
        // PBM's restoreRet: `snapshot` is the positional backup name, empty (omitted)
        // for a restore to a time.
        _ if args.time.is_some() => out.json(&serde_json::json!({"name": name})),
        _ => out.json(&serde_json::json!({"name": name, "snapshot": backup_name})),
    }
}

fn restore_failed(name: &str, m: &RestoreMeta) -> CliError {
    CliError::OperationFailed(format!(
        "restore '{name}' failed: {}",
        m.error.clone().unwrap_or_else(|| "unknown error".into())
    ))
}

async fn wait_restore(
    conn: &Conn,
    name: &str,
    done: impl Fn(&RestoreMeta) -> bool,
    timeout: Duration,
    text: bool,
    progress: &mut dyn Write,
) -> Result<Option<RestoreMeta>, CliError> {
    wait_restore_shown(conn, name, done, timeout, text, progress, None).await
}

/// [`wait_restore`], showing the agents' progress in `shown`.
async fn wait_restore_shown(
    conn: &Conn,
    name: &str,
    done: impl Fn(&RestoreMeta) -> bool,
    timeout: Duration,
    text: bool,
    progress: &mut dyn Write,
    mut shown: Option<&mut crate::progress::cli::WaitProgress>,
) -> Result<Option<RestoreMeta>, CliError> {
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    let mut last_status: Option<Status> = None;
    let mut physical = false;
    let mut outage = crate::physical::cli_wait::Outage::default();
    let mut dots = Dots::default();
    loop {
        let d = match conn
            .coll(defs::RESTORES_COLLECTION)
            .find_one(doc! {"name": name})
            .await
        {
            Ok(d) => {
                outage.ok();
                d
            }
            // A physical restore stops the nodes: the database comes back later.
            Err(_) if physical && outage.failed() => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(CliError::mongo("read admin.pbmRestores", &e)),
        };
        if let Some(d) = d {
            let m: RestoreMeta = bson::deserialize_from_document(d).map_err(|e| {
                CliError::BadDocument(format!("restore '{name}' in admin.pbmRestores: {e}"))
            })?;
            physical = m.kind == BackupType::Physical;
            if m.status == Status::Error || done(&m) {
                return Ok(Some(m));
            }
            // Progress: each phase the agent reports (running, dumpDone, ...).
            if text && last_status != Some(m.status) {
                if last_status.is_some() {
                    let _ = write!(progress, "[{}]", m.status);
                }
                last_status = Some(m.status);
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(None);
        }
        let bars = shown.as_ref().is_some_and(|s| s.draws_bars());
        if text && !bars {
            dots.tick(progress);
        }
        if let Some(s) = shown.as_deref_mut() {
            s.poll(conn, defs::RESTORES_COLLECTION, name).await;
        }
        tokio::time::sleep(META_WAIT_POLL).await;
    }
}

/// Follows a lock-holding operation (delete, cleanup, resync, replay) by its OPID:
/// an agent records the lock header in `pbmOpLog` when it takes the lock, and
/// removes its `pbmLock` when done; errors it logged under the OPID fail the wait.
///
/// # Errors
/// [`CliError::NoAgent`] when nobody takes the lock in time, [`CliError::OperationFailed`]
/// with the agent's logged error.
pub async fn wait_for_op(
    conn: &Conn,
    opid: ObjectId,
    what: &str,
    timeout: Option<Duration>,
) -> Result<(), CliError> {
    let hex = opid.to_hex();
    let started = tokio::time::Instant::now();
    let start_deadline = started + defs::WAIT_BACKUP_START;
    loop {
        let taken = conn
            .coll(defs::OP_LOG_COLLECTION)
            .find_one(doc! {"opid": &hex})
            .await
            .map_err(|e| CliError::mongo("read admin.pbmOpLog", &e))?
            .is_some();
        if taken {
            break;
        }
        if let Some(e) = op_error(conn, &hex).await? {
            return Err(CliError::OperationFailed(format!("{what} failed: {e}")));
        }
        if tokio::time::Instant::now() >= start_deadline {
            return Err(CliError::NoAgent {
                what: format!("{what} did not start"),
                opid: hex,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    loop {
        let held = conn
            .coll(defs::LOCK_COLLECTION)
            .find_one(doc! {"opid": &hex})
            .await
            .map_err(|e| CliError::mongo("read admin.pbmLock", &e))?
            .is_some();
        if !held {
            break;
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(CliError::Timeout(format!(
                "{what} is still running after --wait-time; check `rbm status`"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    match op_error(conn, &hex).await? {
        Some(e) => Err(CliError::OperationFailed(format!("{what} failed: {e}"))),
        None => Ok(()),
    }
}

async fn op_error(conn: &Conn, opid: &str) -> Result<Option<String>, CliError> {
    let d: Option<Document> = conn
        .coll(defs::LOG_COLLECTION)
        .find_one(doc! {"opid": opid, "s": {"$lte": 1}})
        .await
        .map_err(|e| CliError::mongo("read admin.pbmLog", &e))?;
    Ok(
        d.and_then(|d| bson::deserialize_from_document::<LogEntry>(d).ok())
            .map(|e| e.msg),
    )
}

/// Asks before a destructive command unless `-y`: PBM's confirmation prompt.
///
/// # Errors
/// [`CliError::InvalidArgument`] when the answer is not yes (or stdin is closed).
pub fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    // PBM's askConfirmation: without a terminal there is nobody to ask.
    if !std::io::stdin().is_terminal() {
        return Err(CliError::InvalidArgument(
            "no tty to confirm on: pass -y/--yes".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    match line.trim() {
        "y" | "Y" | "yes" | "Yes" => Ok(()),
        _ => Err(CliError::InvalidArgument(
            "aborted: not confirmed (pass -y/--yes to skip the question)".into(),
        )),
    }
}

/// `rbm oplog-replay`.
///
/// # Errors
/// As [`delete_backup`].
pub async fn oplog_replay(
    conn: &Conn,
    start: &str,
    end: &str,
    wait: bool,
    out: OutputFormat,
) -> Result<String, CliError> {
    let s = parse_datetime("--start", start)?;
    let e = parse_datetime("--end", end)?;
    if e <= s {
        return Err(CliError::InvalidArgument(
            "--end must be after --start".into(),
        ));
    }
    stored_config(conn).await?;
    let ts = |t: i64| Timestamp {
        time: u32::try_from(t).unwrap_or(0),
        increment: 0,
    };
    // The window must be covered by chunks without a gap, checked before sending.
    crate::pitr::restore_plan::plan_replay(conn.admin(), ts(s), ts(e), None).await?;
    check_for_another_operation(conn).await?;
    let (secs, nanos) = now_unix();
    let name = rbm_protocol::names::restore_name(secs, nanos);
    let opid = send_command(
        conn,
        Command::Replay(ReplayCmd {
            name: name.clone(),
            start: Some(ts(s)),
            end: Some(ts(e)),
            rs_map: BTreeMap::new(),
        }),
    )
    .await?;
    let mut sink = std::io::sink();
    let m = wait_restore(
        conn,
        &name,
        |_| true,
        defs::WAIT_BACKUP_START,
        false,
        &mut sink,
    )
    .await?
    .ok_or_else(|| CliError::NoAgent {
        what: format!("oplog replay '{name}' did not start"),
        opid: opid.to_hex(),
    })?;
    if m.status == Status::Error {
        return Err(restore_failed(&name, &m));
    }
    if wait {
        let m = wait_restore(
            conn,
            &name,
            |m| matches!(m.status, Status::Done | Status::Error | Status::PartlyDone),
            Duration::MAX,
            false,
            &mut sink,
        )
        .await?;
        if let Some(m) = m.filter(|m| m.status == Status::Error) {
            return Err(restore_failed(&name, &m));
        }
    }
    out.msg(&format!("Oplog replay \"{name}\" has started"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_patterns() {
        assert_eq!(parse_ns("").expect("empty"), Vec::<String>::new());
        assert_eq!(parse_ns("*.*").expect("all"), Vec::<String>::new());
        assert_eq!(
            parse_ns("a.b, c.*").expect("two"),
            vec!["a.b".to_string(), "c.*".to_string()]
        );
        for bad in ["a", "*.b", "a.b*", ".b", "a."] {
            assert!(parse_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_datetime("--time", "2026-11-26T11:41:13").expect("ok"),
            1_795_693_273
        );
        assert!(parse_datetime("--time", "2026-02-31T00:00:00").is_err());
        assert!(parse_datetime("--time", "yesterday").is_err());
        assert_eq!(parse_older_than("2026-11-26").expect("date"), 1_795_651_200);
        assert!(parse_older_than("3x").is_err());
    }
}
