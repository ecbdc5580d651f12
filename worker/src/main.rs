//! `ferry-worker`: the stateless process that runs flow-runs.
//!
//! Subcommands:
//! - `consume` (the default): take flow-run messages from RabbitMQ and run them;
//! - `run`: run one flow now, in this process, without a broker;
//! - `probe`: connect to a partner step by step, as a flow would, and report each step;
//! - `validate`: check the configuration directory and print its summary;
//! - `setup`: declare the broker topology and exit;
//! - `audit`: a flow's or a file's history, `audit verify`, `audit export` (see `audit.rs`);
//! - `demo`: ferry's main job end to end against a local FTPS partner (see `demo/`);
//! - `standalone`: the whole of ferry on one machine: schedule, triggers and runs in one
//!   process over the embedded store, no broker (see `standalone.rs`);
//! - `dead-letters`: the runs a standalone node gave up on, as JSON.
//!
//! This file only parses the command line and turns results into exit codes (0 success,
//! 1 failure, 2 configuration error); each command lives in its own module and the work
//! itself in `ferry-shared`.

mod audit;
mod consume;
mod demo;
mod probe;
mod run;
mod source;
mod standalone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ferry_shared::config::Config;
use ferry_shared::secrets::Resolver;
use ferry_shared::startup;
use ferry_shared::telemetry::{LogFormat, Scrape};
use ferry_shared::transfer::{Engine, EngineOptions};

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

    /// Where the health endpoints listen, overriding `worker.health_listen` (for several
    /// workers on one host).
    #[arg(long, global = true, env = "FERRY_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,

    /// Log lines (on stderr) as `pretty` text or `json`; by default JSON when stderr is not
    /// a terminal, text on one.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT")]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume flow-run messages from RabbitMQ and run them (the default).
    Consume,
    /// Run one flow now, without a broker, and print its report.
    Run {
        /// The flow to run.
        #[arg(long)]
        flow: String,
        /// Only these files (repeat the option); all matching files when absent.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Print one JSON object with a row per file instead of the summary line.
        #[arg(long)]
        json: bool,
    },
    /// Connect to a partner as a flow would and print every step (exit 1 at a failing step).
    Probe {
        /// The partner to probe.
        #[arg(long)]
        partner: String,
        /// A directory to list (the login directory when absent).
        #[arg(long)]
        path: Option<String>,
    },
    /// Check the configuration and print a summary (exit 2 with every error otherwise).
    Validate,
    /// Declare the broker topology (exchanges, queues, retry and dead-letter paths) and exit.
    Setup,
    /// Print a flow's (or one file's) audit history; `verify` its hash chain; `export` it.
    Audit(audit::AuditArgs),
    /// Move real files end to end: a local FTPS partner, an upload and a download flow run
    /// twice (the second run skips every file as a duplicate); needs no configuration.
    Demo(demo::DemoArgs),
    /// Run the whole of ferry on this machine: the schedule, the triggers and the flow-runs
    /// in one process, over the embedded store (`store.kind: embedded`), no broker.
    Standalone,
    /// Print the runs a standalone node gave up on (its dead letters), as JSON.
    DeadLetters,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Consume);
    if let Command::Validate = command {
        return startup::validate(&cli.config);
    }
    if let Command::Demo(args) = &command {
        // The demo writes its own configuration; `--config` does not apply.
        return match runtime() {
            Ok(runtime) => runtime.block_on(demo::run(args, cli.log_format)),
            Err(code) => code,
        };
    }
    let Some(config) = startup::load_config(&cli.config) else {
        return ExitCode::from(startup::EXIT_CONFIG);
    };
    if let Command::Consume = command
        && let Err(error) = startup::require_fleet_store(&config, "ferry-worker consume")
    {
        eprintln!("ferry-worker: {error}");
        return ExitCode::from(startup::EXIT_CONFIG);
    }
    let config = Arc::new(config);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let telemetry = match startup::telemetry(&config, "ferry-worker", cli.log_format) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("ferry-worker: {error}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = match command {
            Command::Run { flow, files, json } => {
                return run::run(config, run::RunArgs { flow, files, json }).await;
            }
            Command::Probe { partner, path } => {
                return probe::run(&config, &partner, path.as_deref()).await;
            }
            Command::Audit(args) => return audit::run(&config, args).await,
            Command::Setup => setup(&config).await,
            Command::DeadLetters => standalone::print_dead_letters(&config).await,
            Command::Standalone => {
                let options = engine_options(&config);
                standalone::run(config, cli.health_listen, telemetry.scrape(), options).await
            }
            // `validate` and `demo` returned above.
            Command::Consume | Command::Validate | Command::Demo(_) => {
                consume(config, cli.health_listen, telemetry.scrape()).await
            }
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("ferry-worker: {error:#}");
                if error.is::<standalone::StandaloneError>() {
                    ExitCode::from(startup::EXIT_CONFIG)
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    })
}

/// The async runtime, or the exit code after saying why it cannot start. 8 MiB per
/// runtime thread rather than tokio's 2 MiB: a flow-run is a deep state machine, and a
/// debug build's frames are large (the futures are boxed per file too).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()
        .map_err(|error| {
            eprintln!("ferry-worker: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        })
}

/// `setup`: declares the topology (connecting does it) and says what exists.
async fn setup(config: &Config) -> anyhow::Result<()> {
    let broker = startup::broker(config).await?;
    let topology = broker.topology();
    println!(
        "declared: exchange {}, work queue {}, dead letters {}",
        topology.exchange(),
        topology.work_queue(),
        topology.dead_letter_queue()
    );
    Ok(())
}

/// `consume`: the worker's main loop, with health endpoints, until SIGTERM or Ctrl-C.
async fn consume(
    config: Arc<Config>,
    health_listen: Option<SocketAddr>,
    scrape: Scrape,
) -> anyhow::Result<()> {
    let readiness = crate::consume::serve_ops(&config, health_listen, scrape).await?;
    let resolver = Resolver::new(config.settings.resolver.clone());
    let store = startup::store(&config, &resolver).await?;
    let engine = Arc::new(Engine::new(
        config.clone(),
        resolver,
        store,
        engine_options(&config),
    ));
    let broker = startup::broker(&config).await?;
    consume::run(engine, broker, readiness, startup::shutdown_signal()).await;
    Ok(())
}

/// The engine's knobs from the configuration.
fn engine_options(config: &Config) -> EngineOptions {
    let worker = &config.settings.worker;
    EngineOptions {
        claim_lease: worker.claim_lease,
        flow_lock_lease: worker.flow_lock_lease,
        flow_lock_wait: worker.flow_lock_wait,
        ..EngineOptions::default()
    }
}
