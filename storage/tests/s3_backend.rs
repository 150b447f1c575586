//! S3-specific behaviour of the S3 backend, against real servers: s3s-fs (checks SigV4
//! and Content-MD5 like AWS) and moto (implements ListMultipartUploads and SSE-C).
//! The generic contract (sizes, listings, ranges) is the conformance suite's job.
//!
//! Needs `RBM_TEST_S3_ENDPOINT`, `RBM_TEST_S3_ACCESS_KEY`, `RBM_TEST_S3_SECRET_KEY`,
//! `RBM_TEST_S3_BUCKET` (s3s-fs, bucket already created) and `RBM_TEST_MOTO_ENDPOINT`;
//! `scripts/test` sets them. Unset variables fail the tests rather than skip them, so a
//! broken set-up cannot pass for a green run.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rbm_protocol::config::{Retryer, S3Credentials, ServerSideEncryption};
use rbm_protocol::{GoDuration, S3Conf, Secret};
use rbm_storage::s3::S3;
use rbm_storage::{list_all, ErrorKind, Storage};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_util::sync::CancellationToken;

mod s3_support;
use s3_support::{data, env, read_all, reader, s3s_conf, tls_proxy, unique, MIB};

const MOTO_BUCKET: &str = "rbm-s3-backend-test";
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Every test runs with the CA variables that real PBM trips over
/// ("unable to add custom RootCAs") pointing at the system store, as on user machines.
/// Set once, before any test builds a client, so no thread reads the environment while
/// it changes.
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for var in ["AWS_CA_BUNDLE", "SSL_CERT_FILE"] {
            if std::env::var_os(var).is_none() {
                std::env::set_var(var, SYSTEM_CA);
            }
        }
    });
}

fn moto_conf(prefix: &str) -> S3Conf {
    S3Conf {
        region: "us-east-1".into(),
        endpoint_url: Some(env("RBM_TEST_MOTO_ENDPOINT")),
        bucket: MOTO_BUCKET.into(),
        prefix: prefix.into(),
        credentials: S3Credentials {
            access_key_id: Secret::new("moto-key"),
            secret_access_key: Secret::new("moto-secret"),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A raw SDK client on moto, for what the backend does not expose (bucket creation,
/// ListMultipartUploads, ETags).
async fn moto_client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(env("RBM_TEST_MOTO_ENDPOINT"))
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            "moto-key",
            "moto-secret",
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    // moto keeps buckets in memory, so a restarted server has none; "already owned"
    // is the normal answer on every run but the first.
    if let Err(e) = client.create_bucket().bucket(MOTO_BUCKET).send().await {
        let e = e.into_service_error();
        assert!(
            e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists(),
            "cannot create the moto bucket: {e:?}"
        );
    }
    client
}

async fn pending_uploads(client: &aws_sdk_s3::Client, prefix: &str) -> usize {
    client
        .list_multipart_uploads()
        .bucket(MOTO_BUCKET)
        .prefix(prefix)
        .send()
        .await
        .expect("ListMultipartUploads on moto")
        .uploads()
        .len()
}

async fn backend(conf: &S3Conf) -> S3 {
    setup();
    S3::new(conf, None)
        .await
        .expect("S3 backend from a valid config")
}

/// Yields its bytes, then either fails or never ends (to be cancelled).
struct Scripted {
    data: Vec<u8>,
    pos: usize,
    then_fail: bool,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.data.len() {
            let n = buf
                .remaining()
                .min(self.data.len() - self.pos)
                .min(64 << 10);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        if self.then_fail {
            Poll::Ready(Err(std::io::Error::other("injected input failure")))
        } else {
            // Never woken: only cancellation ends this save.
            Poll::Pending
        }
    }
}

#[tokio::test]
async fn multipart_with_parts_in_flight_is_byte_identical() {
    for (server, mut conf) in [
        ("s3s-fs", s3s_conf(&unique("mp"))),
        ("moto", moto_conf(&unique("mp"))),
    ] {
        if server == "moto" {
            moto_client().await;
        }
        conf.upload_part_size = Some(5 << 20);
        conf.upload_concurrency = Some(4);
        let s = backend(&conf).await;
        // 4 full parts and a short fifth, so several are in flight at once.
        let want = data(4 * 5 * MIB + 12_345, 7);
        let n = s
            .save(
                "big.bin",
                reader(want.clone()),
                None,
                &CancellationToken::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{server}: multipart save: {e}"));
        assert_eq!(n, want.len() as u64, "{server}");
        assert_eq!(
            s.stat("big.bin").await.expect("stat").size,
            want.len() as u64,
            "{server}"
        );
        assert!(
            read_all(&s, "big.bin").await == want,
            "{server}: bytes differ after multipart upload"
        );
        let mut mid = Vec::new();
        s.open_range("big.bin", (5 * MIB - 10) as u64, 20)
            .await
            .expect("range across a part boundary")
            .read_to_end(&mut mid)
            .await
            .expect("read range");
        assert_eq!(mid, want[5 * MIB - 10..5 * MIB + 10], "{server}");
        s.delete("big.bin").await.expect("delete");
    }
}

/// Requests in flight through a plain TCP proxy to s3s-fs: the highest count seen.
#[derive(Default)]
struct InFlight {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

/// A proxy that counts HTTP/1.1 requests in flight: a connection's request starts when
/// the client sends while none is outstanding, and ends when the server starts to answer.
async fn counting_proxy() -> (String, std::sync::Arc<InFlight>) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    let stats = Arc::new(InFlight::default());
    let upstream = env("RBM_TEST_S3_ENDPOINT")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let st = stats.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let active = Arc::new(AtomicBool::new(false));
            let (st_up, active_up) = (st.clone(), active.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    if !active_up.swap(true, SeqCst) {
                        let now = st_up.now.fetch_add(1, SeqCst) + 1;
                        st_up.max.fetch_max(now, SeqCst);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let st_down = st.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n @ 1..) = sr.read(&mut buf).await {
                    if active.swap(false, SeqCst) {
                        st_down.now.fetch_sub(1, SeqCst);
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, stats)
}

#[tokio::test]
async fn parts_go_up_in_parallel_within_the_limit() {
    let (url, stats) = counting_proxy().await;
    let mut conf = s3s_conf(&unique("par"));
    conf.endpoint_url = Some(url);
    conf.upload_part_size = Some(5 << 20);
    conf.upload_concurrency = Some(3);
    let s = backend(&conf).await;
    let want = data(8 * 5 * MIB + 1, 13);
    s.save(
        "par.bin",
        reader(want.clone()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("multipart save through the proxy");
    let max = stats.max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=3).contains(&max),
        "expected 2-3 parts in flight (uploadConcurrency 3), saw {max}"
    );
    assert!(read_all(&s, "par.bin").await == want);
}

#[tokio::test]
async fn part_count_and_single_put_on_moto() {
    let client = moto_client().await;
    let prefix = unique("etag");
    let mut conf = moto_conf(&prefix);
    conf.upload_part_size = Some(5 << 20);
    let s = backend(&conf).await;
    let cancel = CancellationToken::new();
    // Exactly one part: one PutObject (plain ETag), not a one-part multipart upload.
    s.save("one.bin", reader(data(5 * MIB, 1)), None, &cancel)
        .await
        .expect("save one part");
    // Three parts (5 + 5 + 1 MiB): a multipart ETag ends in "-3".
    s.save("three.bin", reader(data(11 * MIB, 2)), None, &cancel)
        .await
        .expect("save three parts");
    let etag = |key: String| {
        let client = client.clone();
        async move {
            client
                .head_object()
                .bucket(MOTO_BUCKET)
                .key(key)
                .send()
                .await
                .expect("head")
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_string()
        }
    };
    let one = etag(format!("{prefix}/one.bin")).await;
    let three = etag(format!("{prefix}/three.bin")).await;
    assert!(
        !one.contains('-'),
        "a one-part input must be a single PutObject, ETag {one}"
    );
    assert!(
        three.ends_with("-3"),
        "expected a 3-part upload, ETag {three}"
    );
}

#[tokio::test]
async fn size_hint_raises_the_part_size() {
    // maxUploadParts 2 with 5 MiB parts holds 10 MiB; a 12 MiB hint must raise the part
    // size (to 9 MiB), and without the hint the same input must be refused clearly.
    let mut conf = s3s_conf(&unique("hint"));
    conf.upload_part_size = Some(5 << 20);
    conf.max_upload_parts = Some(2);
    let s = backend(&conf).await;
    let want = data(12 * MIB, 3);
    let cancel = CancellationToken::new();
    s.save(
        "hinted.bin",
        reader(want.clone()),
        Some(want.len() as u64),
        &cancel,
    )
    .await
    .expect("save with a size hint");
    assert!(read_all(&s, "hinted.bin").await == want);

    let e = s
        .save("unhinted.bin", reader(want), None, &cancel)
        .await
        .expect_err("more than maxUploadParts parts must fail");
    assert!(e.to_string().contains("maxUploadParts"), "{e}");
    let gone = s.stat("unhinted.bin").await.expect_err("nothing saved");
    assert_eq!(gone.kind, ErrorKind::NotFound, "{gone}");
}

#[tokio::test]
async fn failing_input_aborts_the_upload() {
    let client = moto_client().await;
    let prefix = unique("abort");
    let mut conf = moto_conf(&prefix);
    conf.upload_part_size = Some(5 << 20);
    let s = backend(&conf).await;
    let input = Scripted {
        data: data(12 * MIB, 4),
        pos: 0,
        then_fail: true,
    };
    let e = s
        .save(
            "broken.bin",
            Box::new(input),
            None,
            &CancellationToken::new(),
        )
        .await
        .expect_err("a failing input must fail the save");
    assert!(e.to_string().contains("injected input failure"), "{e}");
    let st = s
        .stat("broken.bin")
        .await
        .expect_err("no object after a failed save");
    assert_eq!(st.kind, ErrorKind::NotFound, "{st}");
    assert_eq!(
        pending_uploads(&client, &prefix).await,
        0,
        "the multipart upload was not aborted"
    );

    // The same on s3s-fs, which cannot list uploads: at least nothing is visible.
    let mut conf = s3s_conf(&unique("abort"));
    conf.upload_part_size = Some(5 << 20);
    let s = backend(&conf).await;
    let input = Scripted {
        data: data(12 * MIB, 4),
        pos: 0,
        then_fail: true,
    };
    s.save(
        "broken.bin",
        Box::new(input),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect_err("a failing input must fail the save");
    assert!(list_all(&s, "").await.expect("list").is_empty());
}

#[tokio::test]
async fn cancellation_aborts_the_upload() {
    let client = moto_client().await;
    let prefix = unique("cancel");
    let mut conf = moto_conf(&prefix);
    conf.upload_part_size = Some(5 << 20);
    let s = backend(&conf).await;

    // Through the token: parts are up, the input stalls, the caller cancels.
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.cancel();
    });
    let input = Scripted {
        data: data(11 * MIB, 5),
        pos: 0,
        then_fail: false,
    };
    let started = Instant::now();
    let e = s
        .save("cancelled.bin", Box::new(input), None, &cancel)
        .await
        .expect_err("a cancelled save must fail");
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancellation took {:?}",
        started.elapsed()
    );
    assert_eq!(
        s.stat("cancelled.bin").await.expect_err("no object").kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        pending_uploads(&client, &prefix).await,
        0,
        "cancelled upload left pending"
    );

    // By dropping the future (a timeout around it): the abort runs in the background.
    let input = Scripted {
        data: data(11 * MIB, 6),
        pos: 0,
        then_fail: false,
    };
    let never = CancellationToken::new();
    let r = tokio::time::timeout(
        Duration::from_millis(1500),
        s.save("dropped.bin", Box::new(input), None, &never),
    )
    .await;
    assert!(r.is_err(), "the stalled save cannot finish");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_uploads(&client, &prefix).await > 0 {
        assert!(
            Instant::now() < deadline,
            "dropped upload was never aborted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        s.stat("dropped.bin").await.expect_err("no object").kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn wrong_credentials_are_auth_errors_without_the_secret() {
    const SECRET: &str = "Sup3rS3cretValue-do-not-leak";
    let mut conf = s3s_conf(&unique("auth"));
    conf.credentials.secret_access_key = Secret::new(SECRET);
    conf.credentials.session_token = Secret::new("T0kenValue-do-not-leak");
    let s = backend(&conf).await;
    let shown = format!("{s:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("T0kenValue"),
        "Debug leaks: {shown}"
    );

    let e = s
        .save(
            "x.bin",
            reader(b"hello".to_vec()),
            None,
            &CancellationToken::new(),
        )
        .await
        .expect_err("a wrong secret must be refused");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    let (text, debug) = (e.to_string(), format!("{e:?}"));
    assert!(text.contains("access denied"), "{text}");
    for leak in [SECRET, "T0kenValue"] {
        assert!(
            !text.contains(leak) && !debug.contains(leak),
            "error leaks a secret: {debug}"
        );
    }
    let e = s.stat("x.bin").await.expect_err("stat with a wrong secret");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");

    // An unknown access key is refused the same way.
    let mut conf = s3s_conf(&unique("auth"));
    conf.credentials.access_key_id = Secret::new("no-such-key");
    let s = backend(&conf).await;
    let e = list_all(&s, "")
        .await
        .expect_err("an unknown key must be refused");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn missing_bucket_is_no_bucket() {
    // s3s-fs creates a missing bucket's directory on PutObject, so writes are checked on
    // moto, which answers NoSuchBucket like AWS; listings on both.
    moto_client().await;
    let mut conf = moto_conf("p");
    conf.bucket = "rbm-no-such-bucket-4711".into();
    let s = backend(&conf).await;
    let e = s
        .save(
            "x.bin",
            reader(b"hello".to_vec()),
            None,
            &CancellationToken::new(),
        )
        .await
        .expect_err("saving into a missing bucket");
    assert_eq!(e.kind, ErrorKind::NoBucket, "{e}");
    assert!(e.to_string().contains("NoSuchBucket"), "{e}");
    let e = list_all(&s, "")
        .await
        .expect_err("listing a missing bucket");
    assert_eq!(e.kind, ErrorKind::NoBucket, "{e}");

    let mut conf = s3s_conf("p");
    conf.bucket = "rbm-no-such-bucket-4712".into();
    let s = backend(&conf).await;
    let e = list_all(&s, "")
        .await
        .expect_err("listing a missing bucket");
    assert_eq!(e.kind, ErrorKind::NoBucket, "{e}");
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    // Bind then release a port so that nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut conf = s3s_conf("p");
    conf.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
    conf.retryer = Some(Retryer {
        num_max_retries: Some(1),
        min_retry_delay: Some(GoDuration(Duration::from_millis(10))),
        max_retry_delay: Some(GoDuration(Duration::from_millis(100))),
    });
    let s = backend(&conf).await;
    let started = Instant::now();
    let e = s.stat("x.bin").await.expect_err("nothing listens there");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    // The cause is named, without a Debug dump of SDK internals.
    let text = e.to_string();
    assert!(text.contains("onnect"), "{text}");
    assert!(!text.contains("ConnectorError {"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let e = s
        .save(
            "x.bin",
            reader(b"hi".to_vec()),
            None,
            &CancellationToken::new(),
        )
        .await
        .expect_err("nothing listens there");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
}

#[tokio::test]
async fn endpoint_url_map_overrides_per_node() {
    let mut conf = s3s_conf(&unique("map"));
    let real = conf.endpoint_url.replace("http://127.0.0.1:1".into());
    conf.endpoint_url_map = Some([("rs0-a:27017".to_string(), real.unwrap_or_default())].into());
    setup();
    let s = S3::new(&conf, Some("rs0-a:27017")).await.expect("backend");
    s.save(
        "m.bin",
        reader(b"mapped".to_vec()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("the mapped endpoint is used");
    assert!(!s.location().contains("127.0.0.1:1/"), "{}", s.location());
    let other = S3::new(&conf, Some("rs0-b:27017")).await.expect("backend");
    assert!(
        other.location().starts_with("s3://127.0.0.1:1/"),
        "{}",
        other.location()
    );
}

#[tokio::test]
async fn prefix_is_trimmed_and_hidden_from_names() {
    let tag = unique("pfx");
    let mut conf = s3s_conf(&format!("/{tag}/"));
    conf.upload_concurrency = Some(1);
    let s = backend(&conf).await;
    let host = env("RBM_TEST_S3_ENDPOINT");
    let host = host
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    assert_eq!(s.location(), format!("s3://{host}/{}/{tag}", conf.bucket));
    let cancel = CancellationToken::new();
    s.save("a/1.bin", reader(vec![1; 10]), None, &cancel)
        .await
        .expect("save");
    s.save("b.bin", reader(vec![2; 20]), None, &cancel)
        .await
        .expect("save");
    let names: Vec<_> = list_all(&s, "")
        .await
        .expect("list")
        .into_iter()
        .map(|m| (m.name, m.size))
        .collect();
    assert_eq!(
        names,
        [("a/1.bin".to_string(), 10), ("b.bin".to_string(), 20)]
    );
    // The same bucket seen without the prefix shows the full keys.
    let root = backend(&s3s_conf("")).await;
    let full = list_all(&root, &format!("{tag}/"))
        .await
        .expect("list root");
    assert_eq!(full.len(), 2, "{full:?}");
    s.copy("b.bin", "c/b.bin").await.expect("server-side copy");
    assert!(read_all(&s, "c/b.bin").await == vec![2; 20]);
}

#[tokio::test]
async fn insecure_skip_tls_verify_accepts_an_untrusted_certificate() {
    let url = tls_proxy().await;
    let mut conf = s3s_conf(&unique("tls"));
    conf.endpoint_url = Some(url);
    conf.upload_part_size = Some(5 << 20);
    conf.retryer = Some(Retryer {
        num_max_retries: Some(0),
        ..Default::default()
    });

    // Verified by default: the test CA is not trusted, so the certificate is refused, as an unreachable
    // endpoint (nothing trustworthy answers there).
    let strict = backend(&conf).await;
    let e = strict
        .stat("x.bin")
        .await
        .expect_err("an untrusted certificate must be refused");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
    assert!(
        e.to_string().to_ascii_lowercase().contains("certificate"),
        "{e}"
    );

    conf.insecure_skip_tls_verify = true;
    let s = backend(&conf).await;
    let cancel = CancellationToken::new();
    let small = data(1000, 11);
    let big = data(11 * MIB + 5, 12);
    s.save("small.bin", reader(small.clone()), None, &cancel)
        .await
        .expect("put over TLS");
    s.save("big.bin", reader(big.clone()), None, &cancel)
        .await
        .expect("multipart over TLS");
    assert!(read_all(&s, "small.bin").await == small);
    assert!(read_all(&s, "big.bin").await == big);
    let names: Vec<_> = list_all(&s, "")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["big.bin", "small.bin"]);
    assert_eq!(
        s.stat("none.bin").await.expect_err("missing").kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn sse_c_round_trip_on_moto() {
    let client = moto_client().await;
    let prefix = unique("ssec");
    let mut conf = moto_conf(&prefix);
    conf.upload_part_size = Some(5 << 20);
    // base64 of 32 bytes 0x00..0x1f: a well-known test key, not a secret.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    conf.server_side_encryption = Some(ServerSideEncryption {
        sse_customer_algorithm: "AES256".into(),
        sse_customer_key: Secret::new(key),
        ..Default::default()
    });
    let s = backend(&conf).await;
    assert!(!format!("{s:?}").contains(key), "Debug leaks the SSE-C key");
    let cancel = CancellationToken::new();
    let small = data(1000, 8);
    let big = data(11 * MIB, 9);
    s.save("small.bin", reader(small.clone()), None, &cancel)
        .await
        .expect("SSE-C put");
    s.save("big.bin", reader(big.clone()), None, &cancel)
        .await
        .expect("SSE-C multipart");
    assert!(read_all(&s, "small.bin").await == small);
    assert!(read_all(&s, "big.bin").await == big);
    assert_eq!(
        s.stat("big.bin").await.expect("SSE-C head").size,
        big.len() as u64
    );
    let mut part = Vec::new();
    s.open_range("big.bin", 100, 50)
        .await
        .expect("SSE-C range")
        .read_to_end(&mut part)
        .await
        .expect("read");
    assert_eq!(part, big[100..150]);
    s.copy("small.bin", "copied.bin").await.expect("SSE-C copy");
    assert!(read_all(&s, "copied.bin").await == small);

    // moto accepts SSE-C headers but neither enforces nor echoes them (nor does
    // s3s-fs), so the round trip above only shows they are accepted everywhere;
    // `sse_c_headers_go_with_reads` checks they are sent.
    drop(client);
}

/// Answers every request with `response` and records the request heads, so a test can
/// see which headers the backend sends where no test server implements the feature.
async fn capture_server(
    response: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match sock.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_ascii_lowercase());
                let _ = sock.write_all(response.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn sse_c_headers_go_with_reads() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (url, mut heads) =
        capture_server("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc")
            .await;
    let mut conf = moto_conf("p");
    conf.endpoint_url = Some(url);
    conf.server_side_encryption = Some(ServerSideEncryption {
        sse_customer_algorithm: "AES256".into(),
        sse_customer_key: Secret::new(key),
        ..Default::default()
    });
    let s = backend(&conf).await;
    s.stat("x.bin")
        .await
        .expect("HEAD against the capture server");
    let mut body = Vec::new();
    s.open_range("x.bin", 0, 3)
        .await
        .expect("GET")
        .read_to_end(&mut body)
        .await
        .expect("read");
    for op in ["head", "get"] {
        let head = heads.recv().await.expect("a request was captured");
        assert!(head.starts_with(op), "expected {op}: {head}");
        assert!(
            head.contains("x-amz-server-side-encryption-customer-algorithm: aes256"),
            "{head}"
        );
        assert!(
            head.contains(&format!(
                "x-amz-server-side-encryption-customer-key: {}",
                key.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            head.contains(
                "x-amz-server-side-encryption-customer-key-md5: tp/li3n87dfask0aoqygzg=="
            ),
            "{head}"
        );
    }
}

#[tokio::test]
async fn large_copy_uses_upload_part_copy() {
    moto_client().await;
    let mut conf = moto_conf(&unique("bigcopy"));
    conf.upload_part_size = Some(5 << 20);
    // S3 refuses CopyObject above 5 GiB; the lowered threshold exercises the same path.
    let s = backend(&conf).await.with_copy_multipart_threshold(5 << 20);
    let want = data(12 * MIB + 7, 10);
    s.save(
        "src.bin",
        reader(want.clone()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("save");
    s.copy("src.bin", "dst.bin").await.expect("multipart copy");
    assert!(read_all(&s, "dst.bin").await == want);
}

#[tokio::test]
async fn ca_bundle_env_does_not_break_plain_http_or_tls_setup() {
    setup();
    let bundle = std::env::var("AWS_CA_BUNDLE").expect("setup sets AWS_CA_BUNDLE");
    assert!(!bundle.is_empty());
    let s = backend(&s3s_conf(&unique("ca"))).await;
    s.save(
        "a.bin",
        reader(b"plain http".to_vec()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("plain-HTTP endpoint with AWS_CA_BUNDLE set");
    assert_eq!(read_all(&s, "a.bin").await, b"plain http");

    // HTTPS to a plain-HTTP port: the TLS client is built with the CA variables set and
    // the failed handshake is an unreachable endpoint, not a panic or a config error.
    let mut conf = s3s_conf("p");
    conf.endpoint_url = Some(env("RBM_TEST_S3_ENDPOINT").replacen("http://", "https://", 1));
    conf.retryer = Some(Retryer {
        num_max_retries: Some(0),
        ..Default::default()
    });
    let s = backend(&conf).await;
    let e = s.stat("a.bin").await.expect_err("no TLS on that port");
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
}

/// An input of known size above one part goes up as one streamed PutObject (plain ETag,
/// the bytes intact); an input shorter or longer than announced fails and stores nothing.
#[tokio::test]
async fn known_size_is_one_streamed_put() {
    let client = moto_client().await;
    for (server, mut conf) in [
        ("moto", moto_conf(&unique("sized"))),
        ("s3s-fs", s3s_conf(&unique("sized"))),
    ] {
        conf.upload_part_size = Some(5 << 20);
        let s = backend(&conf).await;
        let cancel = CancellationToken::new();
        let want = data(12 * MIB + 7, 11);
        let n = s
            .save_sized(
                "sized.bin",
                reader(want.clone()),
                want.len() as u64,
                &cancel,
            )
            .await
            .unwrap_or_else(|e| panic!("{server}: sized save: {e}"));
        assert_eq!(n, want.len() as u64, "{server}");
        assert!(
            read_all(&s, "sized.bin").await == want,
            "{server}: bytes differ"
        );
        if server == "moto" {
            let etag = client
                .head_object()
                .bucket(MOTO_BUCKET)
                .key(format!("{}/sized.bin", conf.prefix))
                .send()
                .await
                .expect("head")
                .e_tag()
                .unwrap_or_default()
                .to_string();
            assert!(!etag.contains('-'), "not a single PutObject: ETag {etag}");
        }
        for (name, announced, given) in [
            ("short.bin", 12 * MIB as u64, 11 * MIB),
            ("long.bin", 11 * MIB as u64, 12 * MIB),
        ] {
            let e = s
                .save_sized(name, reader(data(given, 12)), announced, &cancel)
                .await
                .expect_err("a size mismatch must fail the save");
            assert!(e.to_string().contains("announced"), "{server} {name}: {e}");
            let gone = s.stat(name).await.expect_err("nothing stored");
            assert_eq!(gone.kind, ErrorKind::NotFound, "{server} {name}: {gone}");
        }
        s.delete("sized.bin").await.expect("delete");
    }
}
