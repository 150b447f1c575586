//! `rbm-agent`: the daemon that runs next to each mongod. Thin: parses arguments,
//! sets up logging and signals, calls the library.
//!
//! Hidden, test-only settings (never for production): `RBM_AGENT_NODE_NAME` /
//! `--node-name` and `RBM_AGENT_NODE_ROLE` / `--node-role` give several agents on one
//! single-member test server distinct identities and roles; `RBM_AGENT_TEST_OP_HOLD_SECS`
//! makes an operation this build cannot run hold its lock that long, standing in for a
//! long operation. `RBM_AGENT_SERVER_SELECTION_TIMEOUT_MS` (default 30 s) bounds the
//! search for the mongod.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rbm_agent::daemon::{run, AgentSettings};
use rbm_agent::node::{ConnectOptions, NodeRole};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// rbm-agent: executes rbm's backup, restore and PITR operations for one mongod node.
#[derive(Parser, Debug)]
#[command(name = "rbm-agent", version = rbm_agent::VERSION, about)]
struct Cli {
    /// Connection string of the local mongod node.
    #[arg(long, env = "PBM_MONGODB_URI", hide_env_values = true)]
    mongodb_uri: Option<String>,

    /// Agent config file (YAML).
    #[arg(short = 'f', long = "config")]
    config: Option<std::path::PathBuf>,

    /// Log as JSON lines (env LOG_JSON accepts 1/true/yes like PBM's).
    #[arg(
        long,
        env = "LOG_JSON",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false"
    )]
    log_json: bool,

    /// Log level: D, I, W, E or F.
    #[arg(long, env = "LOG_LEVEL", default_value = "I")]
    log_level: String,

    /// Serve Prometheus metrics on HOST:PORT (`/metrics`, and `/healthz` for probes).
    #[arg(long, env = "RBM_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<String>,

    /// How long to look for the mongod before giving up, in milliseconds.
    #[arg(
        long,
        hide = true,
        env = "RBM_AGENT_SERVER_SELECTION_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    server_selection_timeout_ms: u64,

    /// TEST ONLY: use this host:port as the agent's node name instead of `hello.me`,
    /// so several agents can share one test server. Never set it in production: two
    /// agents would stop seeing each other as the same node.
    #[arg(long, hide = true, env = "RBM_AGENT_NODE_NAME")]
    node_name: Option<String>,

    /// TEST ONLY: report this role (primary, secondary, hidden, arbiter) instead of the
    /// server's.
    #[arg(long, hide = true, env = "RBM_AGENT_NODE_ROLE")]
    node_role: Option<String>,

    /// TEST ONLY: hold the lock of an operation this build cannot run for this many
    /// seconds before reporting it, to stand for a long-running operation.
    #[arg(
        long,
        hide = true,
        env = "RBM_AGENT_TEST_OP_HOLD_SECS",
        default_value_t = 0
    )]
    test_op_hold_secs: u64,

    /// Physical backups and restores: the mongod's dbPath (when the server does not
    /// report it in getCmdLineOpts).
    #[arg(long, env = "RBM_AGENT_DBPATH")]
    dbpath: Option<std::path::PathBuf>,

    /// Physical: shell command that stops the mongod and returns once it has exited
    /// (default: the `shutdown` command).
    #[arg(long, env = "RBM_AGENT_MONGOD_STOP_CMD")]
    mongod_stop_cmd: Option<String>,

    /// Physical: shell command that starts the mongod (e.g. `systemctl start mongod`).
    /// Needed for cold backups and for physical restores.
    #[arg(long, env = "RBM_AGENT_MONGOD_START_CMD")]
    mongod_start_cmd: Option<String>,

    /// Physical backup mode of this node: auto, backupCursor, fsyncLock or cold.
    #[arg(long, env = "RBM_AGENT_PHYSICAL_MODE", default_value = "auto")]
    physical_backup_mode: String,

    /// Physical: seconds the mongod may take to stop or to come back.
    #[arg(long, env = "RBM_AGENT_MONGOD_TIMEOUT_SECS", default_value_t = 300)]
    mongod_timeout_secs: u64,

    /// Physical: files copied at once (default: half the CPUs, at least 2).
    #[arg(long, env = "RBM_AGENT_PHYSICAL_PARALLEL_FILES")]
    physical_parallel_files: Option<usize>,

    /// Physical restores: bytes per ranged read (default 8 MiB; PBM's config
    /// `restore.downloadChunkMb` wins when set).
    #[arg(long, hide = true, env = "RBM_AGENT_PHYSICAL_DOWNLOAD_CHUNK_BYTES")]
    physical_download_chunk_bytes: Option<u64>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version.
    Version,
}

fn init_logging(level: &str, json: bool) -> anyhow::Result<()> {
    let level = match level.to_ascii_uppercase().as_str() {
        "D" | "DEBUG" => tracing::Level::DEBUG,
        "I" | "INFO" => tracing::Level::INFO,
        "W" | "WARN" | "WARNING" => tracing::Level::WARN,
        "E" | "F" | "ERROR" | "FATAL" => tracing::Level::ERROR,
        other => anyhow::bail!("unknown log level {other:?}: use D, I, W, E or F"),
    };
    // Only our crates at the chosen level: the driver's debug output is noise here.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("rbm_agent", level)
        .with_target("rbm_storage", level)
        .with_default(tracing::Level::WARN);
    use tracing_subscriber::prelude::*;
    // Colour codes only on a terminal: under systemd or Kubernetes they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        tracing_subscriber::registry()
            .with(fmt.json().with_filter(filter))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .init();
    }
    Ok(())
}

async fn agent(cli: Cli) -> anyhow::Result<()> {
    let uri = cli
        .mongodb_uri
        .context("no mongod to connect to: pass --mongodb-uri or set PBM_MONGODB_URI")?;
    if cli.config.is_some() {
        tracing::warn!(
            "the agent config file (-f) is not read by this build; using flags and environment"
        );
    }
    let node_role = match cli.node_role.as_deref() {
        None => None,
        Some(r) => Some(NodeRole::parse(r).with_context(|| format!("unknown node role {r:?}"))?),
    };
    let mut settings = AgentSettings::new(ConnectOptions {
        uri,
        server_selection_timeout: Duration::from_millis(cli.server_selection_timeout_ms),
        node_name: cli.node_name,
        node_role,
    });
    settings.test_op_hold = Duration::from_secs(cli.test_op_hold_secs);
    settings.metrics_addr = cli.metrics_addr;
    settings.physical.dbpath = cli.dbpath;
    settings.physical.stop_cmd = cli.mongod_stop_cmd.filter(|c| !c.trim().is_empty());
    settings.physical.start_cmd = cli.mongod_start_cmd.filter(|c| !c.trim().is_empty());
    settings.physical.mode = cli
        .physical_backup_mode
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    settings.physical.node_timeout = Duration::from_secs(cli.mongod_timeout_secs.max(1));
    if let Some(n) = cli.physical_download_chunk_bytes.filter(|n| *n > 0) {
        settings.physical.download_chunk = n;
    }
    if let Some(n) = cli.physical_parallel_files.filter(|n| *n > 0) {
        settings.physical.parallel_files = n;
    }

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("got SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("got SIGINT"),
            }
            shutdown.cancel();
        });
    }
    run(settings, shutdown).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Version) = cli.command {
        println!("Version:   {}", rbm_agent::VERSION);
        return std::process::ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&cli.log_level, cli.log_json) {
        eprintln!("Error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(agent(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and why; the URI in it is already redacted.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
