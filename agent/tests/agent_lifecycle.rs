//! An agent registers, beats with advancing cluster time, creates the control
//! collections, and on SIGTERM exits 0 having removed its status.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_beats_sets_up_and_exits_cleanly() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let mut a = Agent::start(&server, "n1:27017", "secondary", &[]);

    let first = wait_for(
        Duration::from_secs(30),
        "the agent's pbmAgents doc",
        || async {
            find_all(&c, "pbmAgents", doc! {"n": "n1:27017"})
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(first.get_str("rs").expect("rs"), server.replset());
    assert_eq!(first.get_str("str").expect("str"), "SECONDARY");
    assert!(first
        .get_document("pbms")
        .expect("pbms")
        .get_bool("ok")
        .expect("ok"));
    assert!(first
        .get_document("nodes")
        .expect("nodes")
        .get_bool("ok")
        .expect("ok"));
    // No config yet: the storage check says so instead of pretending.
    assert!(!first
        .get_document("stors")
        .expect("stors")
        .get_bool("ok")
        .expect("ok"));
    let hb1 = first.get_timestamp("hb").expect("hb");

    let hb2 = wait_for(Duration::from_secs(20), "a later heartbeat", || async {
        let d = find_all(&c, "pbmAgents", doc! {"n": "n1:27017"})
            .await
            .into_iter()
            .next()?;
        let hb = d.get_timestamp("hb").ok()?;
        (hb.time > hb1.time).then_some(hb)
    })
    .await;
    assert!(hb2 > hb1);

    // Control collections and PBM's indexes.
    let colls: Vec<Document> = {
        use futures::TryStreamExt;
        c.database("admin")
            .list_collections()
            .await
            .expect("listCollections")
            .try_collect::<Vec<_>>()
            .await
            .expect("cursor")
            .into_iter()
            .map(|s| mongodb::bson::serialize_to_document(&s).expect("spec"))
            .collect()
    };
    for spec in rbm_protocol::defs::COLLECTION_SPECS {
        let found = colls
            .iter()
            .find(|d| d.get_str("name").ok() == Some(spec.name))
            .unwrap_or_else(|| panic!("admin.{} missing", spec.name));
        let capped = found
            .get_document("options")
            .ok()
            .and_then(|o| o.get_bool("capped").ok())
            .unwrap_or(false);
        assert_eq!(
            capped,
            spec.capped_size.is_some(),
            "capped flag of {}",
            spec.name
        );
        let names: Vec<String> = c
            .database("admin")
            .collection::<Document>(spec.name)
            .list_index_names()
            .await
            .expect("indexes");
        for idx in spec.indexes {
            let want = idx.create_document();
            let want = want.get_str("name").expect("index name");
            assert!(
                names.iter().any(|n| n == want),
                "index {want} on {}: {names:?}",
                spec.name
            );
        }
    }

    a.signal("-TERM");
    let st = a.wait(Duration::from_secs(30));
    assert!(st.success(), "exit status {st}; log:\n{}", a.log());
    assert!(
        find_all(&c, "pbmAgents", doc! {"n": "n1:27017"})
            .await
            .is_empty(),
        "status doc left behind"
    );
    let log = a.log();
    assert!(log.contains("got SIGTERM"), "log:\n{log}");
}

/// The first node of `rbm status -o json -s cluster`.
fn status_node(server: &MongoServer) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
        .args(["status", "-s", "cluster", "-o", "json", "--mongodb-uri"])
        .arg(server.uri())
        .env_remove("PBM_MONGODB_URI")
        .output()
        .expect("run rbm status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v["cluster"][0]["nodes"][0].clone()
}

/// A killed agent leaves its last heartbeat behind: `rbm status` calls it lost once
/// that heartbeat is stale on cluster time (30 s), and not found once readers drop it
/// (35 s), as PBM does; the local clock plays no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_killed_agent_as_lost() {
    let server = MongoServer::start().await;
    // The member's own name, so that status matches the agent to the member.
    let host = format!("127.0.0.1:{}", server.port());
    let mut a = Agent::start(&server, &host, "primary", &[]);
    wait_for(Duration::from_secs(30), "the agent in status", || async {
        let n = status_node(&server);
        (n["agent"].as_str().is_some_and(|s| !s.is_empty())).then_some(())
    })
    .await;
    a.kill9();
    let lost = wait_for(
        Duration::from_secs(60),
        "status to call the agent lost",
        || async {
            let n = status_node(&server);
            let errors = n["errors"].to_string();
            errors.contains("lost").then_some(n)
        },
    )
    .await;
    assert_eq!(lost["ok"], false, "{lost}");
    assert!(
        lost["errors"].to_string().contains("last heartbeat"),
        "{lost}"
    );
    let gone = wait_for(
        Duration::from_secs(30),
        "the agent dropped from status",
        || async {
            let n = status_node(&server);
            (n["agent"] == "").then_some(n)
        },
    )
    .await;
    assert_eq!(gone["ok"], false, "{gone}");
}
