//! `rbm-agent`: the daemon that runs next to each mongod. Thin: parses arguments,
//! calls the library.

use clap::{Parser, Subcommand};

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

    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,

    /// Log level: D, I, W, E or F.
    #[arg(long, env = "LOG_LEVEL", default_value = "I")]
    log_level: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("Version:   {}", rbm_agent::VERSION);
            std::process::ExitCode::SUCCESS
        }
        None => {
            // The control loop (commands, locks, heartbeats) is not built yet; say so
            // rather than pretend to run.
            eprintln!("Error: the rbm-agent daemon is not implemented yet in this build");
            std::process::ExitCode::FAILURE
        }
    }
}
