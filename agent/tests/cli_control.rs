//! The `rbm` binary against a private SecantusDB per test: config round trips, the
//! read-only verbs on documents PBM 2.15 wrote (compared with PBM's own output), and
//! honest failures. Needs `RBM_TEST_VENV` (scripts/test sets it).

use bson::{doc, Document};
use futures::TryStreamExt;
use rbm_e2e::MongoServer;
use std::path::Path;
use std::process::Command;

const FIXTURES: &str = "/work/shared/fixtures/pbm-2.15";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn rbm(uri: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_rbm"))
        .arg("--mongodb-uri")
        .arg(uri)
        .args(args)
        .env_remove("PBM_MONGODB_URI")
        .output()
        .expect("run rbm");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(r: &Run) -> &str {
    assert_eq!(
        r.code, 0,
        "rbm failed: stdout {} stderr {}",
        r.stdout, r.stderr
    );
    &r.stdout
}

/// A failure must be one `Error:` line, a non-zero exit and no panic; returns the line.
fn one_error(r: &Run) -> String {
    assert_ne!(r.code, 0, "must fail: {} {}", r.stdout, r.stderr);
    assert_ne!(r.code, 101, "panic: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "panic: {}", r.stderr);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {}", r.stderr);
    lines[0].to_string()
}

async fn admin(server: &MongoServer) -> mongodb::Database {
    mongodb::Client::with_uri_str(server.uri())
        .await
        .expect("client")
        .database("admin")
}

/// The documents of a collection dump PBM wrote into a backup (compressed BSON stream).
fn pbm_dump(bcp: &str, file: &str) -> Vec<Document> {
    let path = Path::new(FIXTURES)
        .join("storage")
        .join(bcp)
        .join("secantus")
        .join(file);
    let c = rbm_storage::Compression::from_file_name(file);
    let f = std::fs::File::open(&path).expect("fixture dump");
    let mut r = rbm_storage::codec::decoder(c, f).expect("decoder");
    let mut docs = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match std::io::Read::read_exact(&mut r, &mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("read {}: {e}", path.display()),
        }
        let n = i32::from_le_bytes(len) as usize;
        let mut buf = len.to_vec();
        buf.resize(n, 0);
        std::io::Read::read_exact(&mut r, &mut buf[4..]).expect("document body");
        docs.push(Document::from_reader(&mut buf.as_slice()).expect("bson"));
    }
    docs
}

fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(rel)).expect("fixture")
}

fn fs_yaml(dir: &Path, extra: &str) -> String {
    format!(
        "storage:\n  type: filesystem\n  filesystem:\n    path: {}\n{extra}",
        dir.display()
    )
}

#[tokio::test]
async fn config_file_round_trip_matches_pbm_document() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    std::fs::write(&cfg, fs_yaml(dir.path(), "pitr:\n  enabled: false\n")).expect("write yaml");
    ok(&rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    ));

    // A fresh storage gets `.pbm.init`, as PBM writes it.
    let init = std::fs::read_to_string(dir.path().join(".pbm.init")).expect(".pbm.init written");
    assert_eq!(init, "2.15.0");

    // The stored document has PBM's shape: compare with what PBM stored for the
    // same settings (its dump in the fixture backup), apart from the path and epoch.
    let ours = admin(&server)
        .await
        .collection::<Document>("pbmConfig")
        .find_one(doc! {})
        .await
        .expect("read pbmConfig")
        .expect("config stored");
    let theirs = pbm_dump("2026-11-26T11:40:53Z", "admin.pbmConfig.s2")
        .into_iter()
        .next()
        .expect("PBM's config document");
    let strip = |d: &Document| {
        let mut d = d.clone();
        d.remove("_id");
        assert!(
            matches!(d.remove("epoch"), Some(bson::Bson::Timestamp(_))),
            "epoch must be a timestamp: {d}"
        );
        if let Ok(s) = d.get_document_mut("storage") {
            if let Ok(f) = s.get_document_mut("filesystem") {
                f.insert("path", "X");
            }
        }
        d
    };
    assert_eq!(strip(&ours), strip(&theirs));
    assert!(ours.get("profile").is_none());

    // `--list` prints what PBM printed after the same change.
    ok(&rbm(
        &server.uri(),
        &["config", "--set", "pitr.oplogSpanMin=0.5"],
    ));
    let listed = rbm(&server.uri(), &["config", "--list"]);
    let expected = fixture_text("cli/pbm-config.txt")
        .replace("/opt/backups", &dir.path().display().to_string());
    assert_eq!(ok(&listed).trim_end(), expected.trim_end());
    // One key is PBM's `confKV`: `[key=value]`, or {"key", "value"} as JSON.
    let one = rbm(&server.uri(), &["config", "pitr.oplogSpanMin"]);
    assert_eq!(ok(&one).trim(), "[pitr.oplogSpanMin=0.5]");
    let one = rbm(
        &server.uri(),
        &["config", "pitr.oplogSpanMin", "-o", "json"],
    );
    assert_eq!(
        json(ok(&one)),
        serde_json::json!({"key": "pitr.oplogSpanMin", "value": "0.5"})
    );
}

#[tokio::test]
async fn config_set_validates_and_bumps_epoch() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    std::fs::write(&cfg, fs_yaml(dir.path(), "")).expect("write yaml");
    ok(&rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    ));
    let coll = admin(&server).await.collection::<Document>("pbmConfig");
    let epoch = |d: &Document| d.get_timestamp("epoch").expect("epoch");
    let before = epoch(&coll.find_one(doc! {}).await.expect("read").expect("doc"));

    let e = one_error(&rbm(
        &server.uri(),
        &["config", "--set", "pitr.enabled=maybe"],
    ));
    assert!(e.contains("pitr.enabled"), "{e}");
    let e = one_error(&rbm(&server.uri(), &["config", "--set", "pitr.nosuch=1"]));
    assert!(e.contains("pitr.nosuch"), "{e}");
    let e = one_error(&rbm(
        &server.uri(),
        &["config", "--set", "backup.compression=rar"],
    ));
    assert!(e.contains("backup.compression"), "{e}");

    // The server's cluster time moves only with writes; make sure it has moved.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    coll.insert_one(doc! {"profile": true, "name": "tick", "storage": {"type": "filesystem"}})
        .await
        .expect("tick");
    let r = rbm(
        &server.uri(),
        &[
            "config",
            "--set",
            "pitr.enabled=true",
            "--set",
            "pitr.oplogSpanMin=2.5",
        ],
    );
    assert_eq!(
        ok(&r).trim(),
        "[pitr.enabled=true]\n[pitr.oplogSpanMin=2.5]"
    );
    let after = coll
        .find_one(doc! {"profile": {"$exists": false}})
        .await
        .expect("read")
        .expect("doc");
    assert!(after
        .get_document("pitr")
        .expect("pitr")
        .get_bool("enabled")
        .expect("bool"));
    assert_eq!(
        after
            .get_document("pitr")
            .expect("pitr")
            .get_f64("oplogSpanMin")
            .expect("f64"),
        2.5
    );
    assert!(epoch(&after) > before, "pitr.enabled must bump the epoch");

    // A bad file is refused before anything is stored, naming the key.
    std::fs::write(&cfg, fs_yaml(dir.path(), "backup:\n  compresion: s2\n")).expect("write");
    let e = one_error(&rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    ));
    assert!(e.contains("compresion"), "{e}");
}

#[tokio::test]
async fn config_file_with_unusable_storage_is_applied_as_pbm_does() {
    // The Operator applies the config while a bucket may not exist yet: PBM stores it,
    // asks the agents to resync and exits 0. rbm does the same and warns on stderr.
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    let dead = rbm_e2e::free_port();
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  type: s3\n  s3:\n    region: us-east-1\n    endpointUrl: http://127.0.0.1:{dead}\n    bucket: not-there\n    credentials:\n      access-key-id: k\n      secret-access-key: s\n    retryer:\n      numMaxRetries: 0\n"
        ),
    )
    .expect("write yaml");
    let r = rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    );
    ok(&r);
    assert!(r.stderr.contains("warning: config stored"), "{}", r.stderr);
    let db = admin(&server).await;
    let stored = db
        .collection::<Document>("pbmConfig")
        .find_one(doc! {})
        .await
        .expect("read pbmConfig")
        .expect("config stored");
    assert_eq!(
        stored
            .get_document("storage")
            .and_then(|s| s.get_document("s3"))
            .and_then(|s| s.get_str("bucket"))
            .expect("bucket"),
        "not-there"
    );
    let resync = db
        .collection::<Document>("pbmCmd")
        .find_one(doc! {"cmd": "resync"})
        .await
        .expect("read pbmCmd");
    assert!(resync.is_some(), "no resync command was sent");
}

#[tokio::test]
async fn config_masks_secrets() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    let secret = rbm_e2e::require_env("RBM_TEST_S3_SECRET_KEY");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  type: s3\n  s3:\n    region: us-east-1\n    endpointUrl: {}\n    bucket: {}\n    prefix: rbm-cli-{}\n    credentials:\n      access-key-id: {}\n      secret-access-key: {secret}\n",
            rbm_e2e::require_env("RBM_TEST_S3_ENDPOINT"),
            rbm_e2e::require_env("RBM_TEST_S3_BUCKET"),
            server.port(),
            rbm_e2e::require_env("RBM_TEST_S3_ACCESS_KEY"),
        ),
    )
    .expect("write yaml");
    let stored = rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    );
    ok(&stored);
    assert!(!stored.stdout.contains(&secret) && !stored.stderr.contains(&secret));
    for args in [
        &["config", "--list"][..],
        &["-o", "json", "config"][..],
        &["config", "storage.s3.credentials.secret-access-key"][..],
    ] {
        let r = rbm(&server.uri(), args);
        assert!(
            !ok(&r).contains(&secret),
            "secret printed by {args:?}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("***"), "{args:?}: {}", r.stdout);
    }
    // Stored in clear, as PBM stores it: agents need it.
    let d = admin(&server)
        .await
        .collection::<Document>("pbmConfig")
        .find_one(doc! {})
        .await
        .expect("read")
        .expect("doc");
    assert!(d.to_string().contains(&secret));
}

/// Loads what PBM 2.15 left in the control collections: the final backup metas
/// (`<name>.pbm.json`), the config, and the PITR chunk it recorded.
async fn load_pbm_state(server: &MongoServer, storage_path: &str) {
    let db = admin(server).await;
    for bcp in ["2026-11-26T11:40:53Z", "2026-11-26T11:41:08Z"] {
        let json = fixture_text(&format!("storage/{bcp}.pbm.json"));
        let meta = rbm_protocol::meta::BackupMeta::from_pbm_json(&json).expect("PBM backup meta");
        db.collection::<Document>("pbmBackups")
            .insert_one(bson::serialize_to_document(&meta).expect("to bson"))
            .await
            .expect("insert meta");
    }
    let mut cfg = pbm_dump("2026-11-26T11:41:08Z", "admin.pbmConfig.zst")
        .into_iter()
        .next()
        .expect("config");
    cfg.get_document_mut("storage")
        .and_then(|s| s.get_document_mut("filesystem"))
        .expect("fs storage")
        .insert("path", storage_path);
    db.collection::<Document>("pbmConfig")
        .insert_one(cfg)
        .await
        .expect("config");
    db.collection::<Document>("pbmPITRChunks")
        .insert_one(doc! {
            "rs": "secantus",
            "fname": "pbmPitr/secantus/20261126/20261126114113-4.20261126114220-9.oplog.s2",
            "compression": "s2",
            "start_ts": bson::Timestamp { time: 1_795_693_273, increment: 4 },
            "end_ts": bson::Timestamp { time: 1_795_693_340, increment: 9 },
            "size": 477_542_i64,
        })
        .await
        .expect("chunk");
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn read_verbs_match_pbm_output() {
    let server = MongoServer::start().await;
    load_pbm_state(&server, "/opt/backups").await;
    let uri = server.uri();

    for bcp in ["2026-11-26T11:40:53Z", "2026-11-26T11:41:08Z"] {
        let r = rbm(&uri, &["describe-backup", bcp, "-o", "json"]);
        assert_eq!(
            json(ok(&r)),
            json(&fixture_text(&format!("cli/describe-{bcp}.json"))),
            "describe-backup {bcp}"
        );
        // Text is YAML of the same fields, quoted as Go's yaml.v2 quotes.
        let t = rbm(&uri, &["describe-backup", bcp]);
        assert!(ok(&t).contains(&format!("name: \"{bcp}\"")), "{}", t.stdout);
    }
    // What the real `pbm describe-backup 2026-11-26T11:40:53Z` printed for these
    // documents (PBM 2.15.0, interop run of session 1).
    let t = rbm(&uri, &["describe-backup", "2026-11-26T11:40:53Z"]);
    assert_eq!(
        ok(&t).trim_end(),
        "name: \"2026-11-26T11:40:53Z\"\nstorage_type: filesystem\nopid: 6b081ac530932961ee3cc9eb\n\
         type: logical\nlast_write_time: \"2026-11-26T11:40:59Z\"\n\
         last_transition_time: \"2026-11-26T11:41:02Z\"\nsel_user_and_roles: false\n\
         mongodb_version: 8.2.11\nfcv: \"8.2\"\npbm_version: 2.15.0\nstatus: done\n\
         size_h: 2.4 MiB\nsize_uncompressed_h: 0 B\nreplsets:\n- name: secantus\n  status: done\n\
         \x20 node: 127.0.0.1:27201\n  size_uncompressed_h: \"\"\n\
         \x20 last_write_time: \"2026-11-26T11:40:59Z\"\n\
         \x20 last_transition_time: \"2026-11-26T11:41:01Z\""
    );

    let r = rbm(&uri, &["list", "-o", "json"]);
    assert_eq!(json(ok(&r)), json(&fixture_text("cli/pbm-list.json")));
    let r = rbm(&uri, &["list"]);
    assert_eq!(
        ok(&r).trim_end(),
        fixture_text("cli/pbm-list.txt").trim_end()
    );
    // `--full` adds each replica set's whole timelines, as the real PBM printed them.
    let r = rbm(&uri, &["list", "--full"]);
    assert!(
        ok(&r).trim_end().ends_with(
            "PITR <off>:\n  2026-11-26T11:41:14 - 2026-11-26T11:42:20\n\n  \
             secantus: [{ 2026-11-26T11:41:13 - 2026-11-26T11:42:20 }]"
        ),
        "{}",
        r.stdout
    );

    let r = rbm(&uri, &["status", "-s", "backups", "-o", "json"]);
    let theirs = json(&fixture_text("cli/pbm-status.json"));
    assert_eq!(json(ok(&r))["backups"], theirs["backups"]);
    let r = rbm(&uri, &["status", "-s", "backups"]);
    let text = fixture_text("cli/pbm-status.txt");
    let backups_section = &text[text.find("Backups:").expect("section")..];
    assert_eq!(ok(&r).trim_end(), backups_section.trim_end());

    // No agent ever ran here: every member is NOT FOUND, nothing is running.
    let r = rbm(&uri, &["status", "-s", "cluster,running"]);
    let out = ok(&r);
    // As the real PBM printed it for an agent-less member: no role.
    assert!(
        out.contains(&format!(
            "  - 127.0.0.1:{} [ ]: pbm-agent [NOT FOUND]",
            server.port()
        )),
        "{out}"
    );
    assert!(
        out.contains("Currently running:\n==================\n(none)"),
        "{out}"
    );
    let e = one_error(&rbm(&uri, &["describe-backup", "2020-01-01T00:00:00Z"]));
    assert!(e.contains("not found"), "{e}");
}

#[tokio::test]
async fn status_judges_agents_on_cluster_time() {
    let server = MongoServer::start().await;
    let db = admin(&server).await;
    let host = format!("127.0.0.1:{}", server.port());
    let reply = db.run_command(doc! {"hello": 1}).await.expect("hello");
    let ct = reply
        .get_document("$clusterTime")
        .and_then(|c| c.get_timestamp("clusterTime"))
        .expect("cluster time");
    let members: Vec<String> = reply
        .get_array("hosts")
        .expect("hosts")
        .iter()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    let me = members.first().cloned().unwrap_or(host);
    let mut agents = pbm_dump("2026-11-26T11:40:53Z", "admin.pbmAgents.s2");
    let mut agent = agents.pop().expect("PBM agent document");
    agent.insert("n", me.as_str());
    agent.insert("rs", server.replset());
    // Heartbeat 32 s behind the server's clock: stale, but not yet collected.
    agent.insert(
        "hb",
        bson::Timestamp {
            time: ct.time - 32,
            increment: 1,
        },
    );
    db.collection::<Document>("pbmAgents")
        .insert_one(agent.clone())
        .await
        .expect("agent");
    let r = rbm(&server.uri(), &["status", "-s", "cluster", "-o", "json"]);
    let v = json(ok(&r));
    let node = &v["cluster"][0]["nodes"][0];
    assert_eq!(node["ok"], false, "{v}");
    assert_eq!(node["agent"], "v2.15.0", "{v}");

    db.collection::<Document>("pbmAgents")
        .update_one(doc! {}, doc! {"$set": {"hb": ct}})
        .await
        .expect("fresh hb");
    let r = rbm(&server.uri(), &["status", "-s", "cluster"]);
    assert!(
        ok(&r).contains(&format!("  - {me} [P]: pbm-agent [v2.15.0] OK")),
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn logs_print_pbm_lines() {
    let server = MongoServer::start().await;
    let db = admin(&server).await;
    let entries = pbm_dump("2026-11-26T11:40:53Z", "admin.pbmLog.s2");
    assert!(!entries.is_empty());
    db.collection::<Document>("pbmLog")
        .insert_many(entries.clone())
        .await
        .expect("logs");
    let r = rbm(
        &server.uri(),
        &[
            "logs",
            "-t",
            "0",
            "-s",
            "D",
            "-e",
            "backup/2026-11-26T11:40:53Z",
        ],
    );
    let out = ok(&r);
    assert!(
        out.contains("2026-11-26T11:40:54Z D [secantus/127.0.0.1:27201] [backup/2026-11-26T11:40:53Z] init backup meta"),
        "{out}"
    );
    let r = rbm(&server.uri(), &["logs", "-t", "3", "-s", "D", "-o", "json"]);
    assert_eq!(json(ok(&r)).as_array().expect("array").len(), 3);
    let r = rbm(
        &server.uri(),
        &["logs", "-t", "1", "-s", "D", "--timezone=-05:30"],
    );
    assert!(ok(&r).contains("-05:30 "), "{}", r.stdout);
    let e = one_error(&rbm(&server.uri(), &["logs", "-s", "X"]));
    assert!(e.contains("severity"), "{e}");
}

#[tokio::test]
async fn backup_without_agents_fails_honestly() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    std::fs::write(
        &cfg,
        fs_yaml(dir.path(), "backup:\n  timeouts:\n    startingStatus: 3\n"),
    )
    .expect("write yaml");
    ok(&rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    ));
    let r = rbm(
        &server.uri(),
        &["backup", "--compression", "zstd", "--ns", "shop.*"],
    );
    let e = one_error(&r);
    assert!(e.contains("no agent executed the command"), "{e}");
    assert!(r.stdout.starts_with("Starting backup \""), "{}", r.stdout);

    let cmds: Vec<Document> = admin(&server)
        .await
        .collection::<Document>("pbmCmd")
        .find(doc! {"cmd": "backup"})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("collect");
    assert_eq!(cmds.len(), 1);
    let c = &cmds[0];
    assert_eq!(c.get_str("cmd").expect("cmd"), "backup");
    assert!(c.get_i64("ts").is_ok(), "ts is int64 unix seconds: {c}");
    let b = c.get_document("backup").expect("payload under `backup`");
    assert_eq!(b.get_str("type").expect("type"), "logical");
    assert_eq!(b.get_str("compression").expect("compression"), "zstd");
    assert_eq!(
        b.get_array("nss").expect("nss"),
        &vec![bson::Bson::String("shop.*".into())]
    );
    let name = b.get_str("name").expect("name");
    rbm_protocol::names::parse_backup_name(name).expect("RFC 3339 backup name");

    // A live lock blocks a second operation (PBM's checkForAnotherOperation).
    let db = admin(&server).await;
    let reply = db.run_command(doc! {"hello": 1}).await.expect("hello");
    let ct = reply
        .get_document("$clusterTime")
        .and_then(|c| c.get_timestamp("clusterTime"))
        .expect("cluster time");
    db.collection::<Document>("pbmLock")
        .insert_one(
            doc! {"type": "backup", "replset": "secantus", "node": "h:1",
            "opid": "6b081ac530932961ee3cc9eb", "epoch": ct, "hb": ct},
        )
        .await
        .expect("lock");
    let e = one_error(&rbm(&server.uri(), &["backup"]));
    assert!(e.contains("another operation in progress"), "{e}");
}

#[test]
fn bad_input_is_one_clear_error() {
    let unreachable = "mongodb://bk:hunter2@127.0.0.1:1/?serverSelectionTimeoutMS=1500";
    let started = std::time::Instant::now();
    let r = rbm(unreachable, &["status"]);
    let e = one_error(&r);
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(!r.stderr.contains("hunter2") && e.contains("***"), "{e}");
    assert_eq!(r.code, 3);

    let e = one_error(&rbm("mongodb+srv://cluster.example.com/", &["status"]));
    assert!(e.contains("mongodb+srv"), "{e}");
    let e = one_error(&rbm("not-a-uri", &["list"]));
    assert!(e.contains("connection string"), "{e}");

    // Flag errors are found before connecting (the URI is unreachable on purpose).
    for (args, needle) in [
        (&["backup", "--compression", "rar"][..], "--compression"),
        (&["backup", "--ns", "*.coll"][..], "--ns"),
        (&["restore", "--time", "yesterday", "-y"][..], "--time"),
        (
            &["delete-backup", "--older-than", "3x", "-y"][..],
            "--older-than",
        ),
        (&["status", "-s", "nonsense"][..], "--sections"),
    ] {
        let r = rbm(unreachable, args);
        let e = one_error(&r);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert_eq!(r.code, 2, "{args:?}");
    }
    // Unknown flags: clap's usage error, exit 2, no panic.
    let r = rbm(unreachable, &["backup", "--no-such-flag"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--no-such-flag"));
}

/// An agent that takes the command and fails it (as rbm-agent does while the engine
/// is missing): `rbm backup --wait` must end with that error and a non-zero exit.
#[tokio::test]
async fn backup_wait_reports_the_agents_error() {
    let server = MongoServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pbm.yaml");
    std::fs::write(&cfg, fs_yaml(dir.path(), "")).expect("write yaml");
    ok(&rbm(
        &server.uri(),
        &["config", "--file", cfg.to_str().expect("utf-8")],
    ));
    let db = admin(&server).await;

    let uri = server.uri();
    let child = tokio::task::spawn_blocking(move || rbm(&uri, &["backup", "--wait"]));
    // The fake agent: wait for the command, then write a failed backup meta for it.
    let cmd = loop {
        if let Some(c) = db
            .collection::<Document>("pbmCmd")
            .find_one(doc! {"cmd": "backup"})
            .await
            .expect("read pbmCmd")
        {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let name = cmd
        .get_document("backup")
        .and_then(|b| b.get_str("name"))
        .expect("backup name")
        .to_string();
    let json = fixture_text("storage/2026-11-26T11:40:53Z.pbm.json");
    let mut meta = rbm_protocol::meta::BackupMeta::from_pbm_json(&json).expect("meta");
    meta.name = name.clone();
    meta.opid = cmd.get_object_id("_id").expect("_id").to_hex();
    meta.status = rbm_protocol::defs::Status::Error;
    meta.error = Some("logical backup engine not available in this rbm build".into());
    db.collection::<Document>("pbmBackups")
        .insert_one(bson::serialize_to_document(&meta).expect("bson"))
        .await
        .expect("insert meta");

    let r = child.await.expect("rbm task");
    let e = one_error(&r);
    assert!(
        e.contains(&name) && e.contains("logical backup engine not available"),
        "{e}"
    );
    assert!(
        r.stdout.starts_with(&format!("Starting backup \"{name}\"")),
        "{}",
        r.stdout
    );
}

/// With `-o json`, PBM prints errors as `{"Error": "..."}` on stdout (its `exitErr`).
#[test]
fn json_errors_are_json() {
    let r = rbm(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500",
        &["-o", "json", "backup", "--compression", "rar"],
    );
    assert_eq!(r.code, 2);
    let v = json(&r.stdout);
    assert!(
        v["Error"]
            .as_str()
            .is_some_and(|e| e.contains("--compression")),
        "{v}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let server = MongoServer::start().await;
    let uri = format!(
        "mongodb://bk:n0tTheP4ss@127.0.0.1:{}/?replicaSet={}",
        server.port(),
        server.replset()
    );
    let r = rbm(&uri, &["status"]);
    let e = one_error(&r);
    assert!(e.contains("authentication failed"), "{e}");
    assert!(!r.stderr.contains("n0tTheP4ss"), "{e}");
    assert_eq!(r.code, 3);
}

/// `logs --follow` tails the capped `pbmLog`: an entry written later is printed.
#[tokio::test]
async fn logs_follow_prints_new_entries() {
    let server = MongoServer::start().await;
    let db = admin(&server).await;
    db.run_command(doc! {"create": "pbmLog", "capped": true, "size": 50_i64 << 20})
        .await
        .expect("capped pbmLog");
    let mut entries = pbm_dump("2026-11-26T11:40:53Z", "admin.pbmLog.s2");
    let first = entries.remove(0);
    db.collection::<Document>("pbmLog")
        .insert_one(first)
        .await
        .expect("first");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
        .args(["--mongodb-uri", &server.uri(), "logs", "-f", "-s", "D"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rbm logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(stdout).lines() {
            let l = l.expect("line");
            let done = l.contains("init backup meta");
            lines.push(l);
            if done {
                break;
            }
        }
        lines
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = entries
        .into_iter()
        .find(|d| d.get_str("msg").ok() == Some("init backup meta"))
        .expect("a later entry");
    db.collection::<Document>("pbmLog")
        .insert_one(later)
        .await
        .expect("later");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let finished = reader.is_finished();
    let _ = child.kill();
    let _ = child.wait();
    assert!(finished, "the new entry was not printed within 20 s");
    let lines = reader.join().expect("reader");
    assert!(lines.len() >= 2, "{lines:?}");
}
