//! Backups written by the real PBM 2.15 (`shared/fixtures/pbm-2.15/`) restore
//! through `rbm restore` + a real `rbm-agent` onto a fresh SecantusDB to exactly the
//! state recorded in `expected.json`: counts and hashes (the README's rule), collection
//! options, index specs, views, users and roles.

mod agent_common;
#[allow(dead_code)]
mod restore_common;

use agent_common::{Agent, MongoServer};
use restore_common::*;

async fn restore_backup(i: usize) {
    let expected = expected_json(&fixture("pbm-2.15"));
    let b = &expected["backups"][i];
    let name = b["name"].as_str().expect("backup name");
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let storage = copy_storage(&fixture("pbm-2.15"));
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

/// The PBM 1.6 backup of a sharded cluster (`pbm-legacy/`): resync lists it, and both
/// `restore` and `verify` refuse it with one clear error (this build restores a single
/// replica set; the mongodump-archive reader is not built).
#[tokio::test(flavor = "multi_thread")]
async fn pbm_legacy_sharded_backup_refuses_clearly() {
    let legacy = &fixture("pbm-legacy/pbm_disttxn_50");
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(format!("{legacy}/."))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(st.success());
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(dir.path())
        .status();
    configure(&server, dir.path()).await;
    let c = agent_common::client(&server).await;
    let name = "2022-02-07T14:05:59Z";
    wait_backup_listed(&c, name).await;
    let r = rbm(&server.uri(), &["restore", name, "--wait", "--yes"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("sharded cluster backup") && r.stderr.contains("rs1"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let r = rbm(&server.uri(), &["verify", name]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("sharded cluster backup"), "{}", r.stderr);
}

/// One replica set's part of the PBM 1.6 sharded backup, restored through the narrow
/// library path (`restore::legacy::restore_legacy_rs`) onto a server named `rs1`: the
/// mongodump archive (CRC-checked) and the real MongoDB 5.0 oplog slice.
#[tokio::test(flavor = "multi_thread")]
async fn pbm_legacy_rs1_part_restores_through_the_library_path() {
    let legacy = &fixture("pbm-legacy/pbm_disttxn_50");
    let server = MongoServer::start_named("rs1").await;
    let conf = rbm_e2e::fs_conf(std::path::Path::new(legacy));
    let storage = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    let meta = rbm_agent::restore::source::backup_meta_from_storage(
        storage.as_ref(),
        "2022-02-07T14.05.59Z",
    )
    .await
    .expect("legacy meta");
    let c = agent_common::client(&server).await;
    let s = rbm_agent::restore::legacy::restore_legacy_rs(&c, storage, &meta, "rs1", "t1")
        .await
        .expect("restore rs1");
    eprintln!("{s:?}");
    assert_eq!(s.collections.get("trx.test"), Some(&3), "{s:?}");
    let hashes = rbm_e2e::state_hashes(&c).await;
    assert_eq!(hashes.get("trx.test").map(|h| h.0), Some(3), "{hashes:?}");
}
