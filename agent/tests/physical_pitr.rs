//! `restore --time` on top of a cold physical backup, end to end on a real SecantusDB
//! that the agent stops and starts, a real `rbm-agent`, the `rbm` CLI and filesystem
//! storage: writes at known seconds after the backup, PITR chunks cut from the server's
//! oplog with a gap (as the slicer writes them), restores to seconds between the writes
//! reach exactly those states, and a target in the gap is refused by the CLI and by the
//! agent before the node is stopped.

mod agent_common;
#[allow(dead_code)]
mod pitr_common;

use agent_common::*;
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use pitr_common::*;
use std::time::Duration;

async fn registered(c: &Client) {
    wait_for(Duration::from_secs(40), "agent with storage ok", || async {
        let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
        (!docs.is_empty()).then_some(())
    })
    .await;
}

async fn restore_doc(c: &Client, name: &str) -> Document {
    find_all(c, "pbmRestores", doc! {"name": name})
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("restore meta {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_restore_on_a_cold_physical_base_reaches_the_targets_and_refuses_a_gap_untouched() {
    let server = MongoServer::start_restartable().await;
    let store = tempfile::tempdir().expect("storage dir");
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path())).await;
    // Every stop of the node leaves a line: a refused restore must leave none.
    let stops = store.path().join("stops.log");
    let stop = format!("echo stop >> '{}'; {}", stops.display(), server.stop_cmd());
    let start = server.start_cmd();
    let agent = Agent::start_on_node(&server, &start, &stop, &[]);
    registered(&c).await;
    let coll = c.database("e2e").collection::<Document>("c");
    coll.insert_many((0..50).map(|i| doc! {"_id": i, "v": i, "tags": ["x"]}))
        .await
        .expect("seed");
    let (ok, out, err) = rbm(&server, &["backup", "--type", "physical", "--wait"]);
    assert!(ok, "backup: {out}\n{err}\nagent:\n{}", agent.log());
    let base_name = quoted_after(&format!("{out}{err}"), "Starting backup \"");
    let stops_of = || {
        std::fs::read_to_string(&stops)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(stops_of(), 1, "the cold backup stops the node once");
    // The node was restarted under the old client.
    let c = client(&server).await;
    let direct = Client::with_uri_str(server.direct_uri())
        .await
        .expect("direct");
    let base = find_all(&c, "pbmBackups", doc! {"name": &base_name})
        .await
        .into_iter()
        .next()
        .expect("backup meta");
    assert_eq!(base.get_str("type").ok(), Some("physical"));
    let lw = base.get_timestamp("last_write_ts").expect("last_write_ts");
    let coll = c.database("e2e").collection::<Document>("c");

    // Phase A within one second, B at least two seconds later, then a gap.
    next_second().await;
    coll.insert_one(doc! {"_id": 100, "v": "a"})
        .await
        .expect("a1");
    coll.update_many(
        doc! {"_id": {"$lt": 10}},
        doc! {"$inc": {"v": 1000}, "$push": {"tags": "a"}},
    )
    .await
    .expect("a2");
    coll.delete_one(doc! {"_id": 49}).await.expect("a3");
    c.database("e2e")
        .collection::<Document>("new")
        .insert_one(doc! {"_id": 1, "created": "after the backup"})
        .await
        .expect("a4");
    let ta = last_oplog_ts(&c).await;
    let state_a = e2e_state(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    next_second().await;
    coll.replace_one(doc! {"_id": 21}, doc! {"v": "replaced"})
        .await
        .expect("b1");
    coll.delete_many(doc! {"_id": {"$gte": 30, "$lt": 40}})
        .await
        .expect("b2");
    let tb = last_oplog_ts(&c).await;
    let state_b = e2e_state(&c).await;
    assert!(tb.time >= ta.time + 2, "phases too close: {ta:?} {tb:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m1 = marker(&c, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    next_second().await;
    coll.insert_one(doc! {"_id": 300, "v": "c"})
        .await
        .expect("c1");
    let c_first = last_oplog_ts(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m2 = marker(&c, 2).await;
    let rs = server.replset().to_string();
    let chunk1 = cut_chunk(&direct, &c, store.path(), &rs, lw, m1).await;
    cut_chunk(&direct, &c, store.path(), &rs, c_first, m2).await;
    assert!(c_first.time > m1.time + 1, "no whole second in the gap");
    let current = rbm_e2e::state_hashes(&c).await;

    // The CLI picks the physical backup as the base and refuses a target in the gap.
    let gap = fmt(m1.time + 1);
    let (ok, out, err) = rbm(&server, &["restore", &format!("--time={gap}"), "--yes"]);
    assert!(!ok, "restore into the gap succeeded: {out}");
    assert!(err.contains("not restorable"), "{err}");
    // The agent checks before it stops anything: a command sent without the CLI.
    let refused = "2099-01-01T00:00:00.000000001Z";
    let failed = agent_refuses_pitr_restore(
        &c,
        refused,
        &base_name,
        Timestamp {
            time: m1.time + 1,
            increment: 0,
        },
    )
    .await;
    let msg = failed.get_str("error").unwrap_or_default();
    assert!(
        msg.contains("not restorable") || msg.contains("gap"),
        "{msg}"
    );
    assert_eq!(failed.get_str("type").ok(), Some("physical"), "{failed:?}");
    assert_eq!(stops_of(), 1, "a refused restore stopped the node");
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        current,
        "a refused restore changed data"
    );
    assert!(
        !store.path().join(".pbm.restore").join(refused).exists(),
        "a refused restore reported node progress"
    );

    // To the second after A: exactly A's state, from the physical base.
    let (ok, out, err) = rbm(
        &server,
        &[
            "restore",
            &format!("--time={}", fmt(ta.time + 1)),
            "--wait",
            "--yes",
        ],
    );
    assert!(ok, "restore to A: {out}\n{err}\nagent:\n{}", agent.log());
    let rname = quoted_after(&format!("{out}{err}"), "Starting restore ");
    assert_eq!(stops_of(), 2);
    let c = client(&server).await;
    assert_eq!(
        e2e_state(&c).await,
        state_a,
        "state at {}",
        fmt(ta.time + 1)
    );
    let m = restore_doc(&c, &rname).await;
    assert_eq!(m.get_str("status").ok(), Some("done"), "{m:?}");
    assert_eq!(m.get_str("backup").ok(), Some(base_name.as_str()));
    assert_eq!(m.get_str("type").ok(), Some("physical"));
    assert!(!server.data_dir().join(".fallbacksync").exists());
    assert!(store
        .path()
        .join(format!(".pbm.restore/{rname}/cluster.done"))
        .exists());

    // The restore emptied the chunk index as PBM's does (a resync brings it back);
    // the chunk is indexed again and a restore straight to B names the base.
    insert_chunk(&c, &chunk1).await;
    let (ok, out, err) = rbm(
        &server,
        &[
            "restore",
            &format!("--time={}", fmt(tb.time + 1)),
            "--base-snapshot",
            &base_name,
            "--wait",
            "--yes",
        ],
    );
    assert!(ok, "restore to B: {out}\n{err}\nagent:\n{}", agent.log());
    let c = client(&server).await;
    assert_eq!(
        e2e_state(&c).await,
        state_b,
        "state at {}",
        fmt(tb.time + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_fails_to_replay_puts_the_old_data_back() {
    // The pre-check sees the chunk object; its content is garbage, so the replay after
    // the node came up on the backup's files fails: the old data must come back.
    let server = MongoServer::start_restartable().await;
    let store = tempfile::tempdir().expect("storage dir");
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path())).await;
    let (start, stop) = (server.start_cmd(), server.stop_cmd());
    let agent = Agent::start_on_node(&server, &start, &stop, &[]);
    registered(&c).await;
    let coll = c.database("e2e").collection::<Document>("c");
    coll.insert_many((0..20).map(|i| doc! {"_id": i}))
        .await
        .expect("seed");
    let (ok, out, err) = rbm(&server, &["backup", "--type", "physical", "--wait"]);
    assert!(ok, "backup: {out}\n{err}\nagent:\n{}", agent.log());
    let base_name = quoted_after(&format!("{out}{err}"), "Starting backup \"");
    let c = client(&server).await;
    let direct = Client::with_uri_str(server.direct_uri())
        .await
        .expect("direct");
    let base = find_all(&c, "pbmBackups", doc! {"name": &base_name})
        .await
        .into_iter()
        .next()
        .expect("backup meta");
    let lw = base.get_timestamp("last_write_ts").expect("last_write_ts");
    next_second().await;
    c.database("e2e")
        .collection::<Document>("c")
        .insert_one(doc! {"_id": 100})
        .await
        .expect("write");
    let t = last_oplog_ts(&c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = marker(&c, 1).await;
    let rs = server.replset().to_string();
    let chunk = cut_chunk(&direct, &c, store.path(), &rs, lw, m).await;
    std::fs::write(
        store.path().join(&chunk.file_name),
        b"not an s2 stream at all",
    )
    .expect("garble the chunk");
    let current = rbm_e2e::state_hashes(&c).await;

    let (ok, out, err) = rbm(
        &server,
        &[
            "restore",
            &format!("--time={}", fmt(t.time + 1)),
            "--wait",
            "--yes",
        ],
    );
    assert!(!ok, "restore with a garbled chunk succeeded: {out}");
    assert!(
        err.contains("replay the PITR chunks") && err.contains("old data was put back"),
        "{err}\nagent:\n{}",
        agent.log()
    );
    let c = client(&server).await;
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        current,
        "old data not back"
    );
    assert!(!server.data_dir().join(".fallbacksync").exists());
}
