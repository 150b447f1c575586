//! `rbm describe-backup`: PBM's `bcpDesc` in YAML (text) or JSON.

use super::conn::Conn;
use super::error::CliError;
use super::ops::get_backup;
use super::text::{fmt_rfc3339, ibytes};
use super::OutputFormat;
use rbm_protocol::meta::{BackupDescription, BackupMeta, ReplsetDescription};

/// PBM's `bcpDesc` of a backup meta.
pub fn describe(b: &BackupMeta) -> BackupDescription {
    let size = b.size.unwrap_or(0);
    let size_unc = b.size_uncompressed.unwrap_or(0);
    BackupDescription {
        name: b.name.clone(),
        profile: if b.store.is_profile {
            b.store.name.clone()
        } else {
            String::new()
        },
        storage_name: b.store.name.clone(),
        storage_type: b.store.storage.kind.as_str().to_string(),
        opid: b.opid.clone(),
        kind: b.kind,
        last_write_ts: i64::from(b.last_write_ts.time),
        last_transition_ts: b.last_transition_ts,
        last_write_time: fmt_rfc3339(i64::from(b.last_write_ts.time)),
        last_transition_time: fmt_rfc3339(b.last_transition_ts),
        namespaces: b.namespaces.clone(),
        sel_user_and_roles: b.sel_users_and_roles,
        mongodb_version: b.mongodb_version.clone(),
        fcv: b.fcv.clone().unwrap_or_default(),
        pbm_version: b.pbm_version.clone(),
        status: b.status,
        size,
        size_uncompressed: size_unc,
        size_h: ibytes(size),
        size_uncompressed_h: ibytes(size_unc),
        error: b.error.clone().filter(|e| !e.is_empty()),
        replsets: b
            .replsets
            .iter()
            .map(|r| {
                let rs_size = r.size.unwrap_or(0);
                let rs_unc = r.size_uncompressed.unwrap_or(0);
                ReplsetDescription {
                    name: r.name.clone(),
                    status: r.status,
                    node: r.node.clone().unwrap_or_default(),
                    files: Vec::new(),
                    size: rs_size,
                    size_uncompressed: rs_unc,
                    // PBM fills these only for known sizes; `size_h` is omitted when
                    // empty, `size_uncompressed_h` is always printed.
                    size_h: if rs_size > 0 {
                        ibytes(rs_size)
                    } else {
                        String::new()
                    },
                    size_uncompressed_h: if rs_unc > 0 {
                        ibytes(rs_unc)
                    } else {
                        String::new()
                    },
                    last_write_ts: i64::from(r.last_write_ts.time),
                    last_transition_ts: r.last_transition_ts,
                    last_write_time: fmt_rfc3339(i64::from(r.last_write_ts.time)),
                    last_transition_time: fmt_rfc3339(r.last_transition_ts),
                    is_config_svr: r.is_config_svr,
                    is_config_shard: r.is_config_shard,
                    security: None,
                    error: r.error.clone().filter(|e| !e.is_empty()),
                    collections: Vec::new(),
                }
            })
            .collect(),
    }
}

/// Fields PBM's `bcpDesc`/`bcpReplDesc` tag `yaml:"-"`: JSON only.
const YAML_SKIP: &[&str] = &[
    "size",
    "size_uncompressed",
    "last_write_ts",
    "last_transition_ts",
    "files",
];

/// `rbm describe-backup <name>`.
///
/// # Errors
/// [`CliError::NotFound`], read failures.
pub async fn describe_backup(
    conn: &Conn,
    name: &str,
    with_collections: bool,
    out: OutputFormat,
) -> Result<String, CliError> {
    let b = get_backup(conn, name)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("backup '{name}' not found")))?;
    let mut d = describe(&b);
    if with_collections {
        add_collections(&b, &mut d).await?;
    }
    match out {
        OutputFormat::Text => serde_norway::to_value(&d)
            .map(|v| super::goyaml::to_yaml(&v, YAML_SKIP).trim_end().to_string())
            .map_err(|e| CliError::Output(e.to_string())),
        _ => out.json(&d),
    }
}

/// `--with-collections`: the namespaces each replica set's `meta.pbm` lists.
async fn add_collections(b: &BackupMeta, d: &mut BackupDescription) -> Result<(), CliError> {
    use tokio::io::AsyncReadExt;
    let stg = rbm_storage::from_config(&b.store.storage, None)
        .await
        .map_err(|e| CliError::Storage(e.to_string()))?;
    for rs in &mut d.replsets {
        let path = format!(
            "{}/{}/{}",
            b.name,
            rs.name,
            rbm_protocol::meta::META_FILE_V2
        );
        let mut r = stg
            .open(&path)
            .await
            .map_err(|e| CliError::Storage(e.to_string()))?;
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .await
            .map_err(|e| CliError::Storage(format!("read {path}: {e}")))?;
        let meta = rbm_protocol::meta::ArchiveMetaV2::from_bson_bytes(&buf)
            .map_err(|e| CliError::BadDocument(format!("{path}: {e}")))?;
        rs.collections = meta
            .namespaces
            .iter()
            .filter(|n| n.kind == rbm_protocol::meta::NamespaceType::Collection)
            .map(|n| n.ns())
            .collect();
        rs.collections.sort();
    }
    Ok(())
}
