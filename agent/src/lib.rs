//! rbm-agent: the engines behind the `rbm-agent` daemon and the `rbm` CLI.

pub mod backup;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod metrics;
pub mod node;
pub mod oplog;
pub mod physical;
pub mod pitr;
pub mod progress;
pub mod restore;
pub mod sample;
pub mod scheduler;
pub mod speed_test;
pub mod storage_init;
pub mod testserver;

/// rbm's version, as `rbm version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
