//! Watching rbm: the agent's Prometheus endpoint scraped during and after a real backup
//! and restore (real SecantusDB, real `rbm-agent`, filesystem storage), the progress
//! agents publish for `rbm status` and `--wait`, and clear start-up errors for a bad
//! `--metrics-addr`.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use rbm_storage::StorageConf;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn set_config(c: &Client, storage: &StorageConf) {
    let d = doc! {"storage": mongodb::bson::serialize_to_bson(storage).expect("storage conf")};
    let coll = c.database("admin").collection::<Document>("pbmConfig");
    coll.delete_many(doc! {}).await.expect("clear config");
    coll.insert_one(d).await.expect("insert config");
}

async fn registered(c: &Client) {
    wait_for(Duration::from_secs(40), "agent with storage ok", || async {
        (!find_all(c, "pbmAgents", doc! {"stors.ok": true})
            .await
            .is_empty())
        .then_some(())
    })
    .await;
}

fn rbm(server: &MongoServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
        .args(args)
        .env("PBM_MONGODB_URI", server.uri())
        .output()
        .expect("run rbm")
}

/// A progress line whose collections are all done (`N/N collections`).
fn is_complete(line: &str) -> bool {
    let Some(i) = line.find(" collections") else {
        return false;
    };
    let figures = line[..i].rsplit(' ').next().unwrap_or("");
    matches!(figures.split_once('/'), Some((a, b)) if a == b && !a.is_empty())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A plain HTTP/1.1 GET: (status code, body).
async fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics endpoint");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP reply");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    // The server sends a fixed-length body; no chunked decoding needed.
    (code, body.to_string())
}

/// `name{labels} value` lines of the exposition, keyed by `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sample(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {m:#?}"))
}

fn files_under(dir: &std::path::Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::metadata(&p).expect("stat").len());
            }
        }
    }
    out
}

async fn dataset(c: &Client) {
    for i in 0..3 {
        let d: Vec<Document> = (0..2500)
            .map(|j| doc! {"i": j as i64, "pad": "x".repeat(200)})
            .collect();
        c.database("shop")
            .collection::<Document>(&format!("c{i}"))
            .insert_many(d)
            .await
            .expect("insert");
    }
}

/// The running operation's progress as `rbm status -o json` reports it.
fn status_progress(server: &MongoServer) -> Option<serde_json::Value> {
    let out = rbm(server, &["status", "-s", "running", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["running"]["progress"].get(0).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_progress_follow_a_backup_and_a_restore() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[
            ("RBM_METRICS_ADDR", addr.as_str()),
            // 2500 documents per collection: 25 pauses of 150 ms, about 4 s each.
            (rbm_agent::backup::logical::TEST_THROTTLE_ENV, "150"),
            ("PBM_DUMP_PARALLEL_COLLECTIONS", "1"),
        ],
    );
    registered(&c).await;

    let (code, body) = get(port, "/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"), "{}", agent.log());
    let before = samples(&get(port, "/metrics").await.1);
    assert!(
        before.keys().any(|k| k.starts_with("rbm_agent_info{")),
        "{before:#?}"
    );
    assert!(
        !before.keys().any(|k| k.starts_with("rbm_operations_total")),
        "no operation yet: {before:#?}"
    );
    let init_existed = store.path().join(".pbm.init").exists();

    // `rbm backup --wait` with its output piped: plain progress lines, not bars.
    let uri = server.uri();
    let waiting = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
            .args(["backup", "--wait"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("rbm backup --wait")
    });

    // Mid-backup: `rbm status` shows this node's progress, growing.
    let first = wait_for(
        Duration::from_secs(40),
        "progress in rbm status",
        || async {
            let p = status_progress(&server)?;
            (p["bytes"].as_i64()? > 0).then_some(p)
        },
    )
    .await;
    assert_eq!(first["node"], "n1:27017", "{first}");
    // The three of the dataset and the control collections.
    let total = first["collectionsTotal"]
        .as_i64()
        .expect("collectionsTotal");
    assert!(total > 3, "{first}");
    let b0 = first["bytes"].as_i64().expect("bytes");
    let grown = wait_for(Duration::from_secs(20), "progress growing", || async {
        let p = status_progress(&server)?;
        (p["bytes"].as_i64()? > b0).then_some(p)
    })
    .await;
    assert!(grown["updated"].as_i64() >= first["updated"].as_i64());
    let text =
        String::from_utf8_lossy(&rbm(&server, &["status", "-s", "running"]).stdout).into_owned();
    assert!(
        text.contains("Snapshot backup")
            && text.contains("/n1:27017: ")
            && text.contains(&format!("/{total} collections")),
        "{text}"
    );
    // ... and the agent says it holds the backup lock.
    let mid = samples(&get(port, "/metrics").await.1);
    assert_eq!(
        sample(&mid, "rbm_lock_held{type=\"backup\"}"),
        1.0,
        "{mid:#?}"
    );

    let out = waiting.await.expect("join");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", agent.log());
    assert!(
        stdout.contains(" done\n") && stdout.contains("to remote store"),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress "))
        .collect();
    assert!(
        lines.len() >= 2,
        "periodic progress lines expected: {stderr}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(&format!("{total}/{total} collections"))),
        "the last line has the final figures: {stderr}"
    );
    let name = stdout
        .split('\'')
        .nth(1)
        .expect("backup name in the output")
        .to_string();

    let meta = find_all(&c, "pbmBackups", doc! {"name": &name}).await;
    let meta = &meta[0];
    assert_eq!(meta.get_str("status").expect("status"), "done");
    // The final progress stays in the document: every byte of the dump was counted.
    let rs0 = &meta.get_array("replsets").expect("replsets")[0];
    let p = rs0
        .as_document()
        .and_then(|d| d.get_document("progress").ok())
        .expect("progress in the meta");
    assert_eq!(p.get_i64("collections").expect("collections"), total);

    let after = samples(&get(port, "/metrics").await.1);
    let ok = "{op=\"backup\",type=\"logical\",result=\"done\"}";
    assert_eq!(sample(&after, &format!("rbm_operations_total{ok}")), 1.0);
    assert_eq!(
        sample(&after, &format!("rbm_operation_duration_seconds_count{ok}")),
        1.0
    );
    assert!(sample(&after, &format!("rbm_operation_duration_seconds_sum{ok}")) >= 8.0);
    assert_eq!(
        sample(
            &after,
            "rbm_commands_total{command=\"backup\",result=\"ok\"}"
        ),
        1.0
    );
    // Every byte stored by the backup, and nothing else, was counted as written.
    let files = files_under(store.path());
    let expected: u64 = files
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("{name}/"))
                || **k == format!("{name}.pbm.json")
                || (!init_existed && *k == ".pbm.init")
        })
        .map(|(_, v)| v)
        .sum();
    assert!(expected > 50_000, "{files:#?}");
    assert_eq!(
        sample(
            &after,
            "rbm_storage_written_bytes_total{storage=\"filesystem\"}"
        ) as u64,
        expected,
        "{files:#?}"
    );
    assert_eq!(
        sample(
            &after,
            "rbm_last_successful_backup_timestamp_seconds{type=\"logical\"}"
        ) as i64,
        meta.get_i64("last_transition_ts")
            .expect("last_transition_ts")
    );
    assert_eq!(sample(&after, "rbm_lock_held{type=\"backup\"}"), 0.0);
    assert!(
        !after.keys().any(|k| k.starts_with("rbm_errors_total")),
        "{after:#?}"
    );

    // A restore of it: progress lines, counted reads, one restore operation.
    c.database("shop").drop().await.expect("drop shop");
    let out = rbm(&server, &["restore", &name, "--wait", "--yes"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", agent.log());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("progress ") && is_complete(l)),
        "{stderr}"
    );
    for i in 0..3 {
        let n = c
            .database("shop")
            .collection::<Document>(&format!("c{i}"))
            .count_documents(doc! {})
            .await
            .expect("count");
        assert_eq!(n, 2500);
    }
    let last = samples(&get(port, "/metrics").await.1);
    assert_eq!(
        sample(
            &last,
            "rbm_operations_total{op=\"restore\",type=\"logical\",result=\"done\"}"
        ),
        1.0
    );
    let dump: u64 = files
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}/")) && k.contains("/shop.c"))
        .map(|(_, v)| v)
        .sum();
    let read = sample(
        &last,
        "rbm_storage_read_bytes_total{storage=\"filesystem\"}",
    ) as u64;
    assert!(read >= dump, "read {read} < the dump's {dump} bytes");
}

/// `/healthz` fails while the agent has no connection, and the metrics endpoint is up
/// before the mongod is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_until_the_agent_is_connected() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbm-agent"))
        .args(["--metrics-addr", &addr])
        // Nothing listens there: the agent keeps looking for 20 s.
        .env(
            "PBM_MONGODB_URI",
            "mongodb://127.0.0.1:1/?directConnection=true",
        )
        .env("RBM_AGENT_SERVER_SELECTION_TIMEOUT_MS", "20000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let (code, body) = wait_for(Duration::from_secs(10), "endpoint up", || async {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        drop(s);
        Some(get(port, "/healthz").await)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not connected"), "{body}");
}

fn agent_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbm-agent"))
        .args(args)
        .env(
            "PBM_MONGODB_URI",
            "mongodb://127.0.0.1:1/?directConnection=true",
        )
        .env("RBM_AGENT_SERVER_SELECTION_TIMEOUT_MS", "2000")
        .output()
        .expect("run rbm-agent");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail: {stderr}");
    assert_ne!(out.status.code(), Some(101), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    errors[0].to_string()
}

#[test]
fn bad_metrics_addr_is_one_clear_error() {
    for bad in [
        "nonsense",
        "127.0.0.1",
        "127.0.0.1:99999",
        "127.0.0.1:x",
        "127.0.0.1:",
    ] {
        let e = agent_fails(&["--metrics-addr", bad]);
        assert!(
            e.contains("invalid --metrics-addr") && e.contains("HOST:PORT"),
            "{bad}: {e}"
        );
    }
    // A host that does not resolve or is not local.
    let e = agent_fails(&["--metrics-addr", "no-such-host.invalid:9216"]);
    assert!(
        e.contains("cannot serve metrics on no-such-host.invalid:9216"),
        "{e}"
    );
}

#[test]
fn metrics_port_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let e = agent_fails(&["--metrics-addr", &addr]);
    assert!(
        e.contains(&format!("cannot serve metrics on {addr}"))
            && e.to_lowercase().contains("in use"),
        "{e}"
    );
}

/// Failed and canceled backups are counted by result and cause; PITR lag comes from the
/// last chunk in `pbmPITRChunks`; on a terminal `--wait` draws bars instead of lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cancels_pitr_lag_and_terminal_bars() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    dataset(&c).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[
            ("RBM_METRICS_ADDR", addr.as_str()),
            (rbm_agent::backup::logical::TEST_THROTTLE_ENV, "150"),
            ("PBM_DUMP_PARALLEL_COLLECTIONS", "1"),
        ],
    );
    registered(&c).await;
    let running = || async {
        let m = find_all(&c, "pbmBackups", doc! {"status": "running"})
            .await
            .into_iter()
            .next()?;
        Some(m.get_str("name").ok()?.to_string())
    };
    let ended = |name: String| {
        let c = c.clone();
        async move {
            wait_for(Duration::from_secs(90), "the backup to end", || async {
                let m = find_all(&c, "pbmBackups", doc! {"name": &name}).await;
                let s = m.first()?.get_str("status").ok()?.to_string();
                let locks = find_all(&c, "pbmLock", doc! {}).await;
                (matches!(s.as_str(), "error" | "canceled" | "done") && locks.is_empty())
                    .then_some(s)
            })
            .await
        }
    };

    // A storage that breaks mid-backup: one error, caused by the storage.
    assert!(rbm(&server, &["backup"]).status.success());
    let name = wait_for(Duration::from_secs(40), "a running backup", running).await;
    let dir = store.path().join(&name);
    wait_for(Duration::from_secs(40), "the backup folder", || async {
        dir.exists().then_some(())
    })
    .await;
    // The agent may be creating a file in it meanwhile: try again.
    for attempt in 0.. {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => break,
            Err(e) if attempt < 20 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("remove folder: {e}"),
        }
    }
    std::fs::write(&dir, b"in the way").expect("file in the way");
    assert_eq!(ended(name.clone()).await, "error", "{}", agent.log());
    std::fs::remove_file(&dir).expect("remove the file");
    let m = samples(&get(port, "/metrics").await.1);
    assert_eq!(
        sample(
            &m,
            "rbm_operations_total{op=\"backup\",type=\"logical\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "rbm_errors_total{kind=\"storage\"}"),
        1.0,
        "{m:#?}"
    );
    assert!(
        !m.keys()
            .any(|k| k.starts_with("rbm_last_successful_backup_timestamp_seconds")),
        "no backup succeeded: {m:#?}"
    );

    // A canceled one is counted as such, and is no error.
    assert!(rbm(&server, &["backup"]).status.success());
    let name = wait_for(Duration::from_secs(40), "a running backup", running).await;
    assert!(rbm(&server, &["cancel-backup"]).status.success());
    assert_eq!(ended(name).await, "canceled", "{}", agent.log());
    let m = samples(&get(port, "/metrics").await.1);
    assert_eq!(
        sample(
            &m,
            "rbm_operations_total{op=\"backup\",type=\"logical\",result=\"canceled\"}"
        ),
        1.0
    );
    let errors: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("rbm_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 1.0, "{m:#?}");

    // PITR lag: the cluster time now minus the end of the replica set's last chunk.
    let rs = find_all(&c, "pbmAgents", doc! {})
        .await
        .first()
        .and_then(|a| a.get_str("rs").ok().map(str::to_string))
        .expect("agent rs");
    let now = cluster_time(&c).await;
    let end = mongodb::bson::Timestamp {
        time: now.time - 120,
        increment: 1,
    };
    c.database("admin")
        .collection::<Document>("pbmPITRChunks")
        .insert_one(
            doc! {"rs": &rs, "fname": "pbmPitr/x.s2", "compression": "s2",
            "start_ts": mongodb::bson::Timestamp { time: now.time - 720, increment: 1 },
            "end_ts": end, "size": 10_i64},
        )
        .await
        .expect("insert chunk");
    let m = samples(&get(port, "/metrics").await.1);
    let lag = sample(&m, &format!("rbm_pitr_lag_seconds{{rs=\"{rs}\"}}"));
    // Reported with chunks present; whether PITR is on is its own gauge, for alerts.
    assert_eq!(sample(&m, "rbm_pitr_enabled"), 0.0);
    assert!((120.0..160.0).contains(&lag), "lag {lag}");
    assert_eq!(
        sample(
            &m,
            &format!("rbm_pitr_last_chunk_end_timestamp_seconds{{rs=\"{rs}\"}}")
        ),
        f64::from(end.time)
    );

    // On a terminal (a pseudo-terminal from script(1)) `--wait` draws bars on stderr
    // in place of PBM's dots and plain lines.
    let cmd = format!("{} backup --wait", env!("CARGO_BIN_EXE_rbm"));
    let uri = server.uri();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("script")
            .args(["-qefc", &cmd, "/dev/null"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("run script(1)")
    })
    .await
    .expect("join");
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tty}\n{}", agent.log());
    assert!(tty.contains(" colls") && tty.contains("/n1:27017"), "{tty}");
    assert!(
        !tty.contains("progress "),
        "no plain lines on a terminal: {tty}"
    );
    assert!(
        tty.contains("backup...") && !tty.contains("backup....") && tty.contains(" done"),
        "bars replace the dots: {tty}"
    );
}

/// `/healthz` follows the connections: 200 while the mongod answers, 503 once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_when_the_mongod_goes_away() {
    let server = MongoServer::start().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[("RBM_METRICS_ADDR", addr.as_str())],
    );
    let c = client(&server).await;
    wait_for(Duration::from_secs(40), "the agent registered", || async {
        (!find_all(&c, "pbmAgents", doc! {}).await.is_empty()).then_some(())
    })
    .await;
    let (code, body) = get(port, "/healthz").await;
    assert_eq!(code, 200, "{body}\n{}", agent.log());
    drop(c);
    drop(server);
    let (code, body) = wait_for(Duration::from_secs(30), "healthz failing", || async {
        let r = get(port, "/healthz").await;
        (r.0 != 200).then_some(r)
    })
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("local mongod") || body.contains("replica set"),
        "says which connection: {body}"
    );
    // Unknown paths and methods get their own answers.
    assert_eq!(get(port, "/nope").await.0, 404);
}
