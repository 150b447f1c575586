//! A mark in the dbPath while the agent holds its node stopped for a cold backup, so
//! that an agent killed meanwhile (SIGKILL, OOM, a crashed container) brings the node
//! back when it starts again. A graceful stop is covered by
//! [`super::nodectl::RestartGuard`]; only a process that dies without unwinding needs
//! this. The dbPath is the one place that outlives a restarted sidecar container, so
//! the mark lives there; it is never copied into a backup ([`super::secantus::skip_entry`]).
//! A restarted agent can only find it when it is given `--dbpath` (with the node down
//! nothing else says where the dbPath is).
//!
//! The backup itself is not resumed: once the node answers, the agent that found the
//! mark fails it ([`crate::backup::watchdog::fail_abandoned`]); the watchdog cannot,
//! as a replica set down for a cold copy does not beat.

use super::{nodectl, PhysicalError, PhysicalSettings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The mark's name in the dbPath.
pub const MARK_FILE: &str = "rbm.node-stopped.json";

/// What the mark records, for the log of the agent that finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// What stopped the node (`cold backup`).
    pub op: String,
    /// The backup's name.
    pub name: String,
    /// Unix seconds of the stop.
    pub since: i64,
}

fn path(dbpath: &Path) -> PathBuf {
    dbpath.join(MARK_FILE)
}

/// Writes the mark, synced, before the node is stopped.
///
/// # Errors
/// The dbPath is not writable: better to find out before the node goes down.
pub async fn set(dbpath: &Path, op: &str, name: &str) -> Result<(), PhysicalError> {
    let m = Mark {
        op: op.into(),
        name: name.into(),
        since: crate::control::unix_now(),
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| PhysicalError::Other(e.to_string()))?;
    let p = path(dbpath);
    let write = async {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(&p).await?;
        f.write_all(&bytes).await?;
        f.sync_all().await
    };
    write
        .await
        .map_err(PhysicalError::io(format!("write {}", p.display())))
}

/// Removes the mark once the node runs again; a failure only leaves a mark that the
/// next start finds with the node running, and drops.
pub async fn clear(dbpath: &Path) {
    let p = path(dbpath);
    match tokio::fs::remove_file(&p).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("remove {}: {e}", p.display()),
    }
}

/// What [`recover`] found and did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No `--dbpath`, or no mark.
    Nothing,
    /// A mark, but the node holds its lock files: someone started it already.
    AlreadyRunning(Mark),
    /// The node was down: the start command was launched.
    Started(Mark),
}

/// At agent start, before connecting: a mark with the node down means a previous agent
/// died holding it stopped; launch the start command (the connection that follows
/// waits for the node). The mark goes once the node runs or was started.
///
/// # Errors
/// The node is down and there is no start command, or it could not be launched; the
/// mark stays, so the next start tries again.
pub async fn recover(s: &PhysicalSettings) -> Result<Recovery, PhysicalError> {
    let Some(dbpath) = &s.dbpath else {
        return Ok(Recovery::Nothing);
    };
    let p = path(dbpath);
    let bytes = match tokio::fs::read(&p).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::Nothing),
        Err(e) => return Err(PhysicalError::io(format!("read {}", p.display()))(e)),
    };
    // An unreadable mark still says the node was held stopped.
    let mark = serde_json::from_slice(&bytes).unwrap_or_else(|_| Mark {
        op: "an operation".into(),
        name: String::new(),
        since: 0,
    });
    if nodectl::locked(dbpath) {
        clear(dbpath).await;
        return Ok(Recovery::AlreadyRunning(mark));
    }
    let cmd = s.start_cmd.as_deref().ok_or_else(|| {
        PhysicalError::Config(format!(
            "a previous agent stopped the node for {} '{}' and died; there is no \
             --mongod-start-cmd to start it again: start it by hand",
            mark.op, mark.name
        ))
    })?;
    nodectl::launch(cmd)?;
    clear(dbpath).await;
    Ok(Recovery::Started(mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, start: Option<&str>) -> PhysicalSettings {
        PhysicalSettings {
            dbpath: Some(dir.to_path_buf()),
            start_cmd: start.map(str::to_string),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_mark_left_with_the_node_down_starts_it_and_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("started");
        let start = format!("touch {}", flag.display());
        // No mark: nothing happens.
        assert_eq!(
            recover(&settings(dir.path(), Some(&start)))
                .await
                .expect("recover"),
            Recovery::Nothing
        );
        set(dir.path(), "cold backup", "2026-11-27T01:00:00Z")
            .await
            .expect("set");
        let r = recover(&settings(dir.path(), Some(&start)))
            .await
            .expect("recover");
        let Recovery::Started(m) = r else {
            panic!("expected Started, got {r:?}")
        };
        assert_eq!(
            (m.op.as_str(), m.name.as_str()),
            ("cold backup", "2026-11-27T01:00:00Z")
        );
        assert!(!dir.path().join(MARK_FILE).exists(), "the mark stayed");
        for _ in 0..50 {
            if flag.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(flag.exists(), "the start command did not run");
    }

    #[tokio::test]
    async fn without_a_start_command_the_mark_stays_and_the_error_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        set(dir.path(), "cold backup", "b1").await.expect("set");
        let e = recover(&settings(dir.path(), None))
            .await
            .expect_err("no start command");
        assert!(e.to_string().contains("start it by hand"), "{e}");
        assert!(dir.path().join(MARK_FILE).exists());
        // Without --dbpath the agent cannot look.
        let mut s = settings(dir.path(), None);
        s.dbpath = None;
        assert_eq!(recover(&s).await.expect("recover"), Recovery::Nothing);
    }

    #[test]
    fn the_mark_is_never_copied_into_a_backup() {
        assert!(super::super::secantus::skip_entry(MARK_FILE));
    }
}
