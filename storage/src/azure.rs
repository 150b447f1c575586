//! The `azure` storage: Azure Blob Storage (and Azurite), PBM's `storage.azure`.
//!
//! Built on `object_store` 0.14's Azure backend. PBM's configs and the Percona
//! Operator's secrets authenticate with the account's shared key (`account` +
//! `credentials.key`); the official `azure_storage_blob` 1.x cannot sign with a shared
//! key (it takes Entra ID tokens or SAS URLs only) and the older `azure_storage_blobs`
//! is no longer maintained. `object_store` signs shared-key requests, also takes SAS
//! tokens and Entra ID (workload identity, managed identity, client secret), works
//! against Azurite, and is maintained as part of Apache Arrow.
//!
//! Semantics, as the [`Storage`] contract asks:
//! - blob names are `prefix/name`, exactly as PBM lays them out, and go through
//!   `object_store` unchanged (`Path::parse`, never `Path::from`, which would
//!   percent-encode characters such as `%`, `#` or `~` into different blob names);
//! - `save` streams: one Put Blob for inputs that fit one block, otherwise blocks are
//!   staged in parallel (Put Block) and committed by one Put Block List, so a blob
//!   appears under its name only when complete. A failed or cancelled save commits
//!   nothing; the staged blocks are uncommitted and Azure discards them after a week;
//! - `list` pages through List Blobs with the raw name prefix (object_store's `list`
//!   would only match whole `/` segments) and returns names in Azure's order, which is
//!   name order;
//! - `delete` goes through Blob Batch (object_store's only delete) with a shared key or
//!   Entra ID, and through a plain Delete Blob with a SAS (Azurite rejects a batch
//!   authorized by a SAS);
//! - `copy` is the server-side Copy Blob, then, as PBM does, a wait while the copy is
//!   pending: Azure only says a same-account copy *can* complete synchronously.
//!
//! Azurite stores a `\` in a blob name as `/` (so the tests avoid it); PBM never writes one.

use crate::io::read_part;
use crate::{
    check_name, ByteReader, ErrorKind, ObjectMeta, Result, Storage, StorageError, StorageType,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::azure::{split_sas, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, ReqwestConnector,
};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::{Method, Signer};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig,
};
use rbm_protocol::config::Retryer;
use rbm_protocol::AzureConf;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use url::Url;

const KIND: StorageType = StorageType::Azure;
const MIB: u64 = 1 << 20;

/// PBM's block size for `UploadStream`.
const DEFAULT_BLOCK: u64 = 10 * MIB;
/// Azure accepts blocks of any size; this floor only keeps a typo in `uploadPartSize`
/// from turning an upload into millions of requests. Small enough for tests.
const MIN_BLOCK: u64 = 64 << 10;
/// Azure's largest block (service versions since 2019-12-12).
const MAX_BLOCK: u64 = 4000 * MIB;
/// Azure's limit of committed blocks per blob.
const MAX_BLOCKS: u64 = 50_000;
/// When the size hint was too low (or absent), the block size doubles every this many
/// blocks so that an upload does not run into [`MAX_BLOCKS`]: 10 MiB blocks reach
/// about 3 TB before the limit instead of 488 GiB.
const BLOCKS_PER_SIZE_STEP: u64 = 10_000;

/// PBM's Azure retryer defaults (`pbm/storage/azure`).
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_MIN_RETRY_DELAY: Duration = Duration::from_millis(800);
const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// `object_store` also stops retrying once a request has been going on for this long,
/// counted from its first attempt, which includes the time a long download streamed.
/// PBM bounds retries by count only, so this is set out of the way.
const RETRY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How long a presigned URL for checking a copy's status stays valid.
const COPY_URL_VALIDITY: Duration = Duration::from_secs(3600);
/// How long `copy` waits for a pending server-side copy.
const COPY_WAIT_LIMIT: Duration = Duration::from_secs(3600);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// reqwest's read timeout runs from the start of a request to its response headers
/// (so it bounds a block's upload) and then between body chunks (a stalled download).
/// No overall timeout: a whole-blob download streams for as long as it needs.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Blob storage in one container of one account.
pub struct Azure {
    store: MicrosoftAzure,
    ctx: Arc<Ctx>,
    /// Blob name prefix without leading or trailing `/`; empty for none.
    prefix: String,
    block_size: u64,
    concurrency: usize,
    /// The SAS query pairs when authenticating with a SAS token, for the requests
    /// object_store cannot make (`delete` with a SAS, the copy status).
    sas: Option<Vec<(String, String)>>,
    /// A plain HTTP client (same options) for the requests object_store cannot make.
    http: HttpClient,
    retry: RetryConfig,
    /// Blobs per List Blobs page; `None` is Azure's maximum, 5,000.
    list_page_size: Option<usize>,
    /// Set once a request showed that the container exists, so that a missing blob
    /// found by a bodiless HEAD needs no extra request to tell it from a missing
    /// container.
    container_seen: AtomicBool,
}

/// What error messages need, shared with the readers that outlive a call.
struct Ctx {
    endpoint: String,
    account: String,
    container: String,
    auth: &'static str,
    /// Every form in which a credential could show up in a message, to scrub it.
    secrets: Vec<String>,
}

impl fmt::Debug for Azure {
    // Hand-written: `MicrosoftAzure`'s derived Debug prints SAS tokens in clear.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azure")
            .field("location", &self.location())
            .field("account", &self.ctx.account)
            .field("auth", &self.ctx.auth)
            .field("block_size", &self.block_size)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Azure {
    /// Sets up the client for `conf`; `node` (this agent's `host:port`) selects an
    /// `endpointUrlMap` entry. Makes no request: a wrong key or a missing container
    /// shows on first use.
    ///
    /// # Errors
    /// An invalid endpoint, prefix, SAS token or key, or no credentials at all.
    pub fn new(conf: &AzureConf, node: Option<&str>) -> Result<Self> {
        let container = conf.container.trim();
        if container.is_empty() {
            return Err(config_err("storage.azure.container must not be empty"));
        }
        let endpoint = node
            .and_then(|n| conf.endpoint_url_map.as_ref()?.get(n))
            .or(conf.endpoint_url.as_ref())
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
        let account = conf.account.trim();
        let endpoint = match endpoint {
            Some(e) => e,
            None if !account.is_empty() => format!("https://{account}.blob.core.windows.net"),
            None => {
                return Err(config_err(
                    "storage.azure.account (or endpointUrl) must be set",
                ))
            }
        };
        // The URL is never echoed: a misplaced SAS token would be in it.
        let url = Url::parse(&endpoint)
            .map_err(|e| config_err(format!("storage.azure.endpointUrl is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_err(
                "storage.azure.endpointUrl must be http:// or https://",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(config_err(
                "storage.azure.endpointUrl must be a plain URL (put a SAS token in credentials.sasToken)",
            ));
        }
        let account = if account.is_empty() {
            account_from_url(&url)
        } else {
            account.to_string()
        };
        let prefix = conf.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && Path::parse(&prefix).is_err() {
            return Err(config_err(format!(
                "storage.azure.prefix {prefix:?} is not a valid blob name prefix"
            )));
        }

        let client = ClientOptions::new()
            .with_allow_http(url.scheme() == "http")
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout_disabled()
            .with_read_timeout(READ_TIMEOUT);
        let retry = retry_config(conf.retryer.as_ref());
        let http = ReqwestConnector::default()
            .connect(&client)
            .map_err(|e| config_err(format!("HTTP client: {e}")))?;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&account)
            .with_container_name(container)
            .with_endpoint(endpoint.clone())
            .with_client_options(client)
            .with_retry(retry.clone());
        let mut sas_pairs = None;

        let creds = &conf.credentials;
        let mut secrets = Vec::new();
        let auth = if !creds.key.is_empty() {
            let key = creds.key.expose().trim();
            secrets.push(key.to_string());
            builder = builder
                .with_access_key(key)
                .with_credential_type("access_key");
            "shared key"
        } else if !creds.sas_token.is_empty() {
            let sas = creds.sas_token.expose().trim();
            secrets.push(sas.to_string());
            let pairs = split_sas(sas).map_err(|_| {
                config_err(
                    "storage.azure.credentials.sasToken is not a SAS query string (sv=...&sig=...)",
                )
            })?;
            for (k, v) in &pairs {
                if k == "sig" {
                    secrets.push(v.clone());
                }
            }
            sas_pairs = Some(pairs.clone());
            builder = builder
                .with_sas_authorization(pairs)
                .with_credential_type("sas_token");
            "SAS token"
        } else if creds.use_azure_identity {
            builder = with_identity_from_env(builder, &mut secrets);
            "Entra ID"
        } else {
            return Err(config_err(
                "storage.azure.credentials: set key (shared key), sasToken or useAzureIdentity",
            ));
        };
        // Credentials also travel percent-encoded (SAS in URLs, a key in a query).
        let encoded: Vec<String> = secrets
            .iter()
            .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        secrets.extend(encoded);
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();

        let ctx = Arc::new(Ctx {
            endpoint,
            account,
            container: container.to_string(),
            auth,
            secrets,
        });
        let store = builder
            .build()
            .map_err(|e| config_err(ctx.redact(&format!("Azure client: {e}"))))?;

        let block_size = conf
            .upload_part_size
            .unwrap_or(DEFAULT_BLOCK)
            .clamp(MIN_BLOCK, MAX_BLOCK);
        let concurrency = conf
            .upload_concurrency
            .map_or_else(default_concurrency, |c| {
                usize::try_from(c).unwrap_or(usize::MAX).max(1)
            });
        Ok(Self {
            store,
            ctx,
            prefix,
            block_size,
            concurrency,
            sas: sas_pairs,
            http,
            retry,
            list_page_size: None,
            container_seen: AtomicBool::new(false),
        })
    }

    /// Lists `n` blobs per request instead of Azure's 5,000, so that tests reach the
    /// continuation of a listing without storing thousands of blobs.
    #[must_use]
    pub fn with_list_page_size(mut self, n: usize) -> Self {
        self.list_page_size = Some(n.max(1));
        self
    }

    fn path(&self, op: &'static str, name: &str) -> Result<Path> {
        check_name(KIND, op, name)?;
        let full = self.full_name(name);
        // check_name leaves control characters, which blob names cannot carry.
        Path::parse(&full).map_err(|_| {
            StorageError::new(
                ErrorKind::Other,
                KIND,
                op,
                name,
                "invalid object name (control characters are not allowed in blob names)",
            )
        })
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn err(&self, op: &'static str, object: &str, e: &object_store::Error) -> StorageError {
        self.ctx.classify(op, object, e)
    }

    /// PBM's block size: the configured one, raised so that `size_hint` fits in the
    /// block limit with 10% to spare.
    fn block_size_for(&self, size_hint: Option<u64>) -> u64 {
        let needed = size_hint.map_or(0, |s| (s / MAX_BLOCKS).saturating_mul(11) / 10 + 1);
        self.block_size.max(needed).min(MAX_BLOCK)
    }

    /// Tells a missing blob from a missing container after a 404 that does not say
    /// which (a HEAD has no body; Blob Batch says only 404). Only a missing container
    /// overrides the 404: credentials that may not list (a SAS without `l`) or a
    /// failing check leave the blob missing.
    async fn check_container(&self, op: &'static str, object: &str) -> Result<()> {
        if self.container_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let opts = PaginatedListOptions {
            max_keys: Some(1),
            ..Default::default()
        };
        match self.store.list_paginated(None, opts).await {
            Ok(_) => {
                self.container_seen.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => match self.err(op, object, &e) {
                err if err.kind == ErrorKind::NoBucket => Err(err),
                _ => Ok(()),
            },
        }
    }

    async fn read_input(
        name: &str,
        data: &mut ByteReader,
        want: u64,
        cancel: &CancellationToken,
    ) -> Result<Bytes> {
        let want = usize::try_from(want).unwrap_or(usize::MAX);
        tokio::select! {
            // Checked first, so that an already-cancelled save does no work.
            biased;
            _ = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
            r = read_part(data, want) => r.map_err(|e| {
                let mut err = StorageError::io(KIND, "save", name, &e);
                err.message = format!("reading the input: {}", err.message);
                err
            }),
        }
    }

    async fn put_single(
        &self,
        path: &Path,
        name: &str,
        data: Bytes,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let n = data.len() as u64;
        tokio::select! {
            // Checked first, so that an already-cancelled save does no work.
            biased;
            _ = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
            r = self.store.put(path, PutPayload::from(data)) => {
                r.map_err(|e| self.err("save", name, &e))?;
                self.container_seen.store(true, Ordering::Relaxed);
                Ok(n)
            }
        }
    }

    /// Stages every block of the input, at most `concurrency` in flight, and returns the
    /// bytes staged. Memory: the blocks in flight plus the one being read.
    async fn stage_blocks(
        &self,
        upload: &mut dyn MultipartUpload,
        name: &str,
        data: &mut ByteReader,
        mut block: u64,
        [first, second]: [Bytes; 2],
        cancel: &CancellationToken,
    ) -> Result<u64> {
        // Dropping the set (on error or cancellation) aborts the blocks in flight.
        let mut tasks = JoinSet::new();
        let mut total = 0u64;
        let mut count = 0u64;
        let mut next = Some(second);
        let mut part = first;
        loop {
            while tasks.len() >= self.concurrency {
                if let Some(r) = tasks.join_next().await {
                    self.staged(name, r)?;
                }
            }
            if count == MAX_BLOCKS {
                return Err(StorageError::new(
                    ErrorKind::Other,
                    KIND,
                    "save",
                    name,
                    format!(
                        "the object needs more than {MAX_BLOCKS} blocks; pass a size hint or raise uploadPartSize"
                    ),
                ));
            }
            total += part.len() as u64;
            count += 1;
            tasks.spawn(upload.put_part(PutPayload::from(part)));
            if count.is_multiple_of(BLOCKS_PER_SIZE_STEP) && block < MAX_BLOCK {
                block = (block * 2).min(MAX_BLOCK);
                tracing::debug!(name, block, "azure: raising the block size");
            }
            // Fail fast instead of reading (maybe slowly) more input for a doomed upload.
            while let Some(r) = tasks.try_join_next() {
                self.staged(name, r)?;
            }
            part = match next.take() {
                Some(p) => p,
                None => Self::read_input(name, data, block, cancel).await?,
            };
            if part.is_empty() {
                break;
            }
        }
        while let Some(r) = tasks.join_next().await {
            self.staged(name, r)?;
        }
        Ok(total)
    }

    fn staged(
        &self,
        name: &str,
        r: std::result::Result<object_store::Result<()>, tokio::task::JoinError>,
    ) -> Result<()> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err("save", name, &e)),
            Err(e) => Err(StorageError::new(
                ErrorKind::Other,
                KIND,
                "save",
                name,
                format!("block upload task failed: {e}"),
            )),
        }
    }

    /// The blob's URL with `sas` appended: a request object_store cannot make.
    fn sas_url(
        &self,
        op: &'static str,
        name: &str,
        path: &Path,
        sas: &[(String, String)],
    ) -> Result<Url> {
        let bad_url = || {
            StorageError::new(
                ErrorKind::Config,
                KIND,
                op,
                name,
                "storage.azure.endpointUrl cannot address blobs",
            )
        };
        let mut url = Url::parse(&self.ctx.endpoint).map_err(|_| bad_url())?;
        url.path_segments_mut()
            .map_err(|()| bad_url())?
            .pop_if_empty()
            .push(&self.ctx.container)
            .extend(path.parts());
        url.query_pairs_mut().extend_pairs(sas);
        Ok(url)
    }

    /// Sends a request whose URL carries its own authorization (a SAS), retried on
    /// transient failures like object_store's requests. Any non-2xx is an error.
    async fn send_presigned(
        &self,
        op: &'static str,
        name: &str,
        method: Method,
        url: &Url,
    ) -> Result<HttpResponse> {
        let mut delay = self.retry.backoff.init_backoff;
        let mut attempt = 0;
        loop {
            let mut req = HttpRequest::new(HttpRequestBody::empty());
            *req.method_mut() = method.clone();
            *req.uri_mut() = url.as_str().parse().map_err(|_| {
                StorageError::new(
                    ErrorKind::Other,
                    KIND,
                    op,
                    name,
                    "cannot build the request URL",
                )
            })?;
            let failure = match self.http.execute(req).await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .into_body()
                        .bytes()
                        .await
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    Failure::from_response(status, &body)
                }
                Err(e) => Failure::from_transport(&e),
            };
            let err = self.ctx.classify_failure(op, name, failure);
            match err.kind {
                ErrorKind::Transient | ErrorKind::Unreachable
                    if attempt < self.retry.max_retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.backoff.max_backoff);
                }
                _ => return Err(err),
            }
        }
    }

    /// Waits until a Copy Blob into `dst` is done, as PBM does: within one account it
    /// usually is when Copy Blob returns, but Azure does not promise it, and a reader
    /// of a pending copy would see an incomplete blob. object_store does not expose
    /// the copy status, so this reads it with a HEAD on a presigned URL. When no URL
    /// can be presigned or the credentials may not read, the copy is taken as done
    /// (a warning says so): Copy Blob itself succeeded.
    async fn wait_for_copy(&self, to: &str, dst: &Path) -> Result<()> {
        let url = match &self.sas {
            Some(sas) => self.sas_url("copy", to, dst, sas)?,
            None => match self
                .store
                .signed_url(Method::GET, dst, COPY_URL_VALIDITY)
                .await
            {
                Ok(u) => u,
                Err(e) => {
                    let e = self.err("copy", to, &e);
                    tracing::warn!(object = to, "azure: cannot check the copy status: {e}");
                    return Ok(());
                }
            },
        };
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let resp = match self.send_presigned("copy", to, Method::HEAD, &url).await {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::Auth => {
                    tracing::warn!(object = to, "azure: cannot check the copy status: {e}");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let header = |h: &str| {
                resp.headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match header("x-ms-copy-status").as_deref() {
                None | Some("success") => return Ok(()),
                Some("pending") if started.elapsed() < COPY_WAIT_LIMIT => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Some("pending") => {
                    return Err(StorageError::new(
                        ErrorKind::Transient,
                        KIND,
                        "copy",
                        to,
                        format!("server-side copy still pending after {COPY_WAIT_LIMIT:?}"),
                    ))
                }
                Some(other) => {
                    let why = header("x-ms-copy-status-description").unwrap_or_default();
                    return Err(StorageError::new(
                        ErrorKind::Other,
                        KIND,
                        "copy",
                        to,
                        self.ctx.redact(&format!("server-side copy {other}: {why}")),
                    ));
                }
            }
        }
    }

    fn reader(&self, op: &'static str, name: &str, r: object_store::GetResult) -> ByteReader {
        let ctx = Arc::clone(&self.ctx);
        let name = name.to_string();
        let s = r
            .into_stream()
            .map_err(move |e| ctx.classify(op, &name, &e).into_io());
        Box::new(StreamReader::new(s))
    }

    /// One page of the listing under the raw blob-name prefix `raw`.
    async fn list_page(
        &self,
        prefix: &str,
        raw: Option<&str>,
        token: Option<String>,
    ) -> Result<(Vec<ObjectMeta>, Option<String>)> {
        let opts = PaginatedListOptions {
            page_token: token,
            max_keys: self.list_page_size,
            ..Default::default()
        };
        let page = self
            .store
            .list_paginated(raw, opts)
            .await
            .map_err(|e| self.err("list", prefix, &e))?;
        self.container_seen.store(true, Ordering::Relaxed);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let objects = page
            .result
            .objects
            .into_iter()
            .filter_map(|m| {
                let name = m.location.as_ref().strip_prefix(strip.as_str())?;
                Some(ObjectMeta {
                    name: name.to_string(),
                    size: m.size,
                })
            })
            .collect();
        Ok((objects, page.page_token))
    }
}

fn config_err(msg: impl Into<String>) -> StorageError {
    StorageError::config(KIND, msg)
}

/// The account name from an endpoint, for SAS-only configs that leave `account` empty:
/// the first path segment of an IP-style URL (Azurite), else the first DNS label.
fn account_from_url(url: &Url) -> String {
    let seg = url
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty());
    match (url.host(), seg) {
        (Some(url::Host::Domain(d)), _) if d != "localhost" => {
            d.split('.').next().unwrap_or(d).to_string()
        }
        (_, Some(s)) => s.to_string(),
        _ => String::from("unknown"),
    }
}

/// PBM's `NumCPU/2`, with at least two blocks in flight.
fn default_concurrency() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2).max(2)
}

fn retry_config(r: Option<&Retryer>) -> RetryConfig {
    let retries = r.and_then(|r| r.num_max_retries).unwrap_or(DEFAULT_RETRIES);
    // object_store draws each delay from [min, previous × 2): a zero minimum or a
    // maximum below the minimum would make that range empty, which panics.
    let min = r
        .and_then(|r| r.min_retry_delay)
        .map_or(DEFAULT_MIN_RETRY_DELAY, |d| d.0)
        .max(Duration::from_millis(1));
    let max = r
        .and_then(|r| r.max_retry_delay)
        .map_or(DEFAULT_MAX_RETRY_DELAY, |d| d.0)
        .max(min);
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: min,
            max_backoff: max,
            base: 2.0,
        },
        max_retries: usize::try_from(retries).unwrap_or(usize::MAX),
        retry_timeout: RETRY_TIMEOUT,
    }
}

/// Entra ID from the standard environment variables (as the Azure SDKs and the AKS
/// workload identity webhook set them). object_store then picks workload identity
/// (client id + tenant + federated token file), else a client secret, else the
/// managed identity endpoint (user-assigned when a client id is set).
fn with_identity_from_env(
    mut b: MicrosoftAzureBuilder,
    secrets: &mut Vec<String>,
) -> MicrosoftAzureBuilder {
    use object_store::azure::AzureConfigKey as K;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    for (var, key) in [
        ("AZURE_CLIENT_ID", K::ClientId),
        ("AZURE_TENANT_ID", K::AuthorityId),
        ("AZURE_FEDERATED_TOKEN_FILE", K::FederatedTokenFile),
        ("AZURE_AUTHORITY_HOST", K::AuthorityHost),
        ("IDENTITY_ENDPOINT", K::MsiEndpoint),
    ] {
        if let Some(v) = env(var) {
            b = b.with_config(key, v);
        }
    }
    if let Some(secret) = env("AZURE_CLIENT_SECRET") {
        secrets.push(secret.clone());
        b = b.with_config(K::ClientSecret, secret);
    }
    b
}

/// What an `object_store` error says, dug out of its text and source chain: the
/// structured parts (`RetryError`, status codes) are private to object_store.
struct Failure {
    status: Option<u16>,
    /// Azure's error code (`ContainerNotFound`, `AuthenticationFailed`, ...).
    code: Option<String>,
    /// First line of Azure's error message.
    message: Option<String>,
    /// The transport failure, when the request got no response.
    transport: Option<(HttpErrorKind, String)>,
    text: String,
}

impl Failure {
    fn of(e: &object_store::Error) -> Self {
        use object_store::Error as E;
        let text = e.to_string();
        let mut transport = None;
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = src {
            if let Some(h) = s.downcast_ref::<HttpError>() {
                transport = Some((h.kind(), error_chain(h)));
                break;
            }
            src = s.source();
        }
        let status = match e {
            E::NotFound { .. } => Some(404),
            E::PermissionDenied { .. } => Some(403),
            E::Unauthenticated { .. } => Some(401),
            E::Precondition { .. } => Some(412),
            E::AlreadyExists { .. } => Some(409),
            E::NotModified { .. } => Some(304),
            _ => None,
        }
        .or_else(|| status_in(&text, "status code: "))
        .or_else(|| status_in(&text, "(code: "));
        let code = between(&text, "<Code>", "</Code>").map(str::to_string);
        let message = between(&text, "<Message>", "</Message>")
            .and_then(|m| m.lines().next())
            .map(|m| m.trim().to_string());
        Self {
            status,
            code,
            message,
            transport: if status.is_none() { transport } else { None },
            text,
        }
    }

    /// A response to a request made without object_store.
    fn from_response(status: u16, body: &str) -> Self {
        Self {
            status: Some(status),
            code: between(body, "<Code>", "</Code>").map(str::to_string),
            message: between(body, "<Message>", "</Message>")
                .and_then(|m| m.lines().next())
                .map(|m| m.trim().to_string()),
            transport: None,
            text: format!("HTTP {status}"),
        }
    }

    fn from_transport(e: &HttpError) -> Self {
        let text = error_chain(e);
        Self {
            status: None,
            code: None,
            message: None,
            transport: Some((e.kind(), text.clone())),
            text,
        }
    }

    fn http_summary(&self, status: u16) -> String {
        let mut s = format!("HTTP {status}");
        if let Some(c) = &self.code {
            s.push(' ');
            s.push_str(c);
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            s.push_str(": ");
            s.push_str(m);
        }
        s
    }
}

/// An error and its sources as one line, skipping sources already in the text.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

fn status_in(text: &str, marker: &str) -> Option<u16> {
    let i = text.find(marker)? + marker.len();
    let digits = text.get(i..i + 3)?;
    digits
        .parse::<u16>()
        .ok()
        .filter(|s| (100..600).contains(s))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

impl Ctx {
    fn redact(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    fn classify(&self, op: &'static str, object: &str, e: &object_store::Error) -> StorageError {
        self.classify_failure(op, object, Failure::of(e))
    }

    fn classify_failure(&self, op: &'static str, object: &str, f: Failure) -> StorageError {
        let (kind, message) = match (f.status, &f.transport) {
            (Some(404), _) if f.code.as_deref() == Some("ContainerNotFound") => (
                ErrorKind::NoBucket,
                format!(
                    "container {:?} does not exist at {}",
                    self.container, self.endpoint
                ),
            ),
            (Some(404), _) => (ErrorKind::NotFound, String::new()),
            (Some(s @ (401 | 403)), _) => (
                ErrorKind::Auth,
                format!(
                    "{} (account {:?}, {}, endpoint {}; check storage.azure.account and credentials)",
                    f.http_summary(s),
                    self.account,
                    self.auth,
                    self.endpoint
                ),
            ),
            (Some(s), _) if s == 408 || s == 429 || s >= 500 => {
                (ErrorKind::Transient, f.http_summary(s))
            }
            (Some(s), _) => (ErrorKind::Other, f.http_summary(s)),
            (None, Some((HttpErrorKind::Connect, t))) => (
                ErrorKind::Unreachable,
                format!("cannot connect to {}: {t}", self.endpoint),
            ),
            (
                None,
                Some((
                    HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Request
                    | HttpErrorKind::Decode,
                    t,
                )),
            ) => (ErrorKind::Transient, t.clone()),
            (None, _) => (ErrorKind::Other, f.text.clone()),
        };
        StorageError::new(kind, KIND, op, object, self.redact(&message))
    }
}

#[async_trait]
impl Storage for Azure {
    fn kind(&self) -> StorageType {
        KIND
    }

    fn location(&self) -> String {
        let mut s = format!("{}/{}", self.ctx.endpoint, self.ctx.container);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        s
    }

    async fn save(
        &self,
        name: &str,
        mut data: ByteReader,
        size_hint: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        let path = self.path("save", name)?;
        let block = self.block_size_for(size_hint);
        let first = Self::read_input(name, &mut data, block, cancel).await?;
        if (first.len() as u64) < block {
            return self.put_single(&path, name, first, cancel).await;
        }
        let second = Self::read_input(name, &mut data, block, cancel).await?;
        if second.is_empty() {
            return self.put_single(&path, name, first, cancel).await;
        }
        tracing::debug!(
            name,
            block,
            concurrency = self.concurrency,
            "azure: block upload"
        );
        let mut upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err("save", name, &e))?;
        let staged = tokio::select! {
            // Checked first, so that an already-cancelled save does no work.
            biased;
            _ = cancel.cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
            r = self.stage_blocks(&mut *upload, name, &mut data, block, [first, second], cancel) => r,
        };
        let committed = match staged {
            Ok(_) if cancel.is_cancelled() => Err(StorageError::cancelled(KIND, "save", name)),
            Ok(n) => upload
                .complete()
                .await
                .map(|_| n)
                .map_err(|e| self.err("save", name, &e)),
            Err(e) => Err(e),
        };
        if committed.is_err() {
            // A no-op on Azure (uncommitted blocks expire), kept for the contract.
            let _ = upload.abort().await;
        } else {
            self.container_seen.store(true, Ordering::Relaxed);
        }
        committed
    }

    async fn open(&self, name: &str) -> Result<ByteReader> {
        let path = self.path("open", name)?;
        let r = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.err("open", name, &e))?;
        Ok(self.reader("open", name, r))
    }

    async fn open_range(&self, name: &str, offset: u64, len: u64) -> Result<ByteReader> {
        let path = self.path("open", name)?;
        if len == 0 {
            // Still NotFound for a missing object, as a read of it would be.
            self.stat(name).await?;
            return Ok(Box::new(tokio::io::empty()));
        }
        let opts = GetOptions::new().with_range(Some(offset..offset.saturating_add(len)));
        match self.store.get_opts(&path, opts).await {
            Ok(r) => Ok(self.reader("open", name, r)),
            Err(e) => {
                let err = self.err("open", name, &e);
                if err.kind != ErrorKind::Other {
                    return Err(err);
                }
                // A range starting at or past the end fails (Azure's 416, or
                // object_store's own check of the returned range): that is an empty
                // read of an existing blob, not an error.
                match self.stat(name).await {
                    Ok(m) if m.size <= offset => Ok(Box::new(tokio::io::empty())),
                    Ok(_) => Err(err),
                    Err(mut e) => {
                        e.op = "open";
                        Err(e)
                    }
                }
            }
        }
    }

    async fn stat(&self, name: &str) -> Result<ObjectMeta> {
        let path = self.path("stat", name)?;
        match self.store.head(&path).await {
            Ok(m) => {
                self.container_seen.store(true, Ordering::Relaxed);
                Ok(ObjectMeta {
                    name: name.to_string(),
                    size: m.size,
                })
            }
            Err(e) => {
                let err = self.err("stat", name, &e);
                if err.kind == ErrorKind::NotFound {
                    self.check_container("stat", name).await?;
                }
                Err(err)
            }
        }
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxStream<'a, Result<ObjectMeta>> {
        let raw = self.full_name(prefix);
        let raw = if prefix.is_empty() && !self.prefix.is_empty() {
            format!("{}/", self.prefix)
        } else {
            raw
        };
        // object_store drops a blob named exactly like the listing prefix, yet it
        // matches; it sorts first, so a HEAD supplies it. Names never end with `/`.
        let exact = async move {
            if prefix.is_empty() || prefix.ends_with('/') || self.path("list", prefix).is_err() {
                return Ok(None);
            }
            match self.stat(prefix).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
                Err(mut e) => {
                    e.op = "list";
                    Err(e)
                }
            }
        };
        let head = stream::once(exact)
            .try_filter_map(|m| async move { Ok(m) })
            .boxed();
        let pages = stream::try_unfold(
            (Some(raw), None::<String>, false),
            move |(raw, token, done)| async move {
                if done {
                    return Ok(None);
                }
                let raw_ref = raw.as_deref().filter(|r| !r.is_empty());
                let (objects, next) = self.list_page(prefix, raw_ref, token).await?;
                let done = next.is_none();
                Ok(Some((objects, (raw, next, done))))
            },
        )
        .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .try_filter(move |m| futures::future::ready(m.name != prefix || prefix.is_empty()));
        head.chain(pages).boxed()
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path("delete", name)?;
        if let Some(sas) = &self.sas {
            // object_store deletes through Blob Batch, which Azurite answers with
            // HTTP 500 when a SAS authorizes it; a plain Delete Blob works wherever the
            // SAS grants `d`.
            let url = self.sas_url("delete", name, &path, sas)?;
            return match self
                .send_presigned("delete", name, Method::DELETE, &url)
                .await
            {
                Err(e) if e.kind != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.err("delete", name, &e);
                if err.kind == ErrorKind::NotFound {
                    // Blob Batch reports a missing container as a missing blob.
                    self.check_container("delete", name).await?;
                    return Ok(());
                }
                Err(err)
            }
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let src = self.path("copy", from)?;
        let dst = self.path("copy", to)?;
        self.store
            .copy(&src, &dst)
            .await
            .map_err(|e| self.err("copy", from, &e))?;
        self.wait_for_copy(to, &dst).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbm_protocol::config::{AzureCredentials, GoDuration};
    use rbm_protocol::Secret;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS1ub3QtcmVhbA==";

    fn conf() -> AzureConf {
        AzureConf {
            account: "acct".into(),
            container: "c".into(),
            credentials: AzureCredentials {
                key: Secret::new(KEY),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn endpoint_defaults_and_node_map() {
        let a = Azure::new(&conf(), None).expect("azure");
        assert_eq!(a.location(), "https://acct.blob.core.windows.net/c");
        let mut c = conf();
        c.prefix = "/p/q/".into();
        c.endpoint_url = Some("http://127.0.0.1:1/acct/".into());
        c.endpoint_url_map =
            Some([("n1:27017".to_string(), "http://10.0.0.1:2/acct".to_string())].into());
        let a = Azure::new(&c, Some("n2:27017")).expect("azure");
        assert_eq!(a.location(), "http://127.0.0.1:1/acct/c/p/q");
        let a = Azure::new(&c, Some("n1:27017")).expect("azure");
        assert_eq!(a.location(), "http://10.0.0.1:2/acct/c/p/q");
    }

    #[test]
    fn rejects_bad_configs_without_echoing_secrets() {
        let mut c = conf();
        c.credentials = AzureCredentials::default();
        let e = Azure::new(&c, None).expect_err("no credentials");
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.to_string().contains("sasToken"), "{e}");

        let mut c = conf();
        c.endpoint_url = Some("https://acct.blob.core.windows.net/?sv=1&sig=SECRETSIG".into());
        let e = Azure::new(&c, None).expect_err("query in endpoint");
        assert!(!e.to_string().contains("SECRETSIG"), "{e}");

        let mut c = conf();
        c.credentials.key = Secret::new("not base64 !!");
        let e = Azure::new(&c, None).expect_err("bad key");
        assert!(!e.to_string().contains("not base64 !!"), "{e}");
    }

    #[test]
    fn debug_and_redaction_hide_credentials() {
        let a = Azure::new(&conf(), None).expect("azure");
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(KEY) && dbg.contains("shared key"), "{dbg}");
        let msg = a.ctx.redact(&format!(
            "x {KEY} y {}",
            url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect::<String>()
        ));
        assert_eq!(msg, "x *** y ***");

        let mut c = conf();
        c.credentials = AzureCredentials {
            sas_token: Secret::new(
                "?sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=AbC%2Bd%2Fe%3D",
            ),
            ..Default::default()
        };
        let a = Azure::new(&c, None).expect("azure");
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("AbC") && dbg.contains("SAS"), "{dbg}");
        assert_eq!(
            a.ctx.redact("sig=AbC+d/e= and AbC%2Bd%2Fe%3D"),
            "sig=*** and ***"
        );
    }

    #[test]
    fn entra_id_needs_no_secret_in_the_config() {
        let mut c = conf();
        c.credentials = AzureCredentials {
            use_azure_identity: true,
            ..Default::default()
        };
        let a = Azure::new(&c, None).expect("azure with Entra ID");
        assert!(format!("{a:?}").contains("Entra ID"));
    }

    #[test]
    fn block_size_follows_pbm() {
        let a = Azure::new(&conf(), None).expect("azure");
        assert_eq!(a.block_size_for(None), DEFAULT_BLOCK);
        assert_eq!(a.block_size_for(Some(100 * MIB)), DEFAULT_BLOCK);
        let big = 2000u64 << 30;
        let b = a.block_size_for(Some(big));
        assert!(b * MAX_BLOCKS >= big && b as f64 <= big as f64 / 50_000.0 * 1.1 + 2.0);
        assert_eq!(a.block_size_for(Some(u64::MAX)), MAX_BLOCK);
    }

    #[test]
    fn retry_config_maps_pbm_retryer() {
        let r = retry_config(None);
        assert_eq!(r.max_retries, 3);
        assert_eq!(r.backoff.init_backoff, Duration::from_millis(800));
        assert_eq!(r.backoff.max_backoff, Duration::from_secs(60));
        let r = retry_config(Some(&Retryer {
            num_max_retries: Some(0),
            min_retry_delay: Some(GoDuration(Duration::ZERO)),
            max_retry_delay: Some(GoDuration(Duration::ZERO)),
        }));
        assert_eq!(r.max_retries, 0);
        assert!(r.backoff.init_backoff > Duration::ZERO);
        assert!(r.backoff.max_backoff >= r.backoff.init_backoff);
    }

    #[test]
    fn parses_status_and_azure_code() {
        let t = "Error performing GET http://x in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.\nRequestId:1</Message></Error>";
        assert_eq!(status_in(t, "status code: "), Some(404));
        assert_eq!(between(t, "<Code>", "</Code>"), Some("ContainerNotFound"));
        assert_eq!(status_in("nothing", "status code: "), None);
    }

    #[test]
    fn account_from_endpoint() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert_eq!(
            account_from_url(&u("https://acct.blob.core.windows.net")),
            "acct"
        );
        assert_eq!(
            account_from_url(&u("http://127.0.0.1:10000/devstoreaccount1")),
            "devstoreaccount1"
        );
    }
}
