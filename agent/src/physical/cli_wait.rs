//! What the CLI does differently while it waits for a physical operation: the node it
//! reads from may be down (a cold backup or a restore on a single-member replica set),
//! so read errors are retried for a while instead of failing the wait.

use std::time::Duration;

/// How long the CLI keeps retrying reads of a physical operation's state.
pub const OUTAGE_TOLERANCE: Duration = Duration::from_secs(15 * 60);

/// Tracks consecutive read failures of one wait.
#[derive(Debug, Default)]
pub struct Outage {
    since: Option<tokio::time::Instant>,
}

impl Outage {
    /// A read failed: `true` if the wait should go on (the node may be restarting).
    pub fn failed(&mut self) -> bool {
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        since.elapsed() < OUTAGE_TOLERANCE
    }

    /// A read succeeded.
    pub fn ok(&mut self) {
        self.since = None;
    }
}
