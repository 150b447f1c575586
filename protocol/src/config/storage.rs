//! PBM's `storage:` configuration section, with PBM's keys (`pbm/config/config.go`,
//! `pbm/storage/*/`). Read from YAML (`rbm config --file`) and from BSON
//! (`admin.pbmConfig`); unknown keys are errors so that a typo never silently falls
//! back to a default.

use super::ConfigError;
use crate::Secret;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The storage types PBM knows. rbm implements `s3`, `minio` (as S3), `azure`,
/// `filesystem` and `blackhole`; the others parse so that a PBM config round-trips, and
/// are refused with a clear error when a backend is built from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    #[default]
    #[serde(rename = "")]
    Undefined,
    S3,
    Minio,
    Gcs,
    Azure,
    Filesystem,
    Oss,
    Oci,
    Blackhole,
}

impl StorageType {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageType::Undefined => "",
            StorageType::S3 => "s3",
            StorageType::Minio => "minio",
            StorageType::Gcs => "gcs",
            StorageType::Azure => "azure",
            StorageType::Filesystem => "filesystem",
            StorageType::Oss => "oss",
            StorageType::Oci => "oci",
            StorageType::Blackhole => "blackhole",
        }
    }
}

impl fmt::Display for StorageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `storage:` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConf {
    #[serde(rename = "type")]
    pub kind: StorageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Conf>,
    /// PBM's minio-go backend; rbm serves it with its S3 client. Kept as a free-form
    /// document so a PBM config round-trips unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<bson::Document>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<bson::Document>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oss: Option<bson::Document>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<bson::Document>,
}

impl StorageConf {
    /// Parses a YAML document whose top level is the storage section itself
    /// (`type: s3`, `s3: {...}`), or a whole PBM config with a `storage:` key.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Wrapper {
            storage: StorageConf,
        }
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let conf = if value.get("storage").is_some() {
            // Only the storage section is validated here; `Config::from_yaml` checks a
            // whole PBM config.
            let w: Wrapper = serde_norway::from_value(only_key(value, "storage"))
                .map_err(|e| ConfigError::Parse(format!("storage: {e}")))?;
            w.storage
        } else {
            serde_norway::from_value(value).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        conf.validate()?;
        Ok(conf)
    }

    /// Checks the cross-field rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let missing = |key: &str| ConfigError::Invalid {
            key: format!("storage.{key}"),
            reason: format!(
                "storage type is {} but the {key} section is missing",
                self.kind
            ),
        };
        match self.kind {
            StorageType::Undefined => {
                return Err(ConfigError::Invalid {
                    key: "storage.type".into(),
                    reason: "missing; one of s3, minio, azure, filesystem, blackhole".into(),
                })
            }
            StorageType::S3 => {
                let s3 = self.s3.as_ref().ok_or_else(|| missing("s3"))?;
                s3.validate()?;
            }
            StorageType::Minio => {
                self.minio.as_ref().ok_or_else(|| missing("minio"))?;
            }
            StorageType::Azure => {
                let az = self.azure.as_ref().ok_or_else(|| missing("azure"))?;
                az.validate()?;
            }
            StorageType::Filesystem => {
                let fs = self
                    .filesystem
                    .as_ref()
                    .ok_or_else(|| missing("filesystem"))?;
                if fs.path.trim().is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "storage.filesystem.path".into(),
                        reason: "must not be empty".into(),
                    });
                }
                check_obj_size("storage.filesystem.maxObjSizeGB", fs.max_obj_size_gb)?;
            }
            StorageType::Gcs | StorageType::Oss | StorageType::Oci | StorageType::Blackhole => {}
        }
        Ok(())
    }
}

fn only_key(value: serde_norway::Value, key: &str) -> serde_norway::Value {
    let mut m = serde_norway::Mapping::new();
    if let Some(v) = value.get(key) {
        m.insert(serde_norway::Value::String(key.into()), v.clone());
    }
    serde_norway::Value::Mapping(m)
}

fn check_obj_size(key: &str, v: Option<f64>) -> Result<(), ConfigError> {
    match v {
        Some(gb) if !(gb.is_finite() && gb > 0.0) => Err(ConfigError::Invalid {
            key: key.into(),
            reason: format!("must be a positive number of GB, got {gb}"),
        }),
        _ => Ok(()),
    }
}

/// `storage.s3` (`pbm/storage/s3/s3.go` `Config`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Conf {
    /// PBM 1.x had a `provider` key (aws | gcs); still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default)]
    pub region: String,
    #[serde(
        rename = "endpointUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url: Option<String>,
    /// Per-agent endpoint, keyed by the node's `host:port`.
    #[serde(
        rename = "endpointUrlMap",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url_map: Option<BTreeMap<String, String>>,
    /// PBM defaults this to true (path-style requests).
    #[serde(
        rename = "forcePathStyle",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub force_path_style: Option<bool>,
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "S3Credentials::is_empty")]
    pub credentials: S3Credentials,
    #[serde(
        rename = "serverSideEncryption",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// Bytes (PBM's code reads bytes even though its sample YAML says MB).
    #[serde(
        rename = "uploadPartSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_part_size: Option<u64>,
    #[serde(
        rename = "maxUploadParts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_upload_parts: Option<u32>,
    #[serde(
        rename = "storageClass",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_class: Option<String>,
    #[serde(
        rename = "maxObjSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_obj_size_gb: Option<f64>,
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "is_false"
    )]
    pub insecure_skip_tls_verify: bool,
    #[serde(
        rename = "debugLogLevels",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub debug_log_levels: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryer: Option<Retryer>,
    /// rbm extension: upload parts in flight (PBM uses NumCPU/2).
    #[serde(
        rename = "uploadConcurrency",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_concurrency: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl S3Conf {
    pub const DEFAULT_PART_SIZE: u64 = 10 << 20;
    pub const MIN_PART_SIZE: u64 = 5 << 20;
    pub const DEFAULT_MAX_PARTS: u32 = 10_000;
    pub const DEFAULT_MAX_OBJ_SIZE_GB: f64 = 5018.0;

    fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.s3.bucket".into(),
                reason: "must not be empty".into(),
            });
        }
        if let Some(p) = self.upload_part_size {
            if p != 0 && p < Self::MIN_PART_SIZE {
                return Err(ConfigError::Invalid {
                    key: "storage.s3.uploadPartSize".into(),
                    reason: format!("{p} bytes is below S3's minimum part size of 5 MiB"),
                });
            }
        }
        if let Some(0) = self.max_upload_parts {
            return Err(ConfigError::Invalid {
                key: "storage.s3.maxUploadParts".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(0) = self.upload_concurrency {
            return Err(ConfigError::Invalid {
                key: "storage.s3.uploadConcurrency".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(sse) = &self.server_side_encryption {
            sse.validate()?;
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "storage.s3.endpointUrl".into(),
                    reason: format!("{url:?} is not an http:// or https:// URL"),
                });
            }
        }
        check_obj_size("storage.s3.maxObjSizeGB", self.max_obj_size_gb)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    #[serde(
        rename = "access-key-id",
        default,
        skip_serializing_if = "Secret::is_empty"
    )]
    pub access_key_id: Secret,
    #[serde(
        rename = "secret-access-key",
        default,
        skip_serializing_if = "Secret::is_empty"
    )]
    pub secret_access_key: Secret,
    #[serde(
        rename = "session-token",
        default,
        skip_serializing_if = "Secret::is_empty"
    )]
    pub session_token: Secret,
    /// PBM's Vault block for S3 credentials; accepted and kept, not used by rbm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<bson::Document>,
}

impl S3Credentials {
    pub fn is_empty(&self) -> bool {
        self.access_key_id.is_empty()
            && self.secret_access_key.is_empty()
            && self.session_token.is_empty()
            && self.vault.is_none()
    }
}

/// `storage.s3.serverSideEncryption`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSideEncryption {
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    #[serde(
        rename = "sseAlgorithm",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub sse_algorithm: String,
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "String::is_empty")]
    pub kms_key_id: String,
    /// `AES256` for SSE-C.
    #[serde(
        rename = "sseCustomerAlgorithm",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub sse_customer_algorithm: String,
    /// Base64 of the 256-bit customer key (SSE-C).
    #[serde(
        rename = "sseCustomerKey",
        default,
        skip_serializing_if = "Secret::is_empty"
    )]
    pub sse_customer_key: Secret,
}

impl ServerSideEncryption {
    fn validate(&self) -> Result<(), ConfigError> {
        let key = "storage.s3.serverSideEncryption";
        match self.sse_algorithm.as_str() {
            "" | "AES256" | "aws:kms" | "aws:kms:dsse" => {}
            other => {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.sseAlgorithm"),
                    reason: format!("{other:?} is not one of AES256, aws:kms"),
                })
            }
        }
        if !self.sse_algorithm.is_empty() && !self.sse_customer_algorithm.is_empty() {
            return Err(ConfigError::Invalid {
                key: key.into(),
                reason: "sseAlgorithm and sseCustomerAlgorithm are exclusive".into(),
            });
        }
        if self.sse_customer_algorithm.is_empty() != self.sse_customer_key.is_empty() {
            return Err(ConfigError::Invalid {
                key: key.into(),
                reason: "SSE-C needs both sseCustomerAlgorithm and sseCustomerKey".into(),
            });
        }
        Ok(())
    }
}

/// PBM's `retryer` block. S3: `numMaxRetries` (default 3 in the AWS SDK), delays
/// 30 ms – 300 s; Azure: 3 retries, 800 ms – 60 s.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retryer {
    #[serde(
        rename = "numMaxRetries",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub num_max_retries: Option<u32>,
    #[serde(
        rename = "minRetryDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub min_retry_delay: Option<GoDuration>,
    #[serde(
        rename = "maxRetryDelay",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_retry_delay: Option<GoDuration>,
}

/// `storage.azure` (`pbm/storage/azure/azure.go`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConf {
    // Empty values are omitted so that PBM 1.x metas, which recorded an unused
    // `azure: {}` next to the real storage, round-trip unchanged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// Defaults to `https://<account>.blob.core.windows.net`.
    #[serde(
        rename = "endpointUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url: Option<String>,
    #[serde(
        rename = "endpointUrlMap",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_url_map: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "AzureCredentials::is_empty")]
    pub credentials: AzureCredentials,
    #[serde(
        rename = "maxObjSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_obj_size_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryer: Option<Retryer>,
    /// rbm extension: blocks staged in parallel (PBM uses NumCPU/2).
    #[serde(
        rename = "uploadConcurrency",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_concurrency: Option<u32>,
    /// rbm extension: block size in bytes (PBM: max(10 MiB, size/50000 × 1.1)).
    #[serde(
        rename = "uploadPartSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_part_size: Option<u64>,
}

impl AzureConf {
    pub const DEFAULT_MAX_OBJ_SIZE_GB: f64 = 194_560.0;

    fn validate(&self) -> Result<(), ConfigError> {
        if self.container.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.azure.container".into(),
                reason: "must not be empty".into(),
            });
        }
        let c = &self.credentials;
        if self.account.trim().is_empty() && c.sas_token.is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.azure.account".into(),
                reason: "must not be empty".into(),
            });
        }
        let methods = [
            !c.key.is_empty(),
            !c.sas_token.is_empty(),
            c.use_azure_identity,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if methods > 1 {
            return Err(ConfigError::Invalid {
                key: "storage.azure.credentials".into(),
                reason: "set only one of key, sasToken, useAzureIdentity".into(),
            });
        }
        if let Some(0) = self.upload_concurrency {
            return Err(ConfigError::Invalid {
                key: "storage.azure.uploadConcurrency".into(),
                reason: "must be at least 1".into(),
            });
        }
        check_obj_size("storage.azure.maxObjSizeGB", self.max_obj_size_gb)
    }
}

/// Azure credentials. PBM knows only `key` (shared key, what the Percona Operator's
/// secrets hold); rbm adds SAS tokens and Entra ID (managed / workload identity).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureCredentials {
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub key: Secret,
    /// rbm extension: a SAS query string (`sv=...&sig=...`).
    #[serde(rename = "sasToken", default, skip_serializing_if = "Secret::is_empty")]
    pub sas_token: Secret,
    /// rbm extension: authenticate with Entra ID (workload identity, managed identity
    /// or a client secret from the standard `AZURE_*` environment variables).
    #[serde(rename = "useAzureIdentity", default, skip_serializing_if = "is_false")]
    pub use_azure_identity: bool,
}

impl AzureCredentials {
    pub fn is_empty(&self) -> bool {
        self.key.is_empty() && self.sas_token.is_empty() && !self.use_azure_identity
    }
}

/// `storage.filesystem`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConf {
    pub path: String,
    #[serde(
        rename = "maxObjSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_obj_size_gb: Option<f64>,
    #[serde(
        rename = "backupBuffSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub backup_buff_size: Option<u64>,
    #[serde(
        rename = "restoreBuffSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub restore_buff_size: Option<u64>,
}

impl FilesystemConf {
    pub const DEFAULT_MAX_OBJ_SIZE_GB: f64 = 5018.0;
}

/// Go's `time.Duration`: stored by PBM in BSON as int64 nanoseconds, written by users
/// in YAML as a Go duration string (`30ms`, `1m30s`) or a number of nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers with unit
    /// suffixes `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. Hand-written because no crate
    /// parses exactly Go's grammar (humantime accepts other forms and rejects `1.5h`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || format!("invalid duration {s:?} (expected e.g. 300ms, 30s, 1m30s)");
        let t = s.trim();
        if t == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if t.is_empty() || t.starts_with('-') {
            return Err(err());
        }
        let mut rest = t.strip_prefix('+').unwrap_or(t);
        let mut total_ns: f64 = 0.0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            let (num, tail) = rest.split_at(num_end);
            let value: f64 = num.parse().map_err(|_| err())?;
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_end);
            let scale = match unit {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(err()),
            };
            total_ns += value * scale;
            rest = tail;
        }
        if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
            return Err(err());
        }
        Ok(GoDuration(Duration::from_nanos(total_ns.round() as u64)))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // PBM's BSON form; PBM's YAML output prints the same integer.
        s.serialize_i64(i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or a number of nanoseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                u64::try_from(v)
                    .map(|n| GoDuration(Duration::from_nanos(n)))
                    .map_err(|_| E::custom("a duration must not be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_nanos(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                GoDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let p = |s| GoDuration::parse(s).map(|d| d.0);
        assert_eq!(p("30ms"), Ok(Duration::from_millis(30)));
        assert_eq!(p("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(p("0"), Ok(Duration::ZERO));
        assert!(p("10").is_err());
        assert!(p("-1s").is_err());
        assert!(p("5 parsecs").is_err());
    }

    #[test]
    fn parses_pbm_s3_section() {
        let y = r#"
storage:
  type: s3
  s3:
    region: eu-west-1
    bucket: backups
    prefix: rs0
    endpointUrl: http://127.0.0.1:9000
    forcePathStyle: true
    credentials:
      access-key-id: AKIA
      secret-access-key: shh
    serverSideEncryption:
      sseAlgorithm: aws:kms
      kmsKeyID: key-1
    uploadPartSize: 10485760
    maxUploadParts: 10000
    storageClass: STANDARD
    retryer:
      numMaxRetries: 5
      minRetryDelay: 30ms
      maxRetryDelay: 5m
pitr:
  enabled: false
"#;
        let c = StorageConf::from_yaml(y).expect("valid");
        assert_eq!(c.kind, StorageType::S3);
        let s3 = c.s3.as_ref().expect("s3");
        assert_eq!(s3.credentials.secret_access_key.expose(), "shh");
        assert_eq!(
            s3.retryer.as_ref().and_then(|r| r.max_retry_delay),
            Some(GoDuration(Duration::from_secs(300)))
        );
        assert!(
            !format!("{c:?}").contains("shh"),
            "Debug must redact secrets"
        );
        // BSON round trip, as stored in admin.pbmConfig.
        let doc = bson::serialize_to_document(&c).expect("bson");
        let back: StorageConf = bson::deserialize_from_document(doc).expect("bson back");
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_key_is_named() {
        let y = "type: filesystem\nfilesystem:\n  path: /x\n  pth: /y\n";
        let e = StorageConf::from_yaml(y).unwrap_err().to_string();
        assert!(e.contains("pth"), "{e}");
    }

    #[test]
    fn unknown_type_is_refused() {
        let e = StorageConf::from_yaml("type: tape\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tape"), "{e}");
    }

    #[test]
    fn missing_section_is_named() {
        let e = StorageConf::from_yaml("type: azure\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.azure"), "{e}");
        let e = StorageConf::from_yaml("type: s3\ns3:\n  bucket: ''\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.s3.bucket"), "{e}");
    }

    #[test]
    fn fixture_config_parses() {
        let y = "storage:\n  type: filesystem\n  filesystem:\n    path: /opt/backups\npitr:\n  enabled: false\n";
        let c = StorageConf::from_yaml(y).expect("valid");
        assert_eq!(
            c.filesystem.map(|f| f.path),
            Some("/opt/backups".to_string())
        );
    }
}
