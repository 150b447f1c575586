//! `rbm verify <name>` (beyond PBM): reads every object of a backup from the configured
//! storage, checks sizes and CRC-64s against the metadata and that the metadata is
//! complete, without touching any database. The exit code says whether the backup is
//! restorable.

use super::conn::Conn;
use super::error::CliError;
use super::OutputFormat;
use bson::doc;
use rbm_protocol::defs;
use rbm_protocol::meta::BackupMeta;

/// Runs the verification; `Ok` only for a restorable backup.
///
/// # Errors
/// [`CliError::NotFound`] for an unknown backup, [`CliError::OperationFailed`] naming
/// every bad object.
pub async fn verify(conn: &Conn, name: &str, out: OutputFormat) -> Result<String, CliError> {
    let cfg = super::config::get_config(conn)
        .await?
        .ok_or(CliError::NoConfig)?;
    let storage = rbm_storage::from_config(&cfg.storage, None)
        .await
        .map_err(|e| CliError::Storage(e.to_string()))?;
    let from_db = conn
        .coll(defs::BACKUPS_COLLECTION)
        .find_one(doc! {"name": name})
        .await
        .map_err(|e| CliError::mongo("read admin.pbmBackups", &e))?;
    let meta: BackupMeta = match from_db {
        Some(d) => bson::deserialize_from_document(d).map_err(|e| {
            CliError::BadDocument(format!("backup '{name}' in admin.pbmBackups: {e}"))
        })?,
        None => crate::restore::source::backup_meta_from_storage(storage.as_ref(), name)
            .await
            .map_err(|e| match e {
                crate::restore::RestoreError::UnknownBackup(_) => {
                    CliError::NotFound(format!("backup '{name}' not found"))
                }
                e => CliError::OperationFailed(format!("verify '{name}': {e}")),
            })?,
    };
    let report = crate::restore::verify::verify_backup(storage.as_ref(), &meta)
        .await
        .map_err(|e| {
            CliError::OperationFailed(format!("backup '{name}' is not restorable: {e}"))
        })?;
    let bad: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.problem.is_some())
        .collect();
    if !bad.is_empty() {
        let list: Vec<String> = bad
            .iter()
            .map(|c| c.problem.clone().unwrap_or_default())
            .collect();
        return Err(CliError::OperationFailed(format!(
            "backup '{name}' is not restorable: {}",
            list.join("; ")
        )));
    }
    match out {
        OutputFormat::Text => {
            let mut s = String::new();
            for c in &report.checks {
                s.push_str(&format!("OK  {}  ({} documents)\n", c.object, c.docs));
            }
            s.push_str(&format!(
                "Backup '{name}' is restorable: {} object(s) verified",
                report.checks.len()
            ));
            Ok(s)
        }
        _ => out.json(&serde_json::json!({
            "name": name,
            "restorable": true,
            "objects": report.checks.iter().map(|c| serde_json::json!({"object": c.object, "docs": c.docs})).collect::<Vec<_>>(),
        })),
    }
}
