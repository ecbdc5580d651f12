//! `ferry-worker demo`: ferry's main job end to end on one machine, with nothing but this
//! binary. It starts a real FTPS partner on loopback (`partner.rs`), writes a
//! configuration with CA verification on in a scratch folder (`configuration.rs`),
//! creates sample files (`samples.rs`), and runs an upload flow and a download flow
//! twice through the same engine as `ferry-worker run`: the first run delivers every
//! file, the second skips every one as a duplicate (`walkthrough.rs`). It ends with one
//! line a script can check, `demo: ok: ...` (exit 0) or `demo: FAILED: ...` (exit 1).
//!
//! `ferry-worker demo --fleet` (`scripts/demo --fleet`) does the same with the fleet
//! (`fleet/`): RabbitMQ and Redis, OpenBao holding the partner's password,
//! `ferry-scheduler` with its HTTP trigger and two `ferry-worker consume` processes.

mod configuration;
mod fleet;
mod partner;
mod samples;
mod verdict;
mod walkthrough;

use std::process::ExitCode;

use ferry_shared::telemetry::LogFormat;

/// `ferry-worker demo [--fleet]`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Run the fleet instead of one process: RabbitMQ and Redis on their usual loopback
    /// ports, OpenBao (`bao`, from PATH or the test bed) for the partner's password,
    /// `ferry-scheduler` (next to this binary) and two workers, runs asked for over the
    /// scheduler's HTTP trigger.
    #[arg(long)]
    pub fleet: bool,
}

/// Runs the demo the arguments ask for and prints its verdict line.
pub async fn run(args: &DemoArgs, log_format: Option<LogFormat>) -> ExitCode {
    let counted = if args.fleet {
        fleet::walk().await
    } else {
        walkthrough::walk(log_format).await
    };
    verdict::print(counted)
}
