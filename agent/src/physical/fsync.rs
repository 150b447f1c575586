//! fsyncLock mode (MongoDB Community, a secondary or hidden member): `fsync {lock:
//! true}` flushes and blocks writes, the dbPath is copied, `fsyncUnlock` lets writes in
//! again. A lock left behind stops the member from replicating, so the unlock runs on
//! every path: after the copy whatever its outcome, when the copy is cancelled (agent
//! shutdown cancels it through its token), and — if the future is dropped outright —
//! from the guard's `Drop`, on a task of its own.
//!
//! fsync locks nest (`lockCount`): the unlock repeats until the count is 0, so a lock
//! taken twice (a retry) is not left half-held.
//!
//! Not run against a real server here: the test server answers `fsync {lock: true}`
//! with FailedToParse. Tested over recorded replies ([`super::admin::fake`]).

use super::admin::{AdminCommands, CmdFailure};
use super::PhysicalError;
use bson::doc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Unlock attempts before giving up (with 1, 2, 3... backoff units between them).
const UNLOCK_TRIES: u32 = 5;
#[cfg(not(test))]
const BACKOFF: Duration = Duration::from_secs(1);
#[cfg(test)]
const BACKOFF: Duration = Duration::from_millis(1);
/// fsyncUnlock rounds for nested locks.
const MAX_NESTED: u32 = 16;

/// Holds the lock; unlocks on drop if [`FsyncGuard::unlock`] was not called.
pub struct FsyncGuard<C: AdminCommands + 'static> {
    cmds: Arc<C>,
    armed: Arc<AtomicBool>,
}

/// Locks the node.
///
/// # Errors
/// The server refused (e.g. not supported, or on a primary with `--physical-backup-mode`
/// forced).
pub async fn lock<C: AdminCommands + 'static>(
    cmds: Arc<C>,
) -> Result<FsyncGuard<C>, PhysicalError> {
    let r = cmds
        .run(doc! {"fsync": 1, "lock": true})
        .await
        .map_err(|e| PhysicalError::Reply(format!("fsync lock: {e}")))?;
    let count = lock_count(&r);
    if count < 1 {
        // Something answered ok without locking: unlock anything it did hold and stop.
        let _ = unlock_all(cmds.as_ref()).await;
        return Err(PhysicalError::Reply(format!(
            "fsync lock: the reply reports no lock ({r})"
        )));
    }
    Ok(FsyncGuard {
        cmds,
        armed: Arc::new(AtomicBool::new(true)),
    })
}

impl<C: AdminCommands + 'static> FsyncGuard<C> {
    /// Unlocks, retrying; the error says the node is still locked.
    ///
    /// # Errors
    /// Every attempt failed.
    pub async fn unlock(self) -> Result<(), PhysicalError> {
        self.armed.store(false, Ordering::SeqCst);
        unlock_all(self.cmds.as_ref()).await
    }
}

impl<C: AdminCommands + 'static> Drop for FsyncGuard<C> {
    fn drop(&mut self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let cmds = self.cmds.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if let Err(e) = unlock_all(cmds.as_ref()).await {
                        tracing::error!("{e}");
                    }
                });
            }
            Err(_) => tracing::error!(
                "fsync lock dropped outside a runtime: the node stays locked; run db.fsyncUnlock()"
            ),
        }
    }
}

fn lock_count(reply: &bson::Document) -> i64 {
    match reply.get("lockCount") {
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        Some(bson::Bson::Int64(n)) => *n,
        Some(bson::Bson::Double(n)) => *n as i64,
        _ => 0,
    }
}

async fn unlock_all<C: AdminCommands>(cmds: &C) -> Result<(), PhysicalError> {
    let mut last: Option<CmdFailure> = None;
    let mut tries = 0;
    let mut rounds = 0;
    while tries < UNLOCK_TRIES && rounds < MAX_NESTED {
        match cmds.run(doc! {"fsyncUnlock": 1}).await {
            Ok(r) => {
                rounds += 1;
                if lock_count(&r) == 0 {
                    return Ok(());
                }
            }
            // "not locked" (code 125, IllegalOperation): someone unlocked already.
            Err(e) if e.code == Some(125) => return Ok(()),
            Err(e) => {
                tries += 1;
                last = Some(e);
                tokio::time::sleep(BACKOFF * tries).await;
            }
        }
    }
    Err(PhysicalError::NodeControl(format!(
        "the node is still fsync-locked ({}): run db.fsyncUnlock() on it",
        last.map_or_else(|| "nested locks remain".to_string(), |e| e.to_string())
    )))
}

/// Runs `work` under the lock and unlocks on every path. The work's error wins; an
/// unlock failure is reported when the work succeeded, and appended when it did not.
///
/// # Errors
/// The lock, the work or the unlock failed.
pub async fn with_lock<C, T, F, Fut>(cmds: Arc<C>, work: F) -> Result<T, PhysicalError>
where
    C: AdminCommands + 'static,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, PhysicalError>>,
{
    let guard = lock(cmds).await?;
    let r = work().await;
    let u = guard.unlock().await;
    match (r, u) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(u)) => Err(PhysicalError::Other(format!("{e}; and {u}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::admin::fake::{fail, Scripted};
    use super::*;

    fn ok(count: i32) -> Result<bson::Document, CmdFailure> {
        // Recorded from MongoDB 7.0: `db.fsyncLock()` / `db.fsyncUnlock()`.
        Ok(
            doc! {"info": "now locked against writes", "lockCount": i64::from(count), "seeAlso": "http://dochub.mongodb.org/core/fsynccommand", "ok": 1.0},
        )
    }

    #[tokio::test]
    async fn unlocks_after_success_and_after_failure() {
        let s = Arc::new(Scripted::new(vec![ok(1), ok(0)]));
        let v = with_lock(s.clone(), || async { Ok(7) }).await.unwrap();
        assert_eq!(v, 7);
        assert_eq!(
            s.sent(),
            vec![doc! {"fsync": 1, "lock": true}, doc! {"fsyncUnlock": 1}]
        );

        let s = Arc::new(Scripted::new(vec![ok(1), ok(0)]));
        let e = with_lock(s.clone(), || async {
            Err::<(), _>(PhysicalError::Check("disk full".into()))
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("disk full"));
        assert_eq!(s.sent().last(), Some(&doc! {"fsyncUnlock": 1}));
    }

    #[tokio::test]
    async fn nested_locks_are_all_released_and_unlock_is_retried() {
        // Lock count 2 (an earlier lock nobody released), one network error on unlock.
        let s = Arc::new(Scripted::new(vec![
            ok(2),
            Err(CmdFailure {
                code: None,
                message: "connection reset".into(),
            }),
            ok(1),
            ok(0),
        ]));
        with_lock(s.clone(), || async { Ok(()) }).await.unwrap();
        assert_eq!(s.sent().len(), 4);
    }

    #[tokio::test]
    async fn unlock_that_keeps_failing_is_reported_with_the_work_error() {
        let mut r = vec![ok(1)];
        r.extend((0..UNLOCK_TRIES).map(|_| fail(6, "host unreachable")));
        let s = Arc::new(Scripted::new(r));
        let e = with_lock(s.clone(), || async {
            Err::<(), _>(PhysicalError::Check("copy failed".into()))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("copy failed") && e.contains("still fsync-locked"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn refused_lock_runs_no_work() {
        // The test server's answer.
        let s = Arc::new(Scripted::new(vec![fail(
            9,
            "FailedToParse: unknown field lock",
        )]));
        let mut ran = false;
        let e = with_lock(s.clone(), || {
            ran = true;
            async { Ok(()) }
        })
        .await;
        assert!(e.is_err());
        assert!(!ran);
        assert_eq!(s.sent().len(), 1);
    }

    #[tokio::test]
    async fn dropped_work_still_unlocks() {
        // The agent aborts the task holding the lock (e.g. shutdown timeout).
        let s = Arc::new(Scripted::new(vec![ok(1), ok(0)]));
        let s2 = s.clone();
        let task = tokio::spawn(async move {
            with_lock(s2, || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        task.abort();
        let _ = task.await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(s.sent().last(), Some(&doc! {"fsyncUnlock": 1}));
    }

    #[tokio::test]
    async fn already_unlocked_is_fine() {
        let s = Arc::new(Scripted::new(vec![
            ok(1),
            fail(125, "fsyncUnlock called when not locked"),
        ]));
        with_lock(s.clone(), || async { Ok(()) }).await.unwrap();
    }
}
