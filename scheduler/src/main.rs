//! `ferry-scheduler`: the tiny cron process that publishes flow-run messages.
//!
//! Subcommands:
//! - none: the tick loop (publish one message per flow and cron tick, once across replicas);
//! - `trigger`: publish a manual flow-run now and print its id;
//! - `validate`: check the configuration directory and print its summary.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a configuration error (the same in both binaries).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ferry-scheduler",
    version,
    about = "ferry's scheduler: publishes flow-runs on cron ticks"
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
            eprintln!(
                "ferry-scheduler: the tick loop is not available yet; try `ferry-scheduler validate`"
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
