//! Start-up wiring shared by both binaries: telemetry, the Redis store and the broker, built
//! from the configuration. Connections are retried for a while at start, so that a process
//! that starts before RabbitMQ or Redis (a fresh `docker compose up`, a node reboot) waits
//! for them instead of crash-looping.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use thiserror::Error;

use crate::backoff::Backoff;
use crate::broker::{AmqpUrl, Broker, BrokerError, Topology};
use crate::config::{Config, render_summary};
use crate::idempotency::{IdempotencyError, Store, StoreConfig};
use crate::secrets::{Resolver, SecretError};
use crate::telemetry::{self, LogFormat, TelemetryError, TelemetryGuard, TelemetrySettings};

/// How long start-up keeps retrying an unreachable broker or Redis before giving up.
const START_PATIENCE: Duration = Duration::from_secs(120);

/// The exit code of both binaries for a configuration error.
pub const EXIT_CONFIG: u8 = 2;

/// Loads the configuration directory; on failure prints every error (file, line, field)
/// and their count to stderr and returns `None` (the caller exits with [`EXIT_CONFIG`]).
pub fn load_config(dir: &Path) -> Option<Config> {
    match Config::load(dir) {
        Ok(config) => Some(config),
        Err(errors) => {
            eprintln!(
                "{errors}\n{} configuration error(s) in {}",
                errors.len(),
                dir.display()
            );
            None
        }
    }
}

/// The `validate` command of both binaries: the summary on stdout (exit 0), or every
/// error on stderr (exit [`EXIT_CONFIG`]).
pub fn validate(dir: &Path) -> ExitCode {
    match load_config(dir) {
        Some(config) => {
            print!("{}", render_summary(&config, chrono::Utc::now()));
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EXIT_CONFIG),
    }
}

/// Why a binary could not start.
#[derive(Debug, Error)]
pub enum StartupError {
    /// Logging and tracing could not be installed.
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    /// The broker URL is invalid, or RabbitMQ stayed unreachable.
    #[error("RabbitMQ: {0}")]
    Broker(#[from] BrokerError),
    /// Redis stayed unreachable.
    #[error("Redis: {0}")]
    Store(#[from] IdempotencyError),
    /// `redis.password` could not be resolved.
    #[error("redis.password: {0}")]
    RedisPassword(#[from] SecretError),
    /// A fleet process was started with `store.kind: embedded`.
    #[error(
        "{process} needs the fleet's shared store, but ferry.yaml sets `store.kind: embedded` \
         ({path}): every worker and scheduler of a fleet must see the same claims, records and \
         ticks. Use `store.kind: redis` for a fleet; the embedded store is for one node \
         (`ferry-worker run`, `probe`, `validate`, `audit`)"
    )]
    EmbeddedStoreInFleet {
        /// The refusing command, e.g. `ferry-worker consume`.
        process: &'static str,
        /// The embedded store's file.
        path: String,
    },
}

/// Refuses to start a fleet process (`ferry-worker consume`, `ferry-scheduler`) on the
/// embedded store: a fleet must share one store, and a file on one machine is not shared.
/// The caller exits with [`EXIT_CONFIG`].
pub fn require_fleet_store(config: &Config, process: &'static str) -> Result<(), StartupError> {
    match config.settings.store.embedded_path() {
        Some(path) => Err(StartupError::EmbeddedStoreInFleet {
            process,
            path: path.display().to_string(),
        }),
        None => Ok(()),
    }
}

/// Installs logging and tracing for `service` with the configuration's export settings; the
/// log format asked for, else the one for stderr ([`LogFormat::for_stderr`]).
pub fn telemetry(
    config: &Config,
    service: &str,
    log_format: Option<LogFormat>,
) -> Result<TelemetryGuard, StartupError> {
    let configured = &config.settings.telemetry;
    let mut settings = TelemetrySettings::new(
        configured
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned()),
    );
    settings.otlp_endpoint = configured.otlp_endpoint.clone();
    settings.log_format = log_format.unwrap_or_else(LogFormat::for_stderr);
    Ok(telemetry::init(settings)?)
}

/// The broker topology of this deployment.
pub fn topology(config: &Config) -> Topology {
    let broker = &config.settings.broker;
    Topology {
        prefix: broker.exchange_prefix.clone(),
        retry_delays: broker.retry_delays.clone(),
        max_attempts: broker.max_attempts,
        bindings: broker.bindings.clone(),
        ..Topology::default()
    }
}

/// Connects to RabbitMQ and declares the topology, retrying with backoff at start.
pub async fn broker(config: &Config) -> Result<Broker, StartupError> {
    let url = AmqpUrl::parse(&config.settings.broker.url)?;
    let topology = topology(config);
    Ok(retry("RabbitMQ", || Broker::connect(&url, &topology)).await?)
}

/// Connects to Redis, retrying at start, or opens the embedded store (`store.kind`), once:
/// a file that cannot be opened now (missing folder, no permission) will not open later.
pub async fn store(config: &Config, resolver: &Resolver) -> Result<Store, StartupError> {
    let store_config = StoreConfig::from_config(config, resolver).await?;
    if store_config.embedded.is_some() {
        return Ok(Store::connect(&store_config).await?);
    }
    let store = retry("Redis", || Store::connect(&store_config)).await?;
    for warning in store.durability_warnings().await.unwrap_or_default() {
        tracing::warn!(%warning, "Redis is not set up for ferry's guarantees");
    }
    Ok(store)
}

/// Calls `connect` until it succeeds or [`START_PATIENCE`] has passed; the last error
/// otherwise.
async fn retry<T, E, F, Fut>(what: &str, mut connect: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match connect().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() < deadline => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "{what} not reachable yet; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C: the binaries' signal to stop.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
