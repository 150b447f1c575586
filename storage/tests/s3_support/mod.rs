//! Helpers shared by the S3 test binaries (each `tests/*.rs` is its own crate, and not
//! every one uses every helper).
#![allow(dead_code)]

use rbm_protocol::{S3Conf, S3Credentials, Secret};
use rbm_storage::s3::S3;
use rbm_storage::{ByteReader, Storage};
use tokio::io::AsyncReadExt;

pub const MIB: usize = 1 << 20;

pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the S3 backend tests need a running s3s-fs and moto_server. \
             Run them through scripts/test, or export RBM_TEST_S3_ENDPOINT, \
             RBM_TEST_S3_ACCESS_KEY, RBM_TEST_S3_SECRET_KEY, RBM_TEST_S3_BUCKET and \
             RBM_TEST_MOTO_ENDPOINT"
        ),
    }
}

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("rbm-s3t/{tag}-{nanos}")
}

pub fn s3s_conf(prefix: &str) -> S3Conf {
    S3Conf {
        region: "us-east-1".into(),
        endpoint_url: Some(env("RBM_TEST_S3_ENDPOINT")),
        bucket: env("RBM_TEST_S3_BUCKET"),
        prefix: prefix.into(),
        credentials: S3Credentials {
            access_key_id: Secret::new(env("RBM_TEST_S3_ACCESS_KEY")),
            secret_access_key: Secret::new(env("RBM_TEST_S3_SECRET_KEY")),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Deterministic, incompressible-looking bytes (xorshift), so a misplaced part shows.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn reader(v: Vec<u8>) -> ByteReader {
    Box::new(std::io::Cursor::new(v))
}

pub async fn read_all(s: &S3, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    s.open(name)
        .await
        .expect("open")
        .read_to_end(&mut out)
        .await
        .expect("read body");
    out
}

/// A TLS proxy in front of s3s-fs (which speaks plain HTTP only) with the test-only
/// certificate, signed by a CA nobody trusts unless a test says so; returns its
/// `https://` URL. The Host header passes through unchanged, so SigV4 still verifies.
pub async fn tls_proxy() -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let certs = CertificateDer::pem_file_iter(format!("{dir}/test-only.crt"))
        .expect("test certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("test certificate PEM");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/test-only.key")).expect("test key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let upstream = env("RBM_TEST_S3_ENDPOINT")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: not an error here.
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}
