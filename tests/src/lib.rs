//! Helpers for end-to-end tests against the real services that `scripts/test-services`
//! installs and starts. Tests find them through `RBM_TEST_*` environment variables;
//! a missing variable fails the test with a message saying how to run it, because a
//! silently skipped test proves nothing.

use rbm_protocol::config::{AzureConf, AzureCredentials, S3Conf, S3Credentials};
use rbm_protocol::{Secret, StorageConf, StorageType};

/// The value of a required environment variable.
///
/// # Panics
/// When it is unset: the test must run under `scripts/test`.
pub fn require_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: run the tests with scripts/test (it starts the services), \
             or `eval \"$(scripts/test-services env)\"` after `scripts/test-services start`"
        ),
    }
}

/// Upload part / block size used by the storage tests: small, so that multipart paths
/// are exercised with modest objects.
pub const TEST_PART_SIZE: u64 = 5 << 20;

/// A storage section for the s3s-fs server (`endpoint` overrides, e.g. for moto).
pub fn s3_conf(endpoint: Option<String>) -> StorageConf {
    StorageConf {
        kind: StorageType::S3,
        s3: Some(S3Conf {
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint.unwrap_or_else(|| require_env("RBM_TEST_S3_ENDPOINT"))),
            bucket: require_env("RBM_TEST_S3_BUCKET"),
            credentials: S3Credentials {
                access_key_id: Secret::new(require_env("RBM_TEST_S3_ACCESS_KEY")),
                secret_access_key: Secret::new(require_env("RBM_TEST_S3_SECRET_KEY")),
                ..Default::default()
            },
            upload_part_size: Some(TEST_PART_SIZE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A storage section for the moto server.
pub fn moto_conf() -> StorageConf {
    s3_conf(Some(require_env("RBM_TEST_MOTO_ENDPOINT")))
}

/// A storage section for Azurite.
pub fn azure_conf() -> StorageConf {
    StorageConf {
        kind: StorageType::Azure,
        azure: Some(AzureConf {
            account: require_env("RBM_TEST_AZURE_ACCOUNT"),
            container: require_env("RBM_TEST_AZURE_CONTAINER"),
            endpoint_url: Some(require_env("RBM_TEST_AZURE_ENDPOINT")),
            credentials: AzureCredentials {
                key: Secret::new(require_env("RBM_TEST_AZURE_KEY")),
                ..Default::default()
            },
            upload_part_size: Some(TEST_PART_SIZE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A storage section for a local directory.
pub fn fs_conf(path: &std::path::Path) -> StorageConf {
    StorageConf {
        kind: StorageType::Filesystem,
        filesystem: Some(rbm_protocol::FilesystemConf {
            path: path.display().to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
