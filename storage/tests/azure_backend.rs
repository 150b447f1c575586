//! Azure-specific tests of the `azure` backend against a real Azurite (or Azure).
//!
//! The generic conformance suite (sizes, long listings, ranges) runs against this
//! backend separately; these tests cover what only Azure has: staged blocks, blob
//! names with PBM's characters as Azure itself stores them, abort and cancellation,
//! error classification and SAS tokens.
//!
//! They need `RBM_TEST_AZURE_ENDPOINT` (`http://127.0.0.1:P/devstoreaccount1` for
//! Azurite), `RBM_TEST_AZURE_ACCOUNT`, `RBM_TEST_AZURE_KEY` and
//! `RBM_TEST_AZURE_CONTAINER` (an existing container); `scripts/test` sets them.

use rand::{Rng, SeedableRng};
use rbm_protocol::config::{AzureCredentials, GoDuration, Retryer};
use rbm_protocol::{AzureConf, Secret};
use rbm_storage::azure::Azure;
use rbm_storage::{list_all, ByteReader, ErrorKind, Storage, StorageError};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

struct Env {
    endpoint: String,
    account: String,
    key: String,
    container: String,
}

fn env() -> Env {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not set. These tests need a running Azurite (or Azure) and \
                 RBM_TEST_AZURE_ENDPOINT, RBM_TEST_AZURE_ACCOUNT, RBM_TEST_AZURE_KEY, \
                 RBM_TEST_AZURE_CONTAINER; run them through scripts/test, which sets them"
                )
            })
    };
    Env {
        endpoint: var("RBM_TEST_AZURE_ENDPOINT"),
        account: var("RBM_TEST_AZURE_ACCOUNT"),
        key: var("RBM_TEST_AZURE_KEY"),
        container: var("RBM_TEST_AZURE_CONTAINER"),
    }
}

/// A prefix no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("rbm-azure-test/{tag}-{}-{nanos}", std::process::id())
}

fn conf(e: &Env, prefix: &str) -> AzureConf {
    AzureConf {
        account: e.account.clone(),
        container: e.container.clone(),
        endpoint_url: Some(e.endpoint.clone()),
        prefix: prefix.to_string(),
        credentials: AzureCredentials {
            key: Secret::new(e.key.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn fast_retries() -> Option<Retryer> {
    Some(Retryer {
        num_max_retries: Some(1),
        min_retry_delay: Some(GoDuration(Duration::from_millis(10))),
        max_retry_delay: Some(GoDuration(Duration::from_millis(20))),
    })
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

fn reader(data: Vec<u8>) -> ByteReader {
    Box::new(std::io::Cursor::new(data))
}

async fn read_all(s: &dyn Storage, name: &str) -> Vec<u8> {
    let mut r = s.open(name).await.expect("open");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    out
}

async fn cleanup(s: &dyn Storage) {
    for m in list_all(s, "").await.expect("list for cleanup") {
        s.delete(&m.name).await.expect("cleanup delete");
    }
}

/// Yields `data`, then fails (or, with `hang`, never ends): an input that breaks or
/// stalls part-way through an upload.
struct BrokenInput {
    data: std::io::Cursor<Vec<u8>>,
    hang: bool,
}

impl AsyncRead for BrokenInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.data).poll_read(cx, buf);
        if buf.filled().len() > before {
            return r;
        }
        if self.hang {
            Poll::Pending
        } else {
            Poll::Ready(Err(std::io::Error::other("input broke (test)")))
        }
    }
}

/// A TCP proxy in front of the endpoint that counts the connections it accepts:
/// reqwest opens a new connection only when every pooled one is busy, so the count
/// is the peak number of requests in flight.
async fn counting_proxy(endpoint: &str) -> (String, Arc<AtomicUsize>) {
    let url = url::Url::parse(endpoint).expect("endpoint URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("endpoint host"),
        url.port_or_known_default().expect("endpoint port")
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let port = listener.local_addr().expect("proxy addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    let mut proxied = url.clone();
    proxied.set_port(Some(port)).expect("set port");
    (proxied.as_str().trim_end_matches('/').to_string(), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_block_upload_stages_blocks_in_parallel_and_is_byte_identical() {
    let e = env();
    let (endpoint, conns) = counting_proxy(&e.endpoint).await;
    let prefix = unique("blocks");
    let mut c = conf(&e, &prefix);
    c.endpoint_url = Some(endpoint);
    c.upload_part_size = Some(256 << 10);
    c.upload_concurrency = Some(4);
    let s = Azure::new(&c, None).expect("azure");
    // 20 full blocks and a short last one.
    let data = random_bytes(20 * (256 << 10) + 12_345, 1);
    let name = "2026-11-26T11:40:53Z/rs0/local.oplog.s2";
    let n = s
        .save(name, reader(data.clone()), None, &CancellationToken::new())
        .await
        .expect("save");
    assert_eq!(n, data.len() as u64);
    let peak = conns.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&peak),
        "expected 2..=4 blocks in flight (uploadConcurrency 4), saw {peak} connections"
    );
    let stored = read_all(&s, name).await;
    assert_eq!(
        Sha256::digest(&stored),
        Sha256::digest(&data),
        "content differs"
    );

    let raw = Raw::new(&e);
    let blocks = raw
        .get(
            &format!("{prefix}/{name}"),
            &[("blocklisttype", "committed"), ("comp", "blocklist")],
        )
        .await;
    assert_eq!(blocks.0, 200, "{}", blocks.1);
    assert_eq!(blocks.1.matches("<Block>").count(), 21, "{}", blocks.1);
    cleanup(&s).await;
}

/// With uploads stuck in flight, `save` reads no further than the blocks in flight
/// plus the one it holds: memory does not grow with the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_bound_the_input_read_ahead() {
    let e = env();
    // Accepts connections and never answers, so every block stays in flight.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut c = conf(&e, "");
    c.endpoint_url = Some(format!("http://127.0.0.1:{port}/{}", e.account));
    c.upload_part_size = Some(64 << 10);
    c.upload_concurrency = Some(2);
    let s = Azure::new(&c, None).expect("azure");
    let (input, read) =
        rbm_storage::io::CountingReader::new(std::io::Cursor::new(random_bytes(10 << 20, 8)));
    let cancel = CancellationToken::new();
    let save = s.save("stuck", Box::new(input), None, &cancel);
    let watch = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = read.load(Ordering::SeqCst);
        cancel.cancel();
        n
    };
    let (res, n) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(save, watch) })
            .await
            .expect("save returns after cancellation");
    assert_eq!(
        n,
        3 * (64 << 10),
        "2 blocks in flight + 1 held = 3 blocks read, not {n} bytes"
    );
    assert_eq!(res.expect_err("cancelled").kind, ErrorKind::Cancelled);
}

#[tokio::test]
async fn small_input_is_one_put_blob() {
    let e = env();
    let prefix = unique("single");
    let mut c = conf(&e, &prefix);
    c.upload_part_size = Some(256 << 10);
    let s = Azure::new(&c, None).expect("azure");
    let data = random_bytes(256 << 10, 2);
    s.save(
        "exact-block",
        reader(data.clone()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("save");
    assert_eq!(read_all(&s, "exact-block").await, data);
    // A Put Blob leaves no block list, which tells it from a one-block commit.
    let raw = Raw::new(&e);
    let (status, body) = raw
        .get(
            &format!("{prefix}/exact-block"),
            &[("blocklisttype", "committed"), ("comp", "blocklist")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("<Block>").count(), 0, "{body}");
    cleanup(&s).await;
}

#[tokio::test]
async fn pbm_names_round_trip_and_are_stored_verbatim() {
    let e = env();
    let prefix = unique("names");
    let s = Azure::new(&conf(&e, &prefix), None).expect("azure");
    let names = [
        "2026-11-26T11:40:53Z/rs0/db.coll.s2",
        "2026-11-26T11:40:53Z/rs0/local.oplog.s2",
        "2026-11-26T11:40:53Z.pbm.json",
        "pbmPitr/rs0/20261126/20261126114053-1.20261126114553-4.oplog.s2",
        // Not `\`: Azure stores it as `/`. PBM never uses it.
        "odd/a b+c%20d#e?f~g[h]{i}^j|k`l<m>n\"o'p;q=r&s@t$u!v*w(x)y,z é€😀",
        "odd/100%.s2",
        "odd/%2E%2E",
    ];
    for (i, n) in names.iter().enumerate() {
        let body = format!("object {i}: {n}").into_bytes();
        s.save(n, reader(body), None, &CancellationToken::new())
            .await
            .unwrap_or_else(|err| panic!("save {n:?}: {err}"));
    }
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    let listed: Vec<String> = list_all(&s, "")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, want);
    for (i, n) in names.iter().enumerate() {
        let body = format!("object {i}: {n}").into_bytes();
        assert_eq!(read_all(&s, n).await, body, "content of {n:?}");
        assert_eq!(s.stat(n).await.expect("stat").size, body.len() as u64);
    }
    let colon: Vec<String> = list_all(&s, "2026-11-26T11:40:53Z")
        .await
        .expect("list by timestamp")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(colon, &want[..3]);

    // What Azure itself holds (and what PBM will look up): the names verbatim.
    let (status, xml) = Raw::new(&e)
        .get(
            "",
            &[
                ("comp", "list"),
                ("prefix", &format!("{prefix}/")),
                ("restype", "container"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    let stored: Vec<String> = xml
        .split("<Name>")
        .skip(1)
        .filter_map(|p| p.split("</Name>").next())
        .map(xml_unescape)
        .collect();
    let full: Vec<String> = want.iter().map(|n| format!("{prefix}/{n}")).collect();
    assert_eq!(stored, full);

    s.copy(names[0], "copied/2026-11-26T11:40:53Z:x")
        .await
        .expect("copy");
    assert_eq!(
        read_all(&s, "copied/2026-11-26T11:40:53Z:x").await,
        read_all(&s, names[0]).await
    );
    cleanup(&s).await;
    assert!(list_all(&s, "").await.expect("list").is_empty());
}

#[tokio::test]
async fn listing_includes_an_object_named_like_the_prefix() {
    let e = env();
    let s = Azure::new(&conf(&e, &unique("exact")), None).expect("azure");
    for n in ["a/b.json", "a/b.json.bak", "a/b.jsonl", "a/c"] {
        s.save(n, reader(b"x".to_vec()), None, &CancellationToken::new())
            .await
            .expect("save");
    }
    let listed: Vec<String> = list_all(&s, "a/b.json")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, ["a/b.json", "a/b.json.bak", "a/b.jsonl"]);
    cleanup(&s).await;
}

/// A listing longer than a page follows Azure's continuation markers, in order.
/// Pages of 100 stand in for Azure's 5,000 (PITR chunks pass 5,000 in about a month).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_continuation_pages_in_order() {
    use futures::{StreamExt, TryStreamExt};
    let e = env();
    let s = Azure::new(&conf(&e, &unique("pages")), None)
        .expect("azure")
        .with_list_page_size(100);
    // Written out of order; 2026-...Z names as PBM's, plus one named like the prefix.
    let mut names: Vec<String> = (0..250)
        .map(|i| {
            format!(
                "pbmPitr/rs0/2026-11-26T{:02}:{:02}:00Z.oplog",
                (i * 7) % 250 / 60,
                (i * 7) % 250 % 60
            )
        })
        .collect();
    names.push("pbmPitr/rs0/2026-11-26T".to_string());
    futures::stream::iter(names.iter())
        .map(|n| {
            let s = &s;
            async move {
                s.save(n, reader(b"x".to_vec()), None, &CancellationToken::new())
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("save");
    names.sort();
    for prefix in ["", "pbmPitr/", "pbmPitr/rs0/2026-11-26T"] {
        let listed: Vec<String> = list_all(&s, prefix)
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(listed, names, "listing of {prefix:?}");
    }
    cleanup(&s).await;
}

#[tokio::test]
async fn ranges_at_and_past_the_end_are_empty() {
    let e = env();
    let s = Azure::new(&conf(&e, &unique("ranges")), None).expect("azure");
    s.save(
        "r",
        reader(b"0123456789".to_vec()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("save");
    s.save("empty", reader(Vec::new()), None, &CancellationToken::new())
        .await
        .expect("save");
    for (name, off, len, want) in [
        ("r", 8, 100, &b"89"[..]),
        ("r", 10, 5, b""),
        ("r", 50, 5, b""),
        ("r", 3, 0, b""),
        ("empty", 0, 10, b""),
    ] {
        let mut out = Vec::new();
        s.open_range(name, off, len)
            .await
            .expect("open_range")
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, want, "{name} {off}+{len}");
    }
    let err = s.open_range("missing", 0, 0).await.err().expect("missing");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    cleanup(&s).await;
}

#[tokio::test]
async fn failed_input_commits_nothing_and_keeps_the_old_blob() {
    let e = env();
    let mut c = conf(&e, &unique("abort"));
    c.upload_part_size = Some(64 << 10);
    c.upload_concurrency = Some(2);
    let s = Azure::new(&c, None).expect("azure");
    let input = BrokenInput {
        data: std::io::Cursor::new(random_bytes(5 * (64 << 10) + 10, 3)),
        hang: false,
    };
    let err = s
        .save("new", Box::new(input), None, &CancellationToken::new())
        .await
        .expect_err("input fails");
    assert!(err.message.contains("input broke"), "{err}");
    let err = s.stat("new").await.expect_err("nothing committed");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    let old = b"previous version".to_vec();
    s.save("old", reader(old.clone()), None, &CancellationToken::new())
        .await
        .expect("save");
    let input = BrokenInput {
        data: std::io::Cursor::new(random_bytes(5 * (64 << 10), 4)),
        hang: false,
    };
    s.save("old", Box::new(input), None, &CancellationToken::new())
        .await
        .expect_err("input fails");
    assert_eq!(read_all(&s, "old").await, old);
    assert_eq!(
        list_all(&s, "").await.expect("list").len(),
        1,
        "only the old blob"
    );
    cleanup(&s).await;
}

#[tokio::test]
async fn cancelled_save_stops_promptly_and_commits_nothing() {
    let e = env();
    let mut c = conf(&e, &unique("cancel"));
    c.upload_part_size = Some(64 << 10);
    let s = Azure::new(&c, None).expect("azure");
    let cancel = CancellationToken::new();
    let input = BrokenInput {
        data: std::io::Cursor::new(random_bytes(3 * (64 << 10), 5)),
        hang: true,
    };
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        s.save("stalled", Box::new(input), None, &cancel),
    )
    .await
    .expect("save returns after cancellation")
    .expect_err("cancelled");
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = s.stat("stalled").await.expect_err("nothing committed");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    let err = s
        .save("pre", reader(b"x".to_vec()), None, &cancel)
        .await
        .expect_err("already cancelled");
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err}");
    assert!(s.stat("pre").await.is_err());
}

fn assert_no_secret(err: &StorageError, secret: &str) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "secret leaked: {text}");
}

#[tokio::test]
async fn wrong_key_is_an_auth_error_without_the_key() {
    let e = env();
    let mut c = conf(&e, &unique("auth"));
    use base64::Engine;
    let wrong = base64::engine::general_purpose::STANDARD.encode(random_bytes(64, 6));
    c.credentials.key = Secret::new(wrong.clone());
    c.retryer = fast_retries();
    let s = Azure::new(&c, None).expect("azure");
    assert!(!format!("{s:?}").contains(&wrong));
    let errs = [
        s.stat("x").await.expect_err("stat"),
        s.open("x").await.err().expect("open"),
        s.save("x", reader(b"x".to_vec()), None, &CancellationToken::new())
            .await
            .expect_err("save"),
        list_all(&s, "").await.expect_err("list"),
    ];
    for err in &errs {
        assert_eq!(err.kind, ErrorKind::Auth, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("access denied") && text.contains(&e.account) && text.contains("403"),
            "unclear message: {text}"
        );
        assert_no_secret(err, &wrong);
        assert_no_secret(err, &e.key);
    }
    eprintln!("wrong key message: {}", errs[1]);
}

#[tokio::test]
async fn missing_container_is_no_bucket() {
    let e = env();
    let mut c = conf(&e, "");
    c.container = format!("rbm-missing-{}", std::process::id());
    let s = Azure::new(&c, None).expect("azure");
    let errs = [
        s.stat("x").await.expect_err("stat"),
        s.open("x").await.err().expect("open"),
        s.save("x", reader(b"x".to_vec()), None, &CancellationToken::new())
            .await
            .expect_err("save"),
        list_all(&s, "").await.expect_err("list"),
        list_all(&s, "x").await.expect_err("list with prefix"),
        s.delete("x").await.expect_err("delete"),
        s.copy("x", "y").await.expect_err("copy"),
    ];
    for err in &errs {
        assert_eq!(err.kind, ErrorKind::NoBucket, "{err}");
        assert!(err.to_string().contains(&c.container), "{err}");
    }
    eprintln!("missing container message: {}", errs[0]);
}

#[tokio::test]
async fn missing_blob_is_not_found_and_delete_is_idempotent() {
    let e = env();
    let s = Azure::new(&conf(&e, &unique("missing")), None).expect("azure");
    assert_eq!(
        s.stat("nope").await.expect_err("stat").kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        s.open("nope").await.err().expect("open").kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        s.copy("nope", "dst").await.expect_err("copy").kind,
        ErrorKind::NotFound
    );
    s.delete("nope").await.expect("delete of a missing blob");
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    let e = env();
    // A port that was free a moment ago, so nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut c = conf(&e, "");
    c.endpoint_url = Some(format!("http://127.0.0.1:{port}/{}", e.account));
    c.retryer = fast_retries();
    let s = Azure::new(&c, None).expect("azure");
    let started = Instant::now();
    let err = s.stat("x").await.expect_err("unreachable");
    assert_eq!(err.kind, ErrorKind::Unreachable, "{err}");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_no_secret(&err, &e.key);
    eprintln!("unreachable message: {err}");
}

#[tokio::test]
async fn sas_token_works_and_never_shows() {
    let e = env();
    let prefix = unique("sas");
    let raw = Raw::new(&e);
    let sas = raw.account_sas("rwdlac");
    let sig = sas
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .expect("sig")
        .to_string();
    let mut c = conf(&e, &prefix);
    c.credentials = AzureCredentials {
        sas_token: Secret::new(format!("?{sas}")),
        ..Default::default()
    };
    let s = Azure::new(&c, None).expect("azure with SAS");
    assert!(!format!("{s:?}").contains(&sig));
    let data = random_bytes(3 * (1 << 20) + 7, 7);
    let mut big = c.clone();
    big.upload_part_size = Some(1 << 20);
    let sb = Azure::new(&big, None).expect("azure with SAS");
    sb.save(
        "2026-11-26T11:40:53Z/big",
        reader(data.clone()),
        None,
        &CancellationToken::new(),
    )
    .await
    .expect("block upload with SAS");
    assert_eq!(read_all(&s, "2026-11-26T11:40:53Z/big").await, data);
    s.copy("2026-11-26T11:40:53Z/big", "copy")
        .await
        .expect("copy with SAS");
    assert_eq!(
        list_all(&s, "").await.expect("list").len(),
        2,
        "listing with SAS"
    );
    cleanup(&s).await;

    // A read-only token: writes are refused as Auth, and the message has no token.
    let ro = raw.account_sas("rl");
    let ro_sig = ro
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .expect("sig")
        .to_string();
    c.credentials.sas_token = Secret::new(ro);
    c.retryer = fast_retries();
    let s = Azure::new(&c, None).expect("azure with SAS");
    let err = s
        .save("x", reader(b"x".to_vec()), None, &CancellationToken::new())
        .await
        .expect_err("read-only SAS");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert_no_secret(&err, &ro_sig);
    assert_no_secret(&err, &percent_decode(&ro_sig));
    eprintln!("read-only SAS message: {err}");

    // A token that may not list: a missing blob is still NotFound, not Auth (telling
    // it from a missing container needs a listing).
    c.credentials.sas_token = Secret::new(raw.account_sas("rwd"));
    let s = Azure::new(&c, None).expect("azure with SAS");
    let err = s.stat("missing").await.expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(
        list_all(&s, "").await.expect_err("no list permission").kind,
        ErrorKind::Auth
    );
}

// ---------------------------------------------------------------------------------
// A minimal shared-key REST client, independent of the backend under test, to see
// what Azure itself stores and to mint SAS tokens.

struct Raw {
    url: url::Url,
    account: String,
    container: String,
    key: Vec<u8>,
}

impl Raw {
    fn new(e: &Env) -> Self {
        use base64::Engine;
        Self {
            url: url::Url::parse(&e.endpoint).expect("endpoint URL"),
            account: e.account.clone(),
            container: e.container.clone(),
            key: base64::engine::general_purpose::STANDARD
                .decode(&e.key)
                .expect("key is base64"),
        }
    }

    fn sign(&self, text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&self.key, text.as_bytes()))
    }

    /// An account SAS for blobs (service version 2021-08-06), valid for an hour.
    fn account_sas(&self, perms: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let start = iso8601(now - 300);
        let expiry = iso8601(now + 3600);
        let sv = "2021-08-06";
        let sts = format!(
            "{}\n{perms}\nb\nsco\n{start}\n{expiry}\n\nhttp,https\n{sv}\n\n",
            self.account
        );
        let sig = self.sign(&sts);
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "sv={sv}&ss=b&srt=sco&sp={perms}&st={}&se={}&spr=http,https&sig={}",
            enc(&start),
            enc(&expiry),
            enc(&sig)
        )
    }

    /// GET on `blob` (a name under the container, or "" for the container) with the
    /// query pairs sorted by name; returns the status and the body.
    async fn get(&self, blob: &str, query: &[(&str, &str)]) -> (u16, String) {
        let mut url = self.url.clone();
        {
            let mut segs = url.path_segments_mut().expect("base URL");
            segs.pop_if_empty().push(&self.container);
            if !blob.is_empty() {
                segs.extend(blob.split('/'));
            }
        }
        let mut canon = format!("/{}{}", self.account, url.path());
        for (k, v) in query {
            canon.push_str(&format!("\n{k}:{v}"));
        }
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        let date = http_date(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        );
        let sts = format!(
            "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:2021-08-06\n{canon}"
        );
        let auth = format!("SharedKey {}:{}", self.account, self.sign(&sts));
        let host = format!(
            "{}:{}",
            url.host_str().expect("host"),
            url.port_or_known_default().expect("port")
        );
        // HTTP/1.0 so that the body comes unchunked and ends with the connection.
        let req = format!(
            "GET {}?{} HTTP/1.0\r\nHost: {host}\r\nx-ms-date: {date}\r\nx-ms-version: 2021-08-06\r\nAuthorization: {auth}\r\n\r\n",
            url.path(),
            qs.join("&")
        );
        let mut sock = tokio::net::TcpStream::connect(&host)
            .await
            .expect("connect to the endpoint");
        sock.write_all(req.as_bytes()).await.expect("send");
        let mut resp = Vec::new();
        sock.read_to_end(&mut resp).await.expect("receive");
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("HTTP status");
        let body = resp
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn iso8601(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let (y, m, d) = civil(days as i64);
    let t = secs % 86_400;
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
