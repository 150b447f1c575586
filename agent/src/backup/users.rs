//! Users and roles, as PBM keeps them in a logical backup: copied into
//! `admin.pbmRUsers` / `admin.pbmRRoles` before the dump (so they are dumped as ordinary
//! collections and restored without touching `system.*` with its UUIDs), dropped after.
//!
//! The copy runs on the primary (the PBM DB connection), then the backup waits until
//! the node it dumps from has replicated it.

use super::BackupError;
use crate::node::Node;
use bson::{doc, Document, Timestamp};
use futures::TryStreamExt;
use mongodb::Client;
use rbm_protocol::defs::{DB, TMP_ROLES_COLLECTION, TMP_USERS_COLLECTION};
use std::time::Duration;

fn db(what: String) -> impl FnOnce(mongodb::error::Error) -> BackupError {
    move |source| BackupError::Db { what, source }
}

/// PBM's `DropTMPcoll`.
///
/// # Errors
/// Drop failures.
pub async fn drop_tmp(node: &Node) -> Result<(), BackupError> {
    for c in [TMP_ROLES_COLLECTION, TMP_USERS_COLLECTION] {
        node.pbm
            .database(DB)
            .collection::<Document>(c)
            .drop()
            .await
            .map_err(db(format!("drop admin.{c}")))?;
    }
    Ok(())
}

/// PBM's `copyUsersNRolles`: refills the temporary collections with the users and roles
/// of `dbs` (all databases when `None`), and returns the primary's last write after it.
///
/// # Errors
/// Read or write failures.
pub async fn copy_users_and_roles(
    node: &Node,
    dbs: Option<&[String]>,
) -> Result<Timestamp, BackupError> {
    drop_tmp(node).await?;
    let filter = match dbs {
        Some(list) => doc! {"db": {"$in": list.to_vec()}},
        None => doc! {},
    };
    let (users, roles) = if secantus::auth_catalog_is_view(&node.pbm).await? {
        secantus::users_and_roles(&node.pbm, dbs).await?
    } else {
        (
            read_all(&node.pbm, "system.users", filter.clone()).await?,
            read_all(&node.pbm, "system.roles", filter).await?,
        )
    };
    insert(&node.pbm, TMP_ROLES_COLLECTION, roles).await?;
    insert(&node.pbm, TMP_USERS_COLLECTION, users).await?;
    crate::oplog::read::last_write(&node.pbm, false)
        .await
        .map_err(BackupError::Oplog)
}

async fn read_all(c: &Client, coll: &str, filter: Document) -> Result<Vec<Document>, BackupError> {
    c.database("admin")
        .collection::<Document>(coll)
        .find(filter)
        .await
        .map_err(db(format!("read admin.{coll}")))?
        .try_collect()
        .await
        .map_err(db(format!("read admin.{coll}")))
}

async fn insert(c: &Client, coll: &str, docs: Vec<Document>) -> Result<(), BackupError> {
    if docs.is_empty() {
        return Ok(());
    }
    c.database(DB)
        .collection::<Document>(coll)
        .insert_many(docs)
        .await
        .map_err(db(format!("copy into admin.{coll}")))?;
    Ok(())
}

/// PBM's `waitForWrite`: up to 21 s for `node` to have applied `ts`.
///
/// # Errors
/// The node did not catch up.
pub async fn wait_for_write(node: &Client, ts: Timestamp) -> Result<(), BackupError> {
    let mut last = None;
    for _ in 0..21 {
        match crate::oplog::read::last_write(node, false).await {
            Ok(lw) if (lw.time, lw.increment) >= (ts.time, ts.increment) => return Ok(()),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(match last {
        Some(e) => BackupError::Oplog(e),
        None => BackupError::Other(
            "the backup node did not replicate the copied users and roles within 21 s".into(),
        ),
    })
}

/// SecantusDB (the test server) keeps its users and roles outside `admin.system.*`:
/// `admin.system.users` is a read-only view without credentials and custom roles do not
/// appear in `admin.system.roles`. There the same documents come from `usersInfo`
/// (with credentials) and `rolesInfo` (with privileges), database by database. This is
/// the only place that knows about it.
mod secantus {
    use super::*;

    /// On mongod, once a user or a custom role exists, `admin.system.users` or
    /// `admin.system.roles` is a collection. SecantusDB lists neither as one (its users
    /// view is not even listed), so when neither is a collection the catalog lives
    /// elsewhere. (On a mongod with no users and no roles both ways find nothing.)
    pub async fn auth_catalog_is_view(c: &Client) -> Result<bool, BackupError> {
        let specs: Vec<Document> = c
            .database("admin")
            .run_cursor_command(doc! {
                "listCollections": 1,
                "filter": {"name": {"$in": ["system.users", "system.roles"]}},
            })
            .await
            .map_err(db("list admin.system.users".into()))?
            .try_collect()
            .await
            .map_err(db("list admin.system.users".into()))?;
        Ok(!specs
            .iter()
            .any(|s| s.get_str("type").unwrap_or("collection") == "collection"))
    }

    pub async fn users_and_roles(
        c: &Client,
        dbs: Option<&[String]>,
    ) -> Result<(Vec<Document>, Vec<Document>), BackupError> {
        let names = match dbs {
            Some(list) => list.to_vec(),
            None => c
                .list_database_names()
                .await
                .map_err(db("list databases".into()))?,
        };
        let (mut users, mut roles) = (Vec::new(), Vec::new());
        for name in names.iter().filter(|n| n.as_str() != "local") {
            let d = c.database(name);
            let u = d
                .run_command(doc! {"usersInfo": 1, "showCredentials": true})
                .await
                .map_err(db(format!("usersInfo on {name}")))?;
            users.extend(
                docs(&u, "users")
                    .iter()
                    .map(|d| catalog_doc(d, "user", USER_FIELDS)),
            );
            let r = d
                .run_command(
                    doc! {"rolesInfo": 1, "showPrivileges": true, "showBuiltinRoles": false},
                )
                .await
                .map_err(db(format!("rolesInfo on {name}")))?;
            roles.extend(
                docs(&r, "roles")
                    .iter()
                    .map(|d| catalog_doc(d, "role", ROLE_FIELDS)),
            );
        }
        Ok((users, roles))
    }

    /// The fields of a mongod `admin.system.users` document, in its order (plus
    /// `mechanisms`, which SecantusDB's users view and PBM's copy of it carry).
    const USER_FIELDS: &[&str] = &[
        "userId",
        "user",
        "db",
        "credentials",
        "customData",
        "roles",
        "authenticationRestrictions",
        "mechanisms",
    ];
    /// The fields of a mongod `admin.system.roles` document, in its order.
    const ROLE_FIELDS: &[&str] = &[
        "role",
        "db",
        "privileges",
        "roles",
        "authenticationRestrictions",
    ];

    /// A `usersInfo`/`rolesInfo` entry reshaped as the `system.users`/`system.roles`
    /// document mongod would store (`_id` = `<db>.<name>`), so the restore reads one shape.
    fn catalog_doc(d: &Document, name_key: &str, fields: &[&str]) -> Document {
        let mut out = Document::new();
        let id = format!(
            "{}.{}",
            d.get_str("db").unwrap_or_default(),
            d.get_str(name_key).unwrap_or_default()
        );
        out.insert("_id", id);
        for f in fields {
            if let Some(v) = d.get(*f) {
                out.insert(*f, v.clone());
            }
        }
        out
    }

    fn docs(reply: &Document, key: &str) -> Vec<Document> {
        reply
            .get_array(key)
            .map(|a| a.iter().filter_map(|x| x.as_document().cloned()).collect())
            .unwrap_or_default()
    }
}
