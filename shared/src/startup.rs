//! Building the scheduler's connections from the configuration: telemetry, the Redis store
//! (tick claims) and the broker (publishing), each retried at start so that a scheduler
//! that starts before RabbitMQ or Redis waits for them instead of crash-looping.

use std::time::Duration;

use anyhow::Context;
use ferry_shared::broker::{AmqpUrl, Backoff, Broker, Topology};
use ferry_shared::config::Config;
use ferry_shared::idempotency::{Store, StoreConfig};
use ferry_shared::secrets::Resolver;
use ferry_shared::telemetry::{self, LogFormat, TelemetryGuard, TelemetrySettings};

/// How long start-up keeps retrying an unreachable broker or Redis before giving up.
const START_PATIENCE: Duration = Duration::from_secs(120);

/// Installs logging and tracing for `service` with the configuration's export settings.
pub fn telemetry(
    config: &Config,
    service: &str,
    log_format: LogFormat,
) -> anyhow::Result<TelemetryGuard> {
    let configured = &config.settings.telemetry;
    let mut settings = TelemetrySettings::new(
        configured
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned()),
    );
    settings.otlp_endpoint = configured.otlp_endpoint.clone();
    settings.log_format = log_format;
    Ok(telemetry::init(settings)?)
}

/// The broker topology of this deployment.
pub fn topology(config: &Config) -> Topology {
    Topology {
        prefix: config.settings.broker.exchange_prefix.clone(),
        ..Topology::default()
    }
}

/// Connects to RabbitMQ and declares the topology, retrying with backoff at start.
pub async fn broker(config: &Config) -> anyhow::Result<Broker> {
    let url = AmqpUrl::parse(&config.settings.broker.url)?;
    let topology = topology(config);
    retry("RabbitMQ", || Broker::connect(&url, &topology)).await
}

/// Connects to Redis (the password resolved from its reference), retrying at start.
pub async fn store(config: &Config, resolver: &Resolver) -> anyhow::Result<Store> {
    let redis = &config.settings.redis;
    let mut store_config = StoreConfig::new(redis.url.clone());
    store_config.key_prefix = redis.key_prefix.clone();
    if let Some(reference) = &redis.password {
        store_config.password = Some(
            resolver
                .resolve(reference)
                .await
                .context("resolving redis.password")?,
        );
    }
    retry("Redis", || Store::connect(&store_config)).await
}

/// Calls `connect` until it succeeds or [`START_PATIENCE`] has passed.
async fn retry<T, E, F, Fut>(what: &str, mut connect: F) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
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
            Err(error) => return Err(error).with_context(|| format!("{what} not reachable")),
        }
    }
}
