//! Command intake (PBM's `pbm/ctrl/recv.go`): poll `pbmCmd` every second for commands
//! sent since the agent started, and hand each operation id to a handler once. As in
//! PBM, the lower bound moves up to the newest command seen, so a long-lived agent reads
//! only new commands instead of the whole (capped, 1 MiB) collection every second.
//!
//! "Once" has two layers: an in-memory set of seen `_id`s stops this process from
//! handling a command twice, and the `pbmOpLog` unique `(opid, replset)` index (written
//! when the operation's lock is taken) stops it from running again anywhere in the
//! replica set, also after a restart.

use super::ops::{handle, OpContext};
use super::unix_now;
use bson::{doc, oid::ObjectId, Document};
use futures::StreamExt;
use mongodb::options::CursorType;
use mongodb::Collection;
use rbm_protocol::command::CommandDoc;
use rbm_protocol::defs::{CMD_COLLECTION, DB};
use std::collections::HashSet;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// PBM polls once a second.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long running operations get to finish (and release their locks) on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Reads commands until `cancel`, running each new one as a task; on cancel the tasks
/// see the same token, are given [`SHUTDOWN_GRACE`] to end, then aborted.
///
/// `started` is PBM's lower bound: commands sent at or after the agent's start (unix
/// seconds of the CLI's clock, compared to ours; PBM does the same). The caller takes
/// it before connecting, so a command sent while the agent was still connecting and
/// setting up (seconds on a loaded host) is not missed; PBM takes it only once it
/// listens.
///
/// PBM re-reads `pbmCmd` every second, so each command waits half a second on average
/// before anything happens. `pbmCmd` is capped, so rbm tails it instead (a tailable
/// await cursor wakes as the command is inserted) and re-reads every `poll` only while
/// it cannot tail: an empty collection (a tailable cursor dies at once on it), a cursor
/// the server dropped, or a `pbmCmd` that is not capped.
pub async fn run(ctx: OpContext, poll: Duration, started: i64, cancel: CancellationToken) {
    let coll: Collection<Document> = ctx.node.pbm.database(DB).collection(CMD_COLLECTION);
    let mut inbox = Inbox {
        ctx: &ctx,
        since: started,
        seen: HashSet::new(),
        ops: JoinSet::new(),
        cancel: &cancel,
    };
    tracing::info!("listening for commands sent since {started}");
    let mut failing = false;
    let mut tail = true;
    loop {
        // No filter: a tailable cursor whose query matches nothing is dead at once, and
        // the capped collection holds at most 1 MiB, read once per (re)open.
        let opened = if tail {
            coll.find(doc! {})
                .cursor_type(CursorType::TailableAwait)
                .max_await_time(poll)
                .await
        } else {
            coll.find(doc! {"ts": {"$gte": inbox.since}}).await
        };
        let read = match opened {
            Ok(mut cursor) => {
                if failing {
                    tracing::info!("reading admin.{CMD_COLLECTION} works again");
                    failing = false;
                }
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => break Ok(()),
                        Some(res) = inbox.ops.join_next(), if !inbox.ops.is_empty() => {
                            if let Err(e) = res {
                                tracing::error!("an operation task failed: {e}");
                            }
                            continue;
                        }
                        // `Cursor` keeps its state across a dropped `next()`: cancel-safe.
                        next = cursor.next() => next,
                    };
                    match next {
                        Some(Ok(raw)) => inbox.take(raw),
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    }
                }
            }
            Err(e) if tail && not_capped(&e) => {
                tracing::warn!(
                    "admin.{CMD_COLLECTION} is not capped; reading it every {poll:?} instead of tailing it"
                );
                tail = false;
                continue;
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(()) => {}
            // The PBM DB may be electing a primary; keep reading rather than exit.
            Err(e) if !failing => {
                tracing::warn!(
                    "cannot read admin.{CMD_COLLECTION}: {}",
                    crate::node::redact_uri(&e.to_string())
                );
                failing = true;
            }
            Err(_) => {}
        }
        if cancel.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    let mut ops = inbox.ops;
    // Shutdown: handlers see the cancelled token, mark their work failed and release
    // their locks; give them a bounded time to do so.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(res) = ops.join_next().await {
            if let Err(e) = res {
                tracing::error!("an operation task failed: {e}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("operations did not end within {SHUTDOWN_GRACE:?}; aborting them");
        ops.shutdown().await;
    }
}

/// What the intake has seen, and the operations it started.
struct Inbox<'a> {
    ctx: &'a OpContext,
    /// Commands older than this (unix seconds) are not run.
    since: i64,
    /// Commands at exactly `since` are read again (`$gte`, as PBM: several commands may
    /// share a second), and a reopened tailable cursor reads the whole collection
    /// again; this set drops what was handled, and is pruned as `since` moves up.
    seen: HashSet<(i64, ObjectId)>,
    ops: JoinSet<()>,
    cancel: &'a CancellationToken,
}

impl Inbox<'_> {
    /// Starts the command in `raw` unless it is old or was started already.
    fn take(&mut self, raw: Document) {
        let Ok(id) = raw.get_object_id("_id") else {
            return;
        };
        // A `ts` of another type cannot be ordered; such a command is still handled once.
        let ts = raw.get_i64("ts").unwrap_or(self.since);
        if ts < self.since || !self.seen.insert((ts, id)) {
            return;
        }
        // Capped at our clock: a CLI host whose clock runs ahead must not hide the
        // commands of the others.
        let ts_bound = ts.min(unix_now());
        if ts_bound > self.since {
            self.since = ts_bound;
            let since = self.since;
            self.seen.retain(|(t, _)| *t >= since);
        }
        let cmd: CommandDoc = match bson::deserialize_from_document(raw) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(opid = %id, "ignoring a command this agent cannot read: {e}");
                return;
            }
        };
        tracing::info!(opid = %id, cmd = cmd.command.kind().as_str(), "got command");
        self.ops
            .spawn(handle(self.ctx.clone(), cmd, self.cancel.child_token()));
    }
}

/// The server refuses a tailable cursor because the collection is not capped.
fn not_capped(e: &mongodb::error::Error) -> bool {
    // BadValue (2) on mongod; the message is the stable part across versions.
    e.to_string().contains("capped")
}
