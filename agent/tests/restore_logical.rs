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
    let storage = copy_storage(&fixture("pbm-2.15"));
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
    expected_json(&fixture("pbm-2.15"))["backups"][0]["state"]["collections"][ns].clone()
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
    // Small batches and several workers per collection: many parallel inserts.
    let r = rbm(
        &e.server.uri(),
        &[
            "restore",
            B1,
            "--ns",
            "shop.*",
            "--batch-size",
            "7",
            "--num-insertion-workers",
            "3",
            "--with-users-and-roles",
            "--wait",
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    // Progress: the phases the agent reports show while waiting.
    assert!(
        r.stdout.contains("[dumpDone]") && r.stdout.contains("Restore successfully finished!"),
        "{}",
        r.stdout
    );
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
    // --with-users-and-roles: the selected database's users and roles only.
    let users_of = |db: &'static str| {
        let c = e.c.clone();
        async move {
            let d = c
                .database(db)
                .run_command(doc! {"usersInfo": 1})
                .await
                .expect("usersInfo");
            d.get_array("users")
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_document()?.get_str("user").ok().map(String::from))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert_eq!(users_of("shop").await, vec!["shop_app".to_string()]);
    assert!(!users_of("admin").await.contains(&"fx_ops".to_string()));
    let roles =
        e.c.database("shop")
            .run_command(doc! {"rolesInfo": "shop_reporter", "showPrivileges": true})
            .await
            .expect("rolesInfo");
    assert_eq!(
        roles.get_array("roles").map(|a| a.len()).unwrap_or(0),
        1,
        "{roles:?}"
    );
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
    // Cloning never overwrites: the same target again is refused (PBM's nsIsTaken).
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
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    assert_eq!(
        rbm_e2e::state_hashes(&e.c).await.get("misc.types_copy"),
        Some(got)
    );
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

/// An rbm-written backup (the backup engine) restores to the state it was taken at;
/// changes made afterwards to its collections are undone, and a collection created
/// afterwards (absent from the backup) is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn rbm_backup_round_trip() {
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let store = tempfile::tempdir().expect("store");
    configure(&server, store.path()).await;
    let c = agent_common::client(&server).await;
    let app = c.database("app");
    app.run_command(doc! {"create": "events", "capped": true, "size": 1_000_000_i64})
        .await
        .expect("create capped");
    app.run_command(doc! {"create": "items", "collation": {"locale": "fr", "strength": 2}})
        .await
        .expect("create items");
    let items: Vec<Document> = (0..1500)
        .map(|i| doc! {"_id": i, "name": format!("item {i}"), "n": i64::from(i) * 3, "tags": ["a", "b"]})
        .collect();
    app.collection::<Document>("items")
        .insert_many(items)
        .await
        .expect("items");
    app.run_command(doc! {"createIndexes": "items", "indexes": [
        {"key": {"name": 1}, "name": "name_1"},
        {"key": {"n": -1}, "name": "n_-1", "unique": true},
    ]})
    .await
    .expect("indexes");
    let events: Vec<Document> = (0..300).map(|i| doc! {"seq": i, "d": -0.0_f64}).collect();
    app.collection::<Document>("events")
        .insert_many(events)
        .await
        .expect("events");
    let before = rbm_e2e::state_hashes(&c).await;

    let r = rbm(&server.uri(), &["backup", "--wait"]);
    assert_eq!(r.code, 0, "backup: {} {}", r.stdout, r.stderr);
    let i = r.stdout.find("Starting backup \"").expect("backup name") + "Starting backup \"".len();
    let name = r.stdout[i..i + 20].to_string();
    let v = rbm(&server.uri(), &["verify", &name]);
    assert_eq!(
        v.code, 0,
        "verify of an rbm backup: {} {}",
        v.stdout, v.stderr
    );

    // Afterwards: changes to backed-up collections, and a new collection.
    app.collection::<Document>("items")
        .delete_many(doc! {"_id": {"$lt": 100}})
        .await
        .expect("delete");
    app.collection::<Document>("items")
        .update_many(doc! {}, doc! {"$set": {"changed": true}})
        .await
        .expect("update");
    app.collection::<Document>("later")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("later");

    let r = rbm(&server.uri(), &["restore", &name, "--wait", "--yes"]);
    assert_eq!(r.code, 0, "restore: {} {}", r.stdout, r.stderr);
    let after = rbm_e2e::state_hashes(&c).await;
    for (ns, h) in &before {
        assert_eq!(after.get(ns), Some(h), "{ns} differs after restore");
    }
    assert_eq!(count(&c, "app", "later").await, 1, "app.later was touched");
    let idx = app
        .collection::<Document>("items")
        .list_index_names()
        .await
        .expect("indexes");
    assert!(
        idx.contains(&"n_-1".to_string()) && idx.contains(&"name_1".to_string()),
        "{idx:?}"
    );
    let opts = app
        .run_command(doc! {"listCollections": 1, "filter": {"name": "events"}})
        .await
        .expect("listCollections");
    let capped = opts
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .ok()
        .and_then(|b| b.first())
        .and_then(|s| s.as_document())
        .and_then(|s| s.get_document("options").ok())
        .and_then(|o| o.get_bool("capped").ok());
    assert_eq!(capped, Some(true), "{opts:?}");
    no_temporaries(&c).await;
}
