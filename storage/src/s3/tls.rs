//! HTTPS clients for what the SDK's default client does not cover.
//!
//! - `AWS_CA_BUNDLE`: the AWS CLI and the other SDKs add the PEM bundle it names to the
//!   trusted roots; the Rust SDK ignores it, and PBM's Go client fails outright when it is
//!   set. rbm trusts the system roots plus the bundle, and ignores (with a warning) a
//!   bundle it cannot use, so that a stale variable never stops backups.
//! - `insecureSkipTLSVerify`: the SDK's client (aws-smithy-http-client) builds its rustls
//!   configuration internally and offers no way to replace the certificate verifier, so
//!   this is a small client of the same parts (hyper-util's pooled client, hyper-rustls,
//!   rustls with aws-lc) whose only difference is the verifier. It exists for what PBM
//!   users run it against: S3-compatible servers with self-signed certificates on
//!   private networks. Signatures still protect request integrity; confidentiality
//!   against an active attacker is what the setting gives up, as it does in PBM.

use aws_sdk_s3::config::http::HttpResponse;
use aws_smithy_http_client::tls::{self as smithy_tls, rustls_provider::CryptoMode, TrustStore};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// The SDK's HTTPS client with the system roots plus the certificates of the
/// `AWS_CA_BUNDLE` file, or `None` when the variable is unset or names nothing usable.
pub(super) fn ca_bundle_client() -> Option<SharedHttpClient> {
    let path = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty())?;
    let shown = std::path::Path::new(&path).display().to_string();
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            tracing::warn!(path = %shown, "AWS_CA_BUNDLE cannot be read, using the system roots only: {e}");
            return None;
        }
    };
    // The SDK panics on a certificate it cannot parse or use as a trust anchor, so only
    // those that rustls accepts here are passed on, re-encoded one by one.
    let mut store = TrustStore::default();
    let (mut used, mut skipped) = (0usize, 0usize);
    for der in CertificateDer::pem_slice_iter(&pem) {
        let Ok(der) = der else {
            skipped += 1;
            continue;
        };
        if rustls::RootCertStore::empty().add(der.clone()).is_err() {
            skipped += 1;
            continue;
        }
        store = store.with_pem_certificate(to_pem(&der));
        used += 1;
    }
    if used == 0 {
        tracing::warn!(path = %shown, "AWS_CA_BUNDLE holds no usable certificate, using the system roots only");
        return None;
    }
    if skipped > 0 {
        tracing::warn!(path = %shown, skipped, "AWS_CA_BUNDLE: some entries are not usable certificates");
    }
    let ctx = smithy_tls::TlsContext::builder()
        .with_trust_store(store)
        .build()
        .ok()?;
    Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(smithy_tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(ctx)
            .build_https(),
    )
}

fn to_pem(der: &CertificateDer<'_>) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

type Pool = HyperClient<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// Builds the client; `connect_timeout` applies to TCP connects (the SDK's settings
/// carry it too, but the pool is shared by all of them and needs one value).
pub(super) fn insecure_client(connect_timeout: Duration) -> Result<SharedHttpClient, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let pool: Pool = HyperClient::builder(TokioExecutor::new()).build(https);
    Ok(SharedHttpClient::new(InsecureClient { pool }))
}

#[derive(Clone)]
struct InsecureClient {
    pool: Pool,
}

impl std::fmt::Debug for InsecureClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InsecureClient(TLS certificates not verified)")
    }
}

impl HttpClient for InsecureClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // Connectors share the pool; only the read timeout differs between them (uploads
        // get a longer one), so handing out a new one per settings keeps connections.
        SharedHttpConnector::new(InsecureConnector {
            pool: self.pool.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Clone)]
struct InsecureConnector {
    pool: Pool,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for InsecureConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsecureConnector")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpConnector for InsecureConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let pool = self.pool.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let sent = pool.request(request);
            let response = match read_timeout {
                // Like the SDK's own read timeout: until the response head arrives.
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within {limit:?}").into())
                })?,
                None => sent.await,
            }
            .map_err(|e| {
                // The retry policy treats I/O errors (refused, reset, TLS) as transient.
                if e.is_connect() {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let response = response.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Accepts any server certificate, but still checks the handshake signatures so that
/// the connection is at least consistent with the certificate presented.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
