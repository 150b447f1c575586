//! Cold physical backups and restores end to end: a real SecantusDB that the agent stops
//! and starts through shell commands, a real `rbm-agent`, the real `rbm` CLI and
//! filesystem storage. Data equality is checked with the fixtures' hash rule.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use rbm_storage::StorageConf;
use std::path::Path;
use std::time::Duration;

async fn registered(c: &Client) {
    wait_for(Duration::from_secs(40), "agent with storage ok", || async {
        let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
        (!docs.is_empty()).then_some(())
    })
    .await;
}

/// A node the agent may stop and start, and its agent.
struct Env {
    server: MongoServer,
    agent: Agent,
    store: tempfile::TempDir,
    conf: StorageConf,
}

async fn setup() -> Env {
    setup_with(None).await
}

/// `conf`: a storage other than a local directory.
async fn setup_with(conf: Option<StorageConf>) -> Env {
    let server = MongoServer::start_restartable().await;
    let store = tempfile::tempdir().expect("storage dir");
    let conf = conf.unwrap_or_else(|| rbm_e2e::fs_conf(store.path()));
    let c = client(&server).await;
    set_config(&c, &conf).await;
    let (start, stop) = (server.start_cmd(), server.stop_cmd());
    let agent = Agent::start_on_node(
        &server,
        &start,
        &stop,
        &[
            // Small ranges: every restored file is read in many parallel pieces.
            ("RBM_AGENT_PHYSICAL_DOWNLOAD_CHUNK_BYTES", "65536"),
        ],
    );
    registered(&c).await;
    Env {
        server,
        agent,
        store,
        conf,
    }
}

/// A few databases, a few thousand documents, secondary indexes.
async fn seed(c: &Client, tag: &str, n: i32) {
    // Distinct `i` per tag: `shop.a` has a unique index on it.
    let base = if tag == "before" { 0 } else { 1_000_000 };
    for db in ["shop", "geo"] {
        for coll in ["a", "b", "c"] {
            let docs: Vec<Document> = (0..n)
                .map(|i| doc! {"_id": format!("{tag}-{i}"), "i": base + i, "pad": "x".repeat((i % 200) as usize), "nested": {"k": i % 7}})
                .collect();
            c.database(db)
                .collection::<Document>(coll)
                .insert_many(docs)
                .await
                .expect("insert");
        }
    }
    c.database("shop")
        .run_command(doc! {"createIndexes": "a", "indexes": [{"key": {"i": 1}, "name": "i_1", "unique": true}]})
        .await
        .expect("index");
}

async fn backup(env: &Env) -> String {
    let (ok, out, err) = rbm(&env.server, &["backup", "--type", "physical", "--wait"]);
    assert!(
        ok,
        "physical backup failed:\n{out}\n{err}\nagent:\n{}",
        env.agent.log()
    );
    quoted_after(&format!("{out}{err}"), "Starting backup \"")
}

/// A node the agent may stop and start, seeded, with filesystem storage configured (no
/// agent yet); the last item is the data's hashes.
async fn seeded_node() -> (
    MongoServer,
    tempfile::TempDir,
    Client,
    std::collections::BTreeMap<String, (u64, String)>,
) {
    let server = MongoServer::start_restartable().await;
    let store = tempfile::tempdir().expect("storage dir");
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path())).await;
    seed(&c, "before", 1000).await;
    let before = rbm_e2e::state_hashes(&c).await;
    (server, store, c, before)
}

/// No object of the backup `name` is on the storage (empty directories may remain on a
/// filesystem storage; objects may not).
fn nothing_left_of(store: &Path, name: &str) {
    let left: Vec<String> = storage_files(store)
        .into_iter()
        .filter(|f| f.starts_with(name))
        .collect();
    assert!(
        left.is_empty(),
        "objects of the failed backup left: {left:?}"
    );
}

fn storage_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read storage").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .expect("under root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_backup_and_restore_bring_back_the_data_and_drop_the_old_dbpath() {
    let env = setup().await;
    let c = client(&env.server).await;
    seed(&c, "before", 3000).await;
    let before = rbm_e2e::state_hashes(&c).await;
    assert_eq!(before.len(), 6);

    let name = backup(&env).await;
    // The client saw the node go away; a fresh one reads the state.
    let c = client(&env.server).await;
    let m = backup_meta(&c, &name).await;
    assert_eq!(m.kind.as_str(), "physical");
    assert_eq!(m.status.as_str(), "done");
    let rs = &m.replsets[0];
    assert_eq!(rs.status.as_str(), "done");
    let opts = rs.mongod_opts.as_ref().expect("mongod opts in the meta");
    assert_eq!(
        opts.get_document("storage")
            .and_then(|s| s.get_str("dbPath"))
            .expect("dbPath"),
        env.server.data_dir().display().to_string()
    );
    assert!(m.last_write_ts.time > 0);

    // PBM's layout: the file list, every dbPath file under <name>/<rs>/, the meta last.
    let stored = storage_files(env.store.path());
    let prefix = format!("{name}/{}/", rs.name);
    let list =
        std::fs::read(env.store.path().join(format!("{prefix}filelist.pbm"))).expect("filelist");
    let files = rbm_protocol::meta::read_filelist(&list).expect("PBM reads the file list");
    assert!(files.iter().any(|f| f.name == "WiredTiger.wt"), "{files:?}");
    for f in &files {
        let obj = format!("{prefix}{}.s2", f.name);
        assert!(stored.contains(&obj), "{obj} not stored: {stored:?}");
        let on_disk = std::fs::metadata(env.store.path().join(&obj))
            .expect("object")
            .len();
        assert_eq!(on_disk as i64, f.stg_size, "{obj}");
    }
    assert!(stored.contains(&format!("{name}.pbm.json")));
    let (ok, out, err) = rbm(&env.server, &["list"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&name) && l.contains("physical")),
        "{out}"
    );

    // Change the data: drop one collection, add to another.
    c.database("geo")
        .collection::<Document>("a")
        .drop()
        .await
        .expect("drop");
    seed(&c, "after", 100).await;
    assert_ne!(rbm_e2e::state_hashes(&c).await, before);

    let (ok, out, err) = rbm(&env.server, &["restore", &name, "--wait"]);
    assert!(
        ok,
        "restore failed:\n{out}\n{err}\nagent:\n{}",
        env.agent.log()
    );
    let rname = quoted_after(&format!("{out}{err}"), "Starting restore ");
    let c = client(&env.server).await;
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        before,
        "restored data differs"
    );

    // The old data is gone only now, and the progress is on storage as PBM's.
    assert!(!env.server.data_dir().join(".fallbacksync").exists());
    let stored = storage_files(env.store.path());
    let rdir = format!(".pbm.restore/{rname}/");
    for f in [
        format!("{rdir}cluster.done"),
        format!("{rdir}rs.{}/rs.done", rs.name),
        format!(
            "{rdir}rs.{}/node.127.0.0.1:{}.done",
            rs.name,
            env.server.port()
        ),
        format!(".pbm.restore/{rname}.json"),
    ] {
        assert!(stored.contains(&f), "{f} not on storage: {stored:?}");
    }
    // The control state was reset and the backup list read back from storage.
    let (ok, out, err) = rbm(&env.server, &["list"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&name), "{out}");
    let r = find_all(&c, "pbmRestores", doc! {"name": &rname}).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get_str("status").unwrap_or_default(), "done");
    assert!(find_all(&c, "pbmLock", doc! {}).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_puts_the_old_data_back() {
    let env = setup().await;
    let c = client(&env.server).await;
    seed(&c, "before", 2000).await;
    let name = backup(&env).await;
    let c = client(&env.server).await;
    seed(&c, "after", 300).await;
    let current = rbm_e2e::state_hashes(&c).await;

    // Corrupt the largest stored file of the backup in its middle.
    let m = backup_meta(&c, &name).await;
    let dir = env.store.path().join(&name).join(&m.replsets[0].name);
    let biggest = std::fs::read_dir(&dir)
        .expect("backup dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "s2"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a stored file");
    let mut bytes = std::fs::read(&biggest).expect("read object");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&biggest, bytes).expect("corrupt object");

    let (ok, out, err) = rbm(&env.server, &["restore", &name, "--wait"]);
    assert!(
        !ok,
        "restore of a corrupted backup succeeded:\n{out}\n{err}"
    );
    assert!(
        err.contains("old data was put back"),
        "{err}\nagent:\n{}",
        env.agent.log()
    );
    let c = client(&env.server).await;
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        current,
        "old data not back"
    );
    assert!(!env.server.data_dir().join(".fallbacksync").exists());
    let rname = quoted_after(&format!("{out}{err}"), "Starting restore ");
    let stored = storage_files(env.store.path());
    assert!(
        stored.contains(&format!(".pbm.restore/{rname}/cluster.error")),
        "{stored:?}"
    );
    let _ = &env.conf;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_whose_start_command_fails_puts_the_old_data_back() {
    // The agent's start command works for the backup, then breaks for the restore:
    // the fallback must still come back, started with the working command.
    let env = setup().await;
    let c = client(&env.server).await;
    seed(&c, "before", 500).await;
    let name = backup(&env).await;
    let c = client(&env.server).await;
    seed(&c, "after", 50).await;
    let current = rbm_e2e::state_hashes(&c).await;
    drop(env.agent);
    let flag = env.store.path().join("fail-next-start");
    std::fs::write(&flag, "").expect("flag");
    let start = format!(
        "if [ -e '{f}' ]; then rm -f '{f}'; echo 'mongod: bad config' >&2; exit 3; fi; {s}",
        f = flag.display(),
        s = env.server.start_cmd()
    );
    let stop = env.server.stop_cmd();
    let agent = Agent::start_on_node(&env.server, &start, &stop, &[]);
    registered(&c).await;
    let (ok, out, err) = rbm(&env.server, &["restore", &name, "--wait"]);
    assert!(!ok, "restore succeeded:\n{out}\n{err}");
    assert!(
        err.contains("bad config") && err.contains("old data was put back"),
        "{err}\nagent:\n{}",
        agent.log()
    );
    let c = client(&env.server).await;
    assert_eq!(
        rbm_e2e::state_hashes(&c).await,
        current,
        "old data not back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_backup_without_a_usable_mode_fails_with_the_reason() {
    // An agent that was given no way to stop its node, on a server without
    // $backupCursor, as the primary: no mode fits, and the node is left alone.
    let server = MongoServer::start().await;
    let store = tempfile::tempdir().expect("storage dir");
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path())).await;
    let me = format!("127.0.0.1:{}", server.port());
    let agent = Agent::start(&server, &me, "primary", &[]);
    registered(&c).await;
    let (ok, out, err) = rbm(&server, &["backup", "--type", "physical", "--wait"]);
    assert!(!ok, "backup succeeded:\n{out}\n{err}");
    assert!(
        err.contains("no physical backup mode fits this node"),
        "{err}\nagent:\n{}",
        agent.log()
    );
    let name = quoted_after(&format!("{out}{err}"), "Starting backup \"");
    assert!(
        !store.path().join(&name).exists(),
        "files of the failed backup left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_shutdown_during_a_cold_backup_starts_the_node_again() {
    let (server, store, c, before) = seeded_node().await;
    // A slow stop leaves time to stop the agent while its node goes down.
    let stop = format!("sleep 2; {}", server.stop_cmd());
    let mut agent = Agent::start_on_node(&server, &server.start_cmd(), &stop, &[]);
    registered(&c).await;
    let uri = server.uri();
    let cli = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
            .args(["backup", "--type", "physical", "--wait"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("run rbm")
    });
    let name = wait_for(Duration::from_secs(60), "the replica set down", || async {
        find_all(&c, "pbmBackups", doc! {"replsets.status": "down"})
            .await
            .first()
            .and_then(|d| d.get_str("name").ok().map(str::to_string))
    })
    .await;
    agent.signal("-TERM");
    agent.wait(Duration::from_secs(60));
    let out = cli.join().expect("cli thread");
    assert!(!out.status.success(), "backup succeeded");
    // The node is back with its data, the backup failed and left nothing.
    let c = client(&server).await;
    assert_eq!(rbm_e2e::state_hashes(&c).await, before);
    let m = backup_meta(&c, &name).await;
    assert_eq!(
        m.status.as_str(),
        "error",
        "{:?}\nagent:\n{}",
        m.error,
        agent.log()
    );
    nothing_left_of(store.path(), &name);
}

/// SIGKILL leaves no guard to run: the mark in the dbPath makes the next agent start
/// the node and fail the backup, with nothing of it left on storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_while_its_node_is_down_restarts_it_when_it_comes_back() {
    let (server, store, c, before) = seeded_node().await;
    // The stop command stops the node, then holds until the test lets it go, so the
    // agent is killed for sure while the node is down.
    let held = server.data_dir().with_file_name("stop-held");
    let stop = format!(
        "{} && touch '{h}' && while [ -e '{h}' ]; do sleep 0.1; done",
        server.stop_cmd(),
        h = held.display()
    );
    let start = server.start_cmd();
    let mut agent = Agent::start_on_node(&server, &start, &stop, &[]);
    registered(&c).await;
    let uri = server.uri();
    let cli = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
            .args(["backup", "--type", "physical"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("run rbm")
    });
    // It waits for the backup to run, and may fail once the node goes down.
    let sent = cli.join().expect("cli thread");
    let name = quoted_after(&String::from_utf8_lossy(&sent.stdout), "Starting backup \"");
    for _ in 0..600 {
        if held.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        held.exists(),
        "the node was not stopped; agent:\n{}",
        agent.log()
    );
    let mark = server.data_dir().join("rbm.node-stopped.json");
    assert!(mark.exists(), "no stop mark while the node is down");
    agent.kill9();
    std::fs::remove_file(&held).expect("release the stop command");

    // The node stays down until an agent comes back.
    let agent2 = Agent::start_on_node(&server, &start, &server.stop_cmd(), &[]);
    let c = client(&server).await;
    let mut m = None;
    for _ in 0..240 {
        m = find_all(&c, "pbmBackups", doc! {"name": &name, "status": "error"})
            .await
            .into_iter()
            .next();
        if m.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let m =
        m.unwrap_or_else(|| panic!("the stuck backup was not failed; agent:\n{}", agent2.log()));
    assert!(
        agent2.log().contains("started it again") && agent2.log().contains("failed"),
        "agent:\n{}",
        agent2.log()
    );
    assert!(!mark.exists(), "the stop mark stayed");
    assert_eq!(rbm_e2e::state_hashes(&c).await, before);
    assert!(
        !store.path().join(format!("{name}.pbm.json")).exists(),
        "a killed backup was marked done: {m:?}"
    );
    nothing_left_of(store.path(), &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_backup_and_restore_through_s3() {
    // Ranged reads and multipart uploads of the S3 backend (s3s-fs), small parts.
    let mut conf = rbm_e2e::s3_conf(None);
    let prefix = format!("physical-{}", mongodb::bson::oid::ObjectId::new().to_hex());
    if let Some(s3) = conf.s3.as_mut() {
        s3.prefix = prefix;
    }
    let env = setup_with(Some(conf.clone())).await;
    let c = client(&env.server).await;
    seed(&c, "before", 2000).await;
    let before = rbm_e2e::state_hashes(&c).await;
    let name = backup(&env).await;
    let c = client(&env.server).await;
    c.database("shop").drop().await.expect("drop shop");
    let (ok, out, err) = rbm(&env.server, &["restore", &name, "--wait"]);
    assert!(
        ok,
        "restore failed:\n{out}\n{err}\nagent:\n{}",
        env.agent.log()
    );
    let rname = quoted_after(&format!("{out}{err}"), "Starting restore ");
    let c = client(&env.server).await;
    assert_eq!(rbm_e2e::state_hashes(&c).await, before);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    let list = st
        .stat(&format!("{name}/secantus/filelist.pbm"))
        .await
        .expect("filelist on S3");
    assert!(list.size > 0);
    st.stat(&format!(".pbm.restore/{rname}/cluster.done"))
        .await
        .expect("cluster.done on S3");
    st.stat(&format!(".pbm.restore/{rname}.json"))
        .await
        .expect("restore meta on S3");
}
