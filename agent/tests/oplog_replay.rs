//! Oplog replay against the real test server (SecantusDB), and over the real MongoDB 5.0
//! oplog in the pbm-legacy fixture.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, rawdoc, Bson, Document, RawDocumentBuf, Timestamp};
use mongodb::Client;
use rbm_agent::oplog::entry::Op;
use rbm_agent::oplog::{
    filter, replay_stream, translate, Applier, ApplyOptions, Mode, ReplayRange,
};
use rbm_e2e::{state_hashes, MongoServer};

/// The shared fixtures (`RBM_FIXTURES` overrides), as `protocol/tests/pbm_fixtures.rs`.
fn fixtures() -> std::path::PathBuf {
    match std::env::var_os("RBM_FIXTURES") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

async fn client(server: &MongoServer) -> Client {
    Client::with_uri_str(server.direct_uri())
        .await
        .expect("client")
}

/// The newest oplog ts on the server.
async fn last_ts(c: &Client) -> Timestamp {
    let e = c
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await
        .expect("read oplog")
        .expect("oplog not empty");
    e.get_timestamp("ts").expect("ts")
}

/// The entries after `after`, concatenated as a chunk stream.
async fn oplog_since(c: &Client, after: Timestamp) -> Vec<u8> {
    let entries: Vec<RawDocumentBuf> = c
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs")
        .find(doc! {"ts": {"$gt": after}})
        .sort(doc! {"$natural": 1})
        .await
        .expect("read oplog")
        .try_collect()
        .await
        .expect("read oplog");
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// listCollections options and listIndexes specs (sorted by name) per namespace, views
/// included, outside admin/local/config.
async fn catalog(c: &Client) -> BTreeMap<String, (Document, Vec<Document>)> {
    let mut out = BTreeMap::new();
    for db_name in c.list_database_names().await.expect("listDatabases") {
        if matches!(db_name.as_str(), "admin" | "local" | "config") {
            continue;
        }
        let db = c.database(&db_name);
        let specs: Vec<Document> = db
            .list_collections()
            .await
            .expect("listCollections")
            .try_collect::<Vec<_>>()
            .await
            .expect("listCollections")
            .into_iter()
            .map(|s| doc! {"name": s.name, "type": format!("{:?}", s.collection_type), "options": mongodb::bson::serialize_to_document(&s.options).unwrap_or_default()})
            .collect();
        for s in specs {
            let name = s.get_str("name").expect("name").to_string();
            if name.starts_with("system.") {
                continue;
            }
            let mut idx: Vec<Document> = Vec::new();
            if s.get_str("type").unwrap_or("") == "Collection" {
                let mut cur = db
                    .collection::<Document>(&name)
                    .list_indexes()
                    .await
                    .expect("listIndexes");
                while let Some(i) = cur.try_next().await.expect("listIndexes") {
                    idx.push(mongodb::bson::serialize_to_document(&i).expect("index doc"));
                }
                idx.sort_by_key(|d| d.to_string());
            }
            out.insert(format!("{db_name}.{name}"), (s, idx));
        }
    }
    out
}

async fn workload(c: &Client) {
    let db = c.database("rt");
    db.run_command(doc! {
        "create": "people",
        "validator": {"age": {"$gte": 0}},
        "validationAction": "error",
        "collation": {"locale": "fr", "strength": 2},
    })
    .await
    .expect("create people");
    let people = db.collection::<Document>("people");
    let docs: Vec<Document> = (0..40)
        .map(|i| {
            doc! {
                "_id": i,
                "name": format!("p{i}"),
                "age": i,
                "tags": ["a", "b", "c", "d"],
                "sub": {"x": i, "y": {"deep": true, "n": [1, 2, 3]}},
                "score": 1.5_f64,
            }
        })
        .collect();
    people.insert_many(docs).await.expect("insert people");
    let upd = |f: Document, u: Document| {
        let people = people.clone();
        async move {
            people
                .update_many(f.clone(), u.clone())
                .await
                .unwrap_or_else(|e| panic!("update {f} {u}: {e}"));
        }
    };
    upd(
        doc! {"_id": {"$lt": 10}},
        doc! {"$set": {"name": "renamed", "sub.x": -1}},
    )
    .await;
    upd(doc! {"_id": 11}, doc! {"$unset": {"score": ""}}).await;
    upd(doc! {"_id": {"$gte": 30}}, doc! {"$inc": {"age": 100}}).await;
    upd(doc! {"_id": 12}, doc! {"$push": {"tags": "e"}}).await;
    upd(doc! {"_id": 13}, doc! {"$pull": {"tags": "b"}}).await;
    upd(doc! {"_id": 14}, doc! {"$addToSet": {"tags": "z"}}).await;
    upd(doc! {"_id": 15}, doc! {"$rename": {"name": "fullName"}}).await;
    upd(
        doc! {"_id": 16},
        doc! {"$set": {"sub.y.n.1": 20, "sub.y.new": "n"}},
    )
    .await;
    upd(
        doc! {"_id": 17},
        doc! {"$push": {"tags": {"$each": [], "$slice": 2}}},
    )
    .await;
    upd(
        doc! {"_id": 18},
        doc! {"$set": {"tags.1": "B"}, "$unset": {"sub.y.deep": ""}},
    )
    .await;
    upd(doc! {"_id": 19}, doc! {"$set": {"newField": 1}}).await;
    // Two new fields in one $set, listed in sorted order: SecantusDB logs them sorted
    // (test-stack.md), so only this order replays to the same bytes.
    upd(doc! {"_id": 20}, doc! {"$set": {"alpha": 1, "omega": 2}}).await;
    people
        .replace_one(
            doc! {"_id": 21},
            doc! {"_id": 21, "replaced": true, "age": 3},
        )
        .await
        .expect("replace");
    people.delete_one(doc! {"_id": 22}).await.expect("delete");
    people
        .delete_many(doc! {"_id": {"$in": [23, 24, 25]}})
        .await
        .expect("delete many");

    db.run_command(doc! {"create": "events", "capped": true, "size": 65536, "max": 10})
        .await
        .expect("create capped");
    let events = db.collection::<Document>("events");
    for i in 0..25 {
        events
            .insert_one(doc! {"_id": i, "n": i})
            .await
            .expect("event");
    }

    db.run_command(doc! {"createIndexes": "people", "indexes": [
        {"key": {"name": 1, "age": -1}, "name": "name_age"},
        {"key": {"newField": 1}, "name": "newField_u", "unique": true, "sparse": true},
        {"key": {"tags": 1}, "name": "tags_1"},
    ]})
    .await
    .expect("create indexes");
    db.run_command(doc! {"dropIndexes": "people", "index": "tags_1"})
        .await
        .expect("drop index");
    db.run_command(doc! {"collMod": "people", "validationLevel": "moderate"})
        .await
        .expect("collMod");

    let tmp = db.collection::<Document>("tmp");
    tmp.insert_many((0..5).map(|i| doc! {"_id": i, "t": "x"}))
        .await
        .expect("tmp");
    c.database("admin")
        .run_command(doc! {"renameCollection": "rt.tmp", "to": "rt.renamed"})
        .await
        .expect("rename");
    db.collection::<Document>("gone")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("gone");
    db.collection::<Document>("gone")
        .drop()
        .await
        .expect("drop gone");
    let scratch = c.database("scratch");
    scratch
        .collection::<Document>("a")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("scratch");
    scratch.drop().await.expect("drop scratch");
    db.run_command(doc! {"create": "adults", "viewOn": "people", "pipeline": [{"$match": {"age": {"$gte": 18}}}]})
        .await
        .expect("create view");

    let mut s = c.start_session().await.expect("session");
    s.start_transaction().await.expect("start txn");
    people
        .insert_one(doc! {"_id": 100, "name": "txn", "age": 1})
        .session(&mut s)
        .await
        .expect("txn insert");
    people
        .update_one(doc! {"_id": 1}, doc! {"$set": {"age": 77}})
        .session(&mut s)
        .await
        .expect("txn update");
    db.collection::<Document>("renamed")
        .delete_one(doc! {"_id": 0})
        .session(&mut s)
        .await
        .expect("txn delete");
    s.commit_transaction().await.expect("commit");
}

/// The test server's own oplog, replayed onto an empty server, reproduces the data
/// byte for byte, the collection options and the index specs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_of_the_test_servers_own_oplog() {
    let a = MongoServer::start().await;
    let b = MongoServer::start().await;
    let ca = client(&a).await;
    let cb = client(&b).await;
    let start = last_ts(&ca).await;
    workload(&ca).await;
    let end = last_ts(&ca).await;
    let chunk = oplog_since(&ca, start).await;

    let mut applier = Applier::new(cb.clone(), ApplyOptions::default())
        .await
        .expect("applier");
    assert_eq!(applier.mode(), Mode::Commands, "SecantusDB has no applyOps");
    let range = ReplayRange {
        start: Timestamp {
            time: start.time,
            increment: start.increment + 1,
        },
        end,
    };
    replay_stream(&mut applier, &chunk[..], range)
        .await
        .expect("replay");
    // Chunks repeat their boundary entries: replaying the same chunk again is a no-op.
    replay_stream(&mut applier, &chunk[..], range)
        .await
        .expect("replay again");
    let stats = applier.finish().await.expect("finish");
    assert_eq!(stats.transactions, 1, "{stats:?}");
    assert!(stats.duplicates > 0, "{stats:?}");

    let ha = state_hashes(&ca).await;
    let hb = state_hashes(&cb).await;
    assert!(ha.contains_key("rt.people") && ha.contains_key("rt.renamed"));
    assert!(!ha.contains_key("rt.gone") && !ha.keys().any(|k| k.starts_with("scratch.")));
    assert_eq!(ha, hb, "data differs after replay");
    assert_eq!(
        catalog(&ca).await,
        catalog(&cb).await,
        "options or indexes differ"
    );
}

fn ts(i: u32) -> Timestamp {
    Timestamp {
        time: 1_700_000_000,
        increment: i,
    }
}

async fn get(c: &Client, id: i32) -> Option<RawDocumentBuf> {
    c.database("m")
        .collection::<RawDocumentBuf>("c")
        .find_one(doc! {"_id": id})
        .await
        .expect("find")
}

/// Entries in mongod's formats (as MongoDB 5.0 writes them), applied to the test server
/// through ordinary commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongod_formats_apply_exactly() {
    let s = MongoServer::start().await;
    let c = client(&s).await;
    let mut ap = Applier::new(c.clone(), ApplyOptions::default())
        .await
        .expect("applier");
    let ui = mongodb::bson::Binary::from_uuid(mongodb::bson::Uuid::new());
    let lsid = rawdoc! {"id": mongodb::bson::Binary::from_uuid(mongodb::bson::Uuid::new()), "uid": mongodb::bson::Binary{subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![1; 32]}};
    let mut n = 0;
    let mut next = || {
        n += 1;
        ts(n)
    };

    // Insert, then both update forms.
    ap.apply(&rawdoc! {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 1, "a": 1, "arr": [1, 2, 3, 4], "sub": {"p": 1, "q": [{"x": 1}, {"x": 2}]}, "gone": true}, "ts": next(), "t": 1_i64, "v": 2_i64, "wall": mongodb::bson::DateTime::now()}).await.expect("insert");
    ap.apply(&rawdoc! {"op": "u", "ns": "m.c", "ui": ui.clone(), "o": {"$v": 1, "$set": {"a": 2, "sub.p": 5}}, "o2": {"_id": 1}, "ts": next()}).await.expect("v1 update");
    ap.apply(
        &rawdoc! {"op": "u", "ns": "m.c", "ui": ui.clone(), "o": {"$v": 2, "diff": {
            "d": {"gone": false},
            "u": {"a": 3},
            "i": {"z": "new", "b": "newer"},
            "sarr": {"a": true, "l": 2, "u1": 20},
            "ssub": {"sq": {"a": true, "s1": {"u": {"x": 22}, "i": {"y": 1}}, "u2": {"x": 3}}},
        }}, "o2": {"_id": 1}, "ts": next()},
    )
    .await
    .expect("v2 update");
    // Re-inserting the same _id (a fuzzy dump already holds it) is idempotent.
    ap.apply(&rawdoc! {"op": "i", "ns": "m.c", "o": {"_id": 2, "k": 1}, "ts": next()})
        .await
        .expect("insert 2");
    ap.apply(&rawdoc! {"op": "i", "ns": "m.c", "o": {"_id": 2, "k": 1}, "ts": next()})
        .await
        .expect("insert 2 again");
    ap.apply(&rawdoc! {"op": "d", "ns": "m.c", "o": {"_id": 2}, "ts": next()})
        .await
        .expect("delete");
    assert_eq!(
        get(&c, 1).await.expect("doc 1"),
        rawdoc! {"_id": 1, "a": 3, "arr": [1, 20], "sub": {"p": 5, "q": [{"x": 1}, {"x": 22, "y": 1}, {"x": 3}]}, "z": "new", "b": "newer"}
    );
    assert_eq!(get(&c, 2).await, None);

    // Unprepared transaction: one applyOps entry.
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 10, "t": 1}},
        {"op": "u", "ns": "m.c", "ui": ui.clone(), "o": {"$v": 2, "diff": {"u": {"a": 4}}}, "o2": {"_id": 1}},
    ]}, "lsid": lsid.clone(), "txnNumber": 1_i64, "prevOpTime": {"ts": Timestamp{time: 0, increment: 0}, "t": -1_i64}, "ts": next()}).await.expect("txn");
    assert!(get(&c, 10).await.is_some());
    assert_eq!(get(&c, 1).await.expect("doc 1").get_i32("a").expect("a"), 4);

    // partialTxn chain: nothing visible until the last entry.
    let p1 = next();
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 20}},
    ], "partialTxn": true}, "lsid": lsid.clone(), "txnNumber": 2_i64, "prevOpTime": {"ts": Timestamp{time: 0, increment: 0}, "t": -1_i64}, "ts": p1}).await.expect("partial 1");
    assert_eq!(get(&c, 20).await, None, "partial txn applied early");
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 21}},
        {"op": "d", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 10}},
    ], "count": 3_i64}, "lsid": lsid.clone(), "txnNumber": 2_i64, "prevOpTime": {"ts": p1, "t": 1_i64}, "ts": next()}).await.expect("partial end");
    assert!(get(&c, 20).await.is_some() && get(&c, 21).await.is_some());
    assert_eq!(get(&c, 10).await, None);

    // Prepared, then committed.
    let prep = next();
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 30}},
    ], "prepare": true}, "lsid": lsid.clone(), "txnNumber": 3_i64, "prevOpTime": {"ts": Timestamp{time: 0, increment: 0}, "t": -1_i64}, "ts": prep}).await.expect("prepare");
    assert_eq!(
        get(&c, 30).await,
        None,
        "prepared txn applied before commit"
    );
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"commitTransaction": 1, "commitTimestamp": prep}, "lsid": lsid.clone(), "txnNumber": 3_i64, "prevOpTime": {"ts": prep, "t": 1_i64}, "ts": next()}).await.expect("commit");
    assert!(get(&c, 30).await.is_some());

    // Prepared, then aborted.
    let prep = next();
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 40}},
    ], "prepare": true}, "lsid": lsid.clone(), "txnNumber": 4_i64, "ts": prep})
        .await
        .expect("prepare");
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"abortTransaction": 1}, "lsid": lsid.clone(), "txnNumber": 4_i64, "prevOpTime": {"ts": prep, "t": 1_i64}, "ts": next()}).await.expect("abort");

    // A prepared transaction left open at the end of the range is not applied.
    ap.apply(&rawdoc! {"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [
        {"op": "i", "ns": "m.c", "ui": ui.clone(), "o": {"_id": 50}},
    ], "prepare": true}, "lsid": lsid.clone(), "txnNumber": 5_i64, "ts": next()})
        .await
        .expect("prepare open");

    // Commands in mongod's shapes.
    ap.apply(&rawdoc! {"op": "c", "ns": "m.$cmd", "ui": ui.clone(), "o": {"createIndexes": "c", "v": 2, "key": {"a": 1}, "name": "a_1"}, "ts": next()}).await.expect("flat createIndexes");
    ap.apply(&rawdoc! {"op": "c", "ns": "m.$cmd", "ui": ui.clone(), "o": {"startIndexBuild": "c", "indexBuildUUID": mongodb::bson::Binary::from_uuid(mongodb::bson::Uuid::new()), "indexes": [{"v": 2, "key": {"b": 1}, "name": "b_1"}]}, "ts": next()}).await.expect("startIndexBuild");
    ap.apply(&rawdoc! {"op": "c", "ns": "m.$cmd", "ui": ui.clone(), "o": {"commitIndexBuild": "c", "indexBuildUUID": mongodb::bson::Binary::from_uuid(mongodb::bson::Uuid::new()), "indexes": [{"v": 2, "key": {"b": 1}, "name": "b_1"}]}, "ts": next()}).await.expect("commitIndexBuild");
    ap.apply(&rawdoc! {"op": "n", "ns": "", "o": {"msg": "periodic noop"}, "ts": next()})
        .await
        .expect("noop");
    let err = ap
        .apply(&rawdoc! {"op": "c", "ns": "m.$cmd", "o": {"frobnicate": "c"}, "ts": Timestamp{time: 1_700_000_001, increment: 7}})
        .await
        .expect_err("unknown command");
    let msg = err.to_string();
    assert!(
        msg.contains("1700000001 7") && msg.contains("m.$cmd") && msg.contains("frobnicate"),
        "{msg}"
    );

    let stats = ap.finish().await.expect("finish");
    assert_eq!(stats.transactions, 3, "{stats:?}");
    assert_eq!(stats.aborted_transactions, 1, "{stats:?}");
    assert_eq!(stats.uncommitted_transactions, 1, "{stats:?}");
    assert_eq!(get(&c, 40).await, None);
    assert_eq!(get(&c, 50).await, None);
    let names: Vec<String> = c
        .database("m")
        .collection::<Document>("c")
        .list_index_names()
        .await
        .expect("indexes");
    assert_eq!(names, vec!["_id_", "a_1", "b_1"]);
}

/// The SecantusDB transaction shape (plain entries sharing one ts) is applied as one
/// transaction; skip rules leave PBM's collections alone; --ns-from/--ns-to renames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_rules_filter_and_remap() {
    let s = MongoServer::start().await;
    let c = client(&s).await;
    let opts = ApplyOptions {
        filter: rbm_protocol::ns::NsFilter::parse(&["a.x", "b.*"]).expect("filter"),
        ..Default::default()
    };
    let mut ap = Applier::new(c.clone(), opts).await.expect("applier");
    for (i, ns) in ["a.x", "a.y", "b.z", "admin.pbmLock", "config.cache.x"]
        .iter()
        .enumerate()
    {
        ap.apply(&rawdoc! {"op": "i", "ns": *ns, "o": {"_id": 1}, "ts": ts(i as u32 + 1)})
            .await
            .expect("insert");
    }
    let stats = ap.finish().await.expect("finish");
    assert_eq!((stats.applied, stats.skipped), (2, 3), "{stats:?}");
    let h = state_hashes(&c).await;
    assert_eq!(h.keys().cloned().collect::<Vec<_>>(), vec!["a.x", "b.z"]);
    let pbm = c
        .database("admin")
        .collection::<Document>("pbmLock")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(pbm, 0);

    let opts = ApplyOptions {
        remap: Some(("a.x".into(), "a.cloned".into())),
        ..Default::default()
    };
    let mut ap = Applier::new(c.clone(), opts).await.expect("applier");
    ap.apply(&rawdoc! {"op": "c", "ns": "a.$cmd", "o": {"create": "x"}, "ts": ts(10)})
        .await
        .expect("create");
    ap.apply(&rawdoc! {"op": "i", "ns": "a.x", "o": {"_id": 5}, "ts": ts(11)})
        .await
        .expect("insert");
    ap.apply(&rawdoc! {"op": "i", "ns": "a.other", "o": {"_id": 6}, "ts": ts(12)})
        .await
        .expect("insert");
    ap.finish().await.expect("finish");
    let cloned: Vec<RawDocumentBuf> = c
        .database("a")
        .collection::<RawDocumentBuf>("cloned")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("find");
    assert_eq!(cloned, vec![rawdoc! {"_id": 5}]);
    // The original a.x (from the first pass) is untouched; a.other never appears.
    assert_eq!(state_hashes(&c).await.len(), 3);

    // SecantusDB transaction: plain entries with lsid/txnNumber sharing a ts.
    let mut ap = Applier::new(c.clone(), ApplyOptions::default())
        .await
        .expect("applier");
    let lsid = rawdoc! {"id": mongodb::bson::Binary::from_uuid(mongodb::bson::Uuid::new())};
    for id in [1, 2, 3] {
        ap.apply(&rawdoc! {"op": "i", "ns": "t.c", "o": {"_id": id}, "o2": {"_id": id}, "ts": ts(20), "lsid": lsid.clone(), "txnNumber": 1_i64})
            .await
            .expect("txn entry");
    }
    let stats = ap.finish().await.expect("finish");
    assert_eq!((stats.transactions, stats.applied), (1, 3), "{stats:?}");
    let n = c
        .database("t")
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(n, 3);
}

/// Every entry of the real MongoDB 5.0 oplog in the pbm-legacy fixture (backup slices
/// and PITR chunks of cfg, rs1, rs2) is read and translated: nothing is rejected.
#[tokio::test]
async fn legacy_fixture_oplog_translates_completely() {
    use rbm_storage::bson_stream::BsonReader;
    use rbm_storage::codec::{decompress_reader, Compression};

    let dir = fixtures().join("pbm-legacy/pbm_disttxn_50");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).expect("fixture dir") {
        let p = e.expect("entry").path();
        if p.to_string_lossy().ends_with(".oplog.s2") {
            files.push(p);
        }
    }
    for rs in ["cfg", "rs1", "rs2"] {
        let d = dir.join("pbmPitr").join(rs).join("20220207");
        for e in std::fs::read_dir(&d).expect("pitr dir") {
            files.push(e.expect("entry").path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 9, "{files:?}");
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for f in &files {
        let c = Compression::from_file_name(&f.to_string_lossy());
        let file = tokio::fs::File::open(f).await.expect("open");
        let mut r = BsonReader::new(decompress_reader(Box::new(file), c));
        while let Some(e) = r
            .next()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        {
            total += 1;
            let op = Op::parse(&e).unwrap_or_else(|err| panic!("{}: {err}", f.display()));
            let mut check = |op: &Op<'_>| {
                let kind = match op.op {
                    "c" => format!("c:{}", op.command().map(|c| c.0).unwrap_or("")),
                    "u" => match rbm_agent::oplog::update::translate_update(op.o) {
                        Ok(rbm_agent::oplog::update::UpdateForm::Replace) => "u:replace".into(),
                        Ok(_) => format!("u:$v{}", op.o.get_i32("$v").unwrap_or(1)),
                        Err(err) => panic!("{} {}: {err}", f.display(), op.id()),
                    },
                    o => o.to_string(),
                };
                *kinds.entry(kind).or_default() += 1;
                if filter::skip_reason(op, &rbm_protocol::ns::NsFilter::all(), None).is_some() {
                    return;
                }
                let is_txn_cmd = op.op == "c"
                    && matches!(
                        op.command().map(|c| c.0),
                        Some("applyOps" | "commitTransaction" | "abortTransaction")
                    );
                if !is_txn_cmd {
                    translate::actions(op)
                        .unwrap_or_else(|err| panic!("{} {}: {err:?}", f.display(), op.id()));
                }
            };
            check(&op);
            if let Ok(inner) = op.o.get_array("applyOps") {
                for i in inner {
                    let i = i.expect("inner op");
                    let i = Op::parse(i.as_document().expect("inner doc")).expect("inner parses");
                    check(&i);
                }
            }
        }
    }
    eprintln!("{total} entries: {kinds:?}");
    assert!(total > 2500, "{total}");
    for k in [
        "u:$v2",
        "u:replace",
        "c:applyOps",
        "c:commitTransaction",
        "i",
        "d",
        "n",
    ] {
        assert!(kinds.contains_key(k), "no {k} in {kinds:?}");
    }
}

/// Replays the rs1 and rs2 PITR chunks of the pbm-legacy fixture onto `c` up to `end`
/// (inclusive), one applier per shard, then PBM's cross-shard exchange of distributed
/// commits. Returns how many transactions the exchange applied, how many stayed
/// uncommitted, and the `trx.test` idx set.
async fn replay_legacy_shards(c: &Client, end: Timestamp) -> (u64, u64, Vec<i64>) {
    use rbm_storage::codec::{decompress_reader, Compression};

    c.database("trx").drop().await.expect("drop trx");
    let dir = fixtures().join("pbm-legacy/pbm_disttxn_50/pbmPitr");
    // From the backup's last_write_ts, where its PITR chunks start.
    let range = ReplayRange {
        start: Timestamp {
            time: 1_644_242_765,
            increment: 18,
        },
        end,
    };
    let mut appliers = Vec::new();
    for rs in ["rs1", "rs2"] {
        let mut ap = Applier::new(c.clone(), ApplyOptions::default())
            .await
            .expect("applier");
        let mut files: Vec<_> = std::fs::read_dir(dir.join(rs).join("20220207"))
            .expect("pitr dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for f in files {
            let file = tokio::fs::File::open(&f).await.expect("open");
            // `.snappy` chunks of PBM 1.x are S2 streams; the snappy reader takes both.
            let r = decompress_reader(Box::new(file), Compression::Snappy);
            let end = replay_stream(&mut ap, r, range)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if end == rbm_agent::oplog::ChunkEnd::PastEnd {
                break;
            }
        }
        appliers.push(ap);
    }
    // PBM's cross-shard exchange: a distributed transaction one shard committed within
    // the range is applied on a shard whose own commit entry came later.
    let committed: std::collections::HashSet<String> = appliers
        .iter()
        .flat_map(|a| a.distributed_commits().map(|c| c.id.clone()))
        .collect();
    let mut late = 0;
    let mut uncommitted = 0;
    for mut ap in appliers {
        late += ap
            .apply_committed_elsewhere(&committed)
            .await
            .expect("apply committed elsewhere");
        uncommitted += ap.finish().await.expect("finish").uncommitted_transactions;
    }
    let mut idx: Vec<i64> = c
        .database("trx")
        .collection::<Document>("test")
        .find(doc! {})
        .await
        .expect("find")
        .try_collect::<Vec<_>>()
        .await
        .expect("find")
        .iter()
        .map(|d| match d.get("idx") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(f)) => *f as i64,
            other => panic!("idx {other:?} in {d}"),
        })
        .collect();
    idx.sort_unstable();
    (late, uncommitted, idx)
}

/// The real MongoDB 5.0 distributed transactions of the pbm-legacy fixture (prepared
/// `applyOps` + `commitTransaction` on two shards, commit entries at different ts).
///
/// Upstream's DistributedCommit check expects `trx.test` idx
/// {0..=5, 24, 25, 34, 35, 195, 196, 295, 296} at {1644243375, 7}; it was written for
/// PBM 1.6, whose end was exclusive. With the inclusive end of current PBM (and of
/// [`ReplayRange`]) that state is at {1644243375, 6}. At {1644243375, 7} rs1 commits
/// the transaction deleting 34 and 35 (its commit entry is at ,7), and the exchange
/// applies the same transaction on rs2 (whose commit entry is at ,8): 295 and 296 go too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_distributed_transactions_replay_to_target() {
    let s = MongoServer::start().await;
    let c = client(&s).await;
    let (late, uncommitted, idx) = replay_legacy_shards(
        &c,
        Timestamp {
            time: 1_644_243_375,
            increment: 6,
        },
    )
    .await;
    // The deleting transaction is prepared on both shards, committed on neither.
    assert_eq!((late, uncommitted), (0, 2));
    assert_eq!(
        idx,
        vec![0, 1, 2, 3, 4, 5, 24, 25, 34, 35, 195, 196, 295, 296]
    );

    let (late, uncommitted, idx) = replay_legacy_shards(
        &c,
        Timestamp {
            time: 1_644_243_375,
            increment: 7,
        },
    )
    .await;
    assert_eq!((late, uncommitted), (1, 0), "rs2's commit comes from rs1");
    assert_eq!(idx, vec![0, 1, 2, 3, 4, 5, 24, 25, 195, 196]);
}

/// The pbm-2.15 fixture, written by the real PBM on the test server: backup
/// 2026-11-26T11:41:08Z's collection dumps are loaded as they are, then its own oplog
/// slice and the PITR chunk are replayed to T1 and on to T2. Every collection must hash
/// as `expected.json` records; at T2 `shop.customers` must hash as the real PBM's own
/// replay did (the server logs one document's new fields sorted; see the README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbm_fixture_pitr_replay_reaches_recorded_states() {
    use rbm_storage::bson_stream::BsonReader;
    use rbm_storage::codec::{decompress_reader, Compression};

    let root = fixtures().join("pbm-2.15");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json parses");
    let bdir = root.join("storage/2026-11-26T11:41:08Z/secantus");
    let s = MongoServer::start().await;
    let c = client(&s).await;

    // The snapshot: user collections only (PBM's restore skips admin.pbm*).
    for e in std::fs::read_dir(&bdir).expect("backup dir") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(ns) = name.strip_suffix(".zst") else {
            continue;
        };
        if ns.starts_with("admin.") {
            continue;
        }
        let (db, coll) = ns.split_once('.').expect("ns");
        let target = c.database(db).collection::<RawDocumentBuf>(coll);
        target.drop().await.expect("drop");
        let file = tokio::fs::File::open(&p).await.expect("open dump");
        let mut r = BsonReader::new(decompress_reader(Box::new(file), Compression::Zstd));
        let mut batch = Vec::new();
        while let Some(d) = r.next().await.expect("dump reads") {
            batch.push(d);
            if batch.len() == 500 {
                target
                    .insert_many(std::mem::take(&mut batch))
                    .await
                    .expect("load");
            }
        }
        if !batch.is_empty() {
            target.insert_many(batch).await.expect("load");
        }
    }

    let t = |time: u64, increment: u32| Timestamp {
        time: time as u32,
        increment,
    };
    let t1 = expected["pitr"]["T1_unix"].as_u64().expect("T1");
    let t2 = expected["pitr"]["T2_unix"].as_u64().expect("T2");
    let mut oplog_files: Vec<_> = std::fs::read_dir(bdir.join("oplog"))
        .expect("oplog dir")
        .map(|e| e.expect("entry").path())
        .collect();
    oplog_files.sort();
    oplog_files.push(
        root.join("storage/pbmPitr/secantus/20261126/20261126114113-4.20261126114220-9.oplog.s2"),
    );

    let replay = |range: ReplayRange| {
        let c = c.clone();
        let files = oplog_files.clone();
        async move {
            let mut ap = Applier::new(c, ApplyOptions::default())
                .await
                .expect("applier");
            for f in &files {
                let comp = Compression::from_file_name(&f.to_string_lossy());
                let file = tokio::fs::File::open(f).await.expect("open chunk");
                replay_stream(&mut ap, decompress_reader(Box::new(file), comp), range)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            ap.finish().await.expect("finish")
        }
    };
    let check = |state: &serde_json::Value,
                 got: &BTreeMap<String, (u64, String)>,
                 except: Option<(&str, &serde_json::Value)>| {
        let colls = state["collections"].as_object().expect("collections");
        let want: BTreeMap<String, (u64, String)> = colls
            .iter()
            .map(|(ns, v)| {
                let v = match except {
                    Some((e, alt)) if e == ns => alt,
                    _ => v,
                };
                (
                    ns.clone(),
                    (
                        v["count"].as_u64().expect("count"),
                        v["sha256"].as_str().expect("sha").to_string(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, &want);
    };

    // Backup's first write to T1 (PBM's --time is {T, 0}).
    let stats = replay(ReplayRange {
        start: t(1_795_693_268, 38),
        end: t(t1, 0),
    })
    .await;
    assert!(stats.transactions >= 1, "{stats:?}");
    check(&expected["pitr"]["state_T1"], &state_hashes(&c).await, None);

    let stats = replay(ReplayRange {
        start: t(t1, 1),
        end: t(t2, 0),
    })
    .await;
    assert!(stats.transactions >= 1, "{stats:?}");
    let pbm_t2 = &expected["verification_by_real_pbm"]["pitr restore --time=2026-11-26T11:41:37"]
        ["restored_collection_hashes_where_data_differs"]["shop.customers"];
    check(
        &expected["pitr"]["state_T2"],
        &state_hashes(&c).await,
        Some(("shop.customers", pbm_t2)),
    );
}

/// `OplogRange` reads `from <= ts <= till` without noops, and refuses a range the oplog
/// no longer reaches back to (PBM's `IsSufficient`), whether `from` is an entry's ts
/// (checked by the first entry itself) or not (checked by a query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_range_reads_its_window_and_refuses_one_the_oplog_lost() {
    use rbm_agent::oplog::read::{OplogRange, OplogReadError};
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let coll = c.database("rng").collection::<Document>("c");
    coll.insert_one(doc! {"_id": 0}).await.expect("insert");
    let from = last_ts(&c).await;
    // The next write lands in a later second, so `from + 1` below is no entry's ts.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for i in 1..=3 {
        coll.insert_one(doc! {"_id": i}).await.expect("insert");
    }
    let till = last_ts(&c).await;
    coll.insert_one(doc! {"_id": 4})
        .await
        .expect("insert after the window");

    let read_ids = |from: Timestamp| {
        let c = c.clone();
        async move {
            let mut r = OplogRange::open(&c, from, till).await?;
            let mut ids = Vec::new();
            while let Some(e) = r.next().await? {
                if e.get_str("ns").ok() == Some("rng.c") {
                    let o = e.get_document("o").expect("o");
                    ids.push(o.get_i32("_id").expect("_id"));
                }
            }
            Ok::<_, OplogReadError>(ids)
        }
    };
    // `from` is the insert of 0: inclusive at both ends.
    assert_eq!(read_ids(from).await.expect("range"), vec![0, 1, 2, 3]);
    // A `from` between entries still in the oplog: the query says it reaches back.
    let between = Timestamp {
        time: from.time,
        increment: from.increment + 1,
    };
    assert_eq!(
        read_ids(between).await.expect("range from between entries"),
        vec![1, 2, 3]
    );
    // A `from` older than the oldest entry: the entries since were lost.
    let lost = Timestamp {
        time: 1,
        increment: 0,
    };
    match read_ids(lost).await {
        Err(OplogReadError::InsufficientRange(ts)) => assert_eq!(ts, lost),
        other => panic!("expected InsufficientRange, got {other:?}"),
    }
}
