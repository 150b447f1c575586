//! PITR oplog slicing end to end: real SecantusDB, real `rbm-agent` processes,
//! filesystem and S3 (s3s-fs) storage. Every chunk is read back from storage, decoded,
//! and compared byte for byte with the oplog entries of its range; chunks must be
//! contiguous (each starts where the previous ended) across restarts and handovers.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document, RawDocumentBuf, Timestamp};
use mongodb::Client;
use rbm_protocol::meta::PitrChunk;
use rbm_storage::{Compression, DynStorage, StorageConf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHECK_MS: &str = "500";

async fn set_config(c: &Client, storage: &StorageConf, pitr: Document) {
    let d = doc! {
        "storage": mongodb::bson::serialize_to_bson(storage).expect("storage conf"),
        "pitr": pitr,
        "epoch": cluster_time(c).await,
    };
    let coll = c.database("admin").collection::<Document>("pbmConfig");
    coll.delete_many(doc! {}).await.expect("clear config");
    coll.insert_one(d).await.expect("insert config");
}

async fn set_pitr_enabled(c: &Client, on: bool) {
    c.database("admin")
        .collection::<Document>("pbmConfig")
        .update_one(
            doc! {"profile": {"$ne": true}},
            doc! {"$set": {"pitr.enabled": on, "epoch": cluster_time(c).await}},
        )
        .await
        .expect("set pitr.enabled");
}

fn oplog_only(span_min: f64) -> Document {
    doc! {"enabled": true, "oplogSpanMin": span_min, "oplogOnly": true, "compression": "s2"}
}

fn agent_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![(rbm_agent::pitr::slicer::TEST_CHECK_ENV, CHECK_MS)];
    v.extend_from_slice(extra);
    v
}

/// Inserts `per_tick` documents every 100 ms until dropped.
struct Writer {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    fn start(c: &Client, per_tick: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let coll = c.database("app").collection::<Document>("events");
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut i: i64 = 0;
            while !s.load(Ordering::Relaxed) {
                let docs: Vec<Document> = (0..per_tick)
                    .map(|_| {
                        i += 1;
                        doc! {"n": i, "pad": "x".repeat(40)}
                    })
                    .collect();
                let _ = coll.insert_many(docs).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Writer {
            stop,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn chunks(c: &Client) -> Vec<PitrChunk> {
    let mut v = find_all(c, "pbmPITRChunks", doc! {})
        .await
        .into_iter()
        .map(|d| mongodb::bson::deserialize_from_document(d).expect("chunk doc"))
        .collect::<Vec<PitrChunk>>();
    v.sort_by_key(|c| (c.start_ts.time, c.start_ts.increment));
    v
}

async fn wait_chunks(c: &Client, n: usize, timeout: Duration) -> Vec<PitrChunk> {
    wait_for(timeout, &format!("{n} PITR chunks"), || async {
        let v = chunks(c).await;
        (v.len() >= n).then_some(v)
    })
    .await
}

fn lt(a: Timestamp, b: Timestamp) -> bool {
    (a.time, a.increment) < (b.time, b.increment)
}

/// Each chunk starts where the previous one ended, and ends after it starts.
fn assert_contiguous(ch: &[PitrChunk]) {
    for w in ch.windows(2) {
        assert_eq!(
            w[1].start_ts, w[0].end_ts,
            "chunks not contiguous: {:?} then {:?}",
            w[0].file_name, w[1].file_name
        );
    }
    for c in ch {
        assert!(lt(c.start_ts, c.end_ts), "empty range in {:?}", c.file_name);
    }
}

/// The non-noop oplog entries with `from <= ts <= till`, raw.
async fn oplog_entries(c: &Client, from: Timestamp, till: Timestamp) -> Vec<Vec<u8>> {
    use futures::TryStreamExt;
    c.database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! {"ts": {"$gte": from, "$lte": till}, "op": {"$ne": "n"}})
        .sort(doc! {"$natural": 1})
        .await
        .expect("oplog query")
        .try_collect::<Vec<RawDocumentBuf>>()
        .await
        .expect("oplog")
        .into_iter()
        .map(|d| d.into_bytes())
        .collect()
}

/// Every indexed chunk is on storage, named as PBM names it, and decodes to exactly the
/// oplog entries of its range. Its indexed `size` is what PBM records: the oplog bytes
/// for a sliced chunk, the object size for one copied from a backup. Returns the entry
/// count.
async fn verify_chunks(c: &Client, st: &DynStorage, rs: &str, ch: &[PitrChunk]) -> usize {
    let mut total = 0;
    for chunk in ch {
        assert_eq!(chunk.rs, rs);
        assert_eq!(
            chunk.file_name,
            rbm_protocol::names::pitr_chunk_path(rs, chunk.start_ts, chunk.end_ts, ".s2"),
        );
        assert_eq!(chunk.compression, "s2");
        let stored = st.stat(&chunk.file_name).await.expect("chunk object").size;
        let raw = st.open(&chunk.file_name).await.expect("open chunk");
        let plain = rbm_storage::codec::decompress_reader(
            raw,
            Compression::from_file_name(&chunk.file_name),
        );
        let mut r = rbm_storage::bson_stream::BsonReader::new(plain);
        let mut got = Vec::new();
        while let Some(d) = r.next().await.expect("chunk decodes") {
            got.push(d.into_bytes());
        }
        let want = oplog_entries(c, chunk.start_ts, chunk.end_ts).await;
        assert!(
            got == want,
            "{}: {} entries stored, the oplog has {} in its range",
            chunk.file_name,
            got.len(),
            want.len()
        );
        let bytes: usize = got.iter().map(Vec::len).sum();
        assert!(
            chunk.size == bytes as i64 || chunk.size == stored as i64,
            "{}: size {} is neither the oplog bytes {bytes} nor the stored {stored}",
            chunk.file_name,
            chunk.size
        );
        total += got.len();
    }
    total
}

/// Nothing under `pbmPitr/` that is not indexed (a killed upload leaves at most a
/// temporary file the listing does not show).
async fn assert_no_unindexed_objects(st: &DynStorage, ch: &[PitrChunk]) {
    let listed = rbm_storage::list_all(st.as_ref(), "pbmPitr/")
        .await
        .expect("list pbmPitr/");
    for o in listed {
        assert!(
            ch.iter().any(|c| c.file_name == o.name),
            "object {} is on storage but not indexed",
            o.name
        );
    }
}

/// Waits until `n` agents report with storage ok, so nomination sees all of them.
async fn registered(c: &Client, n: usize) {
    wait_for(
        Duration::from_secs(40),
        "agents with storage ok",
        || async {
            let docs = find_all(c, "pbmAgents", doc! {"stors.ok": true}).await;
            (docs.len() == n).then_some(())
        },
    )
    .await;
}

async fn lock_holder(c: &Client) -> Option<String> {
    find_all(c, "pbmLockOp", doc! {"type": "pitr"})
        .await
        .first()
        .and_then(|d| d.get_str("node").ok().map(String::from))
}

async fn pitr_log(c: &Client, severity: i32) -> Vec<String> {
    find_all(c, "pbmLog", doc! {"e": "pitr", "s": severity})
        .await
        .iter()
        .filter_map(|d| d.get_str("msg").ok().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_contiguous_chunks_resumes_after_restart_and_stops_when_disabled() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, oplog_only(0.05)).await;
    let writer = Writer::start(&c, 5);
    let mut agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));

    let first = wait_chunks(&c, 3, Duration::from_secs(60)).await;
    assert_contiguous(&first);
    // PBM's lock document: type, replset, node, epoch, hb — no opid.
    let locks = find_all(&c, "pbmLockOp", doc! {}).await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    let l = &locks[0];
    assert_eq!(l.get_str("type").ok(), Some("pitr"));
    assert_eq!(l.get_str("replset").ok(), Some(server.replset()));
    assert_eq!(l.get_str("node").ok(), Some("n1:27017"));
    assert!(l.get_timestamp("hb").is_ok() && !l.contains_key("opid"));
    let (ok, out, err) = rbm(&server, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("Status [ON]"), "{out}");
    assert!(
        out.contains(&format!("{}/n1:27017", server.replset())),
        "{out}"
    );

    // A clean stop flushes a last chunk and frees the lock; the restarted agent goes on
    // from the last chunk's end.
    agent.signal("-TERM");
    agent.wait(Duration::from_secs(60));
    let before = chunks(&c).await;
    assert!(before.len() > first.len(), "no last chunk on shutdown");
    assert!(lock_holder(&c).await.is_none(), "lock left behind");
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    let after = wait_chunks(&c, before.len() + 2, Duration::from_secs(60)).await;
    assert_contiguous(&after);

    // Disabling: one last chunk up to the writes so far, then the lock goes.
    writer.stop().await;
    let last_write = cluster_time(&c).await;
    set_pitr_enabled(&c, false).await;
    wait_for(Duration::from_secs(30), "the lock released", || async {
        lock_holder(&c).await.is_none().then_some(())
    })
    .await;
    let done = chunks(&c).await;
    assert_contiguous(&done);
    let end = done.last().expect("chunks").end_ts;
    // Every write before disabling is in a chunk: none after the last chunk's end.
    let later = c
        .database("local")
        .collection::<Document>("oplog.rs")
        .count_documents(doc! {"ts": {"$gt": end}, "ns": "app.events"})
        .await
        .expect("count");
    assert_eq!(
        later, 0,
        "writes after the last chunk (end {end:?}, last write {last_write:?})"
    );
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    let n = verify_chunks(&c, &st, server.replset(), &done).await;
    assert!(n > 100, "only {n} entries sliced");
    assert_no_unindexed_objects(&st, &done).await;
    let (_, out, _) = rbm(&server, &["status"]);
    assert!(out.contains("Status [OFF]"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_slices_and_primary_takes_over_after_kill_mid_upload() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    let mut pitr = oplog_only(0.1);
    pitr.insert("enabled", false);
    set_config(&c, &conf, pitr).await;
    // Not more than the oplog's 20,000 entries over the test, so every chunk can still
    // be compared with it.
    let writer = Writer::start(&c, 12);
    // Slow uploads: ~700 entries per 6 s chunk take about 2 s to store.
    let throttle = [(rbm_agent::pitr::slicer_chunk::TEST_THROTTLE_ENV, "300")];
    let _primary = Agent::start(&server, "p:27017", "primary", &agent_env(&throttle));
    let mut secondary = Agent::start(&server, "s:27017", "secondary", &agent_env(&throttle));
    registered(&c, 2).await;
    set_pitr_enabled(&c, true).await;

    let first = wait_chunks(&c, 1, Duration::from_secs(60)).await.len();
    assert_eq!(lock_holder(&c).await.as_deref(), Some("s:27017"));
    // Kill the secondary while it stores a chunk.
    let indexed = wait_for(Duration::from_secs(60), "an upload in progress", || {
        let log = secondary.log();
        let c = c.clone();
        async move {
            let started = log.matches("uploading chunk").count();
            let n = chunks(&c).await.len();
            (started > n && n >= first).then_some(n)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    secondary.kill9();
    let ch = chunks(&c).await;
    assert_eq!(ch.len(), indexed, "a chunk was indexed after the kill");
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    assert_no_unindexed_objects(&st, &ch).await;

    // The dead slicer's lock goes stale (30 s of cluster time); the primary takes over
    // from the last indexed chunk.
    wait_for(Duration::from_secs(90), "the primary slicing", || async {
        (lock_holder(&c).await.as_deref() == Some("p:27017")).then_some(())
    })
    .await;
    let after = wait_chunks(&c, ch.len() + 2, Duration::from_secs(60)).await;
    writer.stop().await;
    assert_contiguous(&after);
    verify_chunks(&c, &st, server.replset(), &after).await;
    assert_no_unindexed_objects(&st, &chunks(&c).await).await;
    let took = pitr_log(&c, 3).await;
    assert!(
        took.iter().any(|m| m.contains("took over PITR slicing")),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_then_catch_up_without_gap() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let path = store.path().join("bk");
    std::fs::create_dir(&path).expect("storage dir");
    let conf = rbm_e2e::fs_conf(&path);
    set_config(&c, &conf, oplog_only(0.05)).await;
    let writer = Writer::start(&c, 5);
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    let before = wait_chunks(&c, 2, Duration::from_secs(60)).await;

    // The storage goes away: its directory is replaced by a plain file (root ignores
    // permissions, so chmod would not stop writes).
    let away = store.path().join("away");
    std::fs::rename(&path, &away).expect("move storage away");
    std::fs::write(&path, b"not a directory").expect("block the path");
    let n = before.len();
    wait_for(
        Duration::from_secs(30),
        "the upload error logged",
        || async { pitr_log(&c, 1).await.first().cloned() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = chunks(&c).await;
    assert!(
        during.len() <= n + 1,
        "chunks indexed while storage was gone"
    );
    std::fs::remove_file(&path).expect("unblock");
    std::fs::rename(&away, &path).expect("storage back");

    let after = wait_chunks(&c, during.len() + 2, Duration::from_secs(60)).await;
    writer.stop().await;
    assert_contiguous(&after);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    verify_chunks(&c, &st, server.replset(), &after).await;
    // The chunk that spans the outage holds everything written meanwhile.
    assert!(
        after
            .windows(2)
            .any(|w| w[1].end_ts.time - w[1].start_ts.time >= 6),
        "no catch-up chunk: {:?}",
        after.iter().map(|c| &c.file_name).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_over_oplog_is_a_reported_gap_not_bridged() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, oplog_only(0.05)).await;
    let writer = Writer::start(&c, 5);
    let mut agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    wait_chunks(&c, 2, Duration::from_secs(60)).await;
    writer.stop().await;
    agent.signal("-TERM");
    agent.wait(Duration::from_secs(60));
    let before = chunks(&c).await;
    let end = before.last().expect("chunks").end_ts;

    // More writes than the oplog holds (20,000 entries) while no agent runs.
    let coll = c.database("app").collection::<Document>("bulk");
    for b in 0..22 {
        let docs: Vec<Document> = (0..1000).map(|i| doc! {"b": b, "i": i}).collect();
        coll.insert_many(docs).await.expect("bulk insert");
    }
    let first_left = oplog_entries(
        &c,
        Timestamp {
            time: 0,
            increment: 0,
        },
        end,
    )
    .await;
    assert!(first_left.is_empty(), "the oplog did not roll over");

    let writer = Writer::start(&c, 5);
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    let after = wait_chunks(&c, before.len() + 2, Duration::from_secs(90)).await;
    writer.stop().await;
    let errors = pitr_log(&c, 1).await;
    assert!(
        errors.iter().any(|m| m.contains("PITR gap")),
        "gap not reported: {errors:?}"
    );
    // Exactly one discontinuity, right after the old run.
    let (old, new) = after.split_at(before.len());
    assert_contiguous(old);
    assert_contiguous(new);
    assert!(lt(old[old.len() - 1].end_ts, new[0].start_ts));
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    verify_chunks(&c, &st, server.replset(), new).await;
    let (_, out, _) = rbm(&server, &["status"]);
    assert!(out.contains("ERROR while running PITR backup"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_at_the_base_backup_and_pauses_for_a_backup() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(
        &c,
        &conf,
        doc! {"enabled": true, "oplogSpanMin": 0.05, "compression": "s2"},
    )
    .await;
    let writer = Writer::start(&c, 5);
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    // No base backup: PITR refuses to start and says why.
    wait_for(Duration::from_secs(30), "no-backup error", || async {
        pitr_log(&c, 1)
            .await
            .into_iter()
            .find(|m| m.contains("full backup is required"))
    })
    .await;
    assert!(chunks(&c).await.is_empty());

    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--compression", "s2"]);
    assert!(ok, "{out}{err}");
    let b1: Document = find_all(&c, "pbmBackups", doc! {"status": "done"})
        .await
        .pop()
        .expect("backup");
    let b1_last = b1.get_timestamp("last_write_ts").expect("last_write_ts");
    let first = wait_chunks(&c, 2, Duration::from_secs(60)).await;
    assert_eq!(
        first[0].start_ts, b1_last,
        "PITR does not start at the backup"
    );

    // A second backup: the slicer cuts at its first write, pauses, and afterwards the
    // backup's own oplog slices fill the window.
    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--compression", "s2"]);
    assert!(ok, "{out}{err}");
    let b2: Document = find_all(&c, "pbmBackups", doc! {"status": "done"})
        .await
        .into_iter()
        .find(|b| b.get_str("name").ok() != b1.get_str("name").ok())
        .expect("second backup");
    let rs2 = b2.get_array("replsets").expect("replsets")[0]
        .as_document()
        .expect("rs")
        .clone();
    let (fw, lw) = (
        rs2.get_timestamp("first_write_ts").expect("first_write_ts"),
        rs2.get_timestamp("last_write_ts").expect("last_write_ts"),
    );
    let all = wait_for(
        Duration::from_secs(60),
        "slicing past the backup",
        || async {
            let v = chunks(&c).await;
            v.iter().any(|ch| lt(lw, ch.start_ts)).then_some(v)
        },
    )
    .await;
    writer.stop().await;
    assert_contiguous(&all);
    assert!(
        all.iter().any(|ch| ch.end_ts == fw),
        "no chunk cut at the backup's first write"
    );
    assert!(
        all.iter().any(|ch| ch.end_ts == lw),
        "the backup window is not covered by its slices"
    );
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    verify_chunks(&c, &st, server.replset(), &all).await;
    let info = pitr_log(&c, 3).await;
    assert!(
        info.iter()
            .any(|m| m.contains("paused") || m.contains("pausing")),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_chunks_decode_to_the_oplog() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let mut conf = rbm_e2e::s3_conf(None);
    if let Some(s3) = conf.s3.as_mut() {
        s3.prefix = format!("pitr-{}-{}", std::process::id(), server.port());
    }
    set_config(&c, &conf, oplog_only(0.05)).await;
    let writer = Writer::start(&c, 5);
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    let ch = wait_chunks(&c, 3, Duration::from_secs(60)).await;
    writer.stop().await;
    assert_contiguous(&ch);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    let n = verify_chunks(&c, &st, server.replset(), &ch).await;
    assert!(n > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_priority_picks_the_slicer() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    let mut pitr = oplog_only(0.05);
    pitr.insert("priority", doc! {"p:27017": 2.0});
    pitr.insert("enabled", false);
    set_config(&c, &conf, pitr).await;
    let writer = Writer::start(&c, 5);
    // Without the map the secondary would win (see the takeover test).
    let _s = Agent::start(&server, "s:27017", "secondary", &agent_env(&[]));
    let _p = Agent::start(&server, "p:27017", "primary", &agent_env(&[]));
    registered(&c, 2).await;
    set_pitr_enabled(&c, true).await;
    let ch = wait_chunks(&c, 2, Duration::from_secs(60)).await;
    writer.stop().await;
    assert_eq!(lock_holder(&c).await.as_deref(), Some("p:27017"));
    assert_contiguous(&ch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_restore_stops_slicing_until_it_ends() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, oplog_only(0.05)).await;
    let writer = Writer::start(&c, 5);
    let _agent = Agent::start(&server, "n1:27017", "primary", &agent_env(&[]));
    wait_chunks(&c, 1, Duration::from_secs(60)).await;

    // A live restore lock (as a restoring agent holds it) in pbmLock.
    let locks = c.database("admin").collection::<Document>("pbmLock");
    locks
        .insert_one(
            doc! {"type": "restore", "replset": server.replset(), "node": "r:27017",
            "opid": "6b0000000000000000000001", "hb": cluster_time(&c).await},
        )
        .await
        .expect("restore lock");
    wait_for(Duration::from_secs(30), "the slicer stopped", || async {
        lock_holder(&c).await.is_none().then_some(())
    })
    .await;
    let stopped = chunks(&c).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        chunks(&c).await.len(),
        stopped.len(),
        "sliced during a restore"
    );
    let paused = pitr_log(&c, 3).await;
    assert!(
        paused
            .iter()
            .any(|m| m.contains("stopping for lock [restore")),
        "{paused:?}"
    );

    locks.delete_many(doc! {}).await.expect("restore ends");
    let after = wait_chunks(&c, stopped.len() + 2, Duration::from_secs(60)).await;
    writer.stop().await;
    assert_contiguous(&after);
}
