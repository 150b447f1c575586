//! `rbm`: the command-line interface. Thin: parses arguments, calls the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rbm_agent::speed_test::{self, SpeedReport};
use rbm_storage::{Compression, StorageConf};
use std::path::PathBuf;

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
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
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
    }
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
