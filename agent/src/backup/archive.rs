//! What a logical backup records about the namespaces it dumps (PBM's
//! `pbm/archive/backup.go` and `conv.go`): which databases and collections are taken, their
//! `listCollections` options, UUIDs and index specs for `meta.pbm`, and the derived
//! mongodump-style prelude `metadata.json`.

use super::extjson;
use super::BackupError;
use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::Client;
use rbm_protocol::meta::archive::{ArchiveMetaV2, NamespaceType, NamespaceV2};

/// PBM's `RouterConfigCollections`: the `config` collections a backup keeps.
pub const ROUTER_CONFIG_COLLECTIONS: [&str; 7] = [
    "chunks",
    "collections",
    "databases",
    "settings",
    "shards",
    "tags",
    "version",
];

/// PBM's `validIndexOptions`: the index spec keys a backup keeps.
const VALID_INDEX_OPTIONS: [&str; 23] = [
    "2dsphereIndexVersion",
    "background",
    "bits",
    "bucketSize",
    "coarsestIndexedLevel",
    "collation",
    "default_language",
    "expireAfterSeconds",
    "finestIndexedLevel",
    "key",
    "language_override",
    "max",
    "min",
    "name",
    "ns",
    "partialFilterExpression",
    "sparse",
    "storageEngine",
    "textIndexVersion",
    "unique",
    "v",
    "weights",
    "wildcardProjection",
];

/// PBM's rule for system collections: keep everything in `admin` (but `system.keys`,
/// filtered by the listing) and `config` (the router collections), and elsewhere only
/// `system.buckets.*` and `system.js` (not e.g. `system.views`, `system.profile`).
pub fn keeps(db: &str, coll: &str) -> bool {
    db == "admin"
        || db == "config"
        || !coll.starts_with("system.")
        || coll.starts_with("system.buckets")
        || coll == "system.js"
}

fn db_err(what: String) -> impl FnOnce(mongodb::error::Error) -> BackupError {
    move |source| BackupError::Db { what, source }
}

/// Every namespace of the node that a backup takes, with options and indexes; `crc` and
/// `size` are left 0 for the dump to fill in. `selected(db, coll)` is the `--ns`
/// predicate (PBM applies it before its system-collection rules).
///
/// # Errors
/// Listing failures.
pub async fn list_namespaces(
    node: &Client,
    selected: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Vec<NamespaceV2>, BackupError> {
    let dbs = node
        .list_database_names()
        .filter(doc! {"name": {"$ne": "local"}})
        .await
        .map_err(db_err("list databases".into()))?;
    let mut out = Vec::new();
    for db in dbs {
        out.extend(list_db_namespaces(node, &db, selected).await?);
    }
    Ok(out)
}

async fn list_db_namespaces(
    node: &Client,
    db: &str,
    selected: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Vec<NamespaceV2>, BackupError> {
    let filter = match db {
        "admin" => doc! {"name": {"$ne": "system.keys"}},
        "config" => doc! {"name": {"$in": ROUTER_CONFIG_COLLECTIONS.to_vec()}},
        _ => doc! {},
    };
    let database = node.database(db);
    let specs: Vec<Document> = database
        .run_cursor_command(doc! {"listCollections": 1, "filter": filter})
        .await
        .map_err(db_err(format!("list collections of {db}")))?
        .try_collect()
        .await
        .map_err(db_err(format!("list collections of {db}")))?;
    let mut out = Vec::new();
    for spec in specs {
        let Ok(name) = spec.get_str("name").map(str::to_string) else {
            continue;
        };
        if !selected(db, &name) {
            continue;
        }
        if !keeps(db, &name) {
            continue;
        }
        let kind = match spec.get_str("type").unwrap_or("collection") {
            "view" => NamespaceType::View,
            "timeseries" => NamespaceType::Timeseries,
            _ => NamespaceType::Collection,
        };
        let uuid = match spec.get_document("info").ok().and_then(|i| i.get("uuid")) {
            Some(Bson::Binary(b)) => b.bytes.iter().map(|x| format!("{x:02x}")).collect(),
            _ => String::new(),
        };
        let options = spec.get_document("options").cloned().unwrap_or_default();
        let indexes = if kind == NamespaceType::View {
            Vec::new()
        } else {
            list_indexes(node, db, &name).await?
        };
        out.push(NamespaceV2 {
            db: db.to_string(),
            name,
            kind,
            uuid,
            options,
            indexes,
            crc: 0,
            size: 0,
        });
    }
    Ok(out)
}

/// The collection's index specs, each reduced to PBM's whitelisted keys in server order.
async fn list_indexes(node: &Client, db: &str, coll: &str) -> Result<Vec<Document>, BackupError> {
    let what = || format!("list indexes of {db}.{coll}");
    let specs: Vec<Document> = match node
        .database(db)
        .run_cursor_command(doc! {"listIndexes": coll})
        .await
    {
        Ok(c) => c.try_collect().await.map_err(db_err(what()))?,
        // Dropped between listCollections and now: nothing to keep.
        Err(e) if crate::control::command_code(&e) == Some(26) => Vec::new(),
        Err(e) => return Err(db_err(what())(e)),
    };
    Ok(specs
        .into_iter()
        .map(|s| {
            s.into_iter()
                .filter(|(k, _)| VALID_INDEX_OPTIONS.contains(&k.as_str()))
                .collect()
        })
        .collect())
}

/// The `metadata.json` text PBM derives from `meta.pbm` (`GenerateV1FromV2`): a mongodump
/// archive prelude as canonical Extended JSON, indented by two spaces.
pub fn metadata_json(meta: &ArchiveMetaV2, concurrent_collections: i32) -> String {
    struct V1 {
        db: String,
        coll: String,
        metadata: String,
        kind: &'static str,
        crc: i64,
        size: i64,
    }
    let kind_str = |k: NamespaceType| match k {
        NamespaceType::Collection => "collection",
        NamespaceType::View => "view",
        NamespaceType::Timeseries => "timeseries",
    };
    let mut list: Vec<V1> = Vec::new();
    for ns in &meta.namespaces {
        if ns.db != "admin"
            && ns.db != "config"
            && ns.name.starts_with("system.")
            && ns.name != "system.js"
        {
            continue;
        }
        let mut md = Document::new();
        if !ns.options.is_empty() {
            md.insert("options", ns.options.clone());
        }
        md.insert(
            "indexes",
            ns.indexes
                .iter()
                .cloned()
                .map(Bson::Document)
                .collect::<Vec<_>>(),
        );
        if !ns.uuid.is_empty() {
            md.insert("uuid", ns.uuid.clone());
        }
        md.insert("collectionName", ns.name.clone());
        md.insert("type", kind_str(ns.kind));
        let (mut crc, mut size) = (ns.crc, ns.size);
        if ns.kind == NamespaceType::Timeseries {
            let bucket = format!("system.buckets.{}", ns.name);
            if let Some(b) = meta
                .namespaces
                .iter()
                .find(|b| b.db == ns.db && b.name == bucket)
            {
                crc = b.crc;
                size = b.size;
            }
        }
        list.push(V1 {
            db: ns.db.clone(),
            coll: ns.name.clone(),
            metadata: extjson::to_canonical(&md),
            kind: kind_str(ns.kind),
            crc,
            size,
        });
    }
    list.sort_by(|a, b| (&a.db, &a.coll).cmp(&(&b.db, &b.coll)));
    // Built as text: the inline prelude header and the duplicate-free field order are
    // PBM's struct layout (`archive.Header` inline, then `namespaces`).
    let mut s = String::new();
    s.push_str(&format!(
        "{{\"concurrent_collections\":{{\"$numberInt\":\"{concurrent_collections}\"}},\"version\":\"0.1\",\"server_version\":{},\"tool_version\":{},\"namespaces\":[",
        extjson::quote(&meta.server_version),
        extjson::quote(&meta.version)
    ));
    for (i, n) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"db\":{},\"collection\":{},\"metadata\":{},\"type\":{},\"crc\":{{\"$numberLong\":\"{}\"}},\"size\":{{\"$numberLong\":\"{}\"}}}}",
            extjson::quote(&n.db),
            extjson::quote(&n.coll),
            extjson::quote(&n.metadata),
            extjson::quote(n.kind),
            n.crc,
            n.size
        ));
    }
    s.push_str("]}");
    extjson::indent(&s, "  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> Vec<u8> {
        let root = match std::env::var_os("RBM_FIXTURES") {
            Some(p) => std::path::PathBuf::from(p),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
        };
        let p = root.join("pbm-2.15/storage").join(rel);
        std::fs::read(p).expect("fixture")
    }

    #[test]
    fn system_collections_as_pbm() {
        assert!(keeps("admin", "system.users"));
        assert!(keeps("config", "chunks"));
        assert!(keeps("shop", "orders"));
        assert!(keeps("shop", "system.js"));
        assert!(keeps("shop", "system.buckets.metrics"));
        assert!(!keeps("shop", "system.views"));
        assert!(!keeps("shop", "system.profile"));
    }

    /// metadata.json derived from PBM's own meta.pbm must be PBM's own metadata.json.
    #[test]
    fn metadata_json_matches_pbm() {
        for bcp in ["2026-11-26T11:40:53Z", "2026-11-26T11:41:08Z"] {
            let meta =
                ArchiveMetaV2::from_bson_bytes(&fixture(&format!("{bcp}/secantus/meta.pbm")))
                    .expect("meta.pbm");
            let want =
                String::from_utf8(fixture(&format!("{bcp}/secantus/metadata.json"))).expect("utf8");
            assert_eq!(metadata_json(&meta, 1), want, "{bcp}");
        }
    }
}
