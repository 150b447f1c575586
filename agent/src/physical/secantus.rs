//! Where SecantusDB (the test server) differs from mongod for physical operations.
//! Everything here is a difference in *how the agent learns or does something*; the
//! backup and restore themselves are the same.
//!
//! - `getCmdLineOpts` has no `storage.dbPath`: the agent must be given `--dbpath`.
//! - There is no `shutdown` command (CommandNotFound): the agent must be given
//!   `--mongod-stop-cmd`.
//! - It holds `WiredTiger.lock` but writes no `mongod.lock`.
//! - There is no standalone mode with `recoverFromOplogAsStandalone`: a cold backup
//!   needs none (it was taken from a cleanly shut down node, so the checkpoint is the
//!   data), and a restore onto the same replica set keeps its `local.system.replset`.
//!   On mongod the restore runs PBM's standalone steps for the target's replica-set
//!   configuration ([`super::rsreset`]); SecantusDB has no `replSetGetConfig`
//!   (CommandNotFound), so there they are skipped ([`no_replset_config`]), and the
//!   members the primary waits for come from `hello` (`hosts` and `passives`; hidden
//!   members are not listed there).

use bson::Document;

/// The server does not have the command (CommandNotFound, code 59).
fn command_not_found(e: &mongodb::error::Error) -> bool {
    matches!(
        e.kind.as_ref(),
        mongodb::error::ErrorKind::Command(c) if c.code == 59
    )
}

/// `shutdown` failed so: the server cannot stop itself.
pub fn no_shutdown_command(e: &mongodb::error::Error) -> bool {
    command_not_found(e)
}

/// `replSetGetConfig` failed so: no configuration to read, and no standalone recovery
/// for it (SecantusDB). The restored `local.system.replset` stays.
pub fn no_replset_config(e: &mongodb::error::Error) -> bool {
    command_not_found(e)
}

/// The dbPath from `getCmdLineOpts.parsed`, when the server reports one (mongod does,
/// SecantusDB does not).
pub fn dbpath_from_opts(parsed: &Document) -> Option<String> {
    parsed
        .get_document("storage")
        .ok()
        .and_then(|s| s.get_str("dbPath").ok())
        .map(str::to_string)
}

/// Lock files a running server holds in its dbPath: mongod's `mongod.lock` and
/// WiredTiger's `WiredTiger.lock` (the only one on SecantusDB).
pub const LOCK_FILES: &[&str] = &["mongod.lock", "WiredTiger.lock"];

/// dbPath entries that are never copied: the process lock (stale once copied), FTDC
/// diagnostics, and rbm's own stop mark, fallback and temporary names.
pub fn skip_entry(rel: &str) -> bool {
    rel == "mongod.lock"
        || rel == "diagnostic.data"
        || rel.starts_with("diagnostic.data/")
        || rel == super::stopmark::MARK_FILE
        || rel == super::restore::FALLBACK_DIR
        || rel.starts_with(&format!("{}/", super::restore::FALLBACK_DIR))
}
