//! Lifecycle commands and the scheduler end to end: real SecantusDB, real `rbm-agent`
//! processes, the real `rbm` CLI, filesystem storage. Each test reads back what is on
//! the storage and in the control collections.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use rbm_protocol::StorageConf;
use std::time::Duration;

async fn set_config(c: &Client, storage: &StorageConf, extra: Document) {
    let mut d = doc! {"storage": mongodb::bson::serialize_to_bson(storage).expect("storage conf")};
    d.extend(extra);
    let coll = c.database("admin").collection::<Document>("pbmConfig");
    coll.delete_many(doc! {"profile": {"$exists": false}})
        .await
        .expect("clear config");
    coll.insert_one(d).await.expect("insert config");
}

async fn registered(c: &Client, n: usize) {
    wait_for(
        Duration::from_secs(40),
        "agents with storage ok",
        || async {
            let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
            (docs.len() == n).then_some(())
        },
    )
    .await;
}

async fn dataset(c: &Client, docs: usize) {
    let d: Vec<Document> = (0..docs)
        .map(|j| doc! {"i": j as i64, "pad": "x".repeat(100)})
        .collect();
    c.database("alpha")
        .collection::<Document>("c0")
        .insert_many(d)
        .await
        .expect("insert");
}

/// `rbm backup --wait`; returns the backup name.
fn backup(server: &MongoServer, extra: &[&str]) -> String {
    let mut args = vec!["backup", "--wait"];
    args.extend_from_slice(extra);
    let (ok, out, err) = rbm(server, &args);
    assert!(ok, "backup: {out}\n{err}");
    let start = out
        .find("Starting backup '")
        .or_else(|| out.find("Starting backup \""));
    let start = start.expect("backup name in output") + "Starting backup '".len();
    out[start..start + 20].to_string()
}

async fn meta(c: &Client, name: &str) -> Option<Document> {
    find_all(c, "pbmBackups", doc! {"name": name})
        .await
        .into_iter()
        .next()
}

fn last_write(m: &Document) -> Timestamp {
    m.get_timestamp("last_write_ts").expect("last_write_ts")
}

async fn objects(conf: &StorageConf, prefix: &str) -> Vec<String> {
    let st = rbm_storage::from_config(conf, None).await.expect("storage");
    rbm_storage::list_all(st.as_ref(), prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// Puts a PITR chunk object and its `pbmPITRChunks` document (what the slicer writes).
async fn put_chunk(c: &Client, conf: &StorageConf, rs: &str, s: Timestamp, e: Timestamp) -> String {
    let name = rbm_protocol::names::pitr_chunk_path(rs, s, e, ".s2");
    let st = rbm_storage::from_config(conf, None).await.expect("storage");
    let body = b"not a real oplog: only names and sizes matter here".to_vec();
    let size = body.len() as u64;
    st.save(
        &name,
        Box::new(std::io::Cursor::new(body)),
        Some(size),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("save chunk");
    c.database("admin")
        .collection::<Document>("pbmPITRChunks")
        .insert_one(doc! {"rs": rs, "fname": &name, "compression": "s2", "start_ts": s, "end_ts": e, "size": size as i64})
        .await
        .expect("chunk doc");
    name
}

fn ts(t: u32) -> Timestamp {
    Timestamp {
        time: t,
        increment: 1,
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, as `--older-than` takes it.
fn rfc3339(t: u32) -> String {
    rbm_protocol::names::backup_name(i64::from(t))
        .trim_end_matches('Z')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_backup_keeps_the_pitr_base_and_refuses_a_running_backup() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "30")],
    );
    registered(&c, 1).await;
    let b1 = backup(&server, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b2 = backup(&server, &[]);
    let m1 = meta(&c, &b1).await.expect("b1");
    let m2 = meta(&c, &b2).await.expect("b2");
    // PITR on, with a timeline that starts at b2: b2 is the base it hangs from.
    set_config(&c, &conf, doc! {"pitr": {"enabled": true}}).await;
    let lw2 = last_write(&m2);
    let chunk = put_chunk(&c, &conf, server.replset(), lw2, ts(lw2.time + 600)).await;

    let (ok, out, err) = rbm(&server, &["delete-backup", &b2, "-y"]);
    assert!(!ok, "the PITR base must not be deleted: {out}");
    assert!(
        err.contains("cannot delete the last PITR base snapshot while PITR is enabled"),
        "{err}\n{}",
        agent.log()
    );
    assert!(meta(&c, &b2).await.is_some());
    // The agent checks again under its lock (a command sent without the CLI's check).
    let id = send_command(
        &c,
        "delete",
        Some(doc! {"backup": &b2, "olderthan": 0_i64, "type": "", "profile": ""}),
        0,
    )
    .await;
    let refusal = wait_for(Duration::from_secs(30), "the agent's refusal", || async {
        let e = find_all(&c, "pbmLog", doc! {"opid": id.to_hex(), "s": 1})
            .await
            .into_iter()
            .next()?;
        Some(e.get_str("msg").ok()?.to_string())
    })
    .await;
    assert!(
        refusal.contains("cannot delete the last PITR base snapshot while PITR is enabled"),
        "{refusal}"
    );
    assert!(meta(&c, &b2).await.is_some());
    assert!(!objects(&conf, &format!("{b2}/")).await.is_empty());

    // b1 is no base of anything any more: it goes, files first.
    let (ok, out, err) = rbm(&server, &["delete-backup", &b1, "-y"]);
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    // PBM's output: what goes, the wait, then the list.
    assert!(
        out.starts_with(&format!("Snapshots:\n - \"{b1}\" [size: ")),
        "{out}"
    );
    assert!(out.contains("type: <logical>, restore time: "), "{out}");
    assert!(
        out.contains("Waiting for delete to be done ") && out.contains("[done]\n"),
        "{out}"
    );
    assert!(
        out.contains("Backup snapshots:") && out.contains(&b2),
        "{out}"
    );
    assert!(meta(&c, &b1).await.is_none());
    assert!(objects(&conf, &format!("{b1}/")).await.is_empty());
    assert!(objects(&conf, &format!("{b1}.pbm.json")).await.is_empty());
    assert_eq!(objects(&conf, "pbmPitr/").await, vec![chunk]);
    let _ = last_write(&m1);

    // A running backup: the CLI refuses while its lock is held, and nothing is deleted.
    dataset(&c, 3000).await;
    let uri = server.uri();
    let waiting = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
            .args(["backup", "--wait"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("rbm backup")
    });
    let running = wait_for(Duration::from_secs(40), "a running backup", || async {
        let m = find_all(&c, "pbmBackups", doc! {"status": "running"})
            .await
            .into_iter()
            .next()?;
        Some(m.get_str("name").ok()?.to_string())
    })
    .await;
    let (ok, out, err) = rbm(&server, &["delete-backup", &running, "-y"]);
    assert!(!ok, "{out}");
    assert!(err.contains("another operation"), "{err}");
    let out = waiting.await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        meta(&c, &running)
            .await
            .expect("meta")
            .get_str("status")
            .ok(),
        Some("done")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pitr_and_cleanup_keep_what_a_restore_needs() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 200).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let _agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let b1 = backup(&server, &[]);
    let lw = last_write(&meta(&c, &b1).await.expect("b1"));
    let rs = server.replset().to_string();
    // Chunks before the backup, and a timeline from it on.
    let old = put_chunk(&c, &conf, &rs, ts(lw.time - 300), ts(lw.time - 200)).await;
    let c1 = put_chunk(&c, &conf, &rs, lw, ts(lw.time + 1)).await;
    let c2 = put_chunk(&c, &conf, &rs, ts(lw.time + 1), ts(lw.time + 2)).await;

    // Chunks starting before b1's snapshot end go; those after stay.
    let (ok, out, err) = rbm(
        &server,
        &["delete-pitr", "--older-than", &rfc3339(lw.time), "-y"],
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.starts_with(&format!("PITR chunks (by replset name):\n {rs}:\n - ")),
        "{out}"
    );
    let mut left = objects(&conf, "pbmPitr/").await;
    left.sort();
    let mut want = vec![c1.clone(), c2.clone()];
    want.sort();
    assert_eq!(left, want);
    assert!(!left.contains(&old));
    assert_eq!(find_all(&c, "pbmPITRChunks", doc! {}).await.len(), 2);

    // Cleanup up to a time inside the timeline: b1 + c1 are what a restore to it
    // needs, so everything stays. The CLI refuses a time after now, and a fast run
    // gets here within the last write's second.
    while now_secs() < f64::from(lw.time) + 1.0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, out, err) = rbm(
        &server,
        &["cleanup", "--older-than", &rfc3339(lw.time + 1), "-y"],
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.trim(), "nothing to delete");
    assert!(meta(&c, &b1).await.is_some());
    assert_eq!(objects(&conf, "pbmPitr/").await.len(), 2);

    // `delete-backup --older-than` the end of a newer backup: the older one goes, the
    // newer (a full base at that time) stays, and no chunk is touched.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b2 = backup(&server, &[]);
    let lw2 = last_write(&meta(&c, &b2).await.expect("b2"));
    let (ok, out, err) = rbm(
        &server,
        &[
            "delete-backup",
            "--older-than",
            &rfc3339(lw2.time),
            "--type",
            "logical",
            "-y",
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(meta(&c, &b1).await.is_none());
    assert!(objects(&conf, &format!("{b1}/")).await.is_empty());
    assert!(meta(&c, &b2).await.is_some());
    assert_eq!(objects(&conf, "pbmPitr/").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_resync_onto_a_fresh_cluster_lists_and_restores() {
    let a = MongoServer::start().await;
    let ca = client(&a).await;
    dataset(&ca, 500).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&ca, &conf, doc! {}).await;
    let agent_a = Agent::start(&a, "n1:27017", "primary", &[]);
    registered(&ca, 1).await;
    let name = backup(&a, &[]);
    let lw = last_write(&meta(&ca, &name).await.expect("meta"));
    let chunk = put_chunk(&ca, &conf, a.replset(), lw, ts(lw.time + 60)).await;
    drop(agent_a);

    // A new, empty cluster pointed at the same storage.
    let b = MongoServer::start_named(a.replset()).await;
    let cb = client(&b).await;
    set_config(&cb, &conf, doc! {}).await;
    let agent_b = Agent::start(&b, "n1:27017", "primary", &[]);
    registered(&cb, 1).await;
    let (ok, out, err) = rbm(&b, &["config", "--force-resync", "-w"]);
    assert!(ok, "{out}\n{err}\n{}", agent_b.log());
    let m = meta(&cb, &name)
        .await
        .expect("the backup is listed after resync");
    assert_eq!(m.get_str("status").ok(), Some("done"));
    let chunks = find_all(&cb, "pbmPITRChunks", doc! {}).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].get_str("fname").ok(), Some(chunk.as_str()));
    assert_eq!(chunks[0].get_timestamp("start_ts").ok(), Some(lw));
    let (ok, out, _) = rbm(&b, &["list"]);
    assert!(ok && out.contains(&name), "{out}");

    let (ok, out, err) = rbm(&b, &["restore", &name, "--wait", "--yes"]);
    assert!(ok, "{out}\n{err}\n{}", agent_b.log());
    let n = cb
        .database("alpha")
        .collection::<Document>("c0")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(n, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_round_trip_and_take_backups() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 100).await;
    let main = tempfile::tempdir().expect("main");
    let other = tempfile::tempdir().expect("other");
    set_config(&c, &rbm_e2e::fs_conf(main.path()), doc! {}).await;
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let file = main.path().join("profile.yaml");
    std::fs::write(
        &file,
        format!(
            "storage:\n  type: filesystem\n  filesystem:\n    path: {}\n",
            other.path().display()
        ),
    )
    .expect("yaml");
    let file = file.to_str().expect("path");

    let (ok, out, err) = rbm(&server, &["profile", "add", "main", file]);
    assert!(!ok && err.contains("should not be \"main\""), "{out}{err}");
    let (ok, out, err) = rbm(&server, &["profile", "add", "second", file, "-w"]);
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    assert_eq!(out.trim(), "OK");
    assert!(
        other.path().join(".pbm.init").exists(),
        "the agent initialised the storage"
    );
    let (ok, out, _) = rbm(&server, &["profile", "list"]);
    assert!(
        ok && out.contains("name: second") && out.contains(&other.path().display().to_string()),
        "{out}"
    );
    let (ok, out, _) = rbm(&server, &["-o", "json", "profile", "list"]);
    assert!(ok && out.starts_with("{\"profiles\":[{"), "{out}");
    let (ok, out, _) = rbm(&server, &["profile", "show", "second"]);
    assert!(ok && out.contains("profile: true"), "{out}");
    let (ok, _, err) = rbm(&server, &["profile", "show", "nope"]);
    assert!(
        !ok && err.contains("profile \"nope\" is not found"),
        "{err}"
    );

    let name = backup(&server, &["--profile", "second"]);
    assert!(other.path().join(format!("{name}.pbm.json")).exists());
    let m = meta(&c, &name).await.expect("meta");
    assert_eq!(
        m.get_document("store").expect("store").get_str("name").ok(),
        Some("second")
    );

    // Clearing the profile's list, then syncing it back from its storage.
    let (ok, out, err) = rbm(&server, &["profile", "sync", "second", "--clear", "-w"]);
    assert!(ok, "{out}{err}");
    assert!(meta(&c, &name).await.is_none());
    let (ok, out, err) = rbm(&server, &["profile", "sync", "second", "-w"]);
    assert!(ok, "{out}{err}");
    let m = meta(&c, &name).await.expect("synced back");
    assert_eq!(
        m.get_document("store")
            .expect("store")
            .get_bool("profile")
            .ok(),
        Some(true)
    );
    // A main-storage resync leaves the profile's backups alone.
    let (ok, out, err) = rbm(&server, &["config", "--force-resync", "-w"]);
    assert!(ok, "{out}{err}");
    assert!(meta(&c, &name).await.is_some());

    let (ok, out, err) = rbm(&server, &["profile", "remove", "second", "-w"]);
    assert!(ok, "{out}\n{err}");
    assert!(find_all(&c, "pbmConfig", doc! {"profile": true})
        .await
        .is_empty());
    assert!(
        meta(&c, &name).await.is_none(),
        "its backup list went with it"
    );
    assert!(
        other.path().join(format!("{name}.pbm.json")).exists(),
        "files stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_fires_once_per_slot_across_agents_and_prunes_to_keep() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 200).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    // Every 15 s (6-field cron with seconds), keep one.
    set_config(
        &c,
        &conf,
        doc! {"schedule": {"tasks": [{"name": "often", "schedule": "*/15 * * * * *", "keep": 1, "compressionType": "zstd"}]}},
    )
    .await;
    // Two agents: exactly one takes the lead and fires.
    let a1 = Agent::start(&server, "n1:27017", "primary", &[]);
    let a2 = Agent::start(&server, "n2:27017", "secondary", &[]);
    registered(&c, 2).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(100);
    let state = loop {
        let s = find_all(&c, "rbmSchedule", doc! {"_id": "task:often"})
            .await
            .into_iter()
            .next();
        if let Some(s) = s
            .as_ref()
            .filter(|s| s.get_str("last_result").is_ok_and(|r| r.contains("pruned")))
        {
            break s.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no prune: {s:?}\n{:?}\n{}\n{}",
            find_all(&c, "rbmSchedule", doc! {}).await,
            a1.log(),
            a2.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let cmds = find_all(&c, "pbmCmd", doc! {"cmd": "backup"}).await;
    let mut names: Vec<String> = cmds
        .iter()
        .map(|d| {
            d.get_document("backup")
                .expect("payload")
                .get_str("name")
                .expect("name")
                .to_string()
        })
        .collect();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "no slot fired twice: {names:?}");
    assert!(n >= 2, "{names:?}");
    for d in &cmds {
        assert_eq!(
            d.get_document("backup")
                .expect("payload")
                .get_str("compression")
                .ok(),
            Some("zstd")
        );
    }
    let done = find_all(&c, "pbmBackups", doc! {"status": "done"}).await;
    let kept: Vec<&str> = state
        .get_array("backups")
        .expect("backups")
        .iter()
        .filter_map(|b| b.as_str())
        .collect();
    assert_eq!(kept.len(), 1, "{state:?}");
    assert!(done.iter().any(|d| d.get_str("name").ok() == Some(kept[0])));
    // The pruned one is gone from the collection and the storage.
    let pruned = &names[0];
    assert!(
        meta(&c, pruned).await.is_none(),
        "{}\n{}",
        a1.log(),
        a2.log()
    );
    assert!(objects(&conf, &format!("{pruned}/")).await.is_empty());
    assert!(objects(&conf, &format!("{pruned}.pbm.json"))
        .await
        .is_empty());

    let (ok, out, err) = rbm(&server, &["status"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Schedule:\n=========\noften [ON] \"*/15 * * * * *\"\n  next run: "),
        "{out}"
    );
    assert!(out.contains("last run: "), "{out}");
    let (ok, out, _) = rbm(&server, &["-o", "json", "status"]);
    assert!(
        ok && out.contains("\"schedule\":[{\"name\":\"often\""),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cron_expression_is_refused_by_config_file() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("c.yaml");
    std::fs::write(
        &f,
        format!(
            "storage:\n  type: filesystem\n  filesystem:\n    path: {}\nschedule:\n  tasks:\n    - name: bad\n      schedule: \"61 * * * *\"\n",
            dir.path().display()
        ),
    )
    .expect("yaml");
    let (ok, out, err) = rbm(&server, &["config", "--file", f.to_str().expect("path")]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("invalid cron expression \"61 * * * *\""),
        "{err}"
    );
}

/// A slot that comes while another operation holds the lock is skipped and logged, not
/// run late; the next free slot runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_during_another_operation_is_skipped_not_queued() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 50).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(
        &c,
        &conf,
        doc! {"schedule": {"tasks": [{"name": "t", "schedule": "*/5 * * * * *"}]}},
    )
    .await;
    // Another operation's live lock (kept fresh below).
    let locks = c.database("admin").collection::<Document>("pbmLock");
    let hb = cluster_time(&c).await;
    locks
        .insert_one(doc! {"type": "restore", "replset": server.replset(), "node": "other:27017", "opid": "000000000000000000000001", "hb": hb})
        .await
        .expect("lock");
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let state = wait_for(Duration::from_secs(30), "a skipped slot", || async {
        let hb = cluster_time(&c).await;
        locks
            .update_many(doc! {}, doc! {"$set": {"hb": hb}})
            .await
            .expect("refresh lock");
        let s = find_all(&c, "rbmSchedule", doc! {"_id": "task:t"})
            .await
            .into_iter()
            .next()?;
        (s.get_str("last_status").ok() == Some("skipped")).then_some(s)
    })
    .await;
    assert!(
        state
            .get_str("last_result")
            .expect("result")
            .contains("another operation is running: restore"),
        "{state:?}"
    );
    assert!(find_all(&c, "pbmCmd", doc! {"cmd": "backup"})
        .await
        .is_empty());
    let logged = find_all(&c, "pbmLog", doc! {"e": "schedule", "s": 2}).await;
    assert!(!logged.is_empty(), "the skip is logged as a warning");

    // Free again: the next slot runs once.
    locks.delete_many(doc! {}).await.expect("unlock");
    let done = wait_for(Duration::from_secs(30), "a scheduled backup", || async {
        let s = find_all(&c, "rbmSchedule", doc! {"_id": "task:t"})
            .await
            .into_iter()
            .next()?;
        (s.get_str("last_status").ok() == Some("done")).then_some(s)
    })
    .await;
    let name = done.get_str("last_backup").expect("name");
    assert!(meta(&c, name).await.is_some(), "{}", agent.log());
}

/// The PITR chunk index rebuilt from a storage the real PBM 2.15 wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_resync_indexes_the_pitr_chunks_pbm_wrote() {
    let root = std::env::var("RBM_FIXTURES")
        .unwrap_or_else(|_| format!("{}/../../shared/fixtures", env!("CARGO_MANIFEST_DIR")));
    let src = format!("{root}/pbm-2.15/storage");
    let store = tempfile::tempdir().expect("store");
    let st = std::process::Command::new("cp")
        .args([
            "-r",
            &format!("{src}/."),
            &store.path().display().to_string(),
        ])
        .status()
        .expect("cp");
    assert!(st.success(), "copy {src}");
    let server = MongoServer::start_named("secantus").await;
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path()), doc! {}).await;
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let (ok, out, err) = rbm(&server, &["config", "--force-resync", "-w"]);
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    let chunks = find_all(&c, "pbmPITRChunks", doc! {}).await;
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    let ch = &chunks[0];
    let fname = "pbmPitr/secantus/20261126/20261126114113-4.20261126114220-9.oplog.s2";
    assert_eq!(ch.get_str("fname").ok(), Some(fname));
    assert_eq!(ch.get_str("rs").ok(), Some("secantus"));
    assert_eq!(ch.get_str("compression").ok(), Some("s2"));
    // 2026-11-26T11:41:13Z and 11:42:20Z.
    assert_eq!(
        ch.get_timestamp("start_ts").ok(),
        Some(Timestamp {
            time: 1_795_693_273,
            increment: 4
        })
    );
    assert_eq!(
        ch.get_timestamp("end_ts").ok(),
        Some(Timestamp {
            time: 1_795_693_340,
            increment: 9
        })
    );
    let size = std::fs::metadata(store.path().join(fname))
        .expect("chunk")
        .len();
    assert_eq!(ch.get_i64("size").ok(), Some(size as i64));
    assert_eq!(
        find_all(&c, "pbmBackups", doc! {"status": "done"})
            .await
            .len(),
        2
    );
}

/// After downtime, the slots missed while no agent ran collapse into one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_slots_after_downtime_run_once() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 50).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    let hourly = "0 0 * * * *";
    set_config(
        &c,
        &conf,
        doc! {"schedule": {"tasks": [{"name": "h", "schedule": hourly}]}},
    )
    .await;
    // The state a scheduler left five hours ago.
    let now = now_secs() as i64;
    let then = now - now % 3600 - 5 * 3600;
    c.database("admin")
        .collection::<Document>("rbmSchedule")
        .insert_one(doc! {"_id": "task:h", "schedule": hourly, "since": then - 60, "last_fire": then, "last_status": "done", "last_result": "", "last_backup": "", "backups": []})
        .await
        .expect("state");
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let s = wait_for(Duration::from_secs(30), "the catch-up run", || async {
        let s = find_all(&c, "rbmSchedule", doc! {"_id": "task:h"})
            .await
            .into_iter()
            .next()?;
        (s.get_str("last_status").ok() == Some("done")
            && !s.get_str("last_backup").ok()?.is_empty())
        .then_some(s)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cmds = find_all(&c, "pbmCmd", doc! {"cmd": "backup"}).await;
    assert_eq!(
        cmds.len(),
        1,
        "one run for all the missed slots: {cmds:?}\n{}",
        agent.log()
    );
    assert!(s.get_i64("last_fire").expect("last_fire") >= now);
    let warned = find_all(&c, "pbmLog", doc! {"e": "schedule", "s": 2}).await;
    assert!(
        warned.iter().any(|w| w
            .get_str("msg")
            .unwrap_or_default()
            .contains("earlier slot(s) passed")),
        "{warned:?}"
    );
}

/// The scheduling agent dies: another takes the lead once its heartbeat is stale, and
/// goes on firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_scheduler_is_replaced_once_stale() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c, 50).await;
    let store = tempfile::tempdir().expect("store");
    set_config(
        &c,
        &rbm_e2e::fs_conf(store.path()),
        doc! {"schedule": {"tasks": [{"name": "t", "schedule": "*/5 * * * * *"}]}},
    )
    .await;
    let mut a1 = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    wait_for(Duration::from_secs(30), "a1 runs a backup", || async {
        let s = find_all(&c, "rbmSchedule", doc! {"_id": "task:t"})
            .await
            .into_iter()
            .next()?;
        (s.get_str("last_status").ok() == Some("done")).then_some(())
    })
    .await;
    let leader = find_all(&c, "rbmSchedule", doc! {"_id": "leader"}).await;
    assert_eq!(leader[0].get_str("node").ok(), Some("secantus/n1:27017"));
    let a2 = Agent::start(&server, "n2:27017", "secondary", &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        find_all(&c, "pbmLog", doc! {"e": "schedule", "node": "n2:27017"})
            .await
            .is_empty(),
        "no second scheduler while the first lives"
    );
    a1.kill9();
    wait_for(Duration::from_secs(90), "a2 schedules", || async {
        find_all(
            &c,
            "pbmLog",
            doc! {"e": "schedule", "node": "n2:27017", "msg": {"$regex": "^started backup"}},
        )
        .await
        .into_iter()
        .next()
    })
    .await;
    let leader = find_all(&c, "rbmSchedule", doc! {"_id": "leader"}).await;
    assert_eq!(
        leader[0].get_str("node").ok(),
        Some("secantus/n2:27017"),
        "{}",
        a2.log()
    );
}
