//! Start-up: the control collections and their indexes, created idempotently as PBM's
//! `cmd/pbm-agent/setup.go` does (an existing collection or index is not an error).

use super::{command_code, ControlError};
use bson::doc;
use mongodb::Client;
use rbm_protocol::defs::{COLLECTION_SPECS, DB};

/// NamespaceExists.
const NAMESPACE_EXISTS: i32 = 48;
/// IndexOptionsConflict, IndexKeySpecsConflict: an index of that name exists with other
/// options (SecantusDB also answers this for an identical re-created index).
const INDEX_CONFLICTS: [i32; 2] = [85, 86];

/// Creates every control collection (capped where PBM caps them) and its indexes.
///
/// # Errors
/// A create or createIndexes that fails for another reason than "already exists".
pub async fn ensure_collections(pbm: &Client) -> Result<(), ControlError> {
    let db = pbm.database(DB);
    for spec in COLLECTION_SPECS {
        match db.run_command(spec.create_command()).await {
            Ok(_) => {}
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {}
            Err(e) => return Err(ControlError::db(format!("create admin.{}", spec.name))(e)),
        }
        // One index per command: SecantusDB does not create several atomically.
        for index in spec.indexes {
            let cmd = doc! {"createIndexes": spec.name, "indexes": [index.create_document()]};
            match db.run_command(cmd).await {
                Ok(_) => {}
                Err(e) if command_code(&e).is_some_and(|c| INDEX_CONFLICTS.contains(&c)) => {
                    tracing::debug!(collection = spec.name, "index exists: {e}");
                }
                Err(e) => {
                    return Err(ControlError::db(format!(
                        "create indexes on admin.{}",
                        spec.name
                    ))(e))
                }
            }
        }
    }
    Ok(())
}
