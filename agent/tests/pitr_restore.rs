//! Point-in-time restore and oplog replay through `rbm` and a real `rbm-agent`:
//! - the pbm-2.15 fixture restored to T1 and T2 (`restore --time`), its PITR ranges as
//!   the real PBM listed them;
//! - the pbm-legacy PITR chunks (real MongoDB 5.0 oplog) replayed by `oplog-replay`;
//! - an end-to-end run on the test server: backup, writes at known seconds, chunks with
//!   a gap; restores to seconds between writes reach exactly those states, and targets in
//!   the gap or outside every range fail with one error and the data untouched.

mod agent_common;
#[allow(dead_code)]
mod pitr_common;
#[allow(dead_code)]
mod restore_common;

use agent_common::{client, next_second, wait_for, Agent, MongoServer};
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use pitr_common::*;
use rbm_agent::pitr::timeline::chunk_from_path;
use rbm_protocol::meta::PitrChunk;
use restore_common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Checks that the resync `rbm config` started indexed every chunk object under
/// `<storage>/pbmPitr` in `admin.pbmPITRChunks` as PBM's resync does
/// (`MakeChunkMetaFromFilepath`, size from the object); returns how many it checked.
async fn index_chunks_on_storage(c: &Client, storage: &Path, only_rs: Option<&str>) -> usize {
    wait_unlocked(c).await;
    let root = storage.join("pbmPitr");
    let mut n = 0;
    for rs in std::fs::read_dir(&root).expect("pbmPitr") {
        let rs = rs.expect("entry").path();
        let rs_name = rs
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if only_rs.is_some_and(|o| o != rs_name) {
            continue;
        }
        for day in std::fs::read_dir(&rs).expect("rs dir") {
            let day = day.expect("entry").path();
            for f in std::fs::read_dir(&day).expect("day dir") {
                let f = f.expect("entry").path();
                let rel = f.strip_prefix(storage).expect("under storage");
                let size = std::fs::metadata(&f).expect("stat").len() as i64;
                let chunk = chunk_from_path(&rel.to_string_lossy(), size).expect("a chunk name");
                assert_chunk_indexed(c, &chunk).await;
                n += 1;
            }
        }
    }
    n
}

async fn assert_chunk_indexed(c: &Client, chunk: &PitrChunk) {
    let found = c
        .database("admin")
        .collection::<PitrChunk>("pbmPITRChunks")
        .find_one(doc! {"rs": &chunk.rs, "start_ts": chunk.start_ts, "end_ts": chunk.end_ts})
        .await
        .expect("read pbmPITRChunks")
        .unwrap_or_else(|| panic!("the resync did not index {}", chunk.file_name));
    assert_eq!(
        (&found.file_name, &found.compression, found.size),
        (&chunk.file_name, &chunk.compression, chunk.size),
        "chunk {} indexed differently",
        chunk.file_name
    );
}

/// Until the resync that `rbm config` started has released its lock.
async fn wait_unlocked(c: &Client) {
    wait_for(
        Duration::from_secs(60),
        "the resync done, no lock held",
        || {
            let c = c.clone();
            async move {
                let admin = c.database("admin");
                let done = admin
                    .collection::<Document>("pbmLog")
                    .count_documents(doc! {"msg": {"$regex": "^resync done"}})
                    .await
                    .ok()?;
                let locks = admin
                    .collection::<Document>("pbmLock")
                    .count_documents(doc! {})
                    .await
                    .ok()?;
                (done > 0 && locks == 0).then_some(())
            }
        },
    )
    .await;
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("json output ({e}): {} {}", r.stdout, r.stderr))
}

/// `restore --time` of the pbm-2.15 fixture on a fresh server through the agent.
async fn fixture_restore_to(time_key: &str, state_key: &str) -> (Value, Value, Document) {
    let fx = fixture("pbm-2.15");
    let expected = expected_json(&fx);
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let storage = copy_storage(&fx);
    configure(&server, storage.path()).await;
    let c = client(&server).await;
    wait_backup_listed(&c, "2026-11-26T11:41:08Z").await;
    assert_eq!(index_chunks_on_storage(&c, storage.path(), None).await, 1);

    // The ranges as the real PBM listed them (`pbm list -o json`, `pbm status -o json`).
    let l = json(&rbm(&server.uri(), &["list", "-o", "json"]));
    assert_eq!(
        l["pitr"]["ranges"],
        expected["pbm_cli"]["list"]["pitr"]["ranges"]
    );
    let s = json(&rbm(&server.uri(), &["status", "-o", "json"]));
    assert_eq!(
        s["backups"]["pitrChunks"]["pitrChunks"],
        expected["pbm_cli"]["status"]["backups"]["pitrChunks"]["pitrChunks"]
    );

    let t = expected["pitr"][time_key]
        .as_str()
        .expect("time")
        .to_string();
    let t = t.trim_end_matches('Z');
    let r = rbm(
        &server.uri(),
        &["restore", &format!("--time={t}"), "--wait", "--yes"],
    );
    assert_eq!(r.code, 0, "restore --time={t}: {} {}", r.stdout, r.stderr);
    let m = restore_meta(&c).await;
    assert_eq!(m.get_str("status").ok(), Some("done"), "{m:?}");
    assert_eq!(m.get_str("backup").ok(), Some("2026-11-26T11:41:08Z"));
    let unix = expected["pitr"][&format!("{time_key}_unix")]
        .as_i64()
        .expect("unix");
    assert_eq!(m.get_i64("pitr").ok(), Some(unix), "{m:?}");
    (expected[state_key].clone(), state(&c).await, m)
}

#[tokio::test(flavor = "multi_thread")]
async fn pbm215_restore_to_t1_reaches_the_recorded_state_exactly() {
    let (_, got, _) = fixture_restore_to("T1", "pitr").await;
    let expected = expected_json(&fixture("pbm-2.15"));
    let diffs = compare_state(&expected["pitr"]["state_T1"], &got);
    assert!(
        diffs.is_empty(),
        "state at T1 differs:\n{}",
        diffs.join("\n")
    );
}

/// At T2 one `shop.customers` document's new fields are logged in another order than
/// the server stored them (fixture README, finding 3): every replay, the real PBM's
/// included, yields the hash recorded under `verification_by_real_pbm`.
#[tokio::test(flavor = "multi_thread")]
async fn pbm215_restore_to_t2_reaches_what_pbms_own_replay_reached() {
    let (_, got, _) = fixture_restore_to("T2", "pitr").await;
    let expected = expected_json(&fixture("pbm-2.15"));
    let mut want = expected["pitr"]["state_T2"].clone();
    let pbm = &expected["verification_by_real_pbm"]["pitr restore --time=2026-11-26T11:41:37"]
        ["restored_collection_hashes_where_data_differs"]["shop.customers"];
    assert!(pbm.is_object(), "fixture records PBM's T2 hash: {pbm}");
    want["collections"]["shop.customers"]["sha256"] = pbm["sha256"].clone();
    want["collections"]["shop.customers"]["count"] = pbm["count"].clone();
    let diffs = compare_state(&want, &got);
    assert!(
        diffs.is_empty(),
        "state at T2 differs:\n{}",
        diffs.join("\n")
    );
}

/// The rs1 PITR chunks of the PBM 1.6 fixture (real MongoDB 5.0 oplog: `$v:2` diffs,
/// prepared `applyOps` transactions with `ui`, `drop`s, S2 data in `.snappy` files)
/// replayed by `rbm oplog-replay` on a server named rs1.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_chunks_replay_through_oplog_replay() {
    let server = MongoServer::start_named("rs1").await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(format!("{}/pbm_disttxn_50/pbmPitr", fixture("pbm-legacy")))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(st.success());
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(dir.path())
        .status();
    configure(&server, dir.path()).await;
    let c = client(&server).await;
    wait_unlocked(&c).await;
    assert_eq!(
        index_chunks_on_storage(&c, dir.path(), Some("rs1")).await,
        2
    );
    // PBM's chain rule: the window must start inside a chunk; the first chunk starts at
    // {1644242765, 18}, so a start at 14:06:05 ({…765, 0}) is refused.
    let r = rbm(
        &server.uri(),
        &[
            "oplog-replay",
            "--start=2022-02-07T14:06:05",
            "--end=2022-02-07T14:17:23",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("gap"), "{}", r.stderr);
    let r = rbm(
        &server.uri(),
        &[
            "oplog-replay",
            "--start=2022-02-07T14:06:06",
            "--end=2022-02-07T14:17:23",
            "--wait",
        ],
    );
    assert_eq!(r.code, 0, "oplog-replay: {} {}", r.stdout, r.stderr);
    let m = restore_meta(&c).await;
    assert_eq!(m.get_str("status").ok(), Some("done"), "{m:?}");
    assert_eq!(m.get_str("backup").ok(), Some(""));
    assert_eq!(m.get_i64("start_pitr").ok(), Some(1_644_242_766));
    assert_eq!(m.get_i64("pitr").ok(), Some(1_644_243_443));
    // The committed distributed transactions of rs1 inserted into trx.test.
    let n = c
        .database("trx")
        .collection::<Document>("test")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert!(n > 0, "trx.test is empty after the replay");
    let l = rbm(&server.uri(), &["list", "--restore"]);
    assert!(
        l.stdout
            .contains("Oplog Replay: 2022-02-07T14:06:06 - 2022-02-07T14:17:23"),
        "{}",
        l.stdout
    );
}

// ---------------------------------------------------------------------------------
// End to end on the test server.

#[tokio::test(flavor = "multi_thread")]
async fn restore_to_seconds_between_writes_and_refusals_leave_data_untouched() {
    let server = MongoServer::start().await;
    let _agent = Agent::start(&server, "127.0.0.1:27017", "primary", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("st");
    std::fs::create_dir_all(&storage).expect("mkdir");
    configure(&server, &storage).await;
    let c = client(&server).await;
    wait_unlocked(&c).await;
    let direct = Client::with_uri_str(server.direct_uri())
        .await
        .expect("direct");
    let coll = c.database("e2e").collection::<Document>("c");
    coll.insert_many((0..50).map(|i| doc! {"_id": i, "v": i, "tags": ["x"]}))
        .await
        .expect("seed");
    let r = rbm(&server.uri(), &["backup", "--wait"]);
    assert_eq!(r.code, 0, "backup: {} {}", r.stdout, r.stderr);
    let base: Document = c
        .database("admin")
        .collection::<Document>("pbmBackups")
        .find_one(doc! {"status": "done"})
        .await
        .expect("read backups")
        .expect("backup meta");
    let lw = base.get_timestamp("last_write_ts").expect("last_write_ts");
    let base_name = base.get_str("name").expect("name").to_string();

    // Phase A in one second, then B at least two seconds later.
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
    let ta = last_oplog_ts(&c).await;
    let state_a = e2e_state(&c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    next_second().await;
    let mut s = c.start_session().await.expect("session");
    s.start_transaction().await.expect("txn");
    coll.insert_one(doc! {"_id": 200, "v": "b-txn"})
        .session(&mut s)
        .await
        .expect("b1");
    coll.update_one(doc! {"_id": 20}, doc! {"$set": {"v": "b-txn"}})
        .session(&mut s)
        .await
        .expect("b2");
    s.commit_transaction().await.expect("commit");
    coll.replace_one(doc! {"_id": 21}, doc! {"v": "replaced"})
        .await
        .expect("b3");
    let tb = last_oplog_ts(&c).await;
    let state_b = e2e_state(&c).await;
    assert!(tb.time >= ta.time + 2, "phases too close: {ta:?} {tb:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m1 = marker(&c, 1).await;
    // The gap: C's writes are in no chunk's window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    next_second().await;
    coll.insert_one(doc! {"_id": 300, "v": "c"})
        .await
        .expect("c1");
    let c_first = last_oplog_ts(&c).await;
    coll.delete_many(doc! {"_id": {"$gte": 40}})
        .await
        .expect("c2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m2 = marker(&c, 2).await;
    let rs = server.replset().to_string();
    cut_chunk(&direct, &c, &storage, &rs, lw, m1).await;
    cut_chunk(&direct, &c, &storage, &rs, c_first, m2).await;
    assert!(c_first.time > m1.time + 1, "no whole second in the gap");

    // list and status show the two ranges, split at the gap.
    let l = json(&rbm(&server.uri(), &["list", "-o", "json", "--unbacked"]));
    let ranges: Vec<(i64, i64)> = l["pitr"]["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|r| {
            (
                r["range"]["start"].as_i64().expect("start"),
                r["range"]["end"].as_i64().expect("end"),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        vec![
            (i64::from(lw.time) + 1, i64::from(m1.time)),
            (i64::from(c_first.time), i64::from(m2.time))
        ],
        "{l}"
    );
    let st = rbm(&server.uri(), &["status"]);
    assert!(st.stdout.contains("PITR chunks ["), "{}", st.stdout);
    assert!(
        st.stdout.contains(&format!(
            "  {} - {} (no base snapshot)\n",
            fmt(c_first.time),
            fmt(m2.time)
        )),
        "{}",
        st.stdout
    );

    // Refusals: in the gap, after every range, before the base. Nothing is touched.
    let before = rbm_e2e::state_hashes(&c).await;
    let restores_before = c
        .database("admin")
        .collection::<Document>("pbmRestores")
        .count_documents(doc! {})
        .await
        .expect("count");
    for (t, want) in [
        (m1.time + 1, "not restorable"),
        (m2.time + 5, "not restorable"),
        (lw.time.saturating_sub(100), "no base snapshot"),
    ] {
        let r = rbm(
            &server.uri(),
            &["restore", &format!("--time={}", fmt(t)), "--yes"],
        );
        assert_ne!(r.code, 0, "restore to {} must fail: {}", fmt(t), r.stdout);
        assert!(r.stderr.contains(want), "{}: {}", fmt(t), r.stderr);
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "one error line: {}",
            r.stderr
        );
    }
    let r = rbm(
        &server.uri(),
        &[
            "oplog-replay",
            &format!("--start={}", fmt(ta.time)),
            &format!("--end={}", fmt(c_first.time + 1)),
            "--wait",
        ],
    );
    assert_ne!(r.code, 0, "replay across the gap must fail: {}", r.stdout);
    assert!(r.stderr.contains("gap"), "{}", r.stderr);
    // The agent checks too: a command sent without the CLI's check.
    let failed = agent_refuses_pitr_restore(
        &c,
        "2099-01-01T00:00:00.000000001Z",
        "",
        Timestamp {
            time: m1.time + 1,
            increment: 0,
        },
    )
    .await;
    let err = failed.get_str("error").expect("error");
    assert!(
        err.contains("gap") || err.contains("not restorable"),
        "{err}"
    );
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        before,
        "a refused restore changed data"
    );
    let restores_after = c
        .database("admin")
        .collection::<Document>("pbmRestores")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(restores_after, restores_before + 1);

    // To the second after A: exactly A's state.
    let r = rbm(
        &server.uri(),
        &[
            "restore",
            &format!("--time={}", fmt(ta.time + 1)),
            "--wait",
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "restore: {} {}", r.stdout, r.stderr);
    assert_eq!(
        e2e_state(&c).await,
        state_a,
        "state at {}",
        fmt(ta.time + 1)
    );
    let m = restore_meta(&c).await;
    assert_eq!(m.get_str("backup").ok(), Some(base_name.as_str()));
    assert_eq!(m.get_i64("pitr").ok(), Some(i64::from(ta.time + 1)));

    // oplog-replay from there to the second after B: exactly B's state.
    let r = rbm(
        &server.uri(),
        &[
            "oplog-replay",
            &format!("--start={}", fmt(ta.time + 1)),
            &format!("--end={}", fmt(tb.time + 1)),
            "--wait",
        ],
    );
    assert_eq!(r.code, 0, "oplog-replay: {} {}", r.stdout, r.stderr);
    assert_eq!(e2e_state(&c).await, state_b, "state after the replay");
    let m = restore_meta(&c).await;
    assert_eq!(m.get_str("status").ok(), Some("done"), "{m:?}");
    assert_eq!(m.get_i64("start_pitr").ok(), Some(i64::from(ta.time + 1)));

    // And a restore straight to B with the base named.
    let r = rbm(
        &server.uri(),
        &[
            "restore",
            &format!("--time={}", fmt(tb.time + 1)),
            "--base-snapshot",
            &base_name,
            "--wait",
            "--yes",
        ],
    );
    assert_eq!(r.code, 0, "restore: {} {}", r.stdout, r.stderr);
    assert_eq!(
        e2e_state(&c).await,
        state_b,
        "state at {}",
        fmt(tb.time + 1)
    );
}
