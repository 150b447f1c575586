//! Shared by the PITR restore tests (logical and physical bases): the server's newest
//! oplog entry, and PITR chunks cut from the server's own oplog and indexed as PBM's
//! slicer writes them.

use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;
use rbm_protocol::meta::PitrChunk;
use rbm_storage::codec::{encoder, Compression};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub async fn last_oplog_ts(c: &Client) -> Timestamp {
    c.database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! {"op": {"$ne": "n"}})
        .sort(doc! {"$natural": -1})
        .await
        .expect("read oplog")
        .expect("oplog not empty")
        .get_timestamp("ts")
        .expect("ts")
}

pub async fn insert_chunk(c: &Client, chunk: &PitrChunk) {
    c.database("admin")
        .collection::<Document>("pbmPITRChunks")
        .insert_one(mongodb::bson::serialize_to_document(chunk).expect("chunk doc"))
        .await
        .expect("insert chunk");
}

/// Writes the oplog entries `from..=till` as an s2 PITR chunk on the storage, as PBM's
/// slicer names and indexes it.
pub async fn cut_chunk(
    direct: &Client,
    admin: &Client,
    storage: &Path,
    rs: &str,
    from: Timestamp,
    till: Timestamp,
) -> PitrChunk {
    let mut range = rbm_agent::oplog::read::OplogRange::open(direct, from, till)
        .await
        .expect("open oplog range");
    let name = rbm_protocol::names::pitr_chunk_path(rs, from, till, ".s2");
    let path = storage.join(&name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let file = std::fs::File::create(&path).expect("create chunk");
    let mut enc = encoder(Compression::S2, None, file).expect("encoder");
    while let Some(e) = range.next().await.expect("read oplog") {
        enc.write_all(e.as_bytes()).expect("write chunk");
    }
    enc.finish().expect("finish chunk");
    let chunk = PitrChunk {
        id: None,
        rs: rs.to_string(),
        file_name: name,
        compression: "s2".into(),
        start_ts: from,
        end_ts: till,
        size: std::fs::metadata(&path).expect("stat").len() as i64,
    };
    insert_chunk(admin, &chunk).await;
    chunk
}

pub async fn e2e_state(c: &Client) -> BTreeMap<String, (u64, String)> {
    rbm_e2e::state_hashes(c)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("e2e."))
        .collect()
}

pub async fn marker(c: &Client, n: i32) -> Timestamp {
    c.database("marker")
        .collection::<Document>("m")
        .insert_one(doc! {"n": n})
        .await
        .expect("marker");
    last_oplog_ts(c).await
}

pub fn fmt(t: u32) -> String {
    rbm_agent::cli::text::fmt_ts(i64::from(t))
}

/// Sends a PITR restore to `ts` (after `backup`, or the agent's own pick when empty)
/// straight into `pbmCmd`, past the CLI's checks, and waits for the agent to fail it:
/// returns the restore meta, `error` status.
pub async fn agent_refuses_pitr_restore(
    c: &Client,
    name: &str,
    backup: &str,
    ts: Timestamp,
) -> Document {
    super::agent_common::send_command(
        c,
        "restore",
        Some(doc! {
            "name": name, "backupName": backup, "oplogTS": ts,
            "fallbackEnabled": null, "allowPartlyDone": null, "external": false,
            "extConf": null, "extTS": Timestamp { time: 0, increment: 0 }, "exit": false,
        }),
        0,
    )
    .await;
    super::agent_common::wait_for(Duration::from_secs(60), "the agent refuses", || async {
        super::agent_common::find_all(c, "pbmRestores", doc! {"name": name, "status": "error"})
            .await
            .into_iter()
            .next()
    })
    .await
}
