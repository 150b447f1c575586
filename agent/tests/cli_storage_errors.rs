//! Bad storage input through the `rbm` binary: one clear error line naming the storage
//! and the cause, a non-zero exit, no panic, and no credential in any output.
//! Runs against the real test services (`scripts/test` sets `RBM_TEST_*`).

use std::process::Command;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test, which starts the services")
    })
}

/// Runs `rbm speed-test storage` on a config and returns (exit code, stdout, stderr).
fn speed_test(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("storage.yaml");
    std::fs::write(&cfg, yaml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_rbm"))
        .args([
            "speed-test",
            "storage",
            "--size-gb",
            "0.001",
            "--storage-config",
        ])
        .arg(&cfg)
        .output()
        .expect("run rbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks the shape every bad-input error must have and returns the error line.
fn one_clear_error(yaml: &str, must_mention: &[&str], secrets: &[&str]) -> String {
    let (code, stdout, stderr) = speed_test(yaml);
    assert_ne!(code, 0, "must fail; stdout: {stdout} stderr: {stderr}");
    assert_ne!(code, 101, "exit 101 means a panic: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected: {stderr}");
    let line = errors[0].to_lowercase();
    for m in must_mention {
        assert!(
            line.contains(&m.to_lowercase()),
            "{m:?} missing from: {}",
            errors[0]
        );
    }
    for s in secrets {
        assert!(
            !stderr.contains(s) && !stdout.contains(s),
            "secret leaked: {stderr}"
        );
    }
    errors[0].to_string()
}

fn s3_yaml(endpoint: &str, bucket: &str, key: &str, secret: &str) -> String {
    format!(
        "storage:\n  type: s3\n  s3:\n    region: us-east-1\n    endpointUrl: {endpoint}\n    bucket: {bucket}\n    credentials:\n      access-key-id: {key}\n      secret-access-key: {secret}\n    retryer:\n      numMaxRetries: 1\n      minRetryDelay: 10ms\n      maxRetryDelay: 50ms\n"
    )
}

fn azure_yaml(endpoint: &str, container: &str, key: &str) -> String {
    format!(
        "storage:\n  type: azure\n  azure:\n    account: {}\n    container: {container}\n    endpointUrl: {endpoint}\n    credentials:\n      key: {key}\n    retryer:\n      numMaxRetries: 1\n      minRetryDelay: 10ms\n      maxRetryDelay: 50ms\n",
        env("RBM_TEST_AZURE_ACCOUNT")
    )
}

#[test]
fn unknown_storage_type() {
    one_clear_error("storage:\n  type: tape\n", &["tape"], &[]);
}

#[test]
fn malformed_yaml() {
    one_clear_error(
        "storage:\n  type: s3\n   s3: [unclosed\n",
        &["storage.yaml"],
        &[],
    );
}

#[test]
fn unknown_key_is_named() {
    one_clear_error(
        "storage:\n  type: filesystem\n  filesystem:\n    path: /tmp/x\n    pathh: /tmp/y\n",
        &["pathh"],
        &[],
    );
}

#[test]
fn s3_missing_bucket() {
    // moto answers NoSuchBucket (s3s-fs creates buckets on write).
    let y = s3_yaml(
        &env("RBM_TEST_MOTO_ENDPOINT"),
        "rbm-no-such-bucket",
        "k",
        "topsecret1",
    );
    one_clear_error(&y, &["s3", "bucket"], &["topsecret1"]);
}

#[test]
fn s3_wrong_credentials() {
    let y = s3_yaml(
        &env("RBM_TEST_S3_ENDPOINT"),
        &env("RBM_TEST_S3_BUCKET"),
        &env("RBM_TEST_S3_ACCESS_KEY"),
        "wrong-secret-value-42",
    );
    one_clear_error(&y, &["s3", "access denied"], &["wrong-secret-value-42"]);
}

#[test]
fn s3_unreachable_endpoint() {
    let y = s3_yaml("http://127.0.0.1:1", "b", "k", "topsecret2");
    one_clear_error(&y, &["s3", "unreachable"], &["topsecret2"]);
}

#[test]
fn azure_wrong_key() {
    // A valid base64 key that is not the account's.
    let bad = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
    let y = azure_yaml(
        &env("RBM_TEST_AZURE_ENDPOINT"),
        &env("RBM_TEST_AZURE_CONTAINER"),
        bad,
    );
    one_clear_error(&y, &["azure", "access denied"], &[bad]);
}

#[test]
fn azure_missing_container() {
    let key = env("RBM_TEST_AZURE_KEY");
    let y = azure_yaml(
        &env("RBM_TEST_AZURE_ENDPOINT"),
        "rbm-no-such-container",
        &key,
    );
    one_clear_error(&y, &["azure", "container"], &[&key]);
}

#[test]
fn azure_unreachable_endpoint() {
    let key = env("RBM_TEST_AZURE_KEY");
    let y = azure_yaml("http://127.0.0.1:1/devstoreaccount1", "c", &key);
    one_clear_error(&y, &["azure", "unreachable"], &[&key]);
}

#[test]
fn filesystem_path_is_a_file() {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    let y = format!(
        "storage:\n  type: filesystem\n  filesystem:\n    path: {}\n",
        f.path().display()
    );
    one_clear_error(&y, &["filesystem"], &[]);
}
