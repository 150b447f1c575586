//! `rbm-agent-entrypoint` with the real `rbm-agent` against a private SecantusDB: in
//! sidecar mode it restarts a killed agent, SIGTERM reaches the agent and both exit,
//! outside sidecar mode it passes the agent's exit code on, and under PBM's names it
//! runs `pbm-agent` from beside itself.

mod agent_common;

use agent_common::*;
use mongodb::bson::{doc, Document};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const ENTRYPOINT: &str = env!("CARGO_BIN_EXE_rbm-agent-entrypoint");
const AGENT: &str = env!("CARGO_BIN_EXE_rbm-agent");

/// A running entrypoint; killed (with its agents) on drop.
struct Entrypoint {
    child: Option<Child>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Entrypoint {
    fn start(program: &str, args: &[&str], env: &[(&str, &str)]) -> Entrypoint {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("entrypoint.log");
        let out = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_remove("PBM_AGENT_SIDECAR")
            .env_remove("PBM_AGENT_SIDECAR_SLEEP")
            .env_remove("RBM_AGENT_BIN")
            .env_remove("LOG_JSON")
            .env("LOG_LEVEL", "D")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Entrypoint {
            child: Some(cmd.spawn().expect("spawn the entrypoint")),
            log,
            _dir: dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running entrypoint");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "entrypoint did not exit in {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Entrypoint {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        for pid in children_of(c.id()) {
            kill(pid, "-KILL");
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {sig} {pid} failed");
}

/// Live (not zombie) processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) && state != Some("Z") {
            out.push(child);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// Waits for exactly one child other than `not`, and returns it.
async fn wait_child(ep: &Entrypoint, not: Option<u32>) -> u32 {
    let pid = ep.pid();
    wait_for(
        Duration::from_secs(30),
        "the entrypoint's agent",
        || async move {
            let kids = children_of(pid);
            match kids.as_slice() {
                [one] if Some(*one) != not => Some(*one),
                _ => None,
            }
        },
    )
    .await
}

async fn agent_doc(c: &mongodb::Client, node: &str) -> Option<Document> {
    find_all(c, "pbmAgents", doc! {"n": node})
        .await
        .into_iter()
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_restarts_a_killed_agent_and_forwards_sigterm() {
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let uri = server.uri();
    let node = "ep1:27017";
    let mut ep = Entrypoint::start(
        ENTRYPOINT,
        &[],
        &[
            ("PBM_AGENT_SIDECAR", "true"),
            ("PBM_AGENT_SIDECAR_SLEEP", "1"),
            ("PBM_MONGODB_URI", &uri),
            ("RBM_AGENT_NODE_NAME", node),
            ("RBM_AGENT_NODE_ROLE", "primary"),
        ],
    );

    let first = wait_child(&ep, None).await;
    wait_for(
        Duration::from_secs(30),
        "the first agent's heartbeat",
        || agent_doc(&c, node),
    )
    .await;

    // kill -9 leaves the status document behind; remove it so that only a new agent
    // can bring it back.
    kill(first, "-KILL");
    wait_for(
        Duration::from_secs(10),
        "the killed agent to go",
        || async move { (!alive(first)).then_some(()) },
    )
    .await;
    c.database("admin")
        .collection::<Document>("pbmAgents")
        .delete_many(doc! {"n": node})
        .await
        .expect("delete the stale status");
    let second = wait_child(&ep, Some(first)).await;
    assert_ne!(second, first);
    wait_for(
        Duration::from_secs(30),
        "a heartbeat from the restarted agent",
        || agent_doc(&c, node),
    )
    .await;
    assert!(ep.running(), "entrypoint exited:\n{}", ep.log());
    let log = ep.log();
    assert!(log.contains("exited with code 137"), "log:\n{log}");
    assert!(log.contains("restart in 1 sec"), "log:\n{log}");

    // SIGTERM to the entrypoint: the agent shuts down cleanly (it removes its status)
    // and both are gone promptly.
    kill(ep.pid(), "-TERM");
    let st = ep.wait(Duration::from_secs(20));
    assert!(st.success(), "exit {st}; log:\n{}", ep.log());
    assert!(!alive(second), "agent {second} outlived the entrypoint");
    let log = ep.log();
    assert!(
        log.contains("[entrypoint] got SIGTERM, shutting down"),
        "log:\n{log}"
    );
    // The agent's own line: the signal reached it, not just the entrypoint.
    assert!(
        log.lines()
            .any(|l| l.contains("got SIGTERM") && !l.contains("[entrypoint]")),
        "log:\n{log}"
    );
    assert!(
        agent_doc(&c, node).await.is_none(),
        "the agent did not shut down cleanly; log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_restart_pause_exits_at_once() {
    let server = MongoServer::start().await;
    let uri = server.uri();
    let mut ep = Entrypoint::start(
        ENTRYPOINT,
        &[],
        &[
            ("PBM_AGENT_SIDECAR", "1"),
            ("PBM_AGENT_SIDECAR_SLEEP", "60"),
            ("PBM_MONGODB_URI", &uri),
            ("RBM_AGENT_NODE_NAME", "ep2:27017"),
            ("RBM_AGENT_NODE_ROLE", "secondary"),
        ],
    );
    let agent = wait_child(&ep, None).await;
    kill(agent, "-KILL");
    wait_for(Duration::from_secs(10), "the restart pause", || async {
        ep.log().contains("restart in 60 sec").then_some(())
    })
    .await;
    let t = Instant::now();
    kill(ep.pid(), "-TERM");
    let st = ep.wait(Duration::from_secs(5));
    assert!(st.success(), "exit {st}; log:\n{}", ep.log());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(children_of(ep.pid()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_sidecar_mode_the_agents_exit_code_is_passed_on() {
    // A bad flag: clap exits 2, and the entrypoint does not start it again. Values
    // that Go's ParseBool/Atoi refuse are reported and fall back to the defaults
    // (not a sidecar), as in PBM.
    let mut ep = Entrypoint::start(
        ENTRYPOINT,
        &["--no-such-flag"],
        &[
            ("PBM_AGENT_SIDECAR", "yes"),
            ("PBM_AGENT_SIDECAR_SLEEP", "soon"),
        ],
    );
    let st = ep.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(2), "log:\n{}", ep.log());
    let log = ep.log();
    assert_eq!(
        log.matches("[entrypoint] starting").count(),
        1,
        "log:\n{log}"
    );
    assert!(log.contains("--no-such-flag"), "the agent's error: {log}");
    assert!(
        log.contains("error: PBM_AGENT_SIDECAR=\"yes\" is not a boolean"),
        "log:\n{log}"
    );
    assert!(
        log.contains("error: PBM_AGENT_SIDECAR_SLEEP=\"soon\" is not a number"),
        "log:\n{log}"
    );

    // No URI at all: the agent's own error and code 1.
    let mut ep = Entrypoint::start(ENTRYPOINT, &[], &[("PBM_MONGODB_URI", "")]);
    let st = ep.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "log:\n{}", ep.log());

    // A running agent stopped from outside (not through the entrypoint) with SIGTERM
    // exits 0, and so does the entrypoint, without a restart.
    let server = MongoServer::start().await;
    let c = client(&server).await;
    let uri = server.uri();
    let mut ep = Entrypoint::start(
        ENTRYPOINT,
        &[],
        &[
            ("PBM_AGENT_SIDECAR", "false"),
            ("PBM_MONGODB_URI", &uri),
            ("RBM_AGENT_NODE_NAME", "ep3:27017"),
            ("RBM_AGENT_NODE_ROLE", "primary"),
        ],
    );
    let agent = wait_child(&ep, None).await;
    wait_for(Duration::from_secs(30), "the agent's heartbeat", || {
        agent_doc(&c, "ep3:27017")
    })
    .await;
    kill(agent, "-KILL");
    let st = ep.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(137), "log:\n{}", ep.log());
    assert_eq!(ep.log().matches("[entrypoint] starting").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pbm_names_it_runs_pbm_agent_from_beside_itself() {
    // The Percona Operator copies `pbm-agent-entrypoint` and `pbm-agent` into a shared
    // directory and runs them from there: the entrypoint must pick `pbm-agent` next to
    // itself, not `rbm-agent` next to the file the link points to.
    let dir = tempfile::tempdir().expect("dir");
    let ep_path = dir.path().join("pbm-agent-entrypoint");
    let agent_path = dir.path().join("pbm-agent");
    std::os::unix::fs::symlink(ENTRYPOINT, &ep_path).expect("link the entrypoint");
    std::os::unix::fs::symlink(AGENT, &agent_path).expect("link the agent");
    let mut ep = Entrypoint::start(ep_path.to_str().expect("utf-8 path"), &["version"], &[]);
    let st = ep.wait(Duration::from_secs(20));
    let log = ep.log();
    assert!(st.success(), "exit {st}; log:\n{log}");
    assert!(
        log.contains(&format!("starting `{}`", agent_path.display())),
        "log:\n{log}"
    );
    assert!(log.contains("Version:"), "the agent's output: {log}");

    // RBM_AGENT_BIN wins over the name.
    let mut ep = Entrypoint::start(
        ep_path.to_str().expect("utf-8 path"),
        &["version"],
        &[("RBM_AGENT_BIN", AGENT)],
    );
    let st = ep.wait(Duration::from_secs(20));
    let log = ep.log();
    assert!(st.success(), "exit {st}; log:\n{log}");
    assert!(log.contains(&format!("starting `{AGENT}`")), "log:\n{log}");

    // A missing agent: one clear error, exit 1.
    let mut ep = Entrypoint::start(
        ENTRYPOINT,
        &[],
        &[("RBM_AGENT_BIN", "/nonexistent/rbm-agent")],
    );
    let st = ep.wait(Duration::from_secs(20));
    let log = ep.log();
    assert_eq!(st.code(), Some(1), "log:\n{log}");
    assert!(
        log.contains("error: starting `/nonexistent/rbm-agent`"),
        "log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_layout_runs_rbm_under_pbms_names() {
    // As in the image and the operator's sidecar: `pbm-agent-entrypoint` in sidecar
    // mode with a URI naming only the local member, and `pbm status` run beside it.
    let server = MongoServer::start().await;
    let uri = format!("mongodb://127.0.0.1:{}/", server.port());
    let dir = tempfile::tempdir().expect("dir");
    for (pbm, rbm) in [
        ("pbm-agent-entrypoint", ENTRYPOINT),
        ("pbm-agent", AGENT),
        ("pbm", env!("CARGO_BIN_EXE_rbm")),
    ] {
        std::os::unix::fs::symlink(rbm, dir.path().join(pbm)).expect("link");
    }
    let ep_path = dir.path().join("pbm-agent-entrypoint");
    let mut ep = Entrypoint::start(
        ep_path.to_str().expect("utf-8 path"),
        &[],
        &[
            ("PBM_AGENT_SIDECAR", "true"),
            ("PBM_AGENT_SIDECAR_SLEEP", "5"),
            ("PBM_MONGODB_URI", &uri),
        ],
    );
    // The operator stores its storage config with `pbm config --file` first.
    let pbm = dir.path().join("pbm");
    let store = dir.path().join("backups");
    let conf = dir.path().join("storage.yaml");
    std::fs::write(
        &conf,
        format!(
            "storage:\n  type: filesystem\n  filesystem:\n    path: {}\n",
            store.display()
        ),
    )
    .expect("write config");
    let out = Command::new(&pbm)
        .arg("config")
        .arg("--file")
        .arg(&conf)
        .env("PBM_MONGODB_URI", &uri)
        .output()
        .expect("run pbm config");
    assert!(
        out.status.success(),
        "pbm config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = wait_for(
        Duration::from_secs(40),
        "pbm status to show the agent",
        || {
            let out = Command::new(&pbm)
                .args(["status", "-s", "cluster"])
                .env("PBM_MONGODB_URI", &uri)
                .output()
                .expect("run pbm");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ready = out.status.success()
                && text.contains(&format!("pbm-agent [v{}] OK", rbm_agent::VERSION));
            async move { ready.then_some(text) }
        },
    )
    .await;
    assert!(status.contains(server.replset()), "{status}");
    assert!(
        ep.log().contains(&format!(
            "starting `{}`",
            dir.path().join("pbm-agent").display()
        )),
        "log:\n{}",
        ep.log()
    );
    kill(ep.pid(), "-TERM");
    let st = ep.wait(Duration::from_secs(20));
    assert!(st.success(), "exit {st}; log:\n{}", ep.log());
}
