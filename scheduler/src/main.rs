//! `ferry-scheduler`: the tiny cron process that publishes flow-run messages.
//!
//! Subcommands:
//! - none: the tick loop (one message per flow and cron tick, once across replicas), the
//!   HTTP trigger and the file-arrival watchers;
//! - `trigger`: publish a manual (or event) flow-run now and print its id;
//! - `validate`: check the configuration directory and print its summary.
//!
//! This file parses the command line and turns results into exit codes: 0 success, 1 a
//! failure at run time, 2 a configuration error.

mod trigger;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_shared::arrival::ArrivalTrigger;
use ferry_shared::config::Config;
use ferry_shared::http_trigger::HttpTrigger;
use ferry_shared::ops_http::OpsEndpoint;
use ferry_shared::secrets::Resolver;
use ferry_shared::startup;
use ferry_shared::telemetry::{LogEvent, LogFormat, Scrape};

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

    /// Log lines (on stderr) as `pretty` text or `json`; by default JSON when stderr is not
    /// a terminal, text on one.
    #[arg(long, global = true, env = "FERRY_LOG_FORMAT")]
    log_format: Option<LogFormat>,

    /// Where `GET /metrics` listens, overriding `scheduler.metrics_listen` (for several
    /// schedulers on one host).
    #[arg(long, global = true, env = "FERRY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and print a summary (exit 2 with every error otherwise).
    Validate,
    /// Publish a flow-run now and print its id.
    Trigger {
        /// The flow to run.
        #[arg(long)]
        flow: String,
        /// Only these files (repeat the option); all matching files when absent.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Mark the run as triggered by this upstream event id (trigger `event`).
        #[arg(long)]
        event_id: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Validate) = cli.command {
        return startup::validate(&cli.config);
    }
    let Some(config) = startup::load_config(&cli.config) else {
        return ExitCode::from(startup::EXIT_CONFIG);
    };
    if let Err(error) = startup::require_fleet_store(&config, "ferry-scheduler") {
        eprintln!("ferry-scheduler: {error}");
        return ExitCode::from(startup::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ferry-scheduler: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let telemetry = startup::telemetry(&config, "ferry-scheduler", cli.log_format)?;
        match cli.command {
            Some(Command::Trigger {
                flow,
                files,
                event_id,
            }) => trigger::run(&config, &flow, files, event_id).await,
            _ => schedule(&config, cli.metrics_listen, telemetry.scrape()).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry-scheduler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The tick loop, until SIGTERM or Ctrl-C.
async fn schedule(
    config: &Config,
    metrics_listen: Option<SocketAddr>,
    scrape: Scrape,
) -> anyhow::Result<()> {
    let listen = metrics_listen.unwrap_or(config.settings.scheduler.metrics_listen);
    OpsEndpoint {
        scrape,
        readiness: None,
    }
    .serve(listen)
    .await?;
    let resolver = Resolver::new(config.settings.resolver.clone());
    let store = startup::store(config, &resolver).await?;
    let broker = startup::broker(config).await?;
    let publisher = broker.publisher(ferry_shared::broker::PublisherOptions {
        retry_for: config.settings.scheduler.publish_give_up,
        ..ferry_shared::broker::PublisherOptions::default()
    });
    if let Some(listen) = config.settings.http_trigger.listen {
        HttpTrigger::new(config, resolver.clone(), publisher.clone())
            .serve(listen)
            .await?;
    }
    // Upload flows with `trigger.on_arrival`: watched here, run by the workers (same folder).
    let _arrivals = ArrivalTrigger::new(config, publisher.clone()).spawn();
    let ticker = ferry_shared::schedule::Ticker::new(config, store, publisher);
    tracing::info!(
        flows = ticker.scheduled_flows(),
        event = LogEvent::SchedulerStarted.as_str(),
        "scheduler started"
    );
    ticker
        .run(
            config.settings.scheduler.catch_up,
            startup::shutdown_signal(),
        )
        .await;
    Ok(())
}
