//! Locks between real agents: one winner per replica set, takeover of a dead holder
//! only once its heartbeat is 30 s of *cluster time* old, release on SIGTERM.
//! The sample operation is `deletePitr`, an engine this build still lacks (the handler
//! holds the lock for `RBM_AGENT_TEST_OP_HOLD_SECS`); `resync` now has its engine.

mod agent_common;

use agent_common::*;
use mongodb::bson::doc;
use std::time::Duration;

/// Five agents race for one operation's lock: exactly one takes it and the operation
/// is recorded once in pbmOpLog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_agents_one_winner() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let hold = [("RBM_AGENT_TEST_OP_HOLD_SECS", "6")];
    let agents: Vec<Agent> = (1..=5)
        .map(|i| Agent::start(&server, &format!("n{i}:27017"), "secondary", &hold))
        .collect();
    wait_for(Duration::from_secs(30), "5 agents registered", || async {
        (find_all(&c, "pbmAgents", doc! {}).await.len() == 5).then_some(())
    })
    .await;
    let opid = send_command(&c, "deletePitr", Some(doc! {"olderthan": 0_i64}), 0)
        .await
        .to_hex();

    let lock = wait_for(Duration::from_secs(15), "the lock", || async {
        find_all(&c, "pbmLock", doc! {}).await.into_iter().next()
    })
    .await;
    assert_eq!(lock.get_str("opid").expect("opid"), opid);
    assert_eq!(lock.get_str("type").expect("type"), "deletePitr");
    // Give the losers time to have tried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(find_all(&c, "pbmLock", doc! {}).await.len(), 1);
    assert_eq!(
        find_all(&c, "pbmOpLog", doc! {"opid": &opid}).await.len(),
        1
    );
    let started = find_all(
        &c,
        "pbmLog",
        doc! {"opid": &opid, "msg": {"$regex": "^got command"}},
    )
    .await;
    assert_eq!(started.len(), 1, "{started:?}");
    let winner = lock.get_str("node").expect("node").to_string();
    assert_eq!(started[0].get_str("node").expect("node"), winner);

    // The holder reports and releases after its hold.
    wait_for(Duration::from_secs(20), "the lock released", || async {
        find_all(&c, "pbmLock", doc! {})
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let failed = find_all(&c, "pbmLog", doc! {"opid": &opid, "s": 1}).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]
        .get_str("msg")
        .expect("msg")
        .contains("no storage is configured"));
    drop(agents);
}

/// kill -9 of the holder: a new operation is refused while the lock is alive by
/// cluster time and takes over once it is stale; SIGTERM then releases the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_holder_taken_over_only_when_stale() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let hold = [("RBM_AGENT_TEST_OP_HOLD_SECS", "600")];
    let mut a = Agent::start(&server, "a:27017", "secondary", &hold);
    wait_for(Duration::from_secs(30), "agent a registered", || async {
        (!find_all(&c, "pbmAgents", doc! {"n": "a:27017"})
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    let op1 = send_command(&c, "deletePitr", Some(doc! {"olderthan": 0_i64}), 0)
        .await
        .to_hex();
    wait_for(Duration::from_secs(15), "a holds the lock", || async {
        find_all(&c, "pbmLock", doc! {"node": "a:27017", "opid": &op1})
            .await
            .into_iter()
            .next()
    })
    .await;
    a.kill9();
    let mut b = Agent::start(&server, "b:27017", "secondary", &hold);
    wait_for(Duration::from_secs(30), "agent b registered", || async {
        (!find_all(&c, "pbmAgents", doc! {"n": "b:27017"})
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    let dead = find_all(&c, "pbmLock", doc! {})
        .await
        .into_iter()
        .next()
        .expect("a's lock is still there");
    let dead_hb = dead.get_timestamp("hb").expect("hb");

    // Alive by cluster time: refused.
    let op2 = send_command(&c, "deletePitr", Some(doc! {"olderthan": 0_i64}), 0)
        .await
        .to_hex();
    let refused = wait_for(Duration::from_secs(15), "b refuses op2", || async {
        find_all(&c, "pbmLog", doc! {"opid": &op2, "node": "b:27017"})
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        refused
            .get_str("msg")
            .expect("msg")
            .contains("another operation is running"),
        "{refused:?}"
    );
    let now = cluster_time(&c).await;
    assert!(
        now.time <= dead_hb.time + 30,
        "test too slow to see the live lock refused"
    );

    // Cluster time advances while idle (SecantusDB's no-op heartbeat, the agents' own
    // beats); wait until the dead lock is stale by it.
    wait_for(
        Duration::from_secs(60),
        "cluster time past the stale frame",
        || async { (cluster_time(&c).await.time > dead_hb.time + 30).then_some(()) },
    )
    .await;
    let op3 = send_command(&c, "deletePitr", Some(doc! {"olderthan": 0_i64}), 0)
        .await
        .to_hex();
    let taken = wait_for(Duration::from_secs(15), "b takes over", || async {
        find_all(&c, "pbmLock", doc! {"node": "b:27017", "opid": &op3})
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(taken.get_timestamp("hb").expect("hb").time > dead_hb.time + 30);
    let takeover = find_all(&c, "pbmLog", doc! {"opid": &op1, "node": "b:27017", "s": 2}).await;
    assert_eq!(takeover.len(), 1, "the dead op is reported: {takeover:?}");

    // SIGTERM while holding: exit 0, lock released, status removed.
    b.signal("-TERM");
    let st = b.wait(Duration::from_secs(30));
    assert!(st.success(), "exit status {st}; log:\n{}", b.log());
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "lock left behind"
    );
    assert!(find_all(&c, "pbmAgents", doc! {"n": "b:27017"})
        .await
        .is_empty());
    let interrupted = find_all(&c, "pbmLog", doc! {"opid": &op3, "s": 1}).await;
    assert!(
        interrupted.iter().any(|d| d
            .get_str("msg")
            .unwrap_or_default()
            .contains("shutting down")),
        "{interrupted:?}"
    );
}
