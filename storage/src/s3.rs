//! S3 and S3-compatible storage (aws-sdk-s3), configured with PBM's `storage.s3` keys.
//!
//! Uploads stream: the input is cut into parts of a fixed size and up to
//! `uploadConcurrency` parts are in flight, so memory is bounded by
//! (parts in flight + 1) × part size whatever the object's size. An object appears under
//! its name only when CompleteMultipartUpload (or the single PutObject) succeeds; a
//! failed or cancelled upload is aborted so that no parts are left behind to be billed.

use crate::io::read_part;
use crate::{
    check_name, ByteReader, ErrorKind, ObjectMeta, Result, Storage, StorageError, StorageType,
};
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine as _;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use rbm_protocol::{S3Conf, Secret};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod tls;

const KIND: StorageType = StorageType::S3;
const DEFAULT_REGION: &str = "us-east-1";
/// PBM's `retryer` defaults (AWS SDK for Go v2 standard retryer with PBM's delays).
const DEFAULT_MAX_RETRIES: u32 = 3;
const DEFAULT_MIN_RETRY_DELAY: Duration = Duration::from_millis(30);
const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// A TCP/TLS handshake that takes longer than this is a dead or filtered endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to the first response byte for requests without a large body. Generous because
/// CopyObject and CompleteMultipartUpload of big objects can take a while server-side.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The SDK's read timeout runs from the start of the request, so for uploads it also
/// covers sending the body: allow the body to go at no less than this rate.
const MIN_UPLOAD_RATE: u64 = 256 << 10;
/// S3's limits: the largest part, and the largest object a single CopyObject may copy.
const MAX_PART_SIZE: u64 = 5 << 30;
/// The largest object one PutObject may store.
const MAX_SINGLE_PUT: u64 = 5 << 30;
const MAX_SINGLE_COPY: u64 = 5 << 30;

/// An S3 bucket (and prefix) used as object storage.
pub struct S3 {
    client: Client,
    bucket: String,
    /// The configured prefix without leading or trailing `/`; may be empty.
    prefix: String,
    location: String,
    part_size: u64,
    max_parts: u32,
    concurrency: usize,
    sse: Sse,
    storage_class: Option<StorageClass>,
    /// Objects above this are copied with UploadPartCopy (S3 refuses CopyObject above
    /// 5 GiB); lowered only by tests, which cannot move 5 GiB around.
    copy_multipart_threshold: u64,
    redactor: Redactor,
}

/// Server-side encryption as applied to requests.
#[derive(Clone)]
enum Sse {
    None,
    /// SSE-S3 (`AES256`) or SSE-KMS (`aws:kms`, optional key id): sent on writes only.
    Managed {
        algorithm: ServerSideEncryption,
        kms_key_id: Option<String>,
    },
    /// SSE-C: the key travels with every request that reads or writes the object's data.
    Customer {
        algorithm: String,
        key: Secret,
        key_md5: String,
    },
}

impl Sse {
    fn from_conf(conf: &S3Conf) -> Result<Self> {
        let Some(s) = &conf.server_side_encryption else {
            return Ok(Sse::None);
        };
        if !s.sse_customer_algorithm.is_empty() {
            // The key must be 256 bits; checked here so that a bad key is a config error
            // rather than a confusing 400 on the first upload. The message never shows it.
            let raw = base64::engine::general_purpose::STANDARD
                .decode(s.sse_customer_key.expose().trim())
                .map_err(|_| {
                    StorageError::config(
                        KIND,
                        "storage.s3.serverSideEncryption.sseCustomerKey is not valid base64",
                    )
                })?;
            if raw.len() != 32 {
                return Err(StorageError::config(
                    KIND,
                    format!(
                        "storage.s3.serverSideEncryption.sseCustomerKey must be 32 bytes (256 bits) once base64-decoded, got {}",
                        raw.len()
                    ),
                ));
            }
            let key_md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&raw));
            return Ok(Sse::Customer {
                algorithm: s.sse_customer_algorithm.clone(),
                key: Secret::new(s.sse_customer_key.expose().trim()),
                key_md5,
            });
        }
        if s.sse_algorithm.is_empty() {
            return Ok(Sse::None);
        }
        Ok(Sse::Managed {
            algorithm: ServerSideEncryption::from(s.sse_algorithm.as_str()),
            kms_key_id: (!s.kms_key_id.is_empty()).then(|| s.kms_key_id.clone()),
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Sse::None => "none",
            Sse::Managed { .. } => "sse-s3/kms",
            Sse::Customer { .. } => "sse-c",
        }
    }
}

/// Applies the SSE-C headers (algorithm, key, key MD5) to a request builder that takes
/// them; S3 needs them on every read and write of an SSE-C object's data.
macro_rules! with_sse_c {
    ($builder:expr, $sse:expr) => {{
        let b = $builder;
        match $sse {
            Sse::Customer {
                algorithm,
                key,
                key_md5,
            } => b
                .sse_customer_algorithm(algorithm.as_str())
                .sse_customer_key(key.expose())
                .sse_customer_key_md5(key_md5.as_str()),
            _ => b,
        }
    }};
}

/// Applies every write-side setting (SSE of any kind, storage class) to a request builder
/// that creates an object: PutObject, CreateMultipartUpload, CopyObject.
macro_rules! with_write_opts {
    ($builder:expr, $self:expr) => {{
        let mut b = with_sse_c!($builder, &$self.sse);
        if let Sse::Managed {
            algorithm,
            kms_key_id,
        } = &$self.sse
        {
            b = b.server_side_encryption(algorithm.clone());
            if let Some(k) = kms_key_id {
                b = b.ssekms_key_id(k.as_str());
            }
        }
        b.set_storage_class($self.storage_class.clone())
    }};
}

/// Removes secrets from text that reaches an error message. The SDK's errors do not
/// carry credentials, but server messages and dispatch errors are free text, so this is
/// the last line of defence rather than the only one.
const MIN_REDACTED_LEN: usize = 6;

#[derive(Clone, Default)]
struct Redactor(Arc<Vec<String>>);

impl Redactor {
    fn redact(&self, text: String) -> String {
        // Very short values are skipped: replacing every "s" of a message would make it
        // unreadable, and no real credential is that short.
        self.0
            .iter()
            .filter(|s| s.len() >= MIN_REDACTED_LEN)
            .fold(text, |t, s| t.replace(s.as_str(), "***"))
    }
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that no credential or SSE-C key can reach a log line.
        f.debug_struct("S3")
            .field("location", &self.location)
            .field("part_size", &self.part_size)
            .field("max_parts", &self.max_parts)
            .field("concurrency", &self.concurrency)
            .field("sse", &self.sse.describe())
            .field("storage_class", &self.storage_class)
            .finish_non_exhaustive()
    }
}

/// PBM's `ComputePartSize`: the configured part size (default 10 MiB, at least 5 MiB),
/// raised to `size_hint / max_parts × 1.5` when the hint would not fit in `max_parts`
/// parts, so that an estimate that is somewhat low still fits. Capped at S3's 5 GiB.
pub fn compute_part_size(configured: Option<u64>, max_parts: u32, size_hint: Option<u64>) -> u64 {
    let mut part = match configured {
        Some(p) if p >= S3Conf::MIN_PART_SIZE => p,
        _ => S3Conf::DEFAULT_PART_SIZE,
    };
    if let Some(hint) = size_hint {
        let per_part = hint / u64::from(max_parts.max(1));
        if per_part >= part {
            part = per_part.saturating_add(per_part / 2);
        }
    }
    part.min(MAX_PART_SIZE)
}

/// Parts of one upload: all of one size when the object's size was known up front;
/// otherwise (a stream whose length no one can tell, e.g. a dump on a server without cheap
/// size statistics) the size doubles every [`PARTS_PER_STEP`] parts, so that
/// `maxUploadParts` parts reach about 1,000 × the first part size instead of 10,000 ×
/// (10 TB from 10 MiB parts), while small objects keep small parts. Memory still stays
/// bounded by parts in flight × the current part size.
#[derive(Debug, Clone, Copy)]
pub struct PartSizing {
    pub base: usize,
    pub grow: bool,
}

/// How many parts are cut at one size before it doubles (unknown sizes only).
pub const PARTS_PER_STEP: u32 = 1000;

impl PartSizing {
    /// The size of part `number` (1-based).
    pub fn size_of(self, number: u32) -> usize {
        if !self.grow {
            return self.base;
        }
        let doublings = (number.saturating_sub(1) / PARTS_PER_STEP).min(20);
        let max = usize::try_from(MAX_PART_SIZE).unwrap_or(usize::MAX);
        self.base.saturating_mul(1usize << doublings).min(max)
    }
}

/// Percent-encodes a bucket/key for `x-amz-copy-source`, which S3 URL-decodes; `/` stays.
fn encode_copy_source(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The endpoint's `host[:port]` for `location()`, never its user-info.
fn endpoint_host(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// An S3 error code or HTTP status, mapped to what callers act on.
fn classify_service(code: Option<&str>, status: u16) -> ErrorKind {
    match code {
        Some("NoSuchKey" | "NotFound") => return ErrorKind::NotFound,
        Some("NoSuchBucket") => return ErrorKind::NoBucket,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "InvalidSecurity"
            | "AllAccessDisabled"
            | "AccountProblem",
        ) => return ErrorKind::Auth,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestTimeout"
            | "RequestTimeTooSkewed"
            | "InternalError"
            | "ServiceUnavailable"
            | "RequestLimitExceeded",
        ) => return ErrorKind::Transient,
        _ => {}
    }
    match status {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Auth,
        408 | 429 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

/// The error and its sources, `: `-joined. Used instead of the SDK's `DisplayErrorContext`, whose
/// output ends with a `Debug` dump of the raw response (headers and body).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(src) = next {
        let text = src.to_string();
        // Wrappers often repeat their source's text; keep each piece once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = src.source();
    }
    out
}

/// Maps an SDK error to a [`StorageError`] whose message is built from the error code,
/// message and status (or the dispatch error chain), with secrets redacted.
fn classify<E>(
    redactor: &Redactor,
    op: &'static str,
    object: &str,
    err: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            let kind = classify_service(e.code(), status);
            let message = match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            };
            (kind, message)
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status().as_u16();
            (
                classify_service(None, status),
                format!("unexpected response (HTTP {status}): {}", error_chain(&err)),
            )
        }
        SdkError::TimeoutError(_) => (ErrorKind::Transient, error_chain(&err)),
        SdkError::DispatchFailure(d) => {
            let text = error_chain(&err);
            let kind = if d.is_timeout() {
                ErrorKind::Transient
            } else if d.is_io() {
                // Connection refused, DNS, TLS handshake: the endpoint is not there.
                ErrorKind::Unreachable
            } else if text.to_ascii_lowercase().contains("credentials") {
                // The credentials chain failed before anything was sent.
                ErrorKind::Auth
            } else if d.is_user() {
                ErrorKind::Other
            } else {
                ErrorKind::Unreachable
            };
            (kind, text)
        }
        _ => (ErrorKind::Other, error_chain(&err)),
    };
    StorageError::new(kind, KIND, op, object, redactor.redact(message))
}

/// Whether a GetObject failed because the range starts at or past the end of the object
/// (HTTP 416): for `open_range` that is an empty read, as the contract cuts ranges.
fn is_invalid_range<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            se.raw().status().as_u16() == 416 || se.err().code() == Some("InvalidRange")
        }
        _ => false,
    }
}

/// A multipart upload that is aborted unless it completed: explicitly on errors (awaited,
/// so nothing is pending when `save` returns) and, if the `save` future is dropped
/// mid-way, from `Drop` on a spawned task.
struct PendingUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl PendingUpload {
    async fn abort(mut self) {
        self.armed = false;
        let r = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(key = %self.key, upload_id = %self.upload_id,
                "could not abort the multipart upload (a bucket lifecycle rule for incomplete uploads will remove it): {}",
                error_chain(&e));
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let req = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id);
        rt.spawn(async move {
            let _ = req.send().await;
        });
    }
}

impl S3 {
    /// Builds the client from PBM's `storage.s3` section. `node` (`host:port`) selects
    /// an `endpointUrlMap` entry. Makes no request: a wrong endpoint or credentials show
    /// on the first operation.
    ///
    /// # Errors
    /// An invalid or unsupported setting.
    pub async fn new(conf: &S3Conf, node: Option<&str>) -> Result<Self> {
        let endpoint = node
            .and_then(|n| conf.endpoint_url_map.as_ref()?.get(n))
            .or(conf.endpoint_url.as_ref())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if let Some(url) = &endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || endpoint_host(url).is_none()
            {
                return Err(StorageError::config(
                    KIND,
                    format!(
                        "storage.s3 endpoint {:?} is not an http:// or https:// URL",
                        endpoint_host(url).unwrap_or_else(|| "(unparsable)".into())
                    ),
                ));
            }
        }
        let region = match conf.region.trim() {
            "" => DEFAULT_REGION.to_string(),
            r => r.to_string(),
        };
        let retry = conf.retryer.clone().unwrap_or_default();
        let retry_config = RetryConfig::standard()
            .with_max_attempts(
                retry
                    .num_max_retries
                    .unwrap_or(DEFAULT_MAX_RETRIES)
                    .saturating_add(1),
            )
            .with_initial_backoff(
                retry
                    .min_retry_delay
                    .map_or(DEFAULT_MIN_RETRY_DELAY, |d| d.0),
            )
            .with_max_backoff(
                retry
                    .max_retry_delay
                    .map_or(DEFAULT_MAX_RETRY_DELAY, |d| d.0),
            );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build();

        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region))
            .retry_config(retry_config)
            .timeout_config(timeouts);
        if conf.insecure_skip_tls_verify {
            let http =
                tls::insecure_client(CONNECT_TIMEOUT).map_err(|e| StorageError::config(KIND, e))?;
            tracing::warn!(
                "storage.s3.insecureSkipTLSVerify is set: TLS certificates of the S3 endpoint are not verified"
            );
            loader = loader.http_client(http);
        } else if let Some(http) = tls::ca_bundle_client() {
            loader = loader.http_client(http);
        }
        let creds = &conf.credentials;
        if creds.vault.is_some() {
            tracing::warn!(
                "storage.s3.credentials.vault is not supported by rbm; using the other credentials"
            );
        }
        match (creds.access_key_id.is_empty(), creds.secret_access_key.is_empty()) {
            (false, false) => {
                let token = (!creds.session_token.is_empty())
                    .then(|| creds.session_token.expose().to_string());
                loader = loader.credentials_provider(Credentials::new(
                    creds.access_key_id.expose(),
                    creds.secret_access_key.expose(),
                    token,
                    None,
                    "rbm-config",
                ));
            }
            // Neither: the default chain (env, profile, IRSA web identity, ECS, IMDS).
            (true, true) => {}
            _ => {
                return Err(StorageError::config(
                    KIND,
                    "storage.s3.credentials needs both access-key-id and secret-access-key (or neither, to use the default AWS credentials chain)",
                ))
            }
        }
        let sdk = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(conf.force_path_style.unwrap_or(true));
        if let Some(url) = &endpoint {
            builder = builder.endpoint_url(url.as_str());
        }
        let client = Client::from_conf(builder.build());

        let prefix = conf.prefix.trim_matches('/').to_string();
        let host = endpoint
            .as_deref()
            .and_then(endpoint_host)
            .unwrap_or_else(|| "s3".to_string());
        let location = if prefix.is_empty() {
            format!("s3://{host}/{}", conf.bucket)
        } else {
            format!("s3://{host}/{}/{prefix}", conf.bucket)
        };
        let sse = Sse::from_conf(conf)?;
        let mut secrets = vec![
            creds.secret_access_key.expose().to_string(),
            creds.session_token.expose().to_string(),
        ];
        if let Sse::Customer { key, .. } = &sse {
            secrets.push(key.expose().to_string());
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Ok(Self {
            client,
            bucket: conf.bucket.clone(),
            prefix,
            location,
            part_size: compute_part_size(conf.upload_part_size, u32::MAX, None),
            max_parts: conf
                .max_upload_parts
                .unwrap_or(S3Conf::DEFAULT_MAX_PARTS)
                .max(1),
            concurrency: conf
                .upload_concurrency
                .map_or((cpus / 2).max(2), |c| c.max(1) as usize),
            sse,
            storage_class: conf
                .storage_class
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(StorageClass::from),
            copy_multipart_threshold: MAX_SINGLE_COPY,
            redactor: Redactor(Arc::new(secrets)),
        })
    }

    /// Copies objects larger than `bytes` with UploadPartCopy instead of CopyObject.
    /// For tests: S3's real limit (5 GiB) is too large to exercise.
    #[doc(hidden)]
    #[must_use]
    pub fn with_copy_multipart_threshold(mut self, bytes: u64) -> Self {
        self.copy_multipart_threshold = bytes.min(MAX_SINGLE_COPY);
        self
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn err<E>(&self, op: &'static str, object: &str, e: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(&self.redactor, op, object, e)
    }

    /// Timeouts for a request that sends `len` bytes of body (see [`MIN_UPLOAD_RATE`]).
    fn upload_timeouts(len: u64) -> aws_sdk_s3::config::Builder {
        let read = READ_TIMEOUT + Duration::from_secs(len / MIN_UPLOAD_RATE);
        aws_sdk_s3::config::Builder::new().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(read)
                .build(),
        )
    }

    async fn put_single(&self, name: &str, key: &str, body: Bytes) -> Result<u64> {
        let len = body.len() as u64;
        self.put(name, key, ByteStream::from(body), len).await
    }

    /// One PutObject of `len` bytes with the configured write options.
    async fn put(&self, name: &str, key: &str, body: ByteStream, len: u64) -> Result<u64> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len as i64)
            .body(body);
        with_write_opts!(req, self)
            .customize()
            .config_override(Self::upload_timeouts(len))
            .send()
            .await
            .map_err(|e| self.err("save", name, e))?;
        Ok(len)
    }

    /// One PutObject whose body is read from `data` while it is sent: memory stays at a
    /// read buffer whatever the size. The SDK cannot retry a body it cannot replay, so a
    /// failure fails the save (the caller's retry starts over, as for a failed part).
    async fn put_streamed(
        &self,
        name: &str,
        key: &str,
        data: ByteReader,
        size: u64,
    ) -> Result<u64> {
        let body = ExactBody {
            reader: std::sync::Mutex::new(data),
            remaining: size,
            size,
            done: false,
        };
        self.put(name, key, ByteStream::from_body_1_x(body), size)
            .await
    }

    /// Uploads the parts already read (`head`) and the rest of `data` as parts of
    /// `upload_id`, with up to `concurrency` in flight. Returns the parts in order and
    /// the byte count.
    async fn upload_parts(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        head: [Bytes; 2],
        data: &mut ByteReader,
        sizing: PartSizing,
    ) -> Result<(Vec<CompletedPart>, u64)> {
        // The JoinSet holds the parts in flight; waiting for one to finish before
        // spawning beyond `concurrency` bounds memory like a semaphore would, and also
        // surfaces a failed part right away instead of after the whole input was read.
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut total = 0u64;
        let mut pending = head.into_iter();
        let mut number: u32 = 0;
        let join = |r: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>| {
            r.map_err(|e| {
                StorageError::new(
                    ErrorKind::Other,
                    KIND,
                    "save",
                    name,
                    format!("part upload task failed: {e}"),
                )
            })?
        };
        loop {
            let body = match pending.next() {
                Some(b) => b,
                None => {
                    // Parts finish while the input is read, and a failed one must stop
                    // the save now, not after a slow input produced the next part. The
                    // read is pinned outside the select because read_part is not
                    // cancel-safe: the bytes it gathered would be lost.
                    let read = read_part(data, sizing.size_of(number + 1));
                    tokio::pin!(read);
                    loop {
                        tokio::select! {
                            r = &mut read => break r.map_err(|e| StorageError::io(KIND, "save", name, &e))?,
                            Some(r) = tasks.join_next(), if !tasks.is_empty() => done.push(join(r)?),
                        }
                    }
                }
            };
            if body.is_empty() {
                break;
            }
            number += 1;
            if number > self.max_parts {
                return Err(StorageError::new(
                    ErrorKind::Other,
                    KIND,
                    "save",
                    name,
                    format!(
                        "the object is larger than maxUploadParts ({}) parts of up to {} bytes; \
                         raise storage.s3.uploadPartSize or maxUploadParts",
                        self.max_parts,
                        sizing.size_of(number)
                    ),
                ));
            }
            total += body.len() as u64;
            while tasks.len() >= self.concurrency {
                if let Some(r) = tasks.join_next().await {
                    done.push(join(r)?);
                }
            }
            let len = body.len() as u64;
            let req = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number as i32)
                .content_length(len as i64)
                .body(ByteStream::from(body));
            let req = with_sse_c!(req, &self.sse)
                .customize()
                .config_override(Self::upload_timeouts(len));
            let redactor = self.redactor.clone();
            let object = name.to_string();
            tasks.spawn(async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| classify(&redactor, "save", &object, e))?;
                Ok(CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build())
            });
        }
        while let Some(r) = tasks.join_next().await {
            done.push(join(r)?);
        }
        done.sort_by_key(|p| p.part_number());
        Ok((done, total))
    }

    async fn save_multipart(
        &self,
        name: &str,
        key: &str,
        head: [Bytes; 2],
        data: &mut ByteReader,
        sizing: PartSizing,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        let created = tokio::select! {
            r = with_write_opts!(req, self).send() => r.map_err(|e| self.err("save", name, e))?,
            // The upload id is not known yet, so there is nothing to abort.
            () = cancel.cancelled() => return Err(StorageError::cancelled(KIND, "save", name)),
        };
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        if upload_id.is_empty() {
            return Err(StorageError::new(
                ErrorKind::Other,
                KIND,
                "save",
                name,
                "CreateMultipartUpload returned no upload id",
            ));
        }
        let pending = PendingUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        let uploaded = tokio::select! {
            r = self.upload_parts(name, key, &upload_id, head, data, sizing) => r,
            // Dropping the upload future drops its JoinSet, which cancels the parts.
            () = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
        };
        let (parts, total) = match uploaded {
            Ok(v) => v,
            Err(e) => {
                pending.abort().await;
                return Err(e);
            }
        };
        let req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        // Not raced with `cancel`: once every part is up, finishing is quicker than
        // aborting and leaves the caller with a consistent answer.
        match with_sse_c!(req, &self.sse).send().await {
            Ok(_) => {
                pending.disarm();
                Ok(total)
            }
            Err(e) => {
                let e = self.err("save", name, e);
                pending.abort().await;
                Err(e)
            }
        }
    }

    async fn copy_multipart(&self, from: &str, to: &str, size: u64) -> Result<()> {
        let src_key = self.key(from);
        let dst_key = self.key(to);
        let source = encode_copy_source(&format!("{}/{src_key}", self.bucket));
        let req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&dst_key);
        let created = with_write_opts!(req, self)
            .send()
            .await
            .map_err(|e| self.err("copy", to, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let pending = PendingUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: dst_key.clone(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        let part = compute_part_size(Some(self.part_size), self.max_parts, Some(size))
            .max(size.div_ceil(u64::from(self.max_parts)));
        let run = async {
            let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
            let mut done = Vec::new();
            let mut offset = 0u64;
            let mut number = 0i32;
            while offset < size {
                let end = (offset + part).min(size) - 1;
                number += 1;
                while tasks.len() >= self.concurrency {
                    if let Some(r) = tasks.join_next().await {
                        done.push(r.map_err(|e| {
                            StorageError::new(ErrorKind::Other, KIND, "copy", to, e.to_string())
                        })??);
                    }
                }
                let req = self
                    .client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(&dst_key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={offset}-{end}"));
                let req = match &self.sse {
                    Sse::Customer {
                        algorithm,
                        key,
                        key_md5,
                    } => req
                        .copy_source_sse_customer_algorithm(algorithm.as_str())
                        .copy_source_sse_customer_key(key.expose())
                        .copy_source_sse_customer_key_md5(key_md5.as_str()),
                    _ => req,
                };
                let req = with_sse_c!(req, &self.sse);
                let redactor = self.redactor.clone();
                let object = to.to_string();
                tasks.spawn(async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| classify(&redactor, "copy", &object, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(
                            out.copy_part_result()
                                .and_then(|r| r.e_tag())
                                .map(str::to_string),
                        )
                        .build())
                });
                offset = end + 1;
            }
            while let Some(r) = tasks.join_next().await {
                done.push(r.map_err(|e| {
                    StorageError::new(ErrorKind::Other, KIND, "copy", to, e.to_string())
                })??);
            }
            done.sort_by_key(|p| p.part_number());
            let req = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&dst_key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                );
            with_sse_c!(req, &self.sse)
                .send()
                .await
                .map_err(|e| self.err("copy", to, e))?;
            Ok::<(), StorageError>(())
        };
        match run.await {
            Ok(()) => {
                pending.disarm();
                Ok(())
            }
            Err(e) => {
                pending.abort().await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Storage for S3 {
    fn kind(&self) -> StorageType {
        KIND
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn save(
        &self,
        name: &str,
        mut data: ByteReader,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        check_name(KIND, "save", name)?;
        let key = self.key(name);
        let part_size = usize::try_from(compute_part_size(
            Some(self.part_size),
            self.max_parts,
            size_hint,
        ))
        .unwrap_or(usize::MAX);
        let sizing = PartSizing {
            base: part_size,
            grow: size_hint.is_none(),
        };
        let cancelled = || StorageError::cancelled(KIND, "save", name);
        let io = |e: std::io::Error| StorageError::io(KIND, "save", name, &e);
        // Two parts are read before deciding: an input of exactly one part must still be
        // a single PutObject, since a one-part multipart upload costs three requests.
        let first = tokio::select! {
            r = read_part(&mut data, part_size) => r.map_err(io)?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let second = if first.len() < part_size {
            Bytes::new()
        } else {
            tokio::select! {
                r = read_part(&mut data, part_size) => r.map_err(io)?,
                () = cancel.cancelled() => return Err(cancelled()),
            }
        };
        if second.is_empty() {
            return tokio::select! {
                r = self.put_single(name, &key, first) => r,
                () = cancel.cancelled() => Err(cancelled()),
            };
        }
        self.save_multipart(name, &key, [first, second], &mut data, sizing, cancel)
            .await
    }

    /// Objects of a known size above one part and up to S3's single-PUT limit go up as
    /// one streamed PutObject: a multipart upload costs the server a join of the parts
    /// on completion (a full extra copy on s3s-fs and MinIO-like servers) and three more
    /// requests. Smaller objects take the buffered, retryable single PUT of `save`.
    async fn save_sized(
        &self,
        name: &str,
        data: ByteReader,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        if size <= self.part_size || size > MAX_SINGLE_PUT {
            return self.save(name, data, Some(size), cancel).await;
        }
        check_name(KIND, "save", name)?;
        let key = self.key(name);
        // PutObject is atomic: dropping the request on cancel leaves no object behind.
        tokio::select! {
            r = self.put_streamed(name, &key, data, size) => r,
            () = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
        }
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        check_name(KIND, "open", name)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name));
        let out = with_sse_c!(req, &self.sse)
            .send()
            .await
            .map_err(|e| self.err("open", name, e))?;
        Ok(Box::new(out.body.into_async_read()))
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        check_name(KIND, "open", name)?;
        if len == 0 {
            return Ok(Box::new(tokio::io::empty()));
        }
        let last = offset.saturating_add(len - 1);
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .range(format!("bytes={offset}-{last}"));
        match with_sse_c!(req, &self.sse).send().await {
            Ok(out) => Ok(Box::new(out.body.into_async_read())),
            // S3 answers 416 for a range that starts at or past the end; the contract
            // cuts ranges at the end, which leaves nothing to read.
            Err(e) if is_invalid_range(&e) => Ok(Box::new(tokio::io::empty())),
            Err(e) => Err(self.err("open", name, e)),
        }
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        check_name(KIND, "stat", name)?;
        let req = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.key(name));
        let out = with_sse_c!(req, &self.sse)
            .send()
            .await
            .map_err(|e| self.err("stat", name, e))?;
        Ok(ObjectMeta {
            name: name.to_string(),
            size: out
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let root = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let full = format!("{root}{prefix}");
        // State: Some(token) while pages remain (None token = the first page).
        stream::try_unfold(Some(None::<String>), move |state| {
            let root = root.clone();
            let full = full.clone();
            async move {
                let Some(token) = state else {
                    return Ok(None);
                };
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(full)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| self.err("list", prefix, e))?;
                let page: Vec<ObjectMeta> = out
                    .contents()
                    .iter()
                    .filter_map(|o| {
                        let name = o.key()?.strip_prefix(root.as_str())?;
                        // Keys ending in `/` are "folder" markers made by consoles and
                        // tools, not objects rbm wrote.
                        if name.is_empty() || name.ends_with('/') {
                            return None;
                        }
                        Some(ObjectMeta {
                            name: name.to_string(),
                            size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        })
                    })
                    .collect();
                let next = if out.is_truncated() == Some(true) {
                    match out.next_continuation_token() {
                        Some(t) if !t.is_empty() => Some(Some(t.to_string())),
                        // Following a truncated listing without a token would loop forever.
                        _ => return Err(StorageError::new(
                            ErrorKind::Other,
                            KIND,
                            "list",
                            prefix,
                            "the server reported a truncated listing without a continuation token",
                        )),
                    }
                } else {
                    None
                };
                Ok(Some((page, next)))
            }
        })
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, name: &str) -> Result<()> {
        check_name(KIND, "delete", name)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.err("delete", name, e) {
                // S3 itself answers 204 for a missing key; some compatible servers 404.
                e if e.kind == ErrorKind::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        check_name(KIND, "copy", from)?;
        check_name(KIND, "copy", to)?;
        let size = self.stat(from).await.map_err(|mut e| {
            e.op = "copy";
            e
        })?;
        if size.size > self.copy_multipart_threshold {
            return self.copy_multipart(from, to, size.size).await;
        }
        let source = encode_copy_source(&format!("{}/{}", self.bucket, self.key(from)));
        let req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.key(to))
            .copy_source(source);
        let req = match &self.sse {
            Sse::Customer {
                algorithm,
                key,
                key_md5,
            } => req
                .copy_source_sse_customer_algorithm(algorithm.as_str())
                .copy_source_sse_customer_key(key.expose())
                .copy_source_sse_customer_key_md5(key_md5.as_str()),
            _ => req,
        };
        with_write_opts!(req, self)
            .send()
            .await
            .map_err(|e| self.err("copy", to, e))?;
        Ok(())
    }
}

/// A request body of exactly `size` bytes read from a [`ByteReader`]. Input that ends
/// early or runs on past `size` fails the body, so the server never stores a short or
/// cut object under the name.
struct ExactBody {
    /// Only for `Sync` (the SDK's bodies must be); always reached through `get_mut`.
    reader: std::sync::Mutex<ByteReader>,
    remaining: u64,
    size: u64,
    done: bool,
}

/// The read size per body frame.
const BODY_FRAME: usize = 1 << 20;

impl http_body::Body for ExactBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let reader = match this.reader.get_mut() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        // One byte past the end is read to prove the input really ends at `size`.
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .clamp(1, BODY_FRAME);
        let mut buf = bytes::BytesMut::with_capacity(want);
        let n = match tokio_util::io::poll_read_buf(std::pin::Pin::new(reader), cx, &mut buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(n)) => n as u64,
        };
        if n > this.remaining {
            this.done = true;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the input is longer than the {} bytes announced", this.size),
            ))));
        }
        if this.remaining == 0 {
            this.done = true;
            return Poll::Ready(None);
        }
        if n == 0 {
            this.done = true;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the input ended after {} of the {} bytes announced",
                    this.size - this.remaining,
                    this.size
                ),
            ))));
        }
        this.remaining -= n;
        Poll::Ready(Some(Ok(http_body::Frame::data(buf.freeze()))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn unknown_sizes_grow_their_parts() {
        let fixed = PartSizing {
            base: 10 << 20,
            grow: false,
        };
        assert_eq!(fixed.size_of(9_999), 10 << 20);
        let g = PartSizing {
            base: 10 << 20,
            grow: true,
        };
        assert_eq!(g.size_of(1), 10 << 20);
        assert_eq!(g.size_of(1000), 10 << 20);
        assert_eq!(g.size_of(1001), 20 << 20);
        assert_eq!(g.size_of(2001), 40 << 20);
        let total: u64 = (1..=10_000).map(|n| g.size_of(n) as u64).sum();
        assert!(
            total > 10_000_000_000_000,
            "10,000 growing parts hold > 10 TB: {total}"
        );
        assert_eq!(g.size_of(u32::MAX), 5 << 30);
    }

    #[test]
    fn part_size_follows_pbm() {
        // No hint: the configured size, or 10 MiB; below 5 MiB falls back to the default.
        assert_eq!(compute_part_size(None, 10_000, None), 10 * MIB);
        assert_eq!(compute_part_size(Some(64 * MIB), 10_000, None), 64 * MIB);
        assert_eq!(compute_part_size(Some(MIB), 10_000, None), 10 * MIB);
        assert_eq!(compute_part_size(Some(0), 10_000, None), 10 * MIB);
        // A hint that fits in max_parts parts leaves the size alone.
        assert_eq!(compute_part_size(None, 10_000, Some(50 << 30)), 10 * MIB);
        // 200 GiB / 10,000 = 20.97 MB per part ≥ 10 MiB: raised by half again.
        let per = (200u64 << 30) / 10_000;
        assert_eq!(
            compute_part_size(None, 10_000, Some(200 << 30)),
            per + per / 2
        );
        // A small maxUploadParts raises it too.
        assert_eq!(compute_part_size(None, 2, Some(100 * MIB)), 75 * MIB);
        // Never above S3's 5 GiB part limit.
        assert_eq!(compute_part_size(None, 1, Some(1 << 40)), 5 << 30);
    }

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(encode_copy_source("b/p/a b+c.bson"), "b/p/a%20b%2Bc.bson");
        assert_eq!(encode_copy_source("b/x~y_z-1.2"), "b/x~y_z-1.2");
    }

    #[test]
    fn location_host_has_no_userinfo() {
        assert_eq!(
            endpoint_host("http://u:p@h:9000/x").as_deref(),
            Some("h:9000")
        );
        assert_eq!(
            endpoint_host("https://s3.example.com").as_deref(),
            Some("s3.example.com")
        );
    }

    #[test]
    fn service_errors_are_classified() {
        assert_eq!(
            classify_service(Some("NoSuchKey"), 404),
            ErrorKind::NotFound
        );
        assert_eq!(classify_service(None, 404), ErrorKind::NotFound);
        assert_eq!(
            classify_service(Some("NoSuchBucket"), 404),
            ErrorKind::NoBucket
        );
        assert_eq!(
            classify_service(Some("SignatureDoesNotMatch"), 403),
            ErrorKind::Auth
        );
        assert_eq!(
            classify_service(Some("InvalidAccessKeyId"), 403),
            ErrorKind::Auth
        );
        assert_eq!(classify_service(None, 403), ErrorKind::Auth);
        assert_eq!(
            classify_service(Some("SlowDown"), 503),
            ErrorKind::Transient
        );
        assert_eq!(classify_service(None, 500), ErrorKind::Transient);
        assert_eq!(
            classify_service(Some("InvalidArgument"), 400),
            ErrorKind::Other
        );
    }

    #[test]
    fn redactor_hides_secrets() {
        let r = Redactor(Arc::new(vec!["s3cr3t".into(), String::new(), "s".into()]));
        assert_eq!(r.redact("bad s3cr3t here".into()), "bad *** here");
    }
}
