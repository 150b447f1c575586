//! Logical backup end to end: real SecantusDB, real `rbm-agent` processes, the real `rbm`
//! CLI, filesystem and S3 (s3s-fs) storage. Every assertion reads what was stored back:
//! objects are decompressed and their CRC-64 and size recomputed.

mod agent_common;

use agent_common::*;
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use rbm_protocol::meta::archive::{ArchiveMetaV2, CollectionCrc, NamespaceType};
use rbm_protocol::meta::BackupMeta;
use rbm_storage::{Compression, DynStorage, StorageConf};
use std::time::Duration;
use tokio::io::AsyncReadExt;

async fn set_config(c: &Client, storage: &StorageConf, extra: Document) {
    let mut d = doc! {"storage": mongodb::bson::serialize_to_bson(storage).expect("storage conf")};
    d.extend(extra);
    let coll = c.database("admin").collection::<Document>("pbmConfig");
    coll.delete_many(doc! {}).await.expect("clear config");
    coll.insert_one(d).await.expect("insert config");
}

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

/// Several databases with every kind of collection and index the server has.
async fn rich_dataset(c: &Client) {
    let shop = c.database("shop");
    shop.create_collection("products")
        .collation(
            mongodb::options::Collation::builder()
                .locale("en")
                .strength(mongodb::options::CollationStrength::Secondary)
                .build(),
        )
        .await
        .expect("products");
    let customers: Vec<Document> = (0..600)
        .map(|i| doc! {"_id": i, "email": format!("c{i}@x.io"), "name": format!("Name {i}"), "tier": i % 3, "created": i * 7, "vat": if i % 5 == 0 { mongodb::bson::Bson::String(format!("V{i}")) } else { mongodb::bson::Bson::Null }})
        .collect();
    shop.collection::<Document>("customers")
        .insert_many(customers)
        .await
        .expect("customers");
    let orders: Vec<Document> = (0..900)
        .map(|i| doc! {"cust": i % 600, "placed": i, "open": i % 2 == 0, "total": f64::from(i) * 1.5, "lines": [{"sku": format!("s{}", i % 50), "qty": i % 4}]})
        .collect();
    shop.collection::<Document>("orders")
        .insert_many(orders)
        .await
        .expect("orders");
    let products: Vec<Document> = (0..50)
        .map(|i| doc! {"title": format!("Product {i}"), "price": i})
        .collect();
    shop.collection::<Document>("products")
        .insert_many(products)
        .await
        .expect("products docs");
    for (coll, idx) in [
        (
            "customers",
            doc! {"key": {"email": 1}, "name": "email_1", "unique": true},
        ),
        (
            "customers",
            doc! {"key": {"name": 1}, "name": "name_ci", "collation": {"locale": "en", "strength": 2}},
        ),
        (
            "customers",
            doc! {"key": {"tier": 1, "created": -1}, "name": "tier_1_created_-1"},
        ),
        (
            "customers",
            doc! {"key": {"vat": 1}, "name": "vat_1", "sparse": true},
        ),
        (
            "orders",
            doc! {"key": {"cust": 1, "placed": -1}, "name": "cust_1_placed_-1"},
        ),
        (
            "orders",
            doc! {"key": {"expireAt": 1}, "name": "expireAt_1", "expireAfterSeconds": 3600},
        ),
        (
            "orders",
            doc! {"key": {"placed": 1}, "name": "open_orders", "partialFilterExpression": {"open": true}},
        ),
        ("products", doc! {"key": {"title": 1}, "name": "title_1"}),
    ] {
        shop.run_command(doc! {"createIndexes": coll, "indexes": [idx]})
            .await
            .expect("index");
    }
    shop.run_command(doc! {"create": "big_orders", "viewOn": "orders", "pipeline": [{"$match": {"total": {"$gt": 100}}}]})
        .await
        .expect("view");

    let geo = c.database("geo");
    geo.run_command(doc! {"create": "events", "capped": true, "size": 1_048_576, "max": 500})
        .await
        .expect("capped");
    let events: Vec<Document> = (0..700).map(|i| doc! {"seq": i}).collect();
    for e in events {
        geo.collection::<Document>("events")
            .insert_one(e)
            .await
            .expect("event");
    }
    let places: Vec<Document> = (0..300)
        .map(|i| doc! {"loc": {"type": "Point", "coordinates": [f64::from(i % 180) - 90.0, f64::from(i % 90) - 45.0]}, "grid": [i % 100, i % 50], "kind": i % 4, "rating": i % 10})
        .collect();
    geo.collection::<Document>("places")
        .insert_many(places)
        .await
        .expect("places");
    geo.run_command(doc! {"createIndexes": "places", "indexes": [
        {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
        {"key": {"grid": "2d"}, "name": "grid_2d"},
        {"key": {"kind": 1, "rating": -1}, "name": "kind_1_rating_-1"},
    ]})
    .await
    .expect("geo indexes");

    let misc = c.database("misc");
    misc.run_command(doc! {"create": "validated", "validator": {"$jsonSchema": {"bsonType": "object", "required": ["n"]}}, "validationLevel": "moderate", "validationAction": "error"})
        .await
        .expect("validated");
    let v: Vec<Document> = (0..200).map(|i| doc! {"n": i, "when": mongodb::bson::DateTime::from_millis(1_700_000_000_000 + i64::from(i)), "d": mongodb::bson::Decimal128::from_bytes([1; 16])}).collect();
    misc.collection::<Document>("validated")
        .insert_many(v)
        .await
        .expect("validated docs");
    misc.run_command(doc! {"create": "empty"})
        .await
        .expect("empty");
    let w: Vec<Document> = (0..100)
        .map(|i| doc! {"attrs": {"a": i, "b": format!("x{i}")}, "h": i})
        .collect();
    misc.collection::<Document>("wild")
        .insert_many(w)
        .await
        .expect("wild");
    misc.run_command(doc! {"createIndexes": "wild", "indexes": [
        {"key": {"attrs.$**": 1}, "name": "attrs_wild"},
        {"key": {"h": 1}, "name": "h_hidden", "hidden": true},
    ]})
    .await
    .expect("wild indexes");

    misc.run_command(
        doc! {"create": "metrics", "timeseries": {"timeField": "t", "metaField": "m"}},
    )
    .await
    .expect("timeseries");
    let m: Vec<Document> = (0..50)
        .map(|i| doc! {"t": mongodb::bson::DateTime::from_millis(1_700_000_000_000 + i64::from(i) * 1000), "m": i % 3, "v": i})
        .collect();
    misc.collection::<Document>("metrics")
        .insert_many(m)
        .await
        .expect("metrics");

    shop.run_command(doc! {"createRole": "shop_reporter", "privileges": [{"resource": {"db": "shop", "collection": "orders"}, "actions": ["find"]}], "roles": []})
        .await
        .expect("role");
    shop.run_command(
        doc! {"createUser": "shop_app", "pwd": "s3cret", "roles": ["readWrite", "shop_reporter"]},
    )
    .await
    .expect("user");
    c.database("admin")
        .run_command(doc! {"createUser": "ops", "pwd": "0ps", "roles": [{"role": "clusterMonitor", "db": "admin"}]})
        .await
        .expect("admin user");
}

async fn read_object(st: &DynStorage, name: &str) -> Vec<u8> {
    let mut r = rbm_storage::codec::decompress_reader(
        st.open(name)
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}")),
        Compression::from_file_name(name),
    );
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .await
        .unwrap_or_else(|e| panic!("read {name}: {e}"));
    out
}

fn name_from_output(out: &str) -> String {
    let i = out
        .find("Starting backup \"")
        .expect("backup name in output")
        + "Starting backup \"".len();
    out[i..i + 20].to_string()
}

/// The stored backup is complete and self-consistent: every collection object's CRC and
/// size equal meta.pbm's, metadata.json is derived from it, the oplog slice covers
/// first..last write, `.pbm.json` equals the done meta. Returns meta.pbm.
async fn check_stored_backup(
    c: &Client,
    st: &DynStorage,
    name: &str,
    rs: &str,
    ext: &str,
) -> ArchiveMetaV2 {
    let meta = backup_meta(c, name).await;
    assert_eq!(meta.status.as_str(), "done", "{meta:?}");
    let statuses: Vec<&str> = meta.conditions.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(statuses, ["starting", "running", "dumpDone", "done"]);
    let r = meta.replset(rs).expect("replset entry");
    let rstat: Vec<&str> = r.conditions.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(rstat, ["running", "dumpDone", "done"]);
    assert_eq!(r.dump_name, format!("{name}/{rs}/metadata.json"));
    assert_eq!(r.oplog_name, format!("{name}/{rs}/oplog"));
    assert_eq!(meta.first_write_ts, r.first_write_ts);
    assert_eq!(meta.last_write_ts, r.last_write_ts);
    assert!(
        meta.first_write_ts.time > 1
            && (meta.last_write_ts.time, meta.last_write_ts.increment)
                > (meta.first_write_ts.time, meta.first_write_ts.increment)
    );
    assert!(meta.fcv.as_deref().is_some_and(|f| !f.is_empty()));

    let json = String::from_utf8(read_object(st, &format!("{name}.pbm.json")).await).expect("utf8");
    let stored = BackupMeta::from_pbm_json(&json).expect("pbm.json");
    let mut want = meta.clone();
    want.id = None;
    assert_eq!(stored, want, "<name>.pbm.json is the final meta");
    assert!(!json.contains("\"error\""), "{json}");

    let archive =
        ArchiveMetaV2::from_bson_bytes(&read_object(st, &format!("{name}/{rs}/meta.pbm")).await)
            .expect("meta.pbm");
    assert_eq!(archive.version, "2.15.0");
    let v1 = String::from_utf8(read_object(st, &format!("{name}/{rs}/metadata.json")).await)
        .expect("utf8");
    assert_eq!(
        v1,
        rbm_agent::backup::archive::metadata_json(&archive, rbm_agent::backup::half_cpus() as i32)
    );

    let listed: Vec<String> = st
        .list(&format!("{name}/"))
        .map_ok(|o| o.name)
        .try_collect()
        .await
        .expect("list");
    let mut total_stored = 0u64;
    for ns in &archive.namespaces {
        let obj = format!("{name}/{rs}/{}{ext}", ns.ns());
        if ns.kind != NamespaceType::Collection || ns.size == 0 {
            assert!(!listed.contains(&obj), "no object for {obj}");
            assert_eq!((ns.crc, ns.size), (0, 0));
            continue;
        }
        let bytes = read_object(st, &obj).await;
        let mut crc = CollectionCrc::new();
        crc.update(&bytes);
        assert_eq!(bytes.len() as i64, ns.size, "{obj} size");
        assert_eq!(crc.finish(), ns.crc, "{obj} crc");
        total_stored += st.stat(&obj).await.expect("stat").size;
    }
    let oplog: Vec<&String> = listed
        .iter()
        .filter(|n| n.starts_with(&format!("{name}/{rs}/oplog/")))
        .collect();
    assert!(!oplog.is_empty());
    let last = oplog.last().expect("a slice");
    let file = last.rsplit('/').next().expect("file");
    let (s, e, x) = rbm_protocol::names::parse_backup_oplog_chunk_name(file).expect("slice name");
    assert_eq!(x, ext);
    assert_eq!(e, meta.last_write_ts);
    let first = oplog[0].rsplit('/').next().expect("file");
    assert_eq!(
        rbm_protocol::names::parse_backup_oplog_chunk_name(first)
            .expect("name")
            .0,
        meta.first_write_ts
    );
    let _ = s;
    for o in &oplog {
        total_stored += st.stat(o).await.expect("stat").size;
    }
    total_stored += st
        .stat(&format!("{name}/{rs}/meta.pbm"))
        .await
        .expect("stat")
        .size;
    assert_eq!(
        meta.size,
        Some(total_stored as i64),
        "size = every object but metadata.json"
    );
    archive
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backup_to_filesystem_matches_pbm_layout() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    rich_dataset(&c).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let _agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;

    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--compression", "s2"]);
    assert!(ok, "rbm backup failed: {out}\n{err}\n{}", _agent.log());
    let name = name_from_output(&out);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    let archive = check_stored_backup(&c, &st, &name, "secantus", ".s2").await;

    let spec = |ns: &str| {
        archive
            .namespaces
            .iter()
            .find(|n| n.ns() == ns)
            .unwrap_or_else(|| panic!("{ns} in meta.pbm"))
    };
    // Kept: options of capped, validated and collated collections, views, every index.
    let ev = spec("geo.events");
    assert_eq!(ev.options.get_bool("capped").ok(), Some(true));
    let val = spec("misc.validated");
    assert!(val.options.contains_key("validator"), "{:?}", val.options);
    assert_eq!(
        val.options.get_str("validationLevel").ok(),
        Some("moderate")
    );
    assert!(spec("shop.products").options.contains_key("collation"));
    let view = spec("shop.big_orders");
    assert_eq!(view.kind, NamespaceType::View);
    assert_eq!(view.options.get_str("viewOn").ok(), Some("orders"));
    assert!(view.indexes.is_empty());
    let idx_names = |ns: &str| -> Vec<String> {
        spec(ns)
            .indexes
            .iter()
            .map(|i| i.get_str("name").expect("name").to_string())
            .collect()
    };
    for (ns, want) in [
        (
            "shop.customers",
            vec!["email_1", "name_ci", "tier_1_created_-1", "vat_1"],
        ),
        (
            "shop.orders",
            vec!["cust_1_placed_-1", "expireAt_1", "open_orders"],
        ),
        (
            "geo.places",
            vec!["loc_2dsphere", "grid_2d", "kind_1_rating_-1"],
        ),
        ("misc.wild", vec!["attrs_wild", "h_hidden"]),
    ] {
        let have = idx_names(ns);
        for w in want {
            assert!(have.iter().any(|h| h == w), "{ns}: {w} missing in {have:?}");
        }
    }
    let cust = spec("shop.customers");
    let ci = cust
        .indexes
        .iter()
        .find(|i| i.get_str("name").ok() == Some("name_ci"))
        .expect("name_ci");
    assert!(ci.contains_key("collation"));
    let keys: Vec<&String> = cust
        .indexes
        .iter()
        .find(|i| i.get_str("name").ok() == Some("tier_1_created_-1"))
        .expect("compound")
        .get_document("key")
        .expect("key")
        .keys()
        .collect();
    assert_eq!(keys, ["tier", "created"], "compound key order kept");
    assert!(spec("shop.orders")
        .indexes
        .iter()
        .any(|i| i.contains_key("expireAfterSeconds")));
    assert!(spec("shop.orders")
        .indexes
        .iter()
        .any(|i| i.contains_key("partialFilterExpression")));
    assert!(!spec("shop.customers").uuid.is_empty());
    // A time-series collection keeps its options and its data.
    let ts = spec("misc.metrics");
    assert!(ts.options.contains_key("timeseries"), "{:?}", ts.options);
    assert!(ts.size > 0);
    // Empty collections are listed but get no object.
    assert_eq!(spec("misc.empty").size, 0);
    // Users and roles went through admin.pbmRUsers / pbmRRoles and were dropped after.
    assert!(spec("admin.pbmRUsers").size > 0 && spec("admin.pbmRRoles").size > 0);
    let users = read_object(&st, &format!("{name}/secantus/admin.pbmRUsers.s2")).await;
    let text = String::from_utf8_lossy(&users);
    assert!(
        text.contains("shop_app") && text.contains("ops"),
        "users dumped"
    );
    let roles = String::from_utf8_lossy(
        &read_object(&st, &format!("{name}/secantus/admin.pbmRRoles.s2")).await,
    )
    .into_owned();
    assert!(roles.contains("shop_reporter"));
    // The shapes of mongod's system.users / system.roles (and of PBM's copies).
    let first_doc = |b: &[u8]| mongodb::bson::Document::from_reader(b).expect("doc");
    let u = first_doc(&users);
    assert_eq!(
        u.get_str("_id").expect("_id"),
        format!(
            "{}.{}",
            u.get_str("db").expect("db"),
            u.get_str("user").expect("user")
        )
    );
    assert!(u.contains_key("roles"));
    let r = first_doc(&read_object(&st, &format!("{name}/secantus/admin.pbmRRoles.s2")).await);
    assert_eq!(r.get_str("_id").expect("_id"), "shop.shop_reporter");
    let rkeys: Vec<&String> = r.keys().collect();
    assert_eq!(rkeys, ["_id", "role", "db", "privileges", "roles"]);
    let admin_colls = c
        .database("admin")
        .list_collection_names()
        .await
        .expect("list admin");
    assert!(
        !admin_colls
            .iter()
            .any(|n| n == "pbmRUsers" || n == "pbmRRoles"),
        "{admin_colls:?}"
    );
    // The lock is released.
    lock_released(&c).await;

    // The CLI lists it as done and describes its collections from the storage.
    let (ok, list, err) = rbm(&server, &["list"]);
    assert!(ok && list.contains(&name), "{list}\n{err}");
    let (ok, desc, err) = rbm(
        &server,
        &["describe-backup", &name, "--with-collections", "-o", "json"],
    );
    assert!(ok, "{desc}\n{err}");
    assert!(
        desc.contains("shop.customers") && desc.contains("\"status\": \"done\"")
            || desc.contains("\"status\":\"done\""),
        "{desc}"
    );
    // Other backup types are refused with a clear error, and the CLI exits non-zero.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ok, out, err) = rbm(&server, &["backup", "--type", "external", "--wait"]);
    assert!(!ok, "{out}");
    assert!(
        format!("{out}{err}").contains("not available in this rbm build"),
        "{out}\n{err}"
    );

    // The stored documents are the server's, byte for byte (user databases do not
    // change after the dump; admin.pbm* do).
    for ns in archive.namespaces.iter().filter(|n| {
        ["shop", "geo", "misc"].contains(&n.db.as_str()) && n.kind == NamespaceType::Collection
    }) {
        let mut theirs: Vec<Vec<u8>> = c
            .database(&ns.db)
            .collection::<mongodb::bson::RawDocumentBuf>(&ns.name)
            .find(doc! {})
            .await
            .expect("find")
            .try_collect::<Vec<_>>()
            .await
            .expect("docs")
            .into_iter()
            .map(|d| d.into_bytes())
            .collect();
        let mut ours: Vec<Vec<u8>> = Vec::new();
        if ns.size > 0 {
            let bytes = read_object(&st, &format!("{name}/secantus/{}.s2", ns.ns())).await;
            let mut r = rbm_storage::bson_stream::BsonReader::new(&bytes[..]);
            while let Some(d) = r.next().await.expect("doc") {
                ours.push(d.into_bytes());
            }
        }
        theirs.sort();
        ours.sort();
        assert_eq!(ours.len(), theirs.len(), "{}", ns.ns());
        assert!(ours == theirs, "{}: stored documents differ", ns.ns());
    }

    // The storage was initialised as PBM does.
    assert_eq!(read_object(&st, ".pbm.init").await, b"2.15.0");

    // Selective with users and roles: only those of the selected databases.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ok, out, err) = rbm(
        &server,
        &[
            "backup",
            "--wait",
            "--ns",
            "shop.*",
            "--with-users-and-roles",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let sel = name_from_output(&out);
    let sel_archive = check_stored_backup(&c, &st, &sel, "secantus", ".s2").await;
    assert!(sel_archive
        .namespaces
        .iter()
        .all(|n| n.db == "shop" || n.name == "pbmRUsers" || n.name == "pbmRRoles"));
    let sel_users = read_object(&st, &format!("{sel}/secantus/admin.pbmRUsers.s2")).await;
    let sel_users = String::from_utf8_lossy(&sel_users);
    assert!(sel_users.contains("shop_app") && !sel_users.contains("clusterMonitor"));
    assert!(backup_meta(&c, &sel).await.sel_users_and_roles);

    // Same fields in the same order as the .pbm.json the real PBM 2.15 wrote.
    let keys = |json: &str| -> (Vec<String>, Vec<String>) {
        let tree = rbm_protocol::gojson::parse(json).expect("json");
        let d = tree.as_document().expect("object").clone();
        let rs = d.get_array("replsets").expect("replsets")[0]
            .as_document()
            .expect("rs")
            .clone();
        (d.keys().cloned().collect(), rs.keys().cloned().collect())
    };
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/pbm-2.15/storage/2026-11-26T11:41:08Z.pbm.json");
    let theirs = std::fs::read_to_string(fixture).expect("fixture");
    let ours =
        String::from_utf8(read_object(&st, &format!("{name}.pbm.json")).await).expect("utf8");
    assert_eq!(keys(&ours), keys(&theirs));
}

async fn small_dataset(c: &Client, colls: usize, docs: usize) {
    for i in 0..colls {
        let d: Vec<Document> = (0..docs)
            .map(|j| doc! {"i": j as i64, "pad": "x".repeat(200)})
            .collect();
        c.database(if i % 2 == 0 { "alpha" } else { "beta" })
            .collection::<Document>(&format!("c{i}"))
            .insert_many(d)
            .await
            .expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_backups_in_every_compression_respect_the_parallel_bound() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 6, 300).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");

    for (i, comp) in ["none", "gzip", "snappy", "lz4", "s2", "zstd"]
        .iter()
        .enumerate()
    {
        let (ok, out, err) = rbm(
            &server,
            &[
                "backup",
                "--wait",
                "--compression",
                comp,
                "--ns",
                "alpha.*,beta.c1",
                "--num-parallel-collections",
                "2",
            ],
        );
        assert!(ok, "{comp}: {out}\n{err}\n{}", agent.log());
        let name = name_from_output(&out);
        let ext = Compression::from_file_name(&format!(
            "x.{}",
            match *comp {
                "none" => "",
                "gzip" => "gz",
                "snappy" => "snappy",
                "lz4" => "lz4",
                "s2" => "s2",
                _ => "zst",
            }
        ))
        .extension();
        let archive = check_stored_backup(&c, &st, &name, "secantus", ext).await;
        let mut nss: Vec<String> = archive.namespaces.iter().map(|n| n.ns()).collect();
        nss.sort();
        assert_eq!(
            nss,
            ["alpha.c0", "alpha.c2", "alpha.c4", "beta.c1"],
            "{comp}"
        );
        let meta = backup_meta(&c, &name).await;
        assert_eq!(meta.namespaces, ["alpha.*", "beta.c1"]);
        assert_eq!(meta.compression, *comp);
        // Waits between backups: names have second resolution.
        if i + 1 < 6 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let logs = find_all(
            &c,
            "pbmLog",
            doc! {"eobj": &name, "msg": {"$regex": "at most"}},
        )
        .await;
        let msg = logs[0].get_str("msg").expect("msg").to_string();
        let at_most: usize = msg
            .split("at most ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("figure");
        assert!((1..=2).contains(&at_most), "{msg}");
    }
}

/// A stuck backup is one the watchdog of another agent fails: kill -9 the agent that
/// runs it mid-dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_agent_mid_backup_ends_in_error_without_leftovers() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let slow = [(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "300")];
    // The secondary has the higher implicit priority, so it is nominated.
    let mut runner = Agent::start(&server, "s1:27017", "secondary", &slow);
    let _watcher = Agent::start(&server, "p1:27017", "primary", &[]);
    registered(&c, 2).await;

    let (ok, out, err) = rbm(&server, &["backup"]);
    assert!(ok, "{out}\n{err}");
    let name = name_from_output(&out);
    wait_for(
        Duration::from_secs(40),
        "the dump to be under way",
        || async {
            let m = find_all(&c, "pbmBackups", doc! {"name": &name})
                .await
                .into_iter()
                .next()?;
            (m.get_str("status").ok()? == "running").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backup_meta(&c, &name).await.nomination[0].ack, "s1:27017");
    runner.kill9();

    let meta = wait_for(
        Duration::from_secs(90),
        "the backup to end as error",
        || async {
            let m = backup_meta(&c, &name).await;
            (m.status.as_str() == "error").then_some(m)
        },
    )
    .await;
    assert!(
        meta.error.as_deref().unwrap_or("").contains("s1:27017"),
        "{:?}",
        meta.error
    );
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "lock released"
    );
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    wait_for(
        Duration::from_secs(20),
        "leftover files deleted",
        || async {
            let left = rbm_storage::list_all(st.as_ref(), &format!("{name}/"))
                .await
                .expect("list");
            left.is_empty().then_some(())
        },
    )
    .await;
    assert!(
        st.stat(&format!("{name}.pbm.json")).await.is_err(),
        "no .pbm.json"
    );
    // A new backup can run.
    let (ok, out, err) = rbm(&server, &["backup", "--wait"]);
    assert!(ok, "{out}\n{err}\n{}", _watcher.log());
}

/// The filesystem storage breaks mid-upload (the backup's folder becomes a file): the
/// backup ends in error and is never listed as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_failing_mid_backup_ends_in_error() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "200")],
    );
    registered(&c, 1).await;
    let (ok, out, err) = rbm(&server, &["backup"]);
    assert!(ok, "{out}\n{err}");
    let name = name_from_output(&out);
    let dir = store.path().join(&name);
    wait_for(Duration::from_secs(40), "the backup folder", || async {
        dir.exists().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&dir).expect("remove folder");
    std::fs::write(&dir, b"in the way").expect("file in the way");

    let meta = wait_for(Duration::from_secs(90), "the backup to fail", || async {
        let m = backup_meta(&c, &name).await;
        matches!(m.status.as_str(), "error" | "done").then_some(m)
    })
    .await;
    assert_eq!(meta.status.as_str(), "error", "{}", agent.log());
    assert!(!store.path().join(format!("{name}.pbm.json")).exists());
    lock_released(&c).await;
    let (_, list, _) = rbm(&server, &["list"]);
    assert!(!list.contains(&name) || list.contains("error"), "{list}");
}

/// A TCP relay in front of s3s-fs that can be cut, standing for an endpoint that goes away.
struct Relay {
    port: u16,
    stop: tokio_util::sync::CancellationToken,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let target = target.trim_start_matches("http://").to_string();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = l.accept() => match r { Ok(x) => x, Err(_) => return },
                };
                let target = target.clone();
                let s2 = s.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = s2.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    }
                });
            }
        });
        Relay { port, stop }
    }
}

fn s3_conf_via(port: u16, prefix: &str) -> StorageConf {
    let mut conf = rbm_e2e::s3_conf(Some(format!("http://127.0.0.1:{port}")));
    if let Some(s3) = conf.s3.as_mut() {
        s3.prefix = prefix.to_string();
        s3.retryer = Some(rbm_protocol::config::Retryer {
            num_max_retries: Some(1),
            ..Default::default()
        });
    }
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backup_and_s3_going_away_mid_upload() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let endpoint = rbm_e2e::require_env("RBM_TEST_S3_ENDPOINT");
    let prefix = format!("bk-{}", std::process::id());
    let relay = Relay::start(&endpoint).await;
    let conf = s3_conf_via(relay.port, &prefix);
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "100")],
    );
    registered(&c, 1).await;

    // Through the relay while it is up: a complete backup on S3.
    let (ok, out, err) = rbm(
        &server,
        &[
            "backup",
            "--wait",
            "--compression",
            "zstd",
            "--compression-level",
            "3",
        ],
    );
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    let good = name_from_output(&out);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    check_stored_backup(&c, &st, &good, "secantus", ".zst").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (ok, out, err) = rbm(&server, &["backup"]);
    assert!(ok, "{out}\n{err}");
    let name = name_from_output(&out);
    wait_for(
        Duration::from_secs(40),
        "the dump to be under way",
        || async {
            let m = backup_meta(&c, &name).await;
            (m.status.as_str() == "running").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.stop.cancel();
    let meta = wait_for(Duration::from_secs(120), "the backup to fail", || async {
        let m = backup_meta(&c, &name).await;
        matches!(m.status.as_str(), "error" | "done").then_some(m)
    })
    .await;
    assert_eq!(meta.status.as_str(), "error", "{}", agent.log());
    lock_released(&c).await;
    // Nothing of it reads as a backup: no .pbm.json (checked on s3s-fs directly).
    let direct = {
        let mut conf = rbm_e2e::s3_conf(None);
        if let Some(s3) = conf.s3.as_mut() {
            s3.prefix = prefix.clone();
        }
        rbm_storage::from_config(&conf, None)
            .await
            .expect("direct storage")
    };
    assert!(direct.stat(&format!("{name}.pbm.json")).await.is_err());
    assert!(direct.stat(&format!("{good}.pbm.json")).await.is_ok());
}

/// Nothing of backup `name` is left on the storage: no object under its folder and no
/// `.pbm.json`.
async fn assert_no_objects(conf: &rbm_protocol::StorageConf, name: &str) {
    let st = rbm_storage::from_config(conf, None).await.expect("storage");
    assert!(rbm_storage::list_all(st.as_ref(), &format!("{name}/"))
        .await
        .expect("list")
        .is_empty());
    assert!(st.stat(&format!("{name}.pbm.json")).await.is_err());
}

/// The agent releases its lock after it has marked the backup and deleted its files:
/// wait for that, without a fixed sleep.
async fn lock_released(c: &mongodb::Client) {
    wait_for(
        Duration::from_secs(30),
        "the backup lock released",
        || async {
            find_all(c, "pbmLock", doc! {})
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

/// Starts `rbm backup --wait` in the background and returns it with the backup's name
/// once the backup is running.
async fn backup_wait_until_running(
    server: &MongoServer,
    c: &mongodb::Client,
) -> (tokio::task::JoinHandle<std::process::Output>, String) {
    let uri = server.uri();
    let waiting = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbm"))
            .args(["backup", "--wait"])
            .env("PBM_MONGODB_URI", uri)
            .output()
            .expect("rbm backup --wait")
    });
    let name = wait_for(Duration::from_secs(40), "a running backup", || async {
        let m = find_all(c, "pbmBackups", doc! {"status": "running"})
            .await
            .into_iter()
            .next()?;
        Some(m.get_str("name").ok()?.to_string())
    })
    .await;
    (waiting, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_backup_stops_it_and_deletes_its_files() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "300")],
    );
    registered(&c, 1).await;
    let (waiting, name) = backup_wait_until_running(&server, &c).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, out, err) = rbm(&server, &["cancel-backup"]);
    assert!(ok, "{out}\n{err}");
    let out = waiting.await.expect("join");
    assert!(
        !out.status.success(),
        "--wait exits non-zero on a canceled backup"
    );
    let meta = backup_meta(&c, &name).await;
    assert_eq!(meta.status.as_str(), "canceled", "{}", agent.log());
    lock_released(&c).await;
    assert_no_objects(&conf, &name).await;
}

/// With no other agent alive, the waiting CLI is the one that notices the backup is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_cli_fails_a_backup_whose_agent_died() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    set_config(&c, &rbm_e2e::fs_conf(store.path()), doc! {}).await;
    let mut agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "300")],
    );
    registered(&c, 1).await;
    let (waiting, name) = backup_wait_until_running(&server, &c).await;
    agent.kill9();
    let out = tokio::time::timeout(Duration::from_secs(90), waiting)
        .await
        .expect("the CLI gave up in time")
        .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("stuck"), "{text}");
    let meta = backup_meta(&c, &name).await;
    assert_eq!(meta.status.as_str(), "error");
    assert!(
        find_all(&c, "pbmLock", doc! {}).await.is_empty(),
        "stale lock removed"
    );
    // The CLI deleted the partial backup. A temporary file the killed agent was
    // writing may remain in the folder (the filesystem backend renames only complete
    // objects), but no object of the backup is listed.
    assert_no_objects(&rbm_e2e::fs_conf(store.path()), &name).await;
}

/// The oracle of a consistent logical backup: every write between `first_write_ts` and
/// `last_write_ts` is in the stored oplog slices (several, with a short span), and the
/// slices chain without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_slices_cover_every_write_of_the_backup_window() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {"backup": {"oplogSpanMin": 0.04}}).await;
    let agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "250")],
    );
    registered(&c, 1).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut k = 0i64;
            while !stop.is_cancelled() {
                c.database("live")
                    .collection::<Document>("w")
                    .insert_one(doc! {"_id": k})
                    .await
                    .expect("write");
                k += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            k
        })
    };
    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--compression", "lz4"]);
    stop.cancel();
    let written = writer.await.expect("writer");
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    assert!(written > 20);
    let name = name_from_output(&out);
    let st = rbm_storage::from_config(&conf, None)
        .await
        .expect("storage");
    check_stored_backup(&c, &st, &name, "secantus", ".lz4").await;
    let meta = backup_meta(&c, &name).await;

    let slices = rbm_storage::list_all(st.as_ref(), &format!("{name}/secantus/oplog/"))
        .await
        .expect("list");
    assert!(slices.len() >= 2, "a slice per span: {slices:?}");
    let mut prev_end = meta.first_write_ts;
    let mut stored_ids = std::collections::BTreeSet::new();
    for s in &slices {
        let file = s.name.rsplit('/').next().expect("file");
        let (start, end, _) =
            rbm_protocol::names::parse_backup_oplog_chunk_name(file).expect("name");
        assert_eq!(start, prev_end, "slices chain without gaps");
        prev_end = end;
        let bytes = read_object(&st, &s.name).await;
        let mut r = rbm_storage::bson_stream::BsonReader::new(&bytes[..]);
        while let Some(e) = r.next().await.expect("entry") {
            let ts = e.get_timestamp("ts").expect("ts");
            assert!(
                (ts.time, ts.increment) >= (start.time, start.increment)
                    && (ts.time, ts.increment) <= (end.time, end.increment)
            );
            assert_ne!(e.get_str("op").expect("op"), "n", "noops are left out");
            if e.get_str("ns").ok() == Some("live.w") && e.get_str("op").ok() == Some("i") {
                stored_ids.insert(e.get_document("o").expect("o").get_i64("_id").expect("_id"));
            }
        }
    }
    assert_eq!(prev_end, meta.last_write_ts);
    // What the server's own oplog says was written in the window.
    let (f, l) = (meta.first_write_ts, meta.last_write_ts);
    let want: std::collections::BTreeSet<i64> = c
        .database("local")
        .collection::<Document>("oplog.rs")
        .find(doc! {"ns": "live.w", "op": "i", "ts": {"$gte": f, "$lte": l}})
        .await
        .expect("oplog")
        .try_collect::<Vec<Document>>()
        .await
        .expect("oplog")
        .iter()
        .map(|e| e.get_document("o").expect("o").get_i64("_id").expect("_id"))
        .collect();
    assert!(
        want.len() > 10,
        "writes happened during the backup: {}",
        want.len()
    );
    assert_eq!(stored_ids, want);
}

fn peak_rss_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Collections are streamed, not buffered: dumping a collection several times larger
/// than the agent's whole peak memory works, with the memory bound holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_memory_stays_bounded_by_the_pipeline_not_the_collection() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let big = c.database("big").collection::<Document>("blobs");
    let pad: String = (0..16_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for chunk in 0..16 {
        let docs: Vec<Document> = (0..500)
            .map(|i| doc! {"_id": chunk * 500 + i, "pad": &pad})
            .collect();
        big.insert_many(docs).await.expect("insert");
    }
    let store = tempfile::tempdir().expect("store");
    set_config(&c, &rbm_e2e::fs_conf(store.path()), doc! {}).await;
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let before = peak_rss_of(agent.pid());
    let (ok, out, err) = rbm(
        &server,
        &["backup", "--wait", "--compression", "none", "--ns", "big.*"],
    );
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    let name = name_from_output(&out);
    let dumped = std::fs::metadata(store.path().join(&name).join("secantus/big.blobs"))
        .expect("object")
        .len();
    let peak = peak_rss_of(agent.pid());
    eprintln!(
        "agent peak RSS {} MiB (before the backup {} MiB), collection {} MiB",
        peak >> 20,
        before >> 20,
        dumped >> 20
    );
    assert!(dumped > 120 << 20, "{dumped}");
    // The pipeline (a few read batches of ~4 MiB, the pipe, the upload buffer) is what
    // costs memory; the collection is more than twice that growth.
    assert!(
        peak - before < 64 << 20,
        "peak RSS grew by {} MiB dumping a {} MiB collection",
        (peak - before) >> 20,
        dumped >> 20
    );
}

/// SIGTERM mid-backup: the agent stops the dump, fails the backup, deletes its files and
/// releases the lock before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backup_fails_it_cleanly() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 3000).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let mut agent = Agent::start(
        &server,
        "n1:27017",
        "primary",
        &[(rbm_agent::backup::logical::TEST_THROTTLE_ENV, "300")],
    );
    registered(&c, 1).await;
    let (ok, out, err) = rbm(&server, &["backup"]);
    assert!(ok, "{out}\n{err}");
    let name = name_from_output(&out);
    wait_for(
        Duration::from_secs(40),
        "the dump to be under way",
        || async { (backup_meta(&c, &name).await.status.as_str() == "running").then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent.signal("-TERM");
    assert!(
        agent.wait(Duration::from_secs(40)).success(),
        "{}",
        agent.log()
    );
    let meta = backup_meta(&c, &name).await;
    assert_eq!(meta.status.as_str(), "error");
    assert!(
        meta.error
            .as_deref()
            .unwrap_or("")
            .contains("shutting down"),
        "{:?}",
        meta.error
    );
    lock_released(&c).await;
    assert_no_objects(&conf, &name).await;
}

/// `--profile`: the backup goes to the profile's storage and its meta says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_a_storage_profile() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 2, 100).await;
    let main = tempfile::tempdir().expect("main store");
    let other = tempfile::tempdir().expect("profile store");
    set_config(&c, &rbm_e2e::fs_conf(main.path()), doc! {}).await;
    let pconf = rbm_e2e::fs_conf(other.path());
    c.database("admin")
        .collection::<Document>("pbmConfig")
        .insert_one(doc! {"name": "second", "profile": true, "storage": mongodb::bson::serialize_to_bson(&pconf).expect("conf")})
        .await
        .expect("profile");
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;
    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--profile", "second"]);
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    let name = name_from_output(&out);
    let st = rbm_storage::from_config(&pconf, None)
        .await
        .expect("storage");
    check_stored_backup(&c, &st, &name, "secantus", ".s2").await;
    let meta = backup_meta(&c, &name).await;
    assert_eq!(meta.store.name, "second");
    assert!(meta.store.is_profile);
    assert_eq!(meta.store.storage, pconf);
    assert!(
        !main.path().join(&name).exists(),
        "nothing on the main storage"
    );
}

/// Backup names have whole seconds (PBM's). A backup sent within the second of another
/// must not take that one's name: the CLI picks a later second, and an agent given a
/// second command with a taken name (another CLI, same second) refuses it instead of
/// acting on the first one's meta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_never_takes_the_name_of_another() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    small_dataset(&c, 1, 50).await;
    let store = tempfile::tempdir().expect("store");
    let conf = rbm_e2e::fs_conf(store.path());
    set_config(&c, &conf, doc! {}).await;
    let agent = Agent::start(&server, "n1:27017", "primary", &[]);
    registered(&c, 1).await;

    // Backups already named for this second and the next three.
    let now = now_secs() as i64;
    let taken: Vec<String> = (0..4)
        .map(|s| rbm_protocol::names::backup_name(now + s))
        .collect();
    let ts0 = mongodb::bson::Timestamp {
        time: 1,
        increment: 1,
    };
    for name in &taken {
        c.database("admin")
            .collection::<Document>("pbmBackups")
            .insert_one(doc! {
                "name": name, "opid": "000000000000000000000000", "type": "logical",
                "compression": "none", "mongodb_version": "8.0.0", "pbm_version": "2.15.0",
                "store": {"type": "filesystem", "filesystem": {"path": "/nonexistent"}},
                "status": "error", "error": "planted by the test", "start_ts": now,
                "last_transition_ts": now, "first_write_ts": ts0, "last_write_ts": ts0, "hb": ts0,
            })
            .await
            .expect("plant meta");
    }
    let (ok, out, err) = rbm(&server, &["backup", "--wait", "--compression", "none"]);
    assert!(ok, "{out}\n{err}\n{}", agent.log());
    let name = name_from_output(&out);
    assert!(!taken.contains(&name), "took a used name: {name}");
    assert!(name > taken[3], "{name} is not after {}", taken[3]);
    let meta = backup_meta(&c, &name).await;
    assert_eq!(meta.status, rbm_protocol::defs::Status::Done, "{meta:?}");
    for name in &taken {
        let planted = backup_meta(&c, name).await;
        assert_eq!(
            planted.opid, "000000000000000000000000",
            "{name} was rewritten"
        );
        assert_eq!(planted.status, rbm_protocol::defs::Status::Error);
    }

    // Two commands with one name, as two CLIs in the same second would send them.
    let name = rbm_protocol::names::backup_name(now + 100);
    let payload = doc! {"type": "logical", "name": &name, "compression": "none"};
    let first = send_command(&c, "backup", Some(payload.clone()), 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = send_command(&c, "backup", Some(payload), 0).await;
    let meta = wait_for(Duration::from_secs(60), "the first backup to end", || {
        let c = c.clone();
        let name = name.clone();
        async move {
            let m = backup_meta(&c, &name).await;
            matches!(
                m.status,
                rbm_protocol::defs::Status::Done | rbm_protocol::defs::Status::Error
            )
            .then_some(m)
        }
    })
    .await;
    assert_eq!(meta.opid, first.to_hex());
    assert_eq!(meta.status, rbm_protocol::defs::Status::Done, "{meta:?}");
    let refused = wait_for(Duration::from_secs(30), "the refusal in pbmLog", || {
        let c = c.clone();
        let opid = second.to_hex();
        async move {
            let l = find_all(&c, "pbmLog", doc! {"opid": &opid, "s": 1}).await;
            (!l.is_empty()).then_some(l)
        }
    })
    .await;
    let msg = refused[0].get_str("msg").expect("msg");
    assert!(
        msg.contains("already used by operation") && msg.contains(&first.to_hex()),
        "{msg}"
    );
}
