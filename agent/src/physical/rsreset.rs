//! Recovery steps for the target's replica-set configuration after the files of a
//! physical backup were copied in, on mongod (PBM's `prepareData`,
//! `recoverStandaloneFromOplog` and `resetRS` in `pbm/restore/physical.go`). The
//! restored `local` database describes the replica set the backup came from (its
//! members, its election state, where its oplog may be cut); before the node rejoins,
//! a standalone mongod on a temporary port replaces that with the target's:
//!
//! 1. prepare: empty `local.replset.minvalid`, `local.replset.oplogTruncateAfterPoint`,
//!    `local.replset.election` and `local.system.replset`; insert a fresh minvalid
//!    (`{t: -1, ts: {0, 1}}`) and `oplogTruncateAfterPoint` = the backup's last write,
//!    so the recovery below cuts the oplog exactly there;
//! 2. recover: start with `recoverFromOplogAsStandalone` (the oplog up to that point is
//!    applied to the checkpoint) and `takeUnstableCheckpointOnShutdown`;
//! 3. reset: empty `config.cache.*` and `config.system.sessions`, write the target's
//!    configuration (version 1, its members and settings) into `local.system.replset`.
//!
//! The target's configuration comes from `replSetGetConfig` before the node is stopped,
//! so the restored node keeps the members it has now (non-voting, hidden and delayed
//! ones included) whatever the backup's replica set looked like. SecantusDB has no
//! `replSetGetConfig` and no standalone mode: there the steps are skipped (see
//! [`super::secantus::no_replset_config`]).
//!
//! rbm's own control collections are reset afterwards on the running replica set
//! ([`super::restore`]), as before.

use super::{secantus, PhysicalError};
use crate::node::Node;
use bson::{doc, oid::ObjectId, Bson, Document, Timestamp};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// PBM's log file of the temporary mongod, inside the dbPath.
pub const STANDALONE_LOG: &str = "pbm.restore.log";

/// The three standalone runs, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prepare,
    Recover,
    Reset,
}

/// One write on the standalone node.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `deleteMany({})` (PBM empties rather than drops: the collections stay).
    Empty { db: String, coll: String },
    Insert {
        db: String,
        coll: String,
        doc: Document,
    },
}

impl Step {
    fn empty(db: &str, coll: &str) -> Self {
        Step::Empty {
            db: db.into(),
            coll: coll.into(),
        }
    }

    /// The command document that carries the step out.
    pub fn command(&self) -> Document {
        match self {
            Step::Empty { coll, .. } => doc! {
                "delete": coll,
                "deletes": [{"q": {}, "limit": 0}],
            },
            Step::Insert { coll, doc, .. } => doc! {
                "insert": coll,
                "documents": [doc.clone()],
            },
        }
    }

    pub fn db(&self) -> &str {
        match self {
            Step::Empty { db, .. } | Step::Insert { db, .. } => db,
        }
    }
}

/// mongod's arguments for `stage` (PBM's, with the port and log on the command line
/// instead of a temporary config file), then `engine` (see [`engine_args`]).
pub fn stage_args(stage: Stage, dbpath: &Path, port: u16, engine: &[String]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--dbpath".into(),
        dbpath.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--bind_ip".into(),
        "127.0.0.1".into(),
        "--logpath".into(),
        dbpath.join(STANDALONE_LOG).display().to_string(),
    ];
    let params: &[&str] = match stage {
        Stage::Prepare => &["disableLogicalSessionCacheRefresh=true"],
        Stage::Recover => &[
            "recoverFromOplogAsStandalone=true",
            "takeUnstableCheckpointOnShutdown=true",
        ],
        Stage::Reset => &[
            "disableLogicalSessionCacheRefresh=true",
            "skipShardingConfigurationChecks=true",
        ],
    };
    for p in params {
        a.push("--setParameter".into());
        a.push((*p).into());
    }
    a.extend(engine.iter().cloned());
    a
}

/// What the standalone runs need beyond PBM's fixed options to open the restored files,
/// as PBM's temporary config file carries it (`setTmpConf`): the storage layout and
/// WiredTiger settings the files were written with, from the backup's `mongod_opts`,
/// and the data-at-rest encryption settings of this node (PBM's `secOpts`: the target's
/// key or key server opens them), from its `getCmdLineOpts` taken before the stop.
/// Given as mongod's documented command-line flags, so no config file is written;
/// options left out are the ones whose defaults are right for a short standalone run.
pub fn engine_args(backup_opts: Option<&Document>, node_opts: &Document) -> Vec<String> {
    let mut a = Vec::new();
    let empty = Document::new();
    let storage = backup_opts
        .and_then(|o| o.get_document("storage").ok())
        .unwrap_or(&empty);
    if let Ok(engine) = storage.get_str("engine") {
        push_value(&mut a, "--storageEngine", &Bson::String(engine.into()));
    }
    if storage.get_bool("directoryPerDB").unwrap_or(false) {
        a.push("--directoryperdb".into());
    }
    let wt = storage.get_document("wiredTiger").unwrap_or(&empty);
    let part = |k: &str| wt.get_document(k).unwrap_or(&empty);
    let engine_config = part("engineConfig");
    if engine_config
        .get_bool("directoryForIndexes")
        .unwrap_or(false)
    {
        a.push("--wiredTigerDirectoryForIndexes".into());
    }
    for (doc, key, flag) in [
        (
            engine_config,
            "journalCompressor",
            "--wiredTigerJournalCompressor",
        ),
        (
            part("collectionConfig"),
            "blockCompressor",
            "--wiredTigerCollectionBlockCompressor",
        ),
        (
            part("indexConfig"),
            "prefixCompression",
            "--wiredTigerIndexPrefixCompression",
        ),
    ] {
        if let Some(v) = doc.get(key) {
            push_value(&mut a, flag, v);
        }
    }
    // The cache is this machine's concern: the node's own setting, not the source's.
    if let Some(v) = node_opts
        .get_document("storage")
        .and_then(|s| s.get_document("wiredTiger"))
        .and_then(|w| w.get_document("engineConfig"))
        .ok()
        .and_then(|e| e.get("cacheSizeGB"))
    {
        push_value(&mut a, "--wiredTigerCacheSizeGB", v);
    }
    let sec = node_opts.get_document("security").unwrap_or(&empty);
    if sec.get_bool("enableEncryption").unwrap_or(false) {
        a.push("--enableEncryption".into());
    }
    for (key, flag) in [
        ("encryptionCipherMode", "--encryptionCipherMode"),
        ("encryptionKeyFile", "--encryptionKeyFile"),
    ] {
        if let Some(v) = sec.get(key) {
            push_value(&mut a, flag, v);
        }
    }
    if sec.get_bool("relaxPermChecks").unwrap_or(false) {
        a.push("--relaxPermChecks".into());
    }
    let flags: [(&str, &[(&str, &str)]); 2] = [
        (
            "vault",
            &[
                ("serverName", "--vaultServerName"),
                ("port", "--vaultPort"),
                ("tokenFile", "--vaultTokenFile"),
                ("secret", "--vaultSecret"),
                ("serverCAFile", "--vaultServerCAFile"),
                ("secretVersion", "--vaultSecretVersion"),
            ],
        ),
        (
            "kmip",
            &[
                ("serverName", "--kmipServerName"),
                ("port", "--kmipPort"),
                ("clientCertificateFile", "--kmipClientCertificateFile"),
                (
                    "clientCertificatePassword",
                    "--kmipClientCertificatePassword",
                ),
                ("serverCAFile", "--kmipServerCAFile"),
                ("keyIdentifier", "--kmipKeyIdentifier"),
            ],
        ),
    ];
    for (section, keys) in flags {
        let Ok(d) = sec.get_document(section) else {
            continue;
        };
        for (key, flag) in keys {
            if let Some(v) = d.get(*key) {
                push_value(&mut a, flag, v);
            }
        }
        if section == "vault" && d.get_bool("disableTLSForTesting").unwrap_or(false) {
            a.push("--vaultDisableTLSForTesting".into());
        }
    }
    a
}

/// `flag value`, for the scalar kinds `getCmdLineOpts` reports; anything else is left
/// out rather than passed mangled.
fn push_value(a: &mut Vec<String>, flag: &str, v: &Bson) {
    let v = match v {
        Bson::String(s) if !s.is_empty() => s.clone(),
        Bson::Boolean(b) => b.to_string(),
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(f) => f.to_string(),
        _ => return,
    };
    a.push(flag.into());
    a.push(v);
}

/// PBM's `prepareData`: replication state of the source gone, the oplog cut at
/// `restore_ts` by the next recovery.
pub fn prepare_steps(restore_ts: Timestamp, minvalid_id: ObjectId) -> Vec<Step> {
    vec![
        Step::empty("local", "replset.minvalid"),
        Step::empty("local", "replset.oplogTruncateAfterPoint"),
        Step::empty("local", "replset.election"),
        Step::empty("local", "system.replset"),
        Step::Insert {
            db: "local".into(),
            coll: "replset.minvalid".into(),
            doc: doc! {"_id": minvalid_id, "t": -1i64, "ts": Timestamp { time: 0, increment: 1 }},
        },
        Step::Insert {
            db: "local".into(),
            coll: "replset.oplogTruncateAfterPoint".into(),
            doc: doc! {"_id": "oplogTruncateAfterPoint", "oplogTruncateAfterPoint": restore_ts},
        },
    ]
}

/// PBM's `resetRS` on a replica set that is not part of a sharded cluster:
/// `config.cache.*` (given, as listed on the node) and `config.system.sessions`
/// emptied, then the target's configuration in `local.system.replset`.
///
/// # Errors
/// A target configuration without `_id` or members.
pub fn reset_steps(target: &Document, cache_colls: &[String]) -> Result<Vec<Step>, PhysicalError> {
    let mut v: Vec<Step> = cache_colls
        .iter()
        .filter(|c| c.starts_with("cache."))
        .map(|c| Step::empty("config", c))
        .collect();
    v.push(Step::empty("config", "system.sessions"));
    v.push(Step::empty("local", "system.replset"));
    v.push(Step::Insert {
        db: "local".into(),
        coll: "system.replset".into(),
        doc: new_replset_doc(target)?,
    });
    Ok(v)
}

/// The document PBM writes into `local.system.replset` (its `topo.RSConfig`): the
/// target's `_id`, members and known settings, version 1; a new `replicaSetId` is
/// chosen by mongod. Field types are those the Go driver writes (`int` as int32).
///
/// # Errors
/// A configuration without `_id` or members.
pub fn new_replset_doc(target: &Document) -> Result<Document, PhysicalError> {
    let id = target
        .get_str("_id")
        .map_err(|_| PhysicalError::Reply("replSetGetConfig: config without _id".into()))?;
    let members = target
        .get_array("members")
        .map_err(|_| PhysicalError::Reply("replSetGetConfig: config without members".into()))?;
    let mut d = doc! {"_id": id};
    if target.get_bool("configsvr").unwrap_or(false) {
        d.insert("configsvr", true);
    }
    if let Some(p) = int_of(target.get("protocolVersion")).filter(|p| *p != 0) {
        d.insert("protocolVersion", p);
    }
    d.insert("version", 1i32);
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        let m = m.as_document().ok_or_else(|| {
            PhysicalError::Reply("replSetGetConfig: a member is not a document".into())
        })?;
        out.push(Bson::Document(member_doc(m)));
    }
    d.insert("members", out);
    if target
        .get_bool("writeConcernMajorityJournalDefault")
        .unwrap_or(false)
    {
        d.insert("writeConcernMajorityJournalDefault", true);
    }
    let mut settings = Document::new();
    if let Ok(s) = target.get_document("settings") {
        if s.get_bool("chainingAllowed").unwrap_or(false) {
            settings.insert("chainingAllowed", true);
        }
        for k in [
            "heartbeatIntervalMillis",
            "heartbeatTimeoutSecs",
            "electionTimeoutMillis",
            "catchUpTimeoutMillis",
        ] {
            if let Some(v) = int_of(s.get(k)).filter(|v| *v != 0) {
                d_insert_i32(&mut settings, k, v);
            }
        }
    }
    d.insert("settings", settings);
    Ok(d)
}

fn d_insert_i32(d: &mut Document, k: &str, v: i64) {
    match i32::try_from(v) {
        Ok(v) => d.insert(k, v),
        Err(_) => d.insert(k, v),
    };
}

fn int_of(b: Option<&Bson>) -> Option<i64> {
    match b? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

/// PBM's `RSMember`: votes and priority as configured (a non-voting member stays
/// one), delayed members keep their delay.
fn member_doc(m: &Document) -> Document {
    let mut d = Document::new();
    d_insert_i32(&mut d, "_id", int_of(m.get("_id")).unwrap_or(0));
    d.insert("host", m.get_str("host").unwrap_or_default());
    d.insert("arbiterOnly", m.get_bool("arbiterOnly").unwrap_or(false));
    d.insert("buildIndexes", m.get_bool("buildIndexes").unwrap_or(true));
    d.insert("hidden", m.get_bool("hidden").unwrap_or(false));
    let prio = match m.get("priority") {
        Some(Bson::Double(p)) => *p,
        other => int_of(other).map_or(1.0, |p| p as f64),
    };
    d.insert("priority", prio);
    if let Ok(t) = m.get_document("tags") {
        if !t.is_empty() {
            d.insert("tags", t.clone());
        }
    }
    if let Some(s) = int_of(m.get("slaveDelay")).filter(|s| *s != 0) {
        d.insert("slaveDelay", s);
    }
    if let Some(s) = int_of(m.get("secondaryDelaySecs")).filter(|s| *s != 0) {
        d.insert("secondaryDelaySecs", s);
    }
    d_insert_i32(&mut d, "votes", int_of(m.get("votes")).unwrap_or(1));
    d
}

/// The members whose restore the primary waits for: every member but arbiters, as
/// PBM's `syncPathPeers`, whatever its votes, priority, hidden or delay.
pub fn restore_peers(config: &Document) -> Vec<String> {
    config
        .get_array("members")
        .map(|a| {
            a.iter()
                .filter_map(Bson::as_document)
                .filter(|m| !m.get_bool("arbiterOnly").unwrap_or(false))
                .filter_map(|m| m.get_str("host").ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The same from `hello` when there is no configuration to read: `hosts` (electable)
/// and `passives` (priority 0, which every non-voting member is). Hidden members are
/// not in `hello`.
pub fn restore_peers_from_hello(hello: &Document) -> Vec<String> {
    let mut v = Vec::new();
    for k in ["hosts", "passives"] {
        if let Ok(a) = hello.get_array(k) {
            v.extend(a.iter().filter_map(|h| h.as_str().map(str::to_string)));
        }
    }
    v
}

/// The data-bearing members (all but arbiters, any votes): from the configuration when
/// there is one, else from `hello`; the node's own `hosts` list as the last resort.
///
/// # Errors
/// `hello` failed.
pub async fn data_members(
    node: &Node,
    config: Option<&Document>,
) -> Result<Vec<String>, PhysicalError> {
    let members = match config {
        Some(c) => restore_peers(c),
        None => {
            let hello = node
                .local
                .database("admin")
                .run_command(doc! {"hello": 1})
                .await
                .map_err(PhysicalError::db("hello"))?;
            restore_peers_from_hello(&hello)
        }
    };
    Ok(if members.is_empty() {
        node.info.hosts.clone()
    } else {
        members
    })
}

/// The target's current replica-set configuration, read before the node is stopped;
/// `None` where the server has no `replSetGetConfig` (SecantusDB).
///
/// # Errors
/// Any other failure of the command.
pub async fn target_config(node: &Node) -> Result<Option<Document>, PhysicalError> {
    match node
        .local
        .database("admin")
        .run_command(doc! {"replSetGetConfig": 1})
        .await
    {
        Ok(r) => r
            .get_document("config")
            .map(|c| Some(c.clone()))
            .map_err(|_| PhysicalError::Reply("replSetGetConfig: no config in the reply".into())),
        Err(e) if secantus::no_replset_config(&e) => Ok(None),
        Err(e) => Err(PhysicalError::db("replSetGetConfig")(e)),
    }
}

/// Runs the three standalone stages on the restored dbPath (the node is down).
///
/// # Errors
/// The mongod did not start, a step failed, or it did not stop.
pub async fn run(
    mongod: &str,
    engine: &[String],
    dbpath: &Path,
    target: &Document,
    restore_ts: Timestamp,
    timeout: Duration,
) -> Result<(), PhysicalError> {
    // Fail on a bad configuration before the first mongod is started.
    new_replset_doc(target)?;
    let port = free_port()?;
    let c = Standalone::start(mongod, engine, Stage::Prepare, dbpath, port, timeout).await?;
    c.apply(&prepare_steps(restore_ts, ObjectId::new())).await?;
    c.shutdown(timeout).await?;
    let c = Standalone::start(mongod, engine, Stage::Recover, dbpath, port, timeout).await?;
    c.shutdown(timeout).await?;
    let c = Standalone::start(mongod, engine, Stage::Reset, dbpath, port, timeout).await?;
    let caches = c.cache_collections().await?;
    c.apply(&reset_steps(target, &caches)?).await?;
    c.shutdown(timeout).await
}

fn free_port() -> Result<u16, PhysicalError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(PhysicalError::io(
        "find a free port for the standalone mongod",
    ))?;
    l.local_addr().map(|a| a.port()).map_err(PhysicalError::io(
        "find a free port for the standalone mongod",
    ))
}

struct Standalone {
    child: tokio::process::Child,
    client: mongodb::Client,
}

impl Standalone {
    async fn start(
        mongod: &str,
        engine: &[String],
        stage: Stage,
        dbpath: &Path,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, PhysicalError> {
        let mut child = tokio::process::Command::new(mongod)
            .args(stage_args(stage, dbpath, port, engine))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(PhysicalError::io(format!("start {mongod} as a standalone")))?;
        let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
        let client = mongodb::Client::with_uri_str(&uri)
            .await
            .map_err(PhysicalError::db("connect to the standalone mongod"))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(PhysicalError::NodeControl(format!(
                    "the standalone mongod ({stage:?}) exited with {st}; see {}",
                    dbpath.join(STANDALONE_LOG).display()
                )));
            }
            if client
                .database("admin")
                .run_command(doc! {"ping": 1})
                .await
                .is_ok()
            {
                return Ok(Self { child, client });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(PhysicalError::NodeControl(format!(
                    "the standalone mongod ({stage:?}) did not answer within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn apply(&self, steps: &[Step]) -> Result<(), PhysicalError> {
        for s in steps {
            let r = self
                .client
                .database(s.db())
                .run_command(s.command())
                .await
                .map_err(PhysicalError::db(format!("standalone step {s:?}")))?;
            if let Ok(errs) = r.get_array("writeErrors") {
                if !errs.is_empty() {
                    return Err(PhysicalError::Reply(format!(
                        "standalone step {s:?}: {errs:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn cache_collections(&self) -> Result<Vec<String>, PhysicalError> {
        self.client
            .database("config")
            .list_collection_names()
            .filter(doc! {"name": {"$regex": "^cache\\."}})
            .await
            .map_err(PhysicalError::db("list config.cache.*"))
    }

    /// `shutdown`, forced only when mongod refuses a clean one (PBM's rule), then
    /// waits for the process to exit.
    async fn shutdown(mut self, timeout: Duration) -> Result<(), PhysicalError> {
        for force in [false, true] {
            let r = self
                .client
                .database("admin")
                .run_command(doc! {"shutdown": 1, "force": force})
                .await;
            match r {
                Err(e) if e.to_string().contains("ConflictingOperationInProgress") && !force => {
                    continue
                }
                // The reply never comes: the connection closes under it.
                _ => break,
            }
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(st)) if st.success() => Ok(()),
            Ok(Ok(st)) => Err(PhysicalError::NodeControl(format!(
                "the standalone mongod exited with {st}"
            ))),
            Ok(Err(e)) => Err(PhysicalError::io("wait for the standalone mongod")(e)),
            Err(_) => Err(PhysicalError::NodeControl(format!(
                "the standalone mongod did not stop within {timeout:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Document {
        doc! {
            "_id": "rs1", "version": 7i32, "term": 3i64, "protocolVersion": 1i64,
            "writeConcernMajorityJournalDefault": true,
            "members": [
                {"_id": 0i32, "host": "a:27017", "arbiterOnly": false, "buildIndexes": true,
                 "hidden": false, "priority": 2.0, "tags": {}, "secondaryDelaySecs": 0i64, "votes": 1i32},
                {"_id": 1i32, "host": "b:27017", "arbiterOnly": false, "buildIndexes": true,
                 "hidden": false, "priority": 0.0, "tags": {"dc": "east"}, "secondaryDelaySecs": 0i64, "votes": 0i32},
                {"_id": 2i32, "host": "c:27017", "arbiterOnly": false, "buildIndexes": true,
                 "hidden": true, "priority": 0.0, "tags": {}, "secondaryDelaySecs": 3600i64, "votes": 0i32},
                {"_id": 3i32, "host": "d:27017", "arbiterOnly": true, "buildIndexes": true,
                 "hidden": false, "priority": 0i32, "tags": {}, "secondaryDelaySecs": 0i64, "votes": 1i32},
            ],
            "settings": {"chainingAllowed": true, "heartbeatIntervalMillis": 2000i32,
                         "heartbeatTimeoutSecs": 10i32, "electionTimeoutMillis": 10000i32,
                         "catchUpTimeoutMillis": -1i32, "replicaSetId": ObjectId::new(),
                         "getLastErrorModes": {}},
        }
    }

    #[test]
    fn the_new_config_is_the_targets_at_version_1_with_pbms_fields() {
        let d = new_replset_doc(&target()).expect("doc");
        assert_eq!(d.get_str("_id").ok(), Some("rs1"));
        assert_eq!(d.get_i32("version").ok(), Some(1));
        assert_eq!(d.get_i64("protocolVersion").ok(), Some(1));
        assert!(d.get("term").is_none());
        assert_eq!(
            d.get_bool("writeConcernMajorityJournalDefault").ok(),
            Some(true)
        );
        let s = d.get_document("settings").expect("settings");
        // The old replicaSetId goes: mongod picks a new one.
        assert!(s.get("replicaSetId").is_none());
        assert_eq!(s.get_i32("electionTimeoutMillis").ok(), Some(10000));
        assert_eq!(s.get_i32("catchUpTimeoutMillis").ok(), Some(-1));
        assert_eq!(s.get_bool("chainingAllowed").ok(), Some(true));
        let m = d.get_array("members").expect("members");
        assert_eq!(m.len(), 4);
        let b = m[1].as_document().expect("member");
        assert_eq!(
            b.get_i32("votes").ok(),
            Some(0),
            "a non-voting member stays one"
        );
        assert_eq!(b.get_f64("priority").ok(), Some(0.0));
        assert_eq!(b.get_document("tags").ok(), Some(&doc! {"dc": "east"}));
        let c = m[2].as_document().expect("member");
        assert_eq!(c.get_bool("hidden").ok(), Some(true));
        assert_eq!(c.get_i64("secondaryDelaySecs").ok(), Some(3600));
        let a = m[0].as_document().expect("member");
        assert!(a.get("secondaryDelaySecs").is_none() && a.get("tags").is_none());
        assert_eq!(
            m[3].as_document().and_then(|d| d.get_f64("priority").ok()),
            Some(0.0)
        );
        assert!(new_replset_doc(&doc! {"members": []}).is_err());
        assert!(new_replset_doc(&doc! {"_id": "x"}).is_err());
    }

    #[test]
    fn prepare_empties_the_replication_state_and_cuts_the_oplog_at_the_backups_last_write() {
        let ts = Timestamp {
            time: 1_700_000_000,
            increment: 7,
        };
        let id = ObjectId::new();
        let s = prepare_steps(ts, id);
        let emptied: Vec<String> = s
            .iter()
            .filter_map(|s| match s {
                Step::Empty { db, coll } => Some(format!("{db}.{coll}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            emptied,
            [
                "local.replset.minvalid",
                "local.replset.oplogTruncateAfterPoint",
                "local.replset.election",
                "local.system.replset"
            ]
        );
        assert_eq!(
            s[4].command(),
            doc! {"insert": "replset.minvalid", "documents": [
            {"_id": id, "t": -1i64, "ts": Timestamp { time: 0, increment: 1 }}]}
        );
        assert_eq!(
            s[5].command(),
            doc! {"insert": "replset.oplogTruncateAfterPoint", "documents": [
            {"_id": "oplogTruncateAfterPoint", "oplogTruncateAfterPoint": ts}]}
        );
        assert_eq!(
            s[0].command(),
            doc! {"delete": "replset.minvalid", "deletes": [{"q": {}, "limit": 0}]}
        );
    }

    #[test]
    fn reset_empties_caches_and_sessions_then_writes_the_config() {
        let caches = vec![
            "cache.chunks.db.c".to_string(),
            "system.sessions".to_string(),
        ];
        let s = reset_steps(&target(), &caches).expect("steps");
        assert_eq!(s[0], Step::empty("config", "cache.chunks.db.c"));
        assert_eq!(s[1], Step::empty("config", "system.sessions"));
        assert_eq!(s[2], Step::empty("local", "system.replset"));
        match &s[3] {
            Step::Insert { db, coll, doc } => {
                assert_eq!((db.as_str(), coll.as_str()), ("local", "system.replset"));
                assert_eq!(doc.get_i32("version").ok(), Some(1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn stage_arguments_are_pbms_with_port_and_log_on_the_command_line() {
        let p = Path::new("/data/db");
        let a = stage_args(Stage::Recover, p, 28123, &[]);
        let j = a.join(" ");
        assert!(j.starts_with("--dbpath /data/db --port 28123 --bind_ip 127.0.0.1 --logpath /data/db/pbm.restore.log"), "{j}");
        assert!(j.contains("--setParameter recoverFromOplogAsStandalone=true --setParameter takeUnstableCheckpointOnShutdown=true"));
        assert!(!j.contains("--replSet"));
        let r = stage_args(Stage::Reset, p, 1, &[]).join(" ");
        assert!(r.contains("skipShardingConfigurationChecks=true"));
        let pr = stage_args(Stage::Prepare, p, 1, &[]).join(" ");
        assert!(pr.ends_with("--setParameter disableLogicalSessionCacheRefresh=true"));
        let e = stage_args(Stage::Prepare, p, 1, &["--directoryperdb".into()]).join(" ");
        assert!(
            e.ends_with("disableLogicalSessionCacheRefresh=true --directoryperdb"),
            "{e}"
        );
    }

    /// getCmdLineOpts' `parsed` of a PSMDB node with a non-default layout, Vault
    /// encryption and a cache limit (shapes as mongod reports them).
    fn psmdb_opts() -> Document {
        doc! {
            "storage": {
                "dbPath": "/data/db", "engine": "wiredTiger", "directoryPerDB": true,
                "wiredTiger": {
                    "engineConfig": {"directoryForIndexes": true, "journalCompressor": "zstd", "cacheSizeGB": 0.5},
                    "collectionConfig": {"blockCompressor": "zstd"},
                    "indexConfig": {"prefixCompression": false},
                },
            },
            "security": {
                "authorization": "enabled", "keyFile": "/etc/keyfile",
                "enableEncryption": true, "encryptionCipherMode": "AES256-GCM",
                "vault": {"serverName": "vault.local", "port": 8200, "tokenFile": "/etc/vault-token",
                          "secret": "secret/data/psmdb", "disableTLSForTesting": true},
            },
        }
    }

    #[test]
    fn engine_flags_carry_the_backups_layout_and_this_nodes_encryption() {
        let backup = psmdb_opts();
        let node = doc! {
            "storage": {"wiredTiger": {"engineConfig": {"cacheSizeGB": 2}}},
            "security": {"enableEncryption": true, "encryptionKeyFile": "/etc/mongo-key", "keyFile": "/k"},
        };
        let a = engine_args(Some(&backup), &node).join(" ");
        assert_eq!(
            a,
            "--storageEngine wiredTiger --directoryperdb --wiredTigerDirectoryForIndexes \
             --wiredTigerJournalCompressor zstd --wiredTigerCollectionBlockCompressor zstd \
             --wiredTigerIndexPrefixCompression false --wiredTigerCacheSizeGB 2 \
             --enableEncryption --encryptionKeyFile /etc/mongo-key"
        );
        // The node's own encryption, never the source's; no auth or keyFile: the
        // standalone runs are local and unauthenticated, as PBM's.
        let v = engine_args(Some(&doc! {}), &backup).join(" ");
        assert_eq!(
            v,
            "--wiredTigerCacheSizeGB 0.5 --enableEncryption --encryptionCipherMode AES256-GCM \
             --vaultServerName vault.local --vaultPort 8200 --vaultTokenFile /etc/vault-token \
             --vaultSecret secret/data/psmdb --vaultDisableTLSForTesting"
        );
        assert!(!v.contains("keyFile") && !v.contains("auth"), "{v}");
    }

    #[test]
    fn a_backup_without_options_adds_nothing() {
        assert!(engine_args(None, &doc! {}).is_empty());
        assert!(engine_args(Some(&doc! {"storage": {"dbPath": "/x"}}), &doc! {}).is_empty());
    }

    #[test]
    fn every_member_but_arbiters_takes_part_whatever_its_votes() {
        assert_eq!(
            restore_peers(&target()),
            ["a:27017", "b:27017", "c:27017"],
            "non-voting (b) and hidden delayed non-voting (c) members are waited for"
        );
        let hello = doc! {"hosts": ["a:27017"], "passives": ["b:27017"], "arbiters": ["d:27017"]};
        assert_eq!(restore_peers_from_hello(&hello), ["a:27017", "b:27017"]);
    }

    #[test]
    fn a_primary_with_a_non_voting_member_is_not_a_single_member_set() {
        use super::super::mode::{choose, Mode, ModeOverride, NodeCaps};
        use crate::node::NodeRole;
        // hello on the primary of {a: voting, b: votes 0, priority 0}.
        let hello = doc! {"hosts": ["a:27017"], "passives": ["b:27017"], "isWritablePrimary": true};
        let members = restore_peers_from_hello(&hello).len();
        assert_eq!(members, 2);
        let caps = |members| NodeCaps {
            percona: false,
            role: NodeRole::Primary,
            members,
            can_restart: true,
        };
        // Counting only `hosts` would have stopped the primary of a two-member set.
        assert_eq!(choose(ModeOverride::Auto, &caps(1)).ok(), Some(Mode::Cold));
        assert!(choose(ModeOverride::Auto, &caps(members)).is_err());
        // The non-voting secondary itself restores and backs up like any secondary.
        let secondary = NodeCaps {
            role: NodeRole::Secondary,
            ..caps(members)
        };
        assert_eq!(
            choose(ModeOverride::Auto, &secondary).ok(),
            Some(Mode::FsyncLock)
        );
    }
}
