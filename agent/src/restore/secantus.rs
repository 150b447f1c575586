//! SecantusDB compatibility for restore — the one place where the test server's gaps are
//! handled:
//! - `admin.system.users`/`system.roles` refuse writes and custom roles are not in
//!   `system.roles`, so users and roles are restored with `createRole`/`createUser`
//!   (after `dropRole`/`dropUser` of the same names). The dumped users carry no
//!   credentials there (its `system.users` view never shows them), so a restored user
//!   gets a random password nobody knows: it exists with its roles and mechanisms but
//!   cannot authenticate until an operator sets a password.
//! - There is no `applyOps`, so a restored collection cannot keep its backed-up UUID
//!   (real mongod: `applyOps` `create` with `ui`).
//! - `renameCollection` copies the documents into a new collection *without* the
//!   source's options (capped, collation, validator are lost) and with a new UUID. So the
//!   switch from a verified temporary is: drop the target, create it with the backup's
//!   options, copy the temporary's raw documents in natural order, drop the temporary.
//!   The old data is dropped only after the replacement was loaded and verified, as on
//!   mongod; only the window between drop and copy is longer. A collection with no
//!   options loses nothing by a rename (its UUID cannot be kept here anyway), so it is
//!   renamed like on mongod and not copied ([`rename_keeps`]).
//! - Its `renameCollection` is also a full copy of the documents (about 10 MB/s), so a
//!   full restore does not load temporaries there at all: every object is read and
//!   checked (size, CRC-64) first ([`verify_object`]), and only then is each target
//!   dropped, re-created and loaded in place. The rule holds — nothing is dropped before
//!   its replacement was read and verified — but a failed insert leaves the target
//!   partly loaded, where mongod's path would leave it untouched.

use super::RestoreError;
use bson::{doc, Bson, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::options::WriteConcern;
use mongodb::Client;

/// Reads one collection object through and checks its size and CRC-64 against the
/// metadata, without touching the database.
///
/// # Errors
/// A missing, unreadable or corrupted object, named.
pub async fn verify_object(
    storage: &dyn rbm_storage::Storage,
    object: &str,
    compression: rbm_storage::Compression,
    ns: &rbm_protocol::meta::archive::NamespaceV2,
) -> Result<(), RestoreError> {
    let Some(mut r) =
        super::verify::DumpReader::open_or_empty(storage, object, compression, ns).await?
    else {
        return Ok(());
    };
    while r.next().await?.is_some() {}
    r.finish(ns).map(|_| ())
}

/// Whether SecantusDB's `renameCollection` keeps everything a collection with these
/// backed-up options needs: only when there are none (see the module docs).
pub fn rename_keeps(options: &Document) -> bool {
    options.is_empty()
}

/// `renameCollection` replacement (see the module docs).
///
/// # Errors
/// A refused drop, create or insert, naming the collection.
pub async fn switch_by_copy(
    client: &Client,
    db: &str,
    temp: &str,
    target: &str,
    options: &Document,
) -> Result<(), RestoreError> {
    let d = client.database(db);
    d.collection::<Document>(target)
        .drop()
        .await
        .map_err(RestoreError::db(format!("drop {db}.{target}")))?;
    let mut create = doc! {"create": target};
    for (k, v) in options {
        create.insert(k.clone(), v.clone());
    }
    d.run_command(create)
        .await
        .map_err(RestoreError::db(format!("create {db}.{target}")))?;
    let dst = d.collection_with_options::<RawDocumentBuf>(
        target,
        mongodb::options::CollectionOptions::builder()
            .write_concern(WriteConcern::majority())
            .build(),
    );
    let mut cur = d
        .collection::<RawDocumentBuf>(temp)
        .find(doc! {})
        .await
        .map_err(RestoreError::db(format!("read {db}.{temp}")))?;
    let what = format!("copy {db}.{temp} to {db}.{target}");
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    while let Some(doc) = cur
        .try_next()
        .await
        .map_err(RestoreError::db(what.clone()))?
    {
        bytes += doc.as_bytes().len();
        batch.push(doc);
        if batch.len() >= 1000 || bytes >= 8 << 20 {
            dst.insert_many(std::mem::take(&mut batch))
                .bypass_document_validation(true)
                .await
                .map_err(RestoreError::db(what.clone()))?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        dst.insert_many(batch)
            .bypass_document_validation(true)
            .await
            .map_err(RestoreError::db(what.clone()))?;
    }
    d.collection::<Document>(temp)
        .drop()
        .await
        .map_err(RestoreError::db(format!("drop {db}.{temp}")))?;
    Ok(())
}

/// Whether `create` can go through `applyOps` (to keep a collection's UUID). SecantusDB
/// has no `applyOps`; mongod has.
pub async fn has_apply_ops(client: &Client) -> bool {
    !is_secantus(client).await
}

pub use crate::testserver::is_secantus;

/// `swapUsers` through user-management commands.
///
/// # Errors
/// A refused command, naming the user or role.
pub async fn swap_users(
    client: &Client,
    users: &[Document],
    roles: &[Document],
    dbs: Option<&[String]>,
    current: &Option<(String, String)>,
) -> Result<(), RestoreError> {
    let selected = |db: &str| dbs.is_none_or(|l| l.iter().any(|d| d == db));
    // Current roles and users of the selected databases go, as PBM's delete does.
    let existing_roles = client
        .database("admin")
        .run_command(doc! {"rolesInfo": 1, "showBuiltinRoles": false})
        .await
        .map_err(RestoreError::db("rolesInfo"))?;
    let mut old_roles: Vec<(String, String)> = Vec::new();
    let dbs_list = list_dbs(client).await?;
    for db in std::iter::once("admin".to_string()).chain(dbs_list) {
        let r = if db == "admin" {
            existing_roles.clone()
        } else {
            client
                .database(&db)
                .run_command(doc! {"rolesInfo": 1})
                .await
                .map_err(RestoreError::db(format!("rolesInfo in {db}")))?
        };
        for role in r.get_array("roles").map(|a| a.as_slice()).unwrap_or(&[]) {
            if let Some(d) = role.as_document() {
                if d.get_bool("isBuiltin").unwrap_or(false) {
                    continue;
                }
                if let (Ok(n), Ok(db)) = (d.get_str("role"), d.get_str("db")) {
                    if selected(db) && !old_roles.iter().any(|(a, b)| a == db && b == n) {
                        old_roles.push((db.to_string(), n.to_string()));
                    }
                }
            }
        }
    }
    let users_info = client
        .database("admin")
        .run_command(doc! {"usersInfo": 1})
        .await
        .map_err(RestoreError::db("usersInfo"))?;
    let mut old_users: Vec<(String, String)> = Vec::new();
    for db in std::iter::once("admin".to_string()).chain(list_dbs(client).await?) {
        let r = if db == "admin" {
            users_info.clone()
        } else {
            client
                .database(&db)
                .run_command(doc! {"usersInfo": 1})
                .await
                .map_err(RestoreError::db(format!("usersInfo in {db}")))?
        };
        for u in r.get_array("users").map(|a| a.as_slice()).unwrap_or(&[]) {
            if let Some(d) = u.as_document() {
                if let (Ok(n), Ok(db)) = (d.get_str("user"), d.get_str("db")) {
                    let me = current.as_ref().is_some_and(|(cd, cu)| cd == db && cu == n);
                    if selected(db) && !me && !old_users.iter().any(|(a, b)| a == db && b == n) {
                        old_users.push((db.to_string(), n.to_string()));
                    }
                }
            }
        }
    }
    for (db, user) in &old_users {
        client
            .database(db)
            .run_command(doc! {"dropUser": user})
            .await
            .map_err(RestoreError::db(format!("dropUser {db}.{user}")))?;
    }
    for (db, role) in &old_roles {
        client
            .database(db)
            .run_command(doc! {"dropRole": role})
            .await
            .map_err(RestoreError::db(format!("dropRole {db}.{role}")))?;
    }
    // Roles may grant each other: create all without inherited roles first, then grant.
    for r in roles {
        let (Ok(name), Ok(db)) = (r.get_str("role"), r.get_str("db")) else {
            continue;
        };
        let privileges = r.get_array("privileges").cloned().unwrap_or_default();
        client
            .database(db)
            .run_command(doc! {"createRole": name, "privileges": privileges, "roles": []})
            .await
            .map_err(RestoreError::db(format!("createRole {db}.{name}")))?;
    }
    for r in roles {
        let (Ok(name), Ok(db)) = (r.get_str("role"), r.get_str("db")) else {
            continue;
        };
        let inherited = r.get_array("roles").cloned().unwrap_or_default();
        if inherited.is_empty() {
            continue;
        }
        client
            .database(db)
            .run_command(doc! {"grantRolesToRole": name, "roles": inherited})
            .await
            .map_err(RestoreError::db(format!("grantRolesToRole {db}.{name}")))?;
    }
    for u in users {
        let (Ok(name), Ok(db)) = (u.get_str("user"), u.get_str("db")) else {
            continue;
        };
        if current
            .as_ref()
            .is_some_and(|(cd, cu)| cd == db && cu == name)
        {
            continue;
        }
        let mut cmd = doc! {
            "createUser": name,
            "pwd": unknown_password(),
            "roles": u.get_array("roles").cloned().unwrap_or_default(),
        };
        if let Ok(m) = u.get_array("mechanisms") {
            cmd.insert("mechanisms", Bson::Array(m.clone()));
        }
        if let Ok(c) = u.get_document("customData") {
            cmd.insert("customData", c.clone());
        }
        client
            .database(db)
            .run_command(cmd)
            .await
            .map_err(RestoreError::db(format!("createUser {db}.{name}")))?;
    }
    Ok(())
}

async fn list_dbs(client: &Client) -> Result<Vec<String>, RestoreError> {
    let mut v = client
        .list_database_names()
        .await
        .map_err(RestoreError::db("listDatabases"))?;
    v.retain(|d| d != "admin" && d != "local" && d != "config");
    Ok(v)
}

/// 64 hex digits nobody knows: std's `RandomState` keys are seeded from the OS.
fn unknown_password() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..4 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
