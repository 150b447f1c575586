//! Stopping and starting the local mongod: its stop command (or `shutdown`), its start
//! command, and waiting until it is really gone (no process holds the dbPath's lock
//! files) or really back (answers `hello` as primary or secondary).

use super::{secantus, PhysicalError, PhysicalSettings};
use crate::node::Node;
use bson::doc;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(300);

/// Stops the node and waits until no process holds its lock files.
///
/// # Errors
/// The stop command failed, the server cannot stop itself, or it is still running
/// after the node timeout.
pub async fn stop(node: &Node, s: &PhysicalSettings, dbpath: &Path) -> Result<(), PhysicalError> {
    if !lock_present(dbpath) {
        return Err(PhysicalError::Config(format!(
            "{} holds none of {:?}: is it the node's dbPath?",
            dbpath.display(),
            secantus::LOCK_FILES
        )));
    }
    match &s.stop_cmd {
        Some(cmd) => {
            let out = tokio::time::timeout(s.node_timeout, shell(cmd).output())
                .await
                .map_err(|_| {
                    PhysicalError::NodeControl(format!(
                        "stop command did not return within {:?}",
                        s.node_timeout
                    ))
                })?
                .map_err(PhysicalError::io("run the stop command"))?;
            if !out.status.success() {
                return Err(PhysicalError::NodeControl(format!(
                    "stop command failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        None => {
            // The reply never comes when the server goes down: a closed connection
            // is the expected answer. `force` only matters for a primary without
            // caught-up secondaries, which is the single-member set cold mode is for.
            let r = node
                .local
                .database("admin")
                .run_command(doc! {"shutdown": 1, "force": true})
                .await;
            if let Err(e) = r {
                if secantus::no_shutdown_command(&e) {
                    return Err(PhysicalError::Config(
                        "the server has no shutdown command: give the agent --mongod-stop-cmd"
                            .into(),
                    ));
                }
            }
        }
    }
    let deadline = tokio::time::Instant::now() + s.node_timeout;
    while locked(dbpath) {
        if tokio::time::Instant::now() > deadline {
            return Err(PhysicalError::NodeControl(format!(
                "the node still holds its lock files in {} after {:?}",
                dbpath.display(),
                s.node_timeout
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

fn lock_present(dbpath: &Path) -> bool {
    secantus::LOCK_FILES.iter().any(|f| dbpath.join(f).exists())
}

/// Starts the node with the start command and waits until it answers as primary or
/// secondary. The command may return at once or keep running; a non-zero exit before
/// the node is up fails.
///
/// # Errors
/// No start command, the command failed, or the node did not come up in time.
pub async fn start(node: &Node, s: &PhysicalSettings) -> Result<(), PhysicalError> {
    let cmd = s.start_cmd.as_deref().ok_or_else(|| {
        PhysicalError::Config("no --mongod-start-cmd: the agent cannot start its node".into())
    })?;
    let mut child = shell(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a signal to the agent must not take the node with it.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(PhysicalError::io("run the start command"))?;
    let stderr = child.stderr.take();
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut err = String::new();
        if let Some(mut e) = stderr {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::new();
            // Only the first few KiB: a server that stays in the foreground logs forever.
            let _ = (&mut e).take(4096).read_to_end(&mut buf).await;
            err = String::from_utf8_lossy(&buf).trim().to_string();
        }
        let st = child.wait().await;
        let _ = tx.send((st, err));
    });
    let deadline = tokio::time::Instant::now() + s.node_timeout;
    let mut exited_ok = false;
    loop {
        if !exited_ok {
            if let Ok((st, err)) = rx.try_recv() {
                match st {
                    Ok(st) if st.success() => exited_ok = true,
                    Ok(st) => {
                        return Err(PhysicalError::NodeControl(format!(
                            "start command failed ({st}): {err}"
                        )))
                    }
                    Err(e) => return Err(PhysicalError::io("wait for the start command")(e)),
                }
            }
        }
        if is_up(node).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(PhysicalError::NodeControl(format!(
                "the node did not come back within {:?}",
                s.node_timeout
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The node answers `hello` as a writable primary or a secondary.
pub async fn is_up(node: &Node) -> bool {
    let hello = tokio::time::timeout(
        Duration::from_secs(2),
        node.local.database("admin").run_command(doc! {"hello": 1}),
    )
    .await;
    match hello {
        Ok(Ok(h)) => {
            h.get_bool("isWritablePrimary").unwrap_or(false)
                || h.get_bool("secondary").unwrap_or(false)
        }
        _ => false,
    }
}

fn shell(cmd: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd);
    c
}

/// Some process holds a lock (POSIX or flock) on one of the dbPath's lock files.
/// Read from `/proc/locks`, so the check itself takes no lock.
pub fn locked(dbpath: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<(u64, u64)> = secantus::LOCK_FILES
        .iter()
        .filter_map(|f| std::fs::metadata(dbpath.join(f)).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        // Without /proc the lock cannot be seen; err on the side of "still running".
        return true;
    };
    locks
        .lines()
        .filter_map(parse_lock_line)
        .any(|l| inodes.contains(&l))
}

/// `1: POSIX  ADVISORY  WRITE 24203 fe:00:10012112 0 EOF` → (dev, inode).
fn parse_lock_line(line: &str) -> Option<(u64, u64)> {
    let field = line
        .split_whitespace()
        .find(|w| w.matches(':').count() == 2 && !w.ends_with(':'))?;
    let mut it = field.split(':');
    let major = u64::from_str_radix(it.next()?, 16).ok()?;
    let minor = u64::from_str_radix(it.next()?, 16).ok()?;
    let ino: u64 = it.next()?.parse().ok()?;
    // glibc's makedev.
    let dev = ((major & 0xfff) << 8)
        | ((major & !0xfff) << 32)
        | (minor & 0xff)
        | ((minor & !0xff) << 12);
    Some((dev, ino))
}

/// Starts the node again if dropped armed: the operation that stopped it was aborted
/// (e.g. the agent's shutdown grace ran out) before it could start it itself. Only
/// launches the start command — there is nobody left to wait for the node.
pub struct RestartGuard {
    start_cmd: Option<String>,
    armed: bool,
}

impl RestartGuard {
    /// Arm right after the node was stopped.
    pub fn armed(s: &PhysicalSettings) -> Self {
        Self {
            start_cmd: s.start_cmd.clone(),
            armed: true,
        }
    }

    /// The operation started the node (or tried to) itself.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(cmd) = &self.start_cmd else {
            tracing::error!("the node was left stopped and there is no start command");
            return;
        };
        tracing::warn!("operation aborted while the node was stopped: starting it");
        if let Err(e) = launch(cmd) {
            tracing::error!("could not start the node again: {e}");
        }
    }
}

/// Launches the start command in its own process group and does not wait: for when
/// nobody is left to wait for the node (an aborted operation, or an agent that finds
/// its node left stopped by a predecessor that died).
///
/// # Errors
/// The shell could not be spawned.
pub fn launch(cmd: &str) -> Result<(), PhysicalError> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(PhysicalError::io("launch the start command"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines() {
        assert_eq!(
            parse_lock_line("1: POSIX  ADVISORY  WRITE 24203 fe:00:10012112 0 EOF"),
            Some((0xfe00, 10012112))
        );
        assert_eq!(
            parse_lock_line("2: FLOCK  ADVISORY  WRITE 77 08:01:42 0 EOF"),
            Some((0x0801, 42))
        );
        assert_eq!(parse_lock_line("garbage"), None);
    }

    #[test]
    fn own_fcntl_lock_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!locked(dir.path()));
        let f = std::fs::File::create(dir.path().join("WiredTiger.lock")).unwrap();
        assert!(!locked(dir.path()));
        f.lock().unwrap();
        assert!(locked(dir.path()));
        drop(f);
        assert!(!locked(dir.path()));
    }
}
