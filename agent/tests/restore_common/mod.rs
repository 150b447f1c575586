//! Helpers of the restore tests: a copy of a fixture storage, the `rbm` binary, and the
//! state a fixture's `expected.json` records (`gen.py state`), read from a live server.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use rbm_e2e::MongoServer;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// A fixture folder under the shared fixtures (`RBM_FIXTURES` overrides the root, as in
/// `protocol/tests/pbm_fixtures.rs`).
pub fn fixture(sub: &str) -> String {
    let root = match std::env::var_os("RBM_FIXTURES") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    root.join(sub).to_string_lossy().into_owned()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn rbm(uri: &str, args: &[&str]) -> Run {
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

pub fn expected_json(fixtures: &str) -> Value {
    let text = std::fs::read_to_string(format!("{fixtures}/expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// A writable copy of `<fixtures>/storage` (the fixture files are read-only).
pub fn copy_storage(fixtures: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = Command::new("cp")
        .arg("-r")
        .arg(format!("{fixtures}/storage/."))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(st.success());
    let st = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(dir.path())
        .status()
        .expect("chmod");
    assert!(st.success());
    dir
}

/// `rbm config --file` with a filesystem storage at `path` (this also resyncs).
pub async fn configure(server: &MongoServer, path: &std::path::Path) {
    let cfg = path.with_extension("yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  type: filesystem\n  filesystem:\n    path: {}\n",
            path.display()
        ),
    )
    .expect("write config");
    let r = rbm(&server.uri(), &["config", "--file", &cfg.to_string_lossy()]);
    assert_eq!(r.code, 0, "config: {} {}", r.stdout, r.stderr);
}

pub async fn wait_backup_listed(c: &Client, name: &str) {
    let name = name.to_string();
    crate::agent_common::wait_for(Duration::from_secs(60), "resync lists the backup", || {
        let c = c.clone();
        let name = name.clone();
        async move {
            let d = c
                .database("admin")
                .collection::<Document>("pbmBackups")
                .find_one(doc! {"name": &name, "status": "done"})
                .await
                .ok()
                .flatten();
            d.map(|_| ())
        }
    })
    .await;
}

/// The newest restore meta. `start_ts` has whole seconds and two restores can start in
/// one; the agent's ObjectIds order its own inserts within a second.
pub async fn restore_meta(c: &Client) -> Document {
    c.database("admin")
        .collection::<Document>("pbmRestores")
        .find_one(doc! {})
        .sort(doc! {"start_ts": -1, "_id": -1})
        .await
        .expect("read pbmRestores")
        .expect("a restore meta")
}

fn ext(b: Bson) -> Value {
    b.into_relaxed_extjson()
}

/// `gen.py state`: collections (count, sha256, options, indexes), views, users, roles.
pub async fn state(c: &Client) -> Value {
    let hashes = rbm_e2e::state_hashes(c).await;
    let mut colls = serde_json::Map::new();
    let mut views = serde_json::Map::new();
    let mut dbs = c.list_database_names().await.expect("dbs");
    dbs.sort();
    for dbn in &dbs {
        if matches!(dbn.as_str(), "admin" | "local" | "config") {
            continue;
        }
        let db = c.database(dbn);
        let reply = db
            .run_command(doc! {"listCollections": 1})
            .await
            .expect("listCollections");
        let specs: Vec<Document> = reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .expect("listCollections batch")
            .iter()
            .filter_map(|b| b.as_document().cloned())
            .collect();
        for info in specs {
            let name = info.get_str("name").unwrap_or("").to_string();
            if name.starts_with("system.") {
                continue;
            }
            let opts = info.get_document("options").cloned().unwrap_or_default();
            let ns = format!("{dbn}.{name}");
            if info.get_str("type").ok() == Some("view") {
                views.insert(ns, ext(Bson::Document(opts)));
                continue;
            }
            let mut idx: Vec<Document> = db
                .collection::<Document>(&name)
                .list_indexes()
                .await
                .expect("listIndexes")
                .try_collect::<Vec<_>>()
                .await
                .expect("listIndexes")
                .into_iter()
                .map(|m| {
                    let mut d = mongodb::bson::serialize_to_document(&m).expect("index");
                    d.remove("ns");
                    d
                })
                .collect();
            idx.sort_by(|a, b| {
                a.get_str("name")
                    .unwrap_or("")
                    .cmp(b.get_str("name").unwrap_or(""))
            });
            let (n, h) = hashes.get(&ns).cloned().unwrap_or_default();
            colls.insert(
                ns,
                serde_json::json!({
                    "count": n, "sha256": h, "options": ext(Bson::Document(opts)),
                    "indexes": ext(Bson::Array(idx.into_iter().map(Bson::Document).collect())),
                }),
            );
        }
    }
    let mut users: Vec<Document> = c
        .database("admin")
        .collection::<Document>("system.users")
        .find(doc! {})
        .projection(doc! {"credentials": 0})
        .await
        .expect("users")
        .try_collect()
        .await
        .expect("users");
    users.sort_by(|a, b| {
        a.get_str("_id")
            .unwrap_or("")
            .cmp(b.get_str("_id").unwrap_or(""))
    });
    let mut roles = Vec::new();
    let mut role_dbs = vec!["admin".to_string()];
    role_dbs.extend(
        dbs.iter()
            .filter(|d| !matches!(d.as_str(), "admin" | "local" | "config"))
            .cloned(),
    );
    for dbn in role_dbs {
        let r = c
            .database(&dbn)
            .run_command(doc! {"rolesInfo": 1, "showPrivileges": true})
            .await
            .expect("rolesInfo");
        for role in r.get_array("roles").cloned().unwrap_or_default() {
            if let Bson::Document(d) = role {
                let mut o = Document::new();
                for k in ["role", "db", "privileges", "roles"] {
                    if let Some(v) = d.get(k) {
                        o.insert(k, v.clone());
                    }
                }
                roles.push(o);
            }
        }
    }
    roles.sort_by(|a, b| {
        (
            a.get_str("db").unwrap_or(""),
            a.get_str("role").unwrap_or(""),
        )
            .cmp(&(
                b.get_str("db").unwrap_or(""),
                b.get_str("role").unwrap_or(""),
            ))
    });
    serde_json::json!({
        "collections": colls,
        "views": views,
        "users": ext(Bson::Array(users.into_iter().map(Bson::Document).collect())),
        "roles": ext(Bson::Array(roles.into_iter().map(Bson::Document).collect())),
    })
}

/// Differences between an expected state and `got`, one line each.
pub fn compare_state(want: &Value, got: &Value) -> Vec<String> {
    let mut d = Vec::new();
    let wc = want["collections"].as_object().cloned().unwrap_or_default();
    let gc = got["collections"].as_object().cloned().unwrap_or_default();
    for (ns, w) in &wc {
        let Some(g) = gc.get(ns) else {
            d.push(format!("{ns}: missing"));
            continue;
        };
        for k in ["count", "sha256", "options", "indexes"] {
            if w[k] != g[k] {
                d.push(format!("{ns}: {k}: expected {} got {}", w[k], g[k]));
            }
        }
    }
    for ns in gc.keys() {
        if !wc.contains_key(ns) {
            d.push(format!("{ns}: unexpected collection"));
        }
    }
    for k in ["views", "users", "roles"] {
        if want[k] != got[k] {
            d.push(format!("{k}: expected {} got {}", want[k], got[k]));
        }
    }
    d
}
