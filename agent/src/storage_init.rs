//! PBM's storage initialisation: a storage is "initialised" once it holds `.pbm.init`,
//! whose body is the PBM version rbm speaks, so PBM (which reads it to recognise an
//! initialised storage) accepts a storage rbm set up, and vice versa. `config`, every
//! backup and `profile add` write it on first use; the agents' heartbeat storage check
//! only reads it.

use rbm_protocol::defs::PBM_COMPAT_VERSION;
use rbm_protocol::names::STORAGE_INIT_FILE;
use rbm_storage::{Storage, StorageError};
use tokio_util::sync::CancellationToken;

/// Stats `.pbm.init` (which also proves read access) and writes it when missing.
///
/// # Errors
/// Any storage failure other than the file being absent, or the write failing.
pub async fn ensure(storage: &dyn Storage, cancel: &CancellationToken) -> Result<(), StorageError> {
    match storage.stat(STORAGE_INIT_FILE).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let body = PBM_COMPAT_VERSION.as_bytes().to_vec();
            let len = body.len() as u64;
            storage
                .save(
                    STORAGE_INIT_FILE,
                    Box::new(std::io::Cursor::new(body)),
                    Some(len),
                    cancel,
                )
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}
