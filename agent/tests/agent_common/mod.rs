//! Shared helpers of the `agent_*` tests: spawn real `rbm-agent` processes against a
//! private SecantusDB, each with a test-only node name so several agents can share
//! the one-member server.

#![allow(dead_code)]

use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use rbm_e2e::MongoServer;

/// The wall clock in seconds since the epoch (backup names and command `ts` use it).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Sleeps until just after the next whole second: backup names have whole seconds.
pub async fn next_second() {
    let wait = 1.05 - now_secs().fract();
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
}

/// A running agent process; killed on drop.
pub struct Agent {
    pub name: String,
    child: Option<Child>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `rbm-agent` as node `name` with `role` (primary/secondary/hidden).
    pub fn start(server: &MongoServer, name: &str, role: &str, env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().expect("agent dir");
        let log = dir.path().join("agent.log");
        let out = std::fs::File::create(&log).expect("agent log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbm-agent"));
        cmd.env("PBM_MONGODB_URI", server.uri())
            .env("RBM_AGENT_NODE_NAME", name)
            .env("RBM_AGENT_NODE_ROLE", role)
            .env("LOG_LEVEL", "D")
            .env_remove("LOG_JSON")
            .stdout(Stdio::null())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn rbm-agent");
        let mut agent = Agent {
            name: name.to_string(),
            child: Some(child),
            log,
            _dir: dir,
        };
        agent.wait_listening();
        agent
    }

    /// The agent of a node it may stop and start (physical backups and restores): as the
    /// primary `127.0.0.1:<port>`, with the server's dbPath and these start and stop
    /// shell commands, plus `extra` settings.
    pub fn start_on_node(
        server: &MongoServer,
        start: &str,
        stop: &str,
        extra: &[(&str, &str)],
    ) -> Agent {
        let me = format!("127.0.0.1:{}", server.port());
        let dbpath = server.data_dir().display().to_string();
        let mut env = vec![
            ("RBM_AGENT_DBPATH", dbpath.as_str()),
            ("RBM_AGENT_MONGOD_START_CMD", start),
            ("RBM_AGENT_MONGOD_STOP_CMD", stop),
            ("RBM_AGENT_MONGOD_TIMEOUT_SECS", "60"),
        ];
        env.extend_from_slice(extra);
        Agent::start(server, &me, "primary", &env)
    }

    /// Until the agent reads commands (or has exited, which the test then sees): a
    /// command written before that may predate its start and is, as in PBM, not run.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.log().contains("listening for commands") || !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "agent {} did not start listening in 60 s; log:\n{}",
            self.name,
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} failed");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running agent");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} did not exit; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `kill -9`, waiting until it is gone.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        self.wait(Duration::from_secs(10));
        self.child = None;
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client of the test server (replica set, majority).
pub async fn client(server: &MongoServer) -> Client {
    Client::with_uri_str(server.uri())
        .await
        .expect("test client")
}

pub async fn cluster_time(c: &Client) -> Timestamp {
    let r = c
        .database("admin")
        .run_command(doc! {"hello": 1})
        .await
        .expect("hello");
    r.get_document("$clusterTime")
        .and_then(|d| d.get_timestamp("clusterTime"))
        .expect("hello has $clusterTime")
}

pub async fn find_all(c: &Client, coll: &str, filter: Document) -> Vec<Document> {
    use futures::TryStreamExt;
    c.database("admin")
        .collection::<Document>(coll)
        .find(filter)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor")
}

/// The `pbmBackups` document of the backup `name`, decoded.
pub async fn backup_meta(c: &Client, name: &str) -> rbm_protocol::meta::BackupMeta {
    let d = find_all(c, "pbmBackups", doc! {"name": name})
        .await
        .into_iter()
        .next()
        .expect("backup meta");
    mongodb::bson::deserialize_from_document(d).expect("decode meta")
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Inserts a `pbmCmd` document; `ts_offset` seconds are added to now (a future `ts`
/// keeps the command visible to agents that restart).
pub async fn send_command(
    c: &Client,
    cmd: &str,
    payload: Option<Document>,
    ts_offset: i64,
) -> mongodb::bson::oid::ObjectId {
    let id = mongodb::bson::oid::ObjectId::new();
    let ts = now_secs() as i64 + ts_offset;
    let mut d = doc! {"_id": id, "cmd": cmd};
    if let Some(p) = payload {
        d.insert(cmd, p);
    }
    d.insert("ts", ts);
    c.database("admin")
        .collection::<Document>("pbmCmd")
        .insert_one(d)
        .await
        .expect("insert command");
    id
}

/// Runs `rbm <args>` against `server`; returns (exit ok, stdout, stderr).
pub fn rbm(server: &MongoServer, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
        .args(args)
        .env("PBM_MONGODB_URI", server.uri())
        .output()
        .expect("run rbm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text after `marker` in `out` up to a quote or a space (a name the CLI printed).
pub fn quoted_after(out: &str, marker: &str) -> String {
    let i = out
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} in output: {out}"))
        + marker.len();
    out[i..]
        .chars()
        .take_while(|c| *c != '"' && *c != ' ')
        .collect()
}

/// Replaces the main config with one naming only `storage`.
pub async fn set_config(c: &Client, storage: &rbm_storage::StorageConf) {
    let d = doc! {"storage": mongodb::bson::serialize_to_bson(storage).expect("storage conf")};
    let coll = c.database("admin").collection::<Document>("pbmConfig");
    coll.delete_many(doc! {}).await.expect("clear config");
    coll.insert_one(d).await.expect("insert config");
}
