//! Start-up failures end in one clear line on stderr and a non-zero exit, and never
//! print the credentials.

mod agent_common;

use agent_common::MongoServer;
use std::process::Command;

fn run_agent(uri: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rbm-agent"))
        .env("PBM_MONGODB_URI", uri)
        .env("RBM_AGENT_SERVER_SELECTION_TIMEOUT_MS", "1500")
        .env_remove("RBM_AGENT_NODE_NAME")
        .env_remove("LOG_JSON")
        .output()
        .expect("run rbm-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("Error:")).collect()
}

#[test]
fn bad_uri() {
    let (code, err) = run_agent("mongodb://user:s3cret@[::1/?replicaSet=x");
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "stderr:\n{err}");
    assert!(lines[0].contains("invalid --mongodb-uri"), "stderr:\n{err}");
    assert!(!err.contains("s3cret"), "credentials leaked:\n{err}");
}

#[test]
fn unreachable_server() {
    // A port that was free a moment ago: nothing listens there.
    let port = rbm_e2e::free_port();
    let (code, err) = run_agent(&format!("mongodb://u:s3cret@127.0.0.1:{port}/"));
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "stderr:\n{err}");
    assert!(lines[0].contains("cannot reach mongod"), "stderr:\n{err}");
    assert!(!err.contains("s3cret"), "credentials leaked:\n{err}");
}

#[test]
fn no_uri() {
    let out = Command::new(env!("CARGO_BIN_EXE_rbm-agent"))
        .env_remove("PBM_MONGODB_URI")
        .output()
        .expect("run rbm-agent");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mongodb-uri"), "stderr:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials() {
    let server = MongoServer::start().await;
    let uri = format!(
        "mongodb://nobody:s3cret@127.0.0.1:{}/?replicaSet={}",
        server.port(),
        server.replset()
    );
    let (code, err) = tokio::task::spawn_blocking(move || run_agent(&uri))
        .await
        .expect("join");
    assert_ne!(code, 0);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "stderr:\n{err}");
    assert!(lines[0].contains("authentication"), "stderr:\n{err}");
    assert!(!err.contains("s3cret"), "credentials leaked:\n{err}");
}
