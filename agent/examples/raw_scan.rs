//! The floor a logical backup is measured against: a plain `find({})` of every
//! collection of one database with the same Rust driver, all collections at once (the
//! backup dumps them in parallel too), documents read as raw BSON and dropped.
//!
//! Usage: raw_scan <mongodb-uri> <db>
//! Prints: `RAW_SCAN seconds=<wall> docs=<n> bytes=<raw BSON bytes>`.
//! `RAW_SCAN_BATCH=<docs>` sets the read batch (default: as large as the server
//! allows) and `RAW_SCAN_PARALLEL=<n>` how many collections are read at once (default:
//! all), to see how the server answers the shapes a backup may read in.

use futures::TryStreamExt;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::options::ClientOptions;
use mongodb::Client;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(uri), Some(db)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: raw_scan <mongodb-uri> <db>");
    };
    let mut opts = ClientOptions::parse(&uri).await?;
    opts.direct_connection = Some(true);
    let client = Client::with_options(opts)?;
    let db = client.database(&db);
    let names = db
        .list_collection_names()
        .filter(doc! {"type": "collection"})
        .await?;
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let batch = env("RAW_SCAN_BATCH").unwrap_or(i32::MAX as u32);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(
        env("RAW_SCAN_PARALLEL").map_or(names.len().max(1), |n| n.max(1) as usize),
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for name in names.into_iter().filter(|n| !n.starts_with("system.")) {
        let coll = db.collection::<RawDocumentBuf>(&name);
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut cur = coll.find(doc! {}).batch_size(batch).await?;
            let (mut docs, mut bytes) = (0u64, 0u64);
            while let Some(d) = cur.try_next().await? {
                docs += 1;
                bytes += d.as_bytes().len() as u64;
            }
            anyhow::Ok((docs, bytes))
        }));
    }
    let (mut docs, mut bytes) = (0, 0);
    for t in tasks {
        let (d, b) = t.await??;
        docs += d;
        bytes += b;
    }
    println!(
        "RAW_SCAN seconds={:.1} docs={docs} bytes={bytes}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
