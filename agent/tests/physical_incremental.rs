//! Incremental physical backups end to end in `cold` mode (block hashes, rbm's
//! extension): a real SecantusDB the agent stops and starts, a real `rbm-agent`, the
//! real `rbm` CLI and filesystem storage. A chain base → i1 → i2 is taken between
//! writes; each member restores the data exactly as it was, the increments store far
//! fewer bytes than the base, a broken chain is refused before the node is touched, and
//! the chain is deleted only as a whole from its base.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use std::path::Path;
use std::time::Duration;

async fn registered(c: &Client) {
    wait_for(Duration::from_secs(40), "agent with storage ok", || async {
        let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
        (!docs.is_empty()).then_some(())
    })
    .await;
}

async fn insert(c: &Client, db: &str, coll: &str, tag: &str, n: i32) {
    // Padding that does not compress away, so stored sizes follow the data's.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (tag.len() as u64) << 32 ^ n as u64;
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let pad: String = (0..25)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect();
            doc! {"_id": format!("{tag}-{i}"), "i": i, "pad": pad}
        })
        .collect();
    c.database(db)
        .collection::<Document>(coll)
        .insert_many(docs)
        .await
        .expect("insert");
}

fn backup(server: &rbm_e2e::MongoServer, agent: &Agent, base: bool) -> String {
    let mut args = vec!["backup", "--type", "incremental", "--wait"];
    if base {
        args.push("--base");
    }
    let (ok, out, err) = rbm(server, &args);
    assert!(
        ok,
        "incremental backup failed:\n{out}\n{err}\nagent:\n{}",
        agent.log()
    );
    quoted_after(&format!("{out}{err}"), "Starting backup \"")
}

fn restore(server: &rbm_e2e::MongoServer, agent: &Agent, name: &str) {
    let (ok, out, err) = rbm(server, &["restore", name, "--wait"]);
    assert!(
        ok,
        "restore of {name} failed:\n{out}\n{err}\nagent:\n{}",
        agent.log()
    );
}

fn dir_bytes(root: &Path) -> u64 {
    let mut n = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                n += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    n
}

/// A node the agent may stop and start, filesystem storage, and its agent reporting.
async fn node_with_agent() -> (rbm_e2e::MongoServer, tempfile::TempDir, Client, Agent) {
    let server = rbm_e2e::MongoServer::start_restartable().await;
    let store = tempfile::tempdir().expect("storage dir");
    let c = client(&server).await;
    set_config(&c, &rbm_e2e::fs_conf(store.path())).await;
    let agent = Agent::start_on_node(&server, &server.start_cmd(), &server.stop_cmd(), &[]);
    registered(&c).await;
    (server, store, c, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_chain_restores_every_point_and_stores_only_changes() {
    let (server, store, c, agent) = node_with_agent().await;

    for (db, coll) in [("shop", "a"), ("shop", "b"), ("geo", "a"), ("geo", "b")] {
        insert(&c, db, coll, "base", 3000).await;
    }
    let h0 = rbm_e2e::state_hashes(&c).await;
    let base = backup(&server, &agent, true);

    let c = client(&server).await;
    insert(&c, "shop", "a", "one", 100).await;
    c.database("geo")
        .collection::<Document>("a")
        .update_many(doc! {"i": {"$lt": 10}}, doc! {"$set": {"changed": true}})
        .await
        .expect("update");
    let h1 = rbm_e2e::state_hashes(&c).await;
    assert_ne!(h1, h0);
    let i1 = backup(&server, &agent, false);

    let c = client(&server).await;
    insert(&c, "shop", "fresh", "two", 50).await;
    c.database("geo")
        .collection::<Document>("b")
        .drop()
        .await
        .expect("drop");
    let h2 = rbm_e2e::state_hashes(&c).await;
    assert_ne!(h2, h1);
    let i2 = backup(&server, &agent, false);

    // PBM's meta: the chain through src_backup, every member `incremental`.
    let c = client(&server).await;
    let (mb, m1, m2) = (
        backup_meta(&c, &base).await,
        backup_meta(&c, &i1).await,
        backup_meta(&c, &i2).await,
    );
    for m in [&mb, &m1, &m2] {
        assert_eq!(m.kind.as_str(), "incremental");
        assert_eq!(m.status.as_str(), "done", "{:?}", m.error);
    }
    assert_eq!(mb.src_backup, "");
    assert_eq!(m1.src_backup, base);
    assert_eq!(m2.src_backup, i1);

    // PBM reads the file lists; unchanged files are -1/-1, changed ones ranges.
    let rs = mb.replsets[0].name.clone();
    let list = |name: &str| {
        let bytes = std::fs::read(store.path().join(name).join(&rs).join("filelist.pbm"))
            .expect("filelist");
        rbm_protocol::meta::read_filelist(&bytes).expect("PBM reads the file list")
    };
    let l1 = list(&i1);
    assert!(
        l1.iter().any(|f| f.offset == -1 && f.length == -1),
        "{l1:?}"
    );
    for f in l1.iter().filter(|f| f.length > 0) {
        let obj = format!("{}.s2.{}-{}", f.name, f.offset, f.length);
        assert!(
            store.path().join(&i1).join(&rs).join(&obj).exists(),
            "{obj} not stored"
        );
    }
    assert!(store
        .path()
        .join(&base)
        .join(&rs)
        .join("rbm.blockhashes.bson")
        .exists());

    let (sb, s1, s2) = (
        dir_bytes(&store.path().join(&base)),
        dir_bytes(&store.path().join(&i1)),
        dir_bytes(&store.path().join(&i2)),
    );
    eprintln!("stored bytes: base {sb}, i1 {s1}, i2 {s2}");
    assert!(
        s1 * 3 < sb && s2 * 3 < sb,
        "increments are not much smaller: base {sb}, i1 {s1}, i2 {s2}\n{:?}\n{:?}",
        list(&base)
            .iter()
            .map(|f| (&f.name, f.offset, f.length, f.size, f.stg_size))
            .collect::<Vec<_>>(),
        l1.iter()
            .map(|f| (&f.name, f.offset, f.length, f.size, f.stg_size))
            .collect::<Vec<_>>()
    );

    // Every point of the chain comes back exactly.
    for (name, want) in [(&i1, &h1), (&i2, &h2), (&base, &h0)] {
        restore(&server, &agent, name);
        let c = client(&server).await;
        assert_eq!(&rbm_e2e::state_hashes(&c).await, want, "restore of {name}");
    }

    // A range object of i1 gone: restoring i2 is refused before the node is stopped.
    let c = client(&server).await;
    let gone = l1
        .iter()
        .find(|f| f.length > 0 || (f.offset == 0 && f.length == 0))
        .expect("a stored piece of i1");
    let obj = if gone.length > 0 {
        format!("{}.s2.{}-{}", gone.name, gone.offset, gone.length)
    } else {
        format!("{}.s2", gone.name)
    };
    std::fs::remove_file(store.path().join(&i1).join(&rs).join(&obj)).expect("remove object");
    let (ok, out, err) = rbm(&server, &["restore", &i2, "--wait"]);
    assert!(!ok, "restore over a broken chain succeeded:\n{out}\n{err}");
    assert!(
        err.contains("is incomplete") && err.contains(&obj),
        "{err}\nagent:\n{}",
        agent.log()
    );
    assert!(
        !agent.log().contains("old data was put back"),
        "the node was touched"
    );
    assert!(!server.data_dir().join(".fallbacksync").exists());
    assert_eq!(rbm_e2e::state_hashes(&c).await, h0, "data changed");

    // Deleting goes by whole chains from the base (PBM).
    let (ok, out, err) = rbm(&server, &["delete-backup", &i1, "-y"]);
    assert!(!ok, "an increment was deleted alone:\n{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("backup is not base increment"),
        "{out}{err}"
    );
    let (ok, out, err) = rbm(&server, &["delete-backup", &base, "-y"]);
    assert!(ok, "delete of the chain failed:\n{out}\n{err}");
    let c = client(&server).await;
    wait_for(Duration::from_secs(30), "the chain deleted", || async {
        find_all(&c, "pbmBackups", doc! {})
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for n in [&base, &i1, &i2] {
        assert!(
            !store.path().join(format!("{n}.pbm.json")).exists(),
            "{n} left on storage"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_without_a_base_or_over_a_full_backup_is_refused() {
    let (server, store, c, agent) = node_with_agent().await;
    insert(&c, "shop", "a", "base", 200).await;
    let (ok, out, err) = rbm(&server, &["backup", "--type", "incremental", "--wait"]);
    assert!(!ok, "an increment without a base succeeded:\n{out}\n{err}");
    assert!(
        err.contains("make one with --base"),
        "{err}\nagent:\n{}",
        agent.log()
    );
    // Backup names have whole seconds (PBM's): a backup sent within the previous one's
    // second would share its name, and `--wait` would report the previous one.
    next_second().await;
    let _ = backup(&server, &agent, true);
    // The base's hashes gone (as for a base made by PBM): a clear error.
    let c = client(&server).await;
    let b = find_all(&c, "pbmBackups", doc! {"status": "done"}).await;
    let name = b[0].get_str("name").expect("name").to_string();
    let rs = "secantus";
    std::fs::remove_file(
        store
            .path()
            .join(&name)
            .join(rs)
            .join("rbm.blockhashes.bson"),
    )
    .expect("remove hashes");
    next_second().await;
    let (ok, out, err) = rbm(&server, &["backup", "--type", "incremental", "--wait"]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("make a new base with --base"), "{err}");
}
