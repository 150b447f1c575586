//! `rbm delete-backup`, `delete-pitr` and `cleanup` as PBM's CLI runs them
//! (`cmd/pbm/delete.go`): check for another operation, work out what will go with the
//! same rules the agent applies ([`crate::scheduler::plan`]), print it, ask, send the
//! command, wait ("Waiting for delete to be done ...[done]") and print `list`.

use super::conn::Conn;
use super::error::CliError;
use super::ops::{
    check_for_another_operation, confirm, get_backup, parse_older_than, send_command, wait_for_op,
};
use super::text::{fmt_ts, pretty_size};
use super::OutputFormat;
use crate::scheduler::plan::{self, PitrMode};
use bson::{doc, Timestamp};
use rbm_protocol::command::{CleanupCmd, Command, DeleteBackupCmd, DeletePitrCmd};
use rbm_protocol::defs::{self, BackupType};
use rbm_protocol::meta::pitr::PitrChunk;
use rbm_protocol::meta::BackupMeta;
use std::io::Write;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct State {
    all: Vec<BackupMeta>,
    chunks: Vec<PitrChunk>,
    pitr: PitrMode,
}

async fn state(conn: &Conn) -> Result<State, CliError> {
    let mut all: Vec<BackupMeta> =
        super::find_all(conn, defs::BACKUPS_COLLECTION, doc! {}, None).await?;
    all.sort_by_key(|b| (b.last_write_ts.time, b.last_write_ts.increment));
    let mut chunks: Vec<PitrChunk> =
        super::find_all(conn, defs::PITR_CHUNKS_COLLECTION, doc! {}, None).await?;
    chunks.sort_by_key(|c| (c.start_ts.time, c.start_ts.increment));
    let cfg = super::config::get_config(conn).await?;
    Ok(State {
        all,
        chunks,
        pitr: crate::control::lifecycle_op::pitr_mode(cfg.as_ref()),
    })
}

/// PBM's `printDeleteInfoTo`.
fn delete_info(backups: &[BackupMeta], chunks: &[PitrChunk]) -> String {
    let mut s = String::new();
    if !backups.is_empty() {
        s.push_str("Snapshots:\n");
        for b in backups {
            let mut t = b.kind.as_str().to_string();
            if b.kind == BackupType::Logical && !b.namespaces.is_empty() {
                t.push_str(", selective");
            } else if b.kind == BackupType::Incremental && b.src_backup.is_empty() {
                t.push_str(", base");
            }
            s.push_str(&format!(
                " - {:?} [size: {} type: <{t}>, restore time: {}Z]\n",
                b.name,
                pretty_size(b.size.unwrap_or(0)),
                fmt_ts(i64::from(b.last_write_ts.time))
            ));
        }
    }
    if chunks.is_empty() {
        return s;
    }
    // Touching chunks merge into one range per replica set, in first-seen order.
    let mut ranges: Vec<(String, Vec<(Timestamp, Timestamp)>)> = Vec::new();
    for c in chunks {
        let key = |t: Timestamp| (t.time, t.increment);
        match ranges.iter_mut().find(|(rs, _)| rs == &c.rs) {
            None => ranges.push((c.rs.clone(), vec![(c.start_ts, c.end_ts)])),
            Some((_, rs)) => match rs.last_mut() {
                Some(last) if key(last.1) >= key(c.start_ts) => {
                    if key(last.1) < key(c.end_ts) {
                        last.1 = c.end_ts;
                    }
                }
                _ => rs.push((c.start_ts, c.end_ts)),
            },
        }
    }
    s.push_str("PITR chunks (by replset name):\n");
    for (rs, list) in ranges {
        s.push_str(&format!(" {rs}:\n"));
        for (a, b) in list {
            s.push_str(&format!(
                " - {} - {}\n",
                fmt_ts(i64::from(a.time)),
                fmt_ts(i64::from(b.time))
            ));
        }
    }
    s
}

/// Sends the command and follows it as PBM's `waitForDelete`: dots each second, then
/// `[done]`, then the backup list.
async fn send_and_wait(
    conn: &Conn,
    cmd: Command,
    what: &str,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    let opid = send_command(conn, cmd).await?;
    let text = out == OutputFormat::Text;
    if text {
        let _ = write!(progress, "Waiting for delete to be done ");
        let _ = progress.flush();
    }
    let wait = wait_for_op(conn, opid, what, None);
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    let r = loop {
        tokio::select! {
            r = &mut wait => break r,
            _ = tick.tick() => {
                if text {
                    let _ = write!(progress, ".");
                    let _ = progress.flush();
                }
            }
        }
    };
    if text {
        // PBM ends the progress line before reporting either way.
        let _ = writeln!(progress, "{}", if r.is_ok() { "[done]" } else { "" });
    }
    r?;
    super::list::list(conn, &super::list::ListArgs::default(), out).await
}

/// `rbm delete-backup <name> | --older-than <t> [--type t]`.
///
/// # Errors
/// Flag errors, a concurrent operation, a backup that must stay, no agent, the agent's
/// error.
#[allow(clippy::too_many_arguments)]
pub async fn delete_backup(
    conn: &Conn,
    name: Option<&str>,
    older_than: Option<&str>,
    kind: Option<&str>,
    yes: bool,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    match (name, older_than) {
        (None, None) => {
            return Err(CliError::InvalidArgument(
                "either [name] or --older-than should be set".into(),
            ))
        }
        (Some(_), Some(_)) => {
            return Err(CliError::InvalidArgument(
                "cannot use [name] and --older-than at the same command".into(),
            ))
        }
        _ => {}
    }
    if kind.is_some() && older_than.is_none() {
        return Err(CliError::InvalidArgument(
            "cannot use --type without --older-than".into(),
        ));
    }
    // PBM's pseudo-type `selective` has no wire form in the command this build sends,
    // so it is refused rather than widened to every type.
    let kind = kind
        .map(|k| {
            k.parse::<BackupType>().map_err(|_| {
                CliError::InvalidArgument(format!(
                    "invalid --type {k:?}: expected logical, physical, incremental or external"
                ))
            })
        })
        .transpose()?;
    let older = older_than.map(parse_older_than).transpose()?;
    if let Some(t) = older {
        if t > now_unix() {
            return Err(CliError::InvalidArgument(format!(
                "--older-than {:?} is after now {:?}",
                format!("{}Z", fmt_ts(t)),
                format!("{}Z", fmt_ts(now_unix()))
            )));
        }
    }
    // PBM checks for another operation first, then whether the backup may go.
    check_for_another_operation(conn).await?;
    let st = state(conn).await?;
    let text = out == OutputFormat::Text;
    let cmd = if let Some(n) = name {
        let m = get_backup(conn, n)
            .await?
            .ok_or_else(|| CliError::NotFound(format!("backup '{n}' not found")))?;
        let going = if m.kind == BackupType::Incremental {
            // PBM: the whole chain goes, and only from its base.
            plan::incremental_chain(&m, &st.all, &st.chunks, st.pitr)
        } else {
            plan::can_delete(&m, &st.all, &st.chunks, st.pitr).map(|()| vec![m.clone()])
        }
        .map_err(|e| CliError::OperationFailed(format!("backup cannot be deleted: {e}")))?;
        if text {
            let _ = write!(progress, "{}", delete_info(&going, &[]));
        }
        confirm("Are you sure you want to delete this backup?", yes)?;
        DeleteBackupCmd {
            backup: n.to_string(),
            older_than: 0,
            kind: None,
            profile: String::new(),
        }
    } else {
        let t = older.unwrap_or(0);
        let ts = Timestamp {
            time: u32::try_from(t).unwrap_or(0),
            increment: 0,
        };
        let info = plan::cleanup_info(&st.all, &st.chunks, st.pitr, ts, "");
        let list: Vec<BackupMeta> = info
            .backups
            .into_iter()
            .filter(|b| plan::matches_type(b, kind))
            .collect();
        if text {
            let _ = write!(progress, "{}", delete_info(&list, &[]));
        }
        confirm("Are you sure you want to delete backups?", yes)?;
        DeleteBackupCmd {
            backup: String::new(),
            older_than: t,
            kind,
            profile: String::new(),
        }
    };
    send_and_wait(
        conn,
        Command::DeleteBackup(cmd),
        "delete backup",
        out,
        progress,
    )
    .await
}

/// `rbm delete-pitr --older-than <t> | --all`.
///
/// # Errors
/// As [`delete_backup`].
pub async fn delete_pitr(
    conn: &Conn,
    older_than: Option<&str>,
    all: bool,
    yes: bool,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    let until = match (older_than, all) {
        (None, false) => {
            return Err(CliError::InvalidArgument(
                "either --older-than or --all should be set".into(),
            ))
        }
        (Some(_), true) => {
            return Err(CliError::InvalidArgument(
                "cannot use --older-than and --all at the same command".into(),
            ))
        }
        (None, true) => now_unix(),
        (Some(t), false) => {
            let t = parse_older_than(t)?;
            if t > now_unix() {
                return Err(CliError::InvalidArgument(format!(
                    "--older-than {:?} is after now {:?}",
                    format!("{}Z", fmt_ts(t)),
                    format!("{}Z", fmt_ts(now_unix()))
                )));
            }
            t
        }
    };
    check_for_another_operation(conn).await?;
    let st = state(conn).await?;
    let ts = Timestamp {
        time: u32::try_from(until).unwrap_or(0),
        increment: 0,
    };
    let info = plan::cleanup_info(&st.all, &st.chunks, st.pitr, ts, "");
    if info.chunks.is_empty() {
        return out.msg("nothing to delete");
    }
    if out == OutputFormat::Text {
        let _ = write!(progress, "{}", delete_info(&[], &info.chunks));
    }
    let q = if all {
        "Are you sure you want to delete ALL chunks?"
    } else {
        "Are you sure you want to delete chunks?"
    };
    confirm(q, yes)?;
    send_and_wait(
        conn,
        Command::DeletePitr(DeletePitrCmd { older_than: until }),
        "delete PITR chunks",
        out,
        progress,
    )
    .await
}

/// `rbm cleanup --older-than <t>`.
///
/// # Errors
/// As [`delete_backup`].
pub async fn cleanup(
    conn: &Conn,
    older_than: &str,
    yes: bool,
    out: OutputFormat,
    progress: &mut dyn Write,
) -> Result<String, CliError> {
    let t = parse_older_than(older_than)?;
    if t > now_unix() {
        return Err(CliError::InvalidArgument(format!(
            "--older-than {:?} is after now {:?}",
            format!("{}Z", fmt_ts(t)),
            format!("{}Z", fmt_ts(now_unix()))
        )));
    }
    check_for_another_operation(conn).await?;
    let st = state(conn).await?;
    let ts = Timestamp {
        time: u32::try_from(t).unwrap_or(0),
        increment: 0,
    };
    let info = plan::cleanup_info(&st.all, &st.chunks, st.pitr, ts, "");
    if info.backups.is_empty() && info.chunks.is_empty() {
        return out.msg("nothing to delete");
    }
    if out == OutputFormat::Text {
        let _ = write!(progress, "{}", delete_info(&info.backups, &info.chunks));
    }
    confirm("Are you sure you want to delete?", yes)?;
    send_and_wait(
        conn,
        Command::Cleanup(CleanupCmd {
            older_than: ts,
            profile: String::new(),
        }),
        "cleanup",
        out,
        progress,
    )
    .await
}
