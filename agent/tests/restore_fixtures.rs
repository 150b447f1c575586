//! Backups written by the real PBM 2.15 (`/work/shared/fixtures/pbm-2.15/`) restore
//! through `rbm restore` + a real `rbm-agent` onto a fresh SecantusDB to exactly the
//! state recorded in `expected.json`: counts and hashes (the README's rule), collection
//! options, index specs, views, users and roles.

mod agent_common;
#[allow(dead_code)]
mod restore_common;

use agent_common::{Agent, MongoServer};
use restore_common::*;

const FIXTURES: &str = "/work/shared/fixtures/pbm-2.15";

async fn restore_backup(i: usize) {
    let expected = expected_json(FIXTURES);
    let b = &expected["backups"][i];
    let name = b["name"].as_str().expect("backup name");
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let storage = copy_storage(FIXTURES);
    configure(&server, storage.path()).await;
    let c = agent_common::client(&server).await;
    wait_backup_listed(&c, name).await;
    let r = rbm(&server.uri(), &["restore", name, "--wait", "--yes"]);
    assert_eq!(r.code, 0, "restore failed: {} {}", r.stdout, r.stderr);
    let got = state(&c).await;
    let diffs = compare_state(&b["state"], &got);
    assert!(
        diffs.is_empty(),
        "restored state differs:\n{}",
        diffs.join("\n")
    );
    let m = restore_meta(&c).await;
    assert_eq!(m.get_str("status").ok(), Some("done"), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pbm215_s2_backup_restores_exactly() {
    restore_backup(0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pbm215_zstd_backup_restores_exactly() {
    restore_backup(1).await;
}
