//! `ferry-worker`: the stateless process that runs flow-runs.
//!
//! Subcommands:
//! - `consume` (the default): take flow-run messages from RabbitMQ and run them;
//! - `run`: run one flow now, in this process, without a broker;
//! - `probe`: connect to a partner step by step, as a flow would, and report each step;
//! - `validate`: check the configuration directory and print its summary;
//! - `setup`: declare the broker topology and exit.
//!
//! This file only parses the command line and turns results into exit codes; each command
//! lives in its own module and the work itself in `ferry-shared`.

mod health;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a configuration error (the same in both binaries).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ferry-worker",
    version,
    about = "ferry's worker: runs FTPS flow-runs"
)]
struct Cli {
    /// The configuration directory (ferry.yaml, partners/, flows/).
    #[arg(
        long,
        global = true,
        env = "FERRY_CONFIG",
        default_value = "/etc/ferry"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and print a summary (exit 2 with every error otherwise).
    Validate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate) => validate::run(&cli.config),
        None => {
            eprintln!("ferry-worker: consuming is not available yet; try `ferry-worker validate`");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
