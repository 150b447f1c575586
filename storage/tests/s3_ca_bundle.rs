//! `AWS_CA_BUNDLE` adds trusted roots, as in the AWS CLI and the other SDKs (the Rust SDK
//! ignores it; PBM fails when it is set), and a bundle rbm cannot use is ignored.
//!
//! Its own test binary, with one test, because it changes the process environment: no
//! other test may run meanwhile. Needs the same `RBM_TEST_S3_*` variables as
//! `s3_backend.rs`, and fails when they are unset.

mod s3_support;

use rbm_protocol::Retryer;
use rbm_storage::s3::S3;
use rbm_storage::{ErrorKind, Storage};
use s3_support::{data, read_all, reader, s3s_conf, tls_proxy, unique, MIB};
use tokio_util::sync::CancellationToken;

#[test]
fn aws_ca_bundle_is_trusted_and_a_broken_one_ignored() {
    let cert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/test-only-ca.crt"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = rt.block_on(tls_proxy());
    let mut conf = s3s_conf(&unique("bundle"));
    conf.endpoint_url = Some(url);
    conf.upload_part_size = Some(5 << 20);
    conf.retryer = Some(Retryer {
        num_max_retries: Some(0),
        ..Default::default()
    });

    // Changed only between requests, on this single thread, so nothing reads it meanwhile.
    std::env::set_var("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
    rt.block_on(async {
        let s = S3::new(&conf, None).await.expect("backend");
        let e = s
            .stat("x")
            .await
            .expect_err("the test certificate is not trusted yet");
        assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    });

    std::env::set_var("AWS_CA_BUNDLE", cert);
    rt.block_on(async {
        let s = S3::new(&conf, None).await.expect("backend");
        let want = data(11 * MIB + 3, 21);
        s.save(
            "b.bin",
            reader(want.clone()),
            None,
            &CancellationToken::new(),
        )
        .await
        .expect("verified TLS with the bundle's certificate");
        assert!(read_all(&s, "b.bin").await == want);
    });

    // Missing or certificate-less bundles are ignored: plain HTTP keeps working.
    let mut plain = s3s_conf(&unique("bundle"));
    plain.retryer = conf.retryer.clone();
    for bad in ["/nonexistent/rbm-ca.pem", env!("CARGO_MANIFEST_DIR")] {
        std::env::set_var("AWS_CA_BUNDLE", bad);
        rt.block_on(async {
            let s = S3::new(&plain, None)
                .await
                .expect("a bad bundle is not fatal");
            s.save(
                "p.bin",
                reader(b"ok".to_vec()),
                None,
                &CancellationToken::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("AWS_CA_BUNDLE={bad}: {e}"));
        });
    }
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/README.md");
    std::env::set_var("AWS_CA_BUNDLE", readme);
    rt.block_on(async {
        let s = S3::new(&plain, None)
            .await
            .expect("a bundle without certificates is not fatal");
        assert_eq!(read_all(&s, "p.bin").await, b"ok");
    });
}
