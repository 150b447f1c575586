//! `rbm restore` of a PBM-written logical backup through a real `rbm-agent`: selective
//! `--ns`, `--ns-from/--ns-to`, collections outside the backup left alone, and the
//! safety rule — a missing or corrupted object makes the restore refuse before any
//! existing data is dropped.

mod agent_common;
#[allow(dead_code)]
mod restore_common;

use agent_common::{Agent, MongoServer};
use mongodb::bson::{doc, Document};
use mongodb::Client;
use restore_common::*;

const FIXTURES: &str = "/work/shared/fixtures/pbm-2.15";
const B1: &str = "2026-11-26T11:40:53Z";

struct Env {
    server: MongoServer,
    _agent: Agent,
    storage: tempfile::TempDir,
    c: Client,
}

async fn setup() -> Env {
    let server = MongoServer::start().await;
    let agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let storage = copy_storage(FIXTURES);
    configure(&server, storage.path()).await;
    let c = agent_common::client(&server).await;
    wait_backup_listed(&c, B1).await;
    Env {
        server,
        _agent: agent,
        storage,
        c,
    }
}

/// Data that exists before the restore: one collection the backup also has, one it
/// does not.
async fn seed(c: &Client) {
    c.database("shop")
        .collection::<Document>("orders")
        .insert_many(vec![
            doc! {"_id": 1, "pre": true},
            doc! {"_id": 2, "pre": true},
        ])
        .await
        .expect("seed orders");
    c.database("keep")
        .collection::<Document>("me")
        .insert_one(doc! {"_id": "x", "v": 1})
        .await
        .expect("seed keep.me");
}

async fn count(c: &Client, db: &str, coll: &str) -> u64 {
    c.database(db)
        .collection::<Document>(coll)
        .count_documents(doc! {})
        .await
        .expect("count")
}

fn expected_coll(ns: &str) -> serde_json::Value {
    expected_json(FIXTURES)["backups"][0]["state"]["collections"][ns].clone()
}

async fn no_temporaries(c: &Client) {
    for db in c.list_database_names().await.expect("dbs") {
        let names = c
            .database(&db)
            .list_collection_names()
            .await
            .expect("names");
        assert!(
            names.iter().all(|n| !n.starts_with("rbm_restore_")),
            "temporary collections left in {db}: {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_or_missing_object_refuses_before_dropping_anything() {
    let e = setup().await;
    seed(&e.c).await;
    let dir = e.storage.path().join(B1).join("secantus");
    // A flipped byte in the last collection loaded: every other one loads first.
    let obj = dir.join("shop.products.s2");
    let mut bytes = std::fs::read(&obj).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&obj, &bytes).expect("write");
    let r = rbm(&e.server.uri(), &["restore", B1, "--wait", "--yes"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("shop.products.s2") && r.stderr.contains("corrupted"),
        "{}",
        r.stderr
    );
    assert_eq!(
        count(&e.c, "shop", "orders").await,
        2,
        "shop.orders was touched"
    );
    assert_eq!(count(&e.c, "keep", "me").await, 1);
    assert_eq!(
        count(&e.c, "misc", "types").await,
        0,
        "misc.types was switched in"
    );
    no_temporaries(&e.c).await;
    let m = restore_meta(&e.c).await;
    assert_eq!(m.get_str("status").ok(), Some("error"));

    // A missing object is found before anything is written.
    std::fs::remove_file(dir.join("misc.blobs.s2")).expect("rm");
    let r = rbm(&e.server.uri(), &["restore", B1, "--wait", "--yes"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "backup object {B1}/secantus/misc.blobs.s2 is missing"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(count(&e.c, "shop", "orders").await, 2);
    no_temporaries(&e.c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn selective_ns_restores_only_those_and_leaves_the_rest() {
    let e = setup().await;
    seed(&e.c).await;
    let r = rbm(
        &e.server.uri(),
        &["restore", B1, "--ns", "shop.*", "--wait", "--yes"],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let hashes = rbm_e2e::state_hashes(&e.c).await;
    for ns in ["shop.orders", "shop.customers", "shop.products"] {
        let want = expected_coll(ns);
        let got = hashes.get(ns).expect(ns);
        assert_eq!(got.0, want["count"].as_u64().expect("count"), "{ns}");
        assert_eq!(got.1, want["sha256"].as_str().expect("sha"), "{ns}");
    }
    assert!(
        !hashes.contains_key("misc.types"),
        "misc restored: {hashes:?}"
    );
    assert_eq!(count(&e.c, "keep", "me").await, 1, "keep.me touched");
    // The view of the selected database comes back too.
    let views =
        e.c.database("shop")
            .list_collection_names()
            .filter(doc! {"type": "view"})
            .await
            .expect("views");
    assert_eq!(views, vec!["big_orders".to_string()]);
    no_temporaries(&e.c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ns_from_to_clones_one_collection() {
    let e = setup().await;
    seed(&e.c).await;
    let r = rbm(
        &e.server.uri(),
        &[
            "restore",
            B1,
            "--ns-from",
            "misc.types",
            "--ns-to",
            "misc.types_copy",
            "--wait",
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let hashes = rbm_e2e::state_hashes(&e.c).await;
    let want = expected_coll("misc.types");
    let got = hashes.get("misc.types_copy").expect("clone");
    assert_eq!(got.1, want["sha256"].as_str().expect("sha"));
    assert!(!hashes.contains_key("misc.types"));
    assert_eq!(count(&e.c, "shop", "orders").await, 2);
    // Its indexes come along under the new name.
    let idx =
        e.c.database("misc")
            .collection::<Document>("types_copy")
            .list_index_names()
            .await
            .expect("indexes");
    assert!(idx.contains(&"uuid_1".to_string()), "{idx:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_one_clear_error() {
    let e = setup().await;
    let r = rbm(
        &e.server.uri(),
        &["restore", "2020-01-01T00:00:00Z", "--wait", "--yes"],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let r = rbm(
        &e.server.uri(),
        &["restore", B1, "--ns", "shop", "--wait", "--yes"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("invalid --ns"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // A pattern that selects nothing in the backup fails in the agent, before writing.
    let r = rbm(
        &e.server.uri(),
        &["restore", B1, "--ns", "nosuch.*", "--wait", "--yes"],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("matches nothing"), "{}", r.stderr);
}
