//! Command intake end to end: a backup is nominated to the best agent, which fails it
//! honestly (an incremental backup: no engine for it in this build); commands run once per operation id even when
//! every agent restarts and sees them again.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use std::time::Duration;

async fn set_fs_config(c: &mongodb::Client, dir: &std::path::Path) {
    c.database("admin")
        .collection::<Document>("pbmConfig")
        .insert_one(doc! {"storage": {"type": "filesystem", "filesystem": {"path": dir.display().to_string()}}})
        .await
        .expect("insert config");
}

async fn registered(c: &mongodb::Client, n: usize) {
    wait_for(
        Duration::from_secs(40),
        "agents registered with storage ok",
        || async {
            let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
            (docs.len() == n).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_nominates_hidden_and_fails_honestly_once() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("storage dir");
    set_fs_config(&c, store.path()).await;
    let start = |name: &str, role: &str| Agent::start(&server, name, role, &[]);
    let mut agents = vec![
        start("p:27017", "primary"),
        start("s:27017", "secondary"),
        start("h:27017", "hidden"),
    ];
    registered(&c, 3).await;

    // A future ts keeps the command visible to restarted agents.
    let opid = send_command(
        &c,
        "backup",
        Some(doc! {"type": "external", "name": "2026-01-01T00:00:00Z", "compression": "s2"}),
        120,
    )
    .await
    .to_hex();
    let meta = wait_for(
        Duration::from_secs(30),
        "the backup meta in error",
        || async {
            let m = find_all(&c, "pbmBackups", doc! {"opid": &opid})
                .await
                .into_iter()
                .next()?;
            (m.get_str("status").ok()? == "error").then_some(m)
        },
    )
    .await;
    assert_eq!(
        meta.get_str("error").expect("error"),
        rbm_agent::control::ops::BACKUP_UNAVAILABLE
    );
    let n = meta.get_array("n").expect("n");
    let n0 = n[0].as_document().expect("nomination");
    assert_eq!(
        n0.get_str("ack").expect("ack"),
        "h:27017",
        "hidden has the highest implicit priority"
    );
    assert_eq!(
        find_all(&c, "pbmOpLog", doc! {"opid": &opid}).await.len(),
        1
    );
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "lock released"
    );

    // Restart every agent: they see the command again but must not run it again.
    for a in agents.iter_mut() {
        a.kill9();
    }
    agents.clear();
    c.database("admin")
        .collection::<Document>("pbmAgents")
        .delete_many(doc! {})
        .await
        .expect("clear agents");
    agents.push(start("p:27017", "primary"));
    agents.push(start("s:27017", "secondary"));
    agents.push(start("h:27017", "hidden"));
    registered(&c, 3).await;
    // Long enough for intake (1 s) and a whole nomination round (3 groups × 5 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        find_all(&c, "pbmOpLog", doc! {"opid": &opid}).await.len(),
        1
    );
    let started = find_all(
        &c,
        "pbmLog",
        doc! {"opid": &opid, "msg": {"$regex": "^backup started"}},
    )
    .await;
    assert_eq!(started.len(), 1, "{started:?}");
    let after = find_all(&c, "pbmBackups", doc! {"opid": &opid}).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].get_array("conditions").expect("conditions").len(),
        2,
        "starting, error: {after:?}"
    );
}

/// An operation interrupted by SIGTERM mid-way is reported, and the restarted agents
/// (which see the command again) do not run it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_op_not_rerun_after_restart() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let hold = [("RBM_AGENT_TEST_OP_HOLD_SECS", "600")];
    let mut a = Agent::start(&server, "a:27017", "secondary", &hold);
    let mut b = Agent::start(&server, "b:27017", "secondary", &hold);
    wait_for(Duration::from_secs(30), "2 agents", || async {
        (find_all(&c, "pbmAgents", doc! {}).await.len() == 2).then_some(())
    })
    .await;
    let opid = send_command(
        &c,
        "cleanup",
        Some(doc! {"olderThan": mongodb::bson::Timestamp { time: 1, increment: 0 }, "profile": ""}),
        120,
    )
    .await
    .to_hex();
    wait_for(Duration::from_secs(15), "the lock", || async {
        find_all(&c, "pbmLock", doc! {"opid": &opid})
            .await
            .into_iter()
            .next()
    })
    .await;
    a.signal("-TERM");
    b.signal("-TERM");
    assert!(a.wait(Duration::from_secs(30)).success(), "a:\n{}", a.log());
    assert!(b.wait(Duration::from_secs(30)).success(), "b:\n{}", b.log());
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "lock released on SIGTERM"
    );

    let _a = Agent::start(&server, "a:27017", "secondary", &hold);
    let _b = Agent::start(&server, "b:27017", "secondary", &hold);
    wait_for(Duration::from_secs(30), "2 agents again", || async {
        (find_all(&c, "pbmAgents", doc! {}).await.len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "the op must not run again"
    );
    let started = find_all(
        &c,
        "pbmLog",
        doc! {"opid": &opid, "msg": {"$regex": "^got command"}},
    )
    .await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(
        find_all(&c, "pbmOpLog", doc! {"opid": &opid}).await.len(),
        1
    );
}
