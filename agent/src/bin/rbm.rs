//! `rbm`: the command-line interface. Thin: parses arguments, calls the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rbm_agent::cli::{config, describe, list, logs, ops, status, CliError, Conn, OutputFormat};
use rbm_agent::speed_test::{self, SpeedReport};
use rbm_protocol::command::ResyncCmd;
use rbm_protocol::GoDuration;
use rbm_storage::{Compression, StorageConf};
use std::path::PathBuf;
use std::time::Duration;

/// rbm: backup and restore for MongoDB, compatible with Percona Backup for MongoDB.
#[derive(Parser, Debug)]
#[command(name = "rbm", version = rbm_agent::VERSION, about, propagate_version = true)]
struct Cli {
    /// MongoDB connection string of any cluster member.
    #[arg(long, env = "PBM_MONGODB_URI", global = true, hide_env_values = true)]
    mongodb_uri: Option<String>,

    /// Output format.
    #[arg(short = 'o', long = "out", value_enum, default_value_t = Output::Text, global = true)]
    out: Output,

    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Text,
    Json,
    #[value(name = "json-pretty")]
    JsonPretty,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version.
    Version {
        /// Only the version number.
        #[arg(short = 's', long)]
        short: bool,
        /// Only the git commit.
        #[arg(short = 'c', long)]
        commit: bool,
    },
    /// Measure compression and storage throughput through the backup data path
    /// (like PBM's pbm-speed-test).
    SpeedTest(SpeedTestArgs),
    /// Set, change or list the config stored in the cluster.
    Config(ConfigArgs),
    /// Show the cluster, PITR, running operation and backups.
    #[command(visible_alias = "s")]
    Status {
        /// Sections to show: cluster, pitr, running, backups (comma-separated).
        #[arg(short = 's', long = "sections", value_delimiter = ',')]
        sections: Vec<String>,
        /// Show backup and PITR priorities (not kept by rbm agents yet: shown empty).
        #[arg(short = 'p', long = "priority")]
        priority: bool,
    },
    /// List backups and PITR ranges, or restores.
    List {
        /// Show restores instead of backups.
        #[arg(long)]
        restore: bool,
        /// Show PITR ranges per replica set too.
        #[arg(long)]
        full: bool,
        /// Show only the last N entries (0: all).
        #[arg(long, default_value_t = 0)]
        size: usize,
        /// Show PITR ranges without a base snapshot too.
        #[arg(long)]
        unbacked: bool,
    },
    /// Describe a backup.
    DescribeBackup {
        name: String,
        /// List the collections in the backup (reads the storage).
        #[arg(long = "with-collections")]
        with_collections: bool,
    },
    /// Show PBM logs from the cluster.
    Logs(LogsCliArgs),
    /// Start a backup.
    Backup(BackupCliArgs),
    /// Cancel the running backup.
    CancelBackup,
    /// Restore a backup, or to a point in time.
    Restore(RestoreCliArgs),
    /// Read every object of a backup and check sizes and CRC-64s (no database writes).
    Verify {
        /// The backup to verify.
        name: String,
    },
    /// Delete a backup, or backups older than a time.
    DeleteBackup {
        name: Option<String>,
        /// Delete backups older than this (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS, or <N>d).
        #[arg(long = "older-than")]
        older_than: Option<String>,
        /// Only backups of this type.
        #[arg(short = 't', long = "type")]
        kind: Option<String>,
        /// Don't ask for confirmation.
        #[arg(short = 'y', long = "yes", alias = "force", short_alias = 'f')]
        yes: bool,
    },
    /// Delete PITR chunks.
    DeletePitr {
        /// Delete chunks older than this (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS, or <N>d).
        #[arg(long = "older-than")]
        older_than: Option<String>,
        /// Delete all chunks.
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Don't ask for confirmation.
        #[arg(short = 'y', long = "yes", alias = "force", short_alias = 'f')]
        yes: bool,
        /// Wait for the deletion to finish (always done).
        #[arg(short = 'w', long = "wait")]
        wait: bool,
    },
    /// Delete backups and PITR chunks older than a time.
    Cleanup {
        /// YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS, or <N>d.
        #[arg(long = "older-than")]
        older_than: String,
        /// Don't ask for confirmation.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Wait for the cleanup to finish (always done).
        #[arg(short = 'w', long = "wait")]
        wait: bool,
    },
    /// Storage profiles: list, show, add, remove, sync.
    #[command(subcommand_required = false)]
    Profile {
        #[command(subcommand)]
        what: Option<ProfileCmd>,
    },
    /// Replay the oplog from PITR chunks between two times.
    OplogReplay {
        /// YYYY-MM-DDTHH:MM:SS (UTC).
        #[arg(long)]
        start: String,
        /// YYYY-MM-DDTHH:MM:SS (UTC).
        #[arg(long)]
        end: String,
        /// Wait for the replay to finish.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ProfileCmd {
    /// List configuration profiles.
    List,
    /// Show a configuration profile.
    Show { name: String },
    /// Save a configuration profile (its storage section) from a YAML file.
    Add {
        name: String,
        file: PathBuf,
        /// Sync the backup list from the profile's storage.
        #[arg(long)]
        sync: bool,
        /// Wait for the sync to finish.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// Longest wait (Go duration, e.g. 10m).
        #[arg(long = "wait-time")]
        wait_time: Option<String>,
    },
    /// Remove a configuration profile.
    Remove {
        name: String,
        /// Wait for the agents to finish.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// Longest wait (Go duration, e.g. 10m).
        #[arg(long = "wait-time")]
        wait_time: Option<String>,
    },
    /// Sync the backup list from a profile's storage.
    Sync {
        name: Option<String>,
        /// All profiles.
        #[arg(long)]
        all: bool,
        /// Clear the profile's backup list instead.
        #[arg(long)]
        clear: bool,
        /// Wait for the agents to finish.
        #[arg(short = 'w', long = "wait")]
        wait: bool,
        /// Longest wait (Go duration, e.g. 10m).
        #[arg(long = "wait-time")]
        wait_time: Option<String>,
    },
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// Print one value.
    key: Option<String>,
    /// Store the config from a YAML file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Set a value: key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the config with secrets masked.
    #[arg(long)]
    list: bool,
    /// Resync the backup list with the storage.
    #[arg(long = "force-resync")]
    force_resync: bool,
    /// With --force-resync: also resync physical restore metadata.
    #[arg(long = "include-restores")]
    include_restores: bool,
    /// Wait for the resync to finish.
    #[arg(short = 'w', long = "wait")]
    wait: bool,
    /// Longest wait (Go duration, e.g. 10m).
    #[arg(long = "wait-time")]
    wait_time: Option<String>,
}

#[derive(Args, Debug)]
struct LogsCliArgs {
    /// Show the last N entries (0: all).
    #[arg(short = 't', long = "tail", default_value_t = 20)]
    tail: i64,
    /// Only this replica set or node: rs[/host:port].
    #[arg(short = 'n', long = "node")]
    node: Option<String>,
    /// Minimum severity: D, I, W, E or F.
    #[arg(short = 's', long = "severity", default_value = "I")]
    severity: String,
    /// Only this event: event[/name] (backup, restore, pitr, resync, ...).
    #[arg(short = 'e', long = "event")]
    event: Option<String>,
    /// Only this operation id.
    #[arg(short = 'i', long = "opid")]
    opid: Option<String>,
    /// Show the operation id.
    #[arg(short = 'x', long = "extra")]
    extra: bool,
    /// Follow new entries.
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// Time zone: UTC, or an offset like +02:00 / -0530.
    #[arg(long = "timezone", allow_hyphen_values = true)]
    timezone: Option<String>,
}

#[derive(Args, Debug)]
struct BackupCliArgs {
    /// logical, physical, incremental or external.
    #[arg(short = 't', long = "type", default_value = "logical")]
    kind: String,
    /// Incremental: start a new chain.
    #[arg(long)]
    base: bool,
    /// none, gzip, pgzip, snappy, lz4, s2 or zstd.
    #[arg(long)]
    compression: Option<String>,
    /// Compression level (codec-specific).
    #[arg(long = "compression-level")]
    compression_level: Option<i32>,
    /// Namespaces: db.collection or db.* (comma-separated).
    #[arg(long)]
    ns: Option<String>,
    /// Selective backup: include users and roles of the selected databases.
    #[arg(long = "with-users-and-roles")]
    with_users_and_roles: bool,
    /// Collections dumped in parallel.
    #[arg(long = "num-parallel-collections")]
    num_parallel_collections: Option<i32>,
    /// Storage profile.
    #[arg(long, default_value = "")]
    profile: String,
    /// Wait for the backup to finish.
    #[arg(short = 'w', long = "wait")]
    wait: bool,
    /// Longest wait (Go duration, e.g. 10m).
    #[arg(long = "wait-time")]
    wait_time: Option<String>,
}

#[derive(Args, Debug)]
struct RestoreCliArgs {
    /// The backup to restore.
    name: Option<String>,
    /// Point in time (YYYY-MM-DDTHH:MM:SS, UTC).
    #[arg(long)]
    time: Option<String>,
    /// With --time: the snapshot to start from.
    #[arg(long = "base-snapshot")]
    base_snapshot: Option<String>,
    /// Namespaces: db.collection or db.* (comma-separated).
    #[arg(long)]
    ns: Option<String>,
    /// Restore this collection ...
    #[arg(long = "ns-from")]
    ns_from: Option<String>,
    /// ... under this name.
    #[arg(long = "ns-to")]
    ns_to: Option<String>,
    /// Selective restore: include users and roles.
    #[arg(long = "with-users-and-roles")]
    with_users_and_roles: bool,
    #[arg(long = "num-parallel-collections")]
    num_parallel_collections: Option<i32>,
    #[arg(
        long = "num-insertion-workers-per-collection",
        visible_alias = "num-insertion-workers"
    )]
    num_insertion_workers: Option<i32>,
    /// Documents per insert batch (default: the config's restore.batchSize, 500).
    #[arg(long = "batch-size", value_parser = clap::value_parser!(i32).range(1..))]
    batch_size: Option<i32>,
    /// Don't ask for confirmation.
    #[arg(short = 'y', long = "yes")]
    yes: bool,
    /// Wait for the restore to finish.
    #[arg(short = 'w', long = "wait")]
    wait: bool,
    /// Longest wait (Go duration, e.g. 10m).
    #[arg(long = "wait-time")]
    wait_time: Option<String>,
}

#[derive(Args, Debug)]
struct SpeedTestArgs {
    #[command(subcommand)]
    what: SpeedTestKind,
    /// Uncompressed data to send, in GB.
    #[arg(short = 's', long = "size-gb", default_value_t = 1.0, global = true)]
    size_gb: f64,
    /// Compression: none, gzip, pgzip, snappy, lz4, s2, zstd (several: comma-separated).
    #[arg(long, default_value = "s2", global = true)]
    compression: String,
    /// Compression level (codec-specific).
    #[arg(long = "compression-level", global = true)]
    compression_level: Option<i32>,
    /// Send this file's bytes instead of synthetic BSON documents.
    #[arg(long, value_name = "PATH", global = true)]
    file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum SpeedTestKind {
    /// Compression only: data goes to the blackhole storage.
    Compression,
    /// Compression and upload to a storage, then download and decompression.
    Storage {
        /// A PBM config YAML whose `storage:` section to use (or the section itself).
        #[arg(long = "storage-config", value_name = "FILE")]
        storage_config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RBM_LOG")
                // The AWS SDK warns at length about every credential provider it tried;
                // the storage error already says what failed.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let out = cli.out;
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined, never a multi-line dump.
            let msg = format!("{e:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if out == Output::Text {
                eprintln!("Error: {msg}");
            } else {
                // PBM's exitErr: with -o json the error is JSON on stdout, which is
                // what the Percona Operator parses.
                let j = serde_json::json!({ "Error": msg });
                if out == Output::JsonPretty {
                    println!("{j:#}");
                } else {
                    println!("{j}");
                }
            }
            match e.downcast_ref::<CliError>() {
                Some(c) => std::process::ExitCode::from(c.exit_code()),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

fn format_of(o: Output) -> OutputFormat {
    match o {
        Output::Text => OutputFormat::Text,
        Output::Json => OutputFormat::Json,
        Output::JsonPretty => OutputFormat::JsonPretty,
    }
}

fn wait_time(flag: Option<&str>) -> Result<Option<Duration>, CliError> {
    flag.map(|s| {
        GoDuration::parse(s)
            .map(|d| d.0)
            .map_err(|e| CliError::InvalidArgument(format!("invalid --wait-time {s:?}: {e}")))
    })
    .transpose()
}

/// `--timezone`: `UTC`/`Z`, `+HH:MM`, `-HHMM`; `Local` is read as UTC (no tz database).
fn utc_offset(tz: Option<&str>) -> Result<i32, CliError> {
    let Some(tz) = tz else { return Ok(0) };
    if matches!(tz, "UTC" | "utc" | "Z" | "Local" | "") {
        return Ok(0);
    }
    let bad = || {
        CliError::InvalidArgument(format!(
            "invalid --timezone {tz:?}: expected UTC or an offset like +02:00"
        ))
    };
    let (sign, rest) = match tz.as_bytes().first() {
        Some(b'+') => (1, &tz[1..]),
        Some(b'-') => (-1, &tz[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let h: i32 = digits[..2].parse().map_err(|_| bad())?;
    let m: i32 = digits[2..].parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

async fn connect(uri: Option<&str>) -> Result<Conn, CliError> {
    let uri = uri.filter(|u| !u.is_empty()).ok_or(CliError::NoUri)?;
    Conn::connect(uri).await
}

fn print_out(s: &str) {
    if !s.is_empty() {
        println!("{s}");
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version { short, commit } => {
            let commit_id = option_env!("RBM_GIT_COMMIT").unwrap_or("unknown");
            if short {
                println!("{}", rbm_agent::VERSION);
            } else if commit {
                println!("GitCommit: {commit_id}");
            } else if cli.out == Output::Text {
                println!("Version:   {}\nGitCommit: {commit_id}", rbm_agent::VERSION);
            } else {
                print_json(
                    cli.out,
                    &serde_json::json!({"Version": rbm_agent::VERSION, "GitCommit": commit_id}),
                )?;
            }
            Ok(())
        }
        Command::SpeedTest(args) => speed(cli.out, args).await,
        cmd => Ok(cluster_command(cmd, cli.mongodb_uri.as_deref(), format_of(cli.out)).await?),
    }
}

async fn cluster_command(
    cmd: Command,
    uri: Option<&str>,
    out: OutputFormat,
) -> Result<(), CliError> {
    // Flags are checked before connecting, so a typo is reported without a 10 s wait.
    let conn = || connect(uri);
    let mut stdout = std::io::stdout();
    let text = match cmd {
        Command::Version { .. } | Command::SpeedTest(_) => String::new(),
        Command::Config(a) => {
            let wt = wait_time(a.wait_time.as_deref())?;
            let modes = [
                a.file.is_some(),
                !a.set.is_empty(),
                a.list,
                a.force_resync,
                a.key.is_some(),
            ]
            .iter()
            .filter(|m| **m)
            .count();
            if modes > 1 {
                return Err(CliError::InvalidArgument(
                    "give only one of <key>, --file, --set, --list, --force-resync".into(),
                ));
            }
            if let Some(f) = &a.file {
                let yaml = std::fs::read_to_string(f).map_err(|e| {
                    CliError::InvalidArgument(format!("read config file {}: {e}", f.display()))
                })?;
                // Validated before connecting: a bad file never reaches the cluster.
                let parsed = rbm_protocol::Config::from_yaml(&yaml)?;
                rbm_agent::scheduler::validate(&parsed)
                    .map_err(|e| CliError::InvalidArgument(format!("invalid config: {e}")))?;
                config::set_file(&conn().await?, &yaml, a.wait, wt, out).await?
            } else if !a.set.is_empty() {
                config::set_vars(&conn().await?, &a.set, out).await?
            } else if a.force_resync {
                let payload = a.include_restores.then(|| ResyncCmd {
                    include_restores: true,
                    ..Default::default()
                });
                config::resync(&conn().await?, payload, a.wait, wt, out).await?
            } else if let Some(k) = &a.key {
                config::get_key(&conn().await?, k, out).await?
            } else {
                config::list(&conn().await?, out).await?
            }
        }
        Command::Status { sections, .. } => {
            for s in &sections {
                if !status::SECTIONS.contains(&s.as_str()) {
                    return Err(CliError::InvalidArgument(format!(
                        "invalid --sections value {s:?}: expected any of {}",
                        status::SECTIONS.join(", ")
                    )));
                }
            }
            status::status(&conn().await?, &sections, out).await?
        }
        Command::List {
            restore,
            full,
            size,
            unbacked,
        } => {
            let args = list::ListArgs {
                restore,
                full,
                size,
                unbacked,
            };
            list::list(&conn().await?, &args, out).await?
        }
        Command::Verify { name } => {
            rbm_agent::cli::verify::verify(&conn().await?, &name, out).await?
        }
        Command::DescribeBackup {
            name,
            with_collections,
        } => describe::describe_backup(&conn().await?, &name, with_collections, out).await?,
        Command::Logs(a) => {
            let args = logs::LogsArgs {
                tail: a.tail,
                node: a.node,
                severity: a.severity,
                event: a.event,
                opid: a.opid,
                extra: a.extra,
                follow: a.follow,
                utc_offset: utc_offset(a.timezone.as_deref())?,
            };
            if !["D", "I", "W", "E", "F"].contains(&args.severity.as_str()) {
                return Err(CliError::InvalidArgument(format!(
                    "invalid --severity {:?}: expected one of D, I, W, E, F",
                    args.severity
                )));
            }
            logs::logs(&conn().await?, &args, out, &mut stdout).await?;
            String::new()
        }
        Command::Backup(a) => {
            let args = ops::BackupArgs {
                kind: a.kind,
                base: a.base,
                compression: a.compression,
                compression_level: a.compression_level,
                ns: a.ns,
                with_users_and_roles: a.with_users_and_roles,
                num_parallel_collections: a.num_parallel_collections,
                profile: a.profile,
                wait: a.wait,
                wait_time: wait_time(a.wait_time.as_deref())?,
            };
            ops::parse_ns(args.ns.as_deref().unwrap_or(""))?;
            if let Some(c) = &args.compression {
                c.parse::<Compression>().map_err(|_| {
                    CliError::InvalidArgument(format!(
                        "invalid --compression {c:?}: expected one of {}",
                        rbm_protocol::config::COMPRESSION_TYPES.join(", ")
                    ))
                })?;
            }
            ops::backup(&conn().await?, &args, out, &mut stdout).await?
        }
        Command::CancelBackup => ops::cancel_backup(&conn().await?, out).await?,
        Command::Restore(a) => {
            let args = ops::RestoreArgs {
                backup: a.name,
                time: a.time,
                base_snapshot: a.base_snapshot,
                ns: a.ns,
                ns_from: a.ns_from,
                ns_to: a.ns_to,
                with_users_and_roles: a.with_users_and_roles,
                num_parallel_collections: a.num_parallel_collections,
                num_insertion_workers: a.num_insertion_workers,
                batch_size: a.batch_size,
                wait: a.wait,
                wait_time: wait_time(a.wait_time.as_deref())?,
            };
            ops::parse_ns(args.ns.as_deref().unwrap_or(""))?;
            if let Some(t) = &args.time {
                ops::parse_datetime("--time", t)?;
            }
            // Asked only on a terminal: the Percona Operator runs `restore` without
            // stdin and without -y, and PBM does not ask it either.
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                ops::confirm("Restore overwrites data in the cluster. Continue?", a.yes)?;
            }
            ops::restore(&conn().await?, &args, out, &mut stdout).await?
        }
        Command::DeleteBackup {
            name,
            older_than,
            kind,
            yes,
        } => {
            if let Some(t) = &older_than {
                ops::parse_older_than(t)?;
            }
            rbm_agent::cli::delete::delete_backup(
                &conn().await?,
                name.as_deref(),
                older_than.as_deref(),
                kind.as_deref(),
                yes,
                out,
                &mut stdout,
            )
            .await?
        }
        Command::DeletePitr {
            older_than,
            all,
            yes,
            ..
        } => {
            if let Some(t) = &older_than {
                ops::parse_older_than(t)?;
            }
            rbm_agent::cli::delete::delete_pitr(
                &conn().await?,
                older_than.as_deref(),
                all,
                yes,
                out,
                &mut stdout,
            )
            .await?
        }
        Command::Cleanup {
            older_than, yes, ..
        } => {
            ops::parse_older_than(&older_than)?;
            rbm_agent::cli::delete::cleanup(&conn().await?, &older_than, yes, out, &mut stdout)
                .await?
        }
        Command::Profile { what } => {
            use rbm_agent::cli::profile;
            match what.unwrap_or(ProfileCmd::List) {
                ProfileCmd::List => profile::list(&conn().await?, out).await?,
                ProfileCmd::Show { name } => profile::show(&conn().await?, &name, out).await?,
                ProfileCmd::Add {
                    name,
                    file,
                    sync,
                    wait,
                    wait_time: wt,
                } => {
                    let wt = wait_time(wt.as_deref())?;
                    let yaml = std::fs::read_to_string(&file).map_err(|e| {
                        CliError::InvalidArgument(format!(
                            "open config file {}: {e}",
                            file.display()
                        ))
                    })?;
                    profile::add(&conn().await?, &name, &yaml, sync, wait, wt, out).await?
                }
                ProfileCmd::Remove {
                    name,
                    wait,
                    wait_time: wt,
                } => {
                    let wt = wait_time(wt.as_deref())?;
                    profile::remove(&conn().await?, &name, wait, wt, out).await?
                }
                ProfileCmd::Sync {
                    name,
                    all,
                    clear,
                    wait,
                    wait_time: wt,
                } => {
                    let wt = wait_time(wt.as_deref())?;
                    profile::sync(&conn().await?, name.as_deref(), all, clear, wait, wt, out)
                        .await?
                }
            }
        }
        Command::OplogReplay { start, end, wait } => {
            ops::parse_datetime("--start", &start)?;
            ops::parse_datetime("--end", &end)?;
            ops::oplog_replay(&conn().await?, &start, &end, wait, out).await?
        }
    };
    print_out(&text);
    Ok(())
}

async fn speed(out: Output, args: SpeedTestArgs) -> Result<()> {
    if !(args.size_gb > 0.0 && args.size_gb.is_finite()) {
        bail!("--size-gb must be a positive number, got {}", args.size_gb);
    }
    let codecs: Vec<Compression> = args
        .compression
        .split(',')
        .map(|c| c.trim().parse::<Compression>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--compression: {e}"))?;
    let conf = match &args.what {
        SpeedTestKind::Compression => StorageConf {
            kind: rbm_storage::StorageType::Blackhole,
            ..Default::default()
        },
        SpeedTestKind::Storage { storage_config } => {
            let text = std::fs::read_to_string(storage_config)
                .with_context(|| format!("reading {}", storage_config.display()))?;
            StorageConf::from_yaml(&text)
                .with_context(|| format!("in {}", storage_config.display()))?
        }
    };
    let storage = rbm_storage::from_config(&conf, None).await?;
    let source = match &args.file {
        Some(p) => speed_test::Source::File(p.clone()),
        None => speed_test::Source::Sample((args.size_gb * 1e9) as u64),
    };
    let mut reports: Vec<SpeedReport> = Vec::new();
    for c in codecs {
        let r = speed_test::run(storage.clone(), c, args.compression_level, &source).await?;
        if out == Output::Text {
            print_speed(&r);
        }
        reports.push(r);
    }
    if out != Output::Text {
        print_json(out, &reports)?;
    }
    Ok(())
}

fn print_speed(r: &SpeedReport) {
    let ratio = if r.bytes_stored > 0 {
        r.bytes_in as f64 / r.bytes_stored as f64
    } else {
        0.0
    };
    print!(
        "{:<6} {:.2}GB sent in {:.1}s. Avg upload rate = {:.1}MB/s (stored {:.2}GB, ratio {:.2})",
        r.compression,
        r.bytes_in as f64 / 1e9,
        r.upload_secs,
        r.upload_mb_s,
        r.bytes_stored as f64 / 1e9,
        ratio
    );
    if let Some(d) = r.download_mb_s {
        print!(", download+decompress {d:.1}MB/s");
    }
    println!(
        ", CPU {:.1}s, peak RSS {}MB",
        r.cpu_secs,
        r.peak_rss_bytes.map(|b| b / 1_000_000).unwrap_or(0)
    );
}

fn print_json<T: serde::Serialize>(out: Output, v: &T) -> Result<()> {
    let s = if out == Output::JsonPretty {
        serde_json::to_string_pretty(v)?
    } else {
        serde_json::to_string(v)?
    };
    println!("{s}");
    Ok(())
}
