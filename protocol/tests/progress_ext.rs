//! rbm's `replsets.$.progress` extension rides along in PBM's metas: the typed metas
//! accept a document that carries it, and the projection reads it back.

use rbm_protocol::meta::progress::ProgressOnly;
use rbm_protocol::meta::{BackupMeta, RestoreMeta};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    match std::env::var_os("RBM_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

fn progress() -> bson::Document {
    bson::doc! {"node": "n1:27017", "bytes": 10_i64, "bytesTotal": 40_i64,
    "collections": 1_i64, "collectionsTotal": 4_i64, "started": 100_i64, "updated": 105_i64}
}

#[test]
fn backup_meta_with_progress_decodes_and_projects() {
    let path = fixtures().join("pbm-2.15/storage/2026-11-26T11:40:53Z.pbm.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta = BackupMeta::from_pbm_json(&text).expect("fixture meta");
    let mut doc = bson::serialize_to_document(&meta).expect("bson");
    let rs = doc.get_array_mut("replsets").expect("replsets");
    let first = rs[0].as_document_mut().expect("replset doc");
    first.insert("progress", progress());
    let back: BackupMeta = bson::deserialize_from_document(doc.clone()).expect("typed meta");
    assert_eq!(back, meta, "the extension changes nothing PBM knows");
    let list = bson::deserialize_from_document::<ProgressOnly>(doc)
        .expect("projection")
        .into_list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].rs, meta.replsets[0].name);
    assert_eq!(list[0].progress.node, "n1:27017");
    assert_eq!(list[0].progress.collections_total, 4);
}

#[test]
fn restore_meta_with_progress_decodes() {
    let doc = bson::doc! {
        "status": "running", "name": "2026-01-01T00:00:00.000000000Z", "opid": "x",
        "backup": "b", "hb": bson::Timestamp { time: 1, increment: 1 }, "start_ts": 1_i64,
        "last_transition_ts": 1_i64, "type": "logical", "start_pitr": 0_i64, "pitr": 0_i64,
        "replsets": [{"name": "rs0", "start_ts": 1_i64, "status": "running",
            "last_transition_ts": 1_i64, "last_write_ts": bson::Timestamp { time: 0, increment: 0 },
            "op": bson::Timestamp { time: 0, increment: 0 },
            "hb": bson::Timestamp { time: 1, increment: 1 }, "progress": progress()}],
    };
    let m: RestoreMeta = bson::deserialize_from_document(doc.clone()).expect("restore meta");
    assert_eq!(m.replsets.len(), 1);
    let list = bson::deserialize_from_document::<ProgressOnly>(doc)
        .expect("projection")
        .into_list();
    assert_eq!(list[0].progress.bytes, 10);
}
