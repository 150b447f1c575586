//! `rbm-agent-entrypoint`: the container entrypoint, PBM's `pbm-agent-entrypoint` in Rust
//! so that a minimal image needs no shell.
//!
//! It runs the agent with its own arguments and:
//! - with `PBM_AGENT_SIDECAR=true` (Go `ParseBool` spellings), starts the agent again
//!   `PBM_AGENT_SIDECAR_SLEEP` seconds (default 1) after it exits, whatever the reason:
//!   a sidecar must not take its pod down because mongod was briefly unreachable;
//! - otherwise exits with the agent's exit code (128 + signal when it was killed);
//! - on SIGTERM or SIGINT sends SIGTERM to the agent, waits for it to finish its clean
//!   shutdown (the orchestrator's kill timeout bounds that) and exits with its code.
//!   Unlike PBM's, which exits at once, this leaves no orphan still writing.
//!
//! Which agent: `RBM_AGENT_BIN` if set (tests, unusual layouts); otherwise the program
//! named like this one without `-entrypoint` (`rbm-agent`, or `pbm-agent` when installed
//! under PBM's names for the Percona Operator), looked up next to this program first and
//! then on `PATH`, as PBM's does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

const ENV_SIDECAR: &str = "PBM_AGENT_SIDECAR";
const ENV_SIDECAR_SLEEP: &str = "PBM_AGENT_SIDECAR_SLEEP";
const ENV_AGENT_BIN: &str = "RBM_AGENT_BIN";
const DEFAULT_AGENT: &str = "rbm-agent";

macro_rules! say {
    ($($arg:tt)*) => { eprintln!("[entrypoint] {}", format!($($arg)*)) };
}

/// Go's `strconv.ParseBool`, which PBM uses for `PBM_AGENT_SIDECAR`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

struct Settings {
    sidecar: bool,
    sleep: Duration,
}

impl Settings {
    /// Bad values are reported and replaced by the defaults, as PBM does: an entrypoint
    /// that refuses to start over a typo would take the agent down with it.
    fn from_env() -> Self {
        let mut s = Settings {
            sidecar: false,
            sleep: Duration::from_secs(1),
        };
        if let Some(v) = std::env::var_os(ENV_SIDECAR) {
            match v.to_str().and_then(parse_go_bool) {
                Some(b) => s.sidecar = b,
                None => say!("error: {ENV_SIDECAR}={v:?} is not a boolean; not a sidecar"),
            }
        }
        if let Some(v) = std::env::var_os(ENV_SIDECAR_SLEEP) {
            match v.to_str().and_then(|t| t.trim().parse::<i64>().ok()) {
                // A negative sleep means none, as time.Sleep treats it.
                Some(n) => s.sleep = Duration::from_secs(n.max(0).unsigned_abs()),
                None => {
                    say!("error: {ENV_SIDECAR_SLEEP}={v:?} is not a number of seconds; using 1")
                }
            }
        }
        s
    }
}

/// The agent program to run (see the module docs).
fn agent_program(argv0: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os(ENV_AGENT_BIN).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let name = argv0
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("-entrypoint"))
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_AGENT)
        .to_string();
    // The invoked path first: a symlink farm (pbm-* → rbm-*) resolves to the real file
    // in current_exe, but the agent's alias lives beside the link.
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = argv0
        .filter(|p| p.components().count() > 1)
        .and_then(Path::parent)
    {
        dirs.push(dir.to_path_buf());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        dirs.push(dir.to_path_buf());
    }
    dirs.into_iter()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Exit code as a shell reports it: the code, or 128 + the signal that killed it.
fn exit_code(st: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Forwards SIGTERM and waits for the agent's own clean shutdown.
async fn stop_agent(child: &mut Child, program: &Path) -> i32 {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child, so
        // it cannot have been recycled for another process.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            say!(
                "send SIGTERM to `{}` ({pid}): {}",
                program.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    match child.wait().await {
        Ok(st) => {
            say!(
                "`{}` stopped with code {}",
                program.display(),
                exit_code(st)
            );
            exit_code(st)
        }
        Err(e) => {
            say!("error: waiting for `{}`: {e}", program.display());
            1
        }
    }
}

async fn run(program: PathBuf, args: Vec<OsString>, settings: Settings) -> i32 {
    let mut signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Signals { term, int },
        (Err(e), _) | (_, Err(e)) => {
            say!("error: cannot install signal handlers: {e}");
            return 1;
        }
    };
    loop {
        say!("starting `{}`", program.display());
        let code = match Command::new(&program).args(&args).spawn() {
            Err(e) => {
                say!("error: starting `{}`: {e}", program.display());
                1
            }
            Ok(mut child) => {
                tokio::select! {
                    st = child.wait() => match st {
                        Ok(st) => exit_code(st),
                        Err(e) => {
                            say!("error: waiting for `{}`: {e}", program.display());
                            1
                        }
                    },
                    sig = signals.recv() => {
                        say!("got {sig}, shutting down");
                        return stop_agent(&mut child, &program).await;
                    }
                }
            }
        };
        if !settings.sidecar {
            return code;
        }
        say!("`{}` exited with code {code}", program.display());
        say!("restart in {} sec", settings.sleep.as_secs());
        tokio::select! {
            _ = tokio::time::sleep(settings.sleep) => {}
            sig = signals.recv() => {
                say!("got {sig}, shutting down");
                return 0;
            }
        }
    }
}

fn main() {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().map(PathBuf::from);
    let args: Vec<OsString> = argv.collect();
    let settings = Settings::from_env();
    let program = agent_program(argv0.as_deref());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(program, args, settings));
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool_spellings() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", " true"] {
            assert_eq!(parse_go_bool(bad), None, "{bad:?}");
        }
    }
}
