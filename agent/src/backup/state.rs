//! The backup's document in `admin.pbmBackups` (PBM's `pbm/backup/query.go`): replica
//! set entry, status transitions with their conditions, heartbeats, first/last write
//! and sizes. Every update goes through the majority "PBM DB" connection.

use super::BackupError;
use crate::control::unix_now;
use crate::node::Node;
use bson::{doc, Bson, Document, Timestamp};
use mongodb::Collection;
use rbm_protocol::defs::{Status, BACKUPS_COLLECTION, DB};
use rbm_protocol::meta::backup::{BackupMeta, BackupReplset};

fn backups(node: &Node) -> Collection<Document> {
    node.pbm.database(DB).collection(BACKUPS_COLLECTION)
}

fn db(what: &'static str) -> impl FnOnce(mongodb::error::Error) -> BackupError {
    move |source| BackupError::Db {
        what: what.to_string(),
        source,
    }
}

fn condition(ts: i64, status: Status, err: &str) -> Document {
    let mut c = doc! {"timestamp": ts, "status": status.as_str()};
    if !err.is_empty() {
        c.insert("error", err);
    }
    c
}

/// Reads the meta.
///
/// # Errors
/// Read or decode failures.
pub async fn get(node: &Node, name: &str) -> Result<Option<BackupMeta>, BackupError> {
    let Some(raw) = backups(node)
        .find_one(doc! {"name": name})
        .await
        .map_err(db("read admin.pbmBackups"))?
    else {
        return Ok(None);
    };
    bson::deserialize_from_document(raw)
        .map(Some)
        .map_err(|source| BackupError::Bson {
            what: "decode backup meta".into(),
            source,
        })
}

/// PBM's `AddRSMeta`: the replica set's entry, with its first condition.
pub async fn add_rs(node: &Node, name: &str, mut rs: BackupReplset) -> Result<(), BackupError> {
    rs.last_transition_ts = rs.start_ts;
    rs.conditions.push(rbm_protocol::meta::backup::Condition {
        timestamp: rs.start_ts,
        status: rs.status,
        error: None,
    });
    let rs = bson::serialize_to_bson(&rs).map_err(|source| BackupError::Bson {
        what: "encode replica set meta".into(),
        source,
    })?;
    backups(node)
        .update_one(doc! {"name": name}, doc! {"$addToSet": {"replsets": rs}})
        .await
        .map_err(db("add the replica set to the backup meta"))?;
    Ok(())
}

/// PBM's `ChangeRSState`. The error is written only when there is one, so that a
/// successful backup's JSON has no `error` key, as PBM's.
pub async fn change_rs(
    node: &Node,
    name: &str,
    rs: &str,
    status: Status,
    err: &str,
) -> Result<(), BackupError> {
    let ts = unix_now();
    let mut set = doc! {"replsets.$.status": status.as_str(), "replsets.$.last_transition_ts": ts};
    if !err.is_empty() {
        set.insert("replsets.$.error", err);
    }
    backups(node)
        .update_one(
            doc! {"name": name, "replsets.name": rs},
            doc! {"$set": set, "$push": {"replsets.$.conditions": condition(ts, status, err)}},
        )
        .await
        .map_err(db("change the replica set status"))?;
    Ok(())
}

/// PBM's `ChangeBackupState`, guarded: a backup that already ended (done, error,
/// canceled) keeps its end. Returns whether the status changed.
pub async fn change(
    node: &Node,
    name: &str,
    status: Status,
    err: &str,
) -> Result<bool, BackupError> {
    change_with_time(node, doc! {"name": name}, status, err, unix_now()).await
}

/// [`change`] with a filter and time of the caller's choosing.
pub async fn change_with_time(
    node: &Node,
    filter: Document,
    status: Status,
    err: &str,
    ts: i64,
) -> Result<bool, BackupError> {
    let mut f = filter;
    f.insert(
        "status",
        doc! {"$nin": [Status::Done.as_str(), Status::Error.as_str(), Status::Canceled.as_str()]},
    );
    let mut set = doc! {"status": status.as_str(), "last_transition_ts": ts};
    if !err.is_empty() {
        set.insert("error", err);
    }
    let r = backups(node)
        .update_one(
            f,
            doc! {"$set": set, "$push": {"conditions": condition(ts, status, err)}},
        )
        .await
        .map_err(db("change the backup status"))?;
    Ok(r.modified_count == 1)
}

/// PBM's `BackupHB`: the meta's `hb` = cluster time.
pub async fn heartbeat(node: &Node, name: &str) -> Result<(), BackupError> {
    let hb = node.cluster_time().await?;
    backups(node)
        .update_one(doc! {"name": name}, doc! {"$set": {"hb": hb}})
        .await
        .map_err(db("backup heartbeat"))?;
    Ok(())
}

/// Sets top-level fields.
pub async fn set(node: &Node, name: &str, fields: Document) -> Result<(), BackupError> {
    backups(node)
        .update_one(doc! {"name": name}, doc! {"$set": fields})
        .await
        .map_err(db("update the backup meta"))?;
    Ok(())
}

/// Sets fields of the replica set's entry (`replsets.$.<key>`).
pub async fn set_rs(
    node: &Node,
    name: &str,
    rs: &str,
    fields: Document,
) -> Result<(), BackupError> {
    let set: Document = fields
        .into_iter()
        .map(|(k, v)| (format!("replsets.$.{k}"), v))
        .collect();
    backups(node)
        .update_one(doc! {"name": name, "replsets.name": rs}, doc! {"$set": set})
        .await
        .map_err(db("update the replica set meta"))?;
    Ok(())
}

/// A timestamp as BSON.
pub fn ts(t: Timestamp) -> Bson {
    Bson::Timestamp(t)
}
