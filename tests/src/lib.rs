//! Helpers for end-to-end tests against the real services that `scripts/test-services`
//! installs and starts. Tests find them through `RBM_TEST_*` environment variables;
//! a missing variable fails the test with a message saying how to run it, because a
//! silently skipped test proves nothing.

use rbm_protocol::config::{AzureConf, AzureCredentials, S3Conf, S3Credentials};
use rbm_protocol::{Secret, StorageConf, StorageType};

/// The value of a required environment variable.
///
/// # Panics
/// When it is unset: the test must run under `scripts/test`.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run the tests with scripts/test (it starts the services), \
             or `eval \"$(scripts/test-services env)\"` after `scripts/test-services start`"
        ),
    }
}

/// Upload part / block size used by the storage tests: small, so that multipart paths
/// are exercised with modest objects.
pub const TEST_PART_SIZE: u64 = 5 << 20;

/// A storage section for the s3s-fs server (`endpoint` overrides, e.g. for moto).
pub fn s3_conf(endpoint: Option<String>) -> StorageConf {
    StorageConf {
        kind: StorageType::S3,
        s3: Some(S3Conf {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint.unwrap_or_else(|| require_env("RBM_TEST_S3_ENDPOINT"))),
            bucket: require_env("RBM_TEST_S3_BUCKET"),
            credentials: S3Credentials {
                access_key_id: Secret::new(require_env("RBM_TEST_S3_ACCESS_KEY")),
                secret_access_key: Secret::new(require_env("RBM_TEST_S3_SECRET_KEY")),
                ..Default::default()
            },
            upload_part_size: Some(TEST_PART_SIZE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A storage section for the moto server.
pub fn moto_conf() -> StorageConf {
    s3_conf(Some(require_env("RBM_TEST_MOTO_ENDPOINT")))
}

/// A storage section for Azurite.
pub fn azure_conf() -> StorageConf {
    StorageConf {
        kind: StorageType::Azure,
        azure: Some(AzureConf {
            account: require_env("RBM_TEST_AZURE_ACCOUNT"),
            container: require_env("RBM_TEST_AZURE_CONTAINER"),
            endpoint_url: Some(require_env("RBM_TEST_AZURE_ENDPOINT")),
            credentials: AzureCredentials {
                key: Secret::new(require_env("RBM_TEST_AZURE_KEY")),
                ..Default::default()
            },
            upload_part_size: Some(TEST_PART_SIZE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A storage section for a local directory.
pub fn fs_conf(path: &std::path::Path) -> StorageConf {
    StorageConf {
        kind: StorageType::Filesystem,
        filesystem: Some(rbm_protocol::FilesystemConf {
            path: path.display().to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A private SecantusDB server for one test: its own port, data directory and
/// replica-set name, so tests that write to `admin.pbm*` control collections do not
/// see each other. Stopped (SIGTERM, then SIGKILL) and removed on drop.
pub struct MongoServer {
    child: Option<std::process::Child>,
    port: u16,
    replset: String,
    dir: tempfile::TempDir,
    /// Started through `start.sh` (see [`MongoServer::start_restartable`]).
    restartable: bool,
}

impl MongoServer {
    /// Starts a server as replica set `secantus` and waits until it is a writable primary.
    ///
    /// # Panics
    /// When the venv is missing or the server does not come up within 60 s.
    pub async fn start() -> Self {
        Self::start_named("secantus").await
    }

    /// Starts a server advertising replica-set name `replset`.
    ///
    /// # Panics
    /// When the venv is missing or the server does not come up within 60 s.
    pub async fn start_named(replset: &str) -> Self {
        let venv = std::path::PathBuf::from(require_env("RBM_TEST_VENV"));
        let dir = tempfile::Builder::new()
            .prefix("rbm-mongo-")
            .tempdir()
            .expect("temp dir for the server");
        let conf = dir.path().join("empty.toml");
        std::fs::write(&conf, "").expect("write empty config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/secantus-launch.py");
        let child = std::process::Command::new(venv.join("bin/python"))
            .arg(launcher)
            .args(["--replset-name", replset, "--config"])
            .arg(&conf)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage-path",
            ])
            .arg(dir.path().join("data"))
            .args([
                "--oplog-max-entries",
                "20000",
                "--noop-heartbeat-seconds",
                "10",
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn SecantusDB");
        let mut server = Self {
            child: Some(child),
            port,
            replset: replset.to_string(),
            dir,
            restartable: false,
        };
        server.wait_ready().await;
        server
    }

    /// A server that something else may stop and start again on the same data
    /// directory (an agent doing cold physical backups and restores): it runs detached,
    /// started by `start.sh` and stopped by `stop.sh` in its directory (see
    /// [`MongoServer::start_cmd`], [`MongoServer::stop_cmd`]); its PID is in
    /// `server.pid`. Dropping it runs `stop.sh`.
    ///
    /// # Panics
    /// When the venv is missing or the server does not come up within 60 s.
    pub async fn start_restartable() -> Self {
        let replset = "secantus";
        let venv = std::path::PathBuf::from(require_env("RBM_TEST_VENV"));
        let dir = tempfile::Builder::new()
            .prefix("rbm-mongo-")
            .tempdir()
            .expect("temp dir for the server");
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("empty.toml"), "").expect("write empty config");
        let port = free_port();
        let launcher =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/secantus-launch.py");
        let start = format!(
            "#!/bin/sh\ncd '{d}' || exit 1\nPYTHONUNBUFFERED=1 nohup '{py}' '{l}' --replset-name {replset} \
             --config '{d}/empty.toml' --host 127.0.0.1 --port {port} --storage-path '{d}/data' \
             --oplog-max-entries 20000 --noop-heartbeat-seconds 10 >> '{d}/server.log' 2>&1 < /dev/null &\n\
             echo $! > '{d}/server.pid'\n",
            py = venv.join("bin/python").display(),
            l = launcher.display(),
        );
        // A zombie (its parent gone, nobody reaping) counts as stopped.
        let stop = format!(
            "#!/bin/sh\npid=$(cat '{d}/server.pid' 2>/dev/null) || exit 0\n\
             alive() {{ [ -e /proc/$pid ] && ! grep -q ') Z' /proc/$pid/stat 2>/dev/null; }}\n\
             kill -TERM \"$pid\" 2>/dev/null\ni=0\nwhile alive; do\n  i=$((i+1))\n  \
             if [ $i -gt 300 ]; then kill -KILL \"$pid\" 2>/dev/null; fi\n  sleep 0.1\ndone\n"
        );
        std::fs::write(dir.path().join("start.sh"), start).expect("write start.sh");
        std::fs::write(dir.path().join("stop.sh"), stop).expect("write stop.sh");
        let mut server = Self {
            child: None,
            port,
            replset: replset.to_string(),
            dir,
            restartable: true,
        };
        let st = std::process::Command::new("sh")
            .arg(server.dir.path().join("start.sh"))
            .status()
            .expect("run start.sh");
        assert!(st.success(), "start.sh failed");
        server.wait_ready().await;
        server
    }

    /// Shell command that starts a [`MongoServer::start_restartable`] server.
    pub fn start_cmd(&self) -> String {
        format!("sh '{}'", self.dir.path().join("start.sh").display())
    }

    /// Shell command that stops it and returns once the process is gone.
    pub fn stop_cmd(&self) -> String {
        format!("sh '{}'", self.dir.path().join("stop.sh").display())
    }

    /// The server's storage directory (its dbPath).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// `mongodb://127.0.0.1:<port>/?replicaSet=<name>`.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?replicaSet={}",
            self.port, self.replset
        )
    }

    /// A direct connection URI to the single member.
    pub fn direct_uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn replset(&self) -> &str {
        &self.replset
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let opts = mongodb::options::ClientOptions::parse(self.direct_uri())
            .await
            .expect("client options");
        let client = mongodb::Client::with_options(opts).expect("client");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("SecantusDB exited early ({status}):\n{}", self.log());
                }
            }
            let hello = client
                .database("admin")
                .run_command(mongodb::bson::doc! {"hello": 1})
                .await;
            if let Ok(h) = hello {
                if h.get_bool("isWritablePrimary").unwrap_or(false) {
                    return;
                }
            }
            if std::time::Instant::now() > deadline {
                panic!("SecantusDB not ready after 60 s:\n{}", self.log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if self.restartable {
            let _ = std::process::Command::new("sh")
                .arg(self.dir.path().join("stop.sh"))
                .status();
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A TCP port that was free a moment ago (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Count and SHA-256 (hex) of one collection by the fixtures' canonical hash rule
/// (`/work/shared/fixtures/pbm-2.15/README.md`): the raw BSON bytes of every document
/// as the server returns them, sorted by the raw bytes of the `_id` element (type byte,
/// `_id\0`, value), concatenated. Field order matters, as in a byte-exact restore.
///
/// # Panics
/// On any server error: this is a test helper.
pub async fn collection_hash(coll: &mongodb::Collection<bson::RawDocumentBuf>) -> (u64, String) {
    use futures::TryStreamExt;
    use sha2::Digest;

    let mut docs: Vec<(Vec<u8>, bson::RawDocumentBuf)> = coll
        .find(bson::doc! {})
        .await
        .unwrap_or_else(|e| panic!("find on {}: {e}", coll.namespace()))
        .map_ok(|d| (id_element_bytes(&d), d))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {}: {e}", coll.namespace()));
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = sha2::Sha256::new();
    for (_, d) in &docs {
        h.update(d.as_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (docs.len() as u64, hex)
}

/// The raw `_id` element of `doc`, re-encoded from its value: BSON encoding of a value is
/// unique, so this equals the element's bytes in the document.
fn id_element_bytes(doc: &bson::RawDocument) -> Vec<u8> {
    let Ok(Some(id)) = doc.get("_id") else {
        return Vec::new();
    };
    let mut one = bson::RawDocumentBuf::new();
    one.append(bson::raw::cstr!("_id"), id);
    let b = one.as_bytes();
    // Strip the 4-byte length and the trailing NUL: what is left is the element.
    b[4..b.len() - 1].to_vec()
}

/// `ns -> (count, sha256 hex)` of every collection on the server, excluding the `admin`,
/// `local` and `config` databases, `system.*` collections and views (the fixtures' rule).
///
/// # Panics
/// On any server error: this is a test helper.
pub async fn state_hashes(
    client: &mongodb::Client,
) -> std::collections::BTreeMap<String, (u64, String)> {
    let mut out = std::collections::BTreeMap::new();
    let dbs = client.list_database_names().await.expect("listDatabases");
    for db_name in dbs {
        if matches!(db_name.as_str(), "admin" | "local" | "config") {
            continue;
        }
        let db = client.database(&db_name);
        let specs = db
            .run_command(bson::doc! {"listCollections": 1, "filter": {"type": "collection"}})
            .await
            .unwrap_or_else(|e| panic!("listCollections on {db_name}: {e}"));
        let batch = specs
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .unwrap_or_else(|e| panic!("listCollections reply on {db_name}: {e}"));
        for spec in batch {
            let Some(name) = spec.as_document().and_then(|d| d.get_str("name").ok()) else {
                continue;
            };
            if name.starts_with("system.") {
                continue;
            }
            let coll = db.collection::<bson::RawDocumentBuf>(name);
            out.insert(format!("{db_name}.{name}"), collection_hash(&coll).await);
        }
    }
    out
}
