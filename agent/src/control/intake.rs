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
use futures::TryStreamExt;
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

/// Polls until `cancel`, running each new command as a task; on cancel the tasks see the
/// same token, are given [`SHUTDOWN_GRACE`] to end, then aborted.
///
/// `started` is PBM's lower bound: commands sent at or after the agent's start (unix
/// seconds of the CLI's clock, compared to ours; PBM does the same). The caller takes
/// it before connecting, so a command sent while the agent was still connecting and
/// setting up (seconds on a loaded host) is not missed; PBM takes it only once it
/// listens.
pub async fn run(ctx: OpContext, poll: Duration, started: i64, cancel: CancellationToken) {
    let coll: Collection<Document> = ctx.node.pbm.database(DB).collection(CMD_COLLECTION);
    let mut since = started;
    tracing::info!("listening for commands sent since {since}");
    // Commands at exactly `since` are read again (`$gte`, as PBM: several commands may
    // share a second); this set drops them, and is pruned as `since` moves up.
    let mut seen: HashSet<(i64, ObjectId)> = HashSet::new();
    let mut ops: JoinSet<()> = JoinSet::new();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
            Some(res) = ops.join_next(), if !ops.is_empty() => {
                if let Err(e) = res {
                    tracing::error!("an operation task failed: {e}");
                }
                continue;
            }
        }
        let docs: Result<Vec<Document>, _> = match coll.find(doc! {"ts": {"$gte": since}}).await {
            Ok(c) => c.try_collect().await,
            Err(e) => Err(e),
        };
        let docs = match docs {
            Ok(d) => {
                if failing {
                    tracing::info!("reading admin.{CMD_COLLECTION} works again");
                    failing = false;
                }
                d
            }
            Err(e) => {
                // The PBM DB may be electing a primary; keep polling rather than exit.
                if !failing {
                    tracing::warn!(
                        "cannot read admin.{CMD_COLLECTION}: {}",
                        crate::node::redact_uri(&e.to_string())
                    );
                    failing = true;
                }
                continue;
            }
        };
        for raw in docs {
            let Ok(id) = raw.get_object_id("_id") else {
                continue;
            };
            // A `ts` of another type cannot be ordered; such a command is still handled once.
            let ts = raw.get_i64("ts").unwrap_or(since);
            if !seen.insert((ts, id)) {
                continue;
            }
            // Capped at our clock: a CLI host whose clock runs ahead must not hide the
            // commands of the others.
            let ts_bound = ts.min(unix_now());
            if ts_bound > since {
                since = ts_bound;
                seen.retain(|(t, _)| *t >= since);
            }
            let cmd: CommandDoc = match bson::deserialize_from_document(raw) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(opid = %id, "ignoring a command this agent cannot read: {e}");
                    continue;
                }
            };
            tracing::info!(opid = %id, cmd = cmd.command.kind().as_str(), "got command");
            ops.spawn(handle(ctx.clone(), cmd, cancel.child_token()));
        }
    }
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
