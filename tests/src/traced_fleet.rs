//! A fleet (`fleet.rs`) whose processes export their spans: the telemetry environment the
//! trace tests give the real binaries, and the few steps they all take (files to send, a
//! consuming worker with its own service name, waiting for the files on the partner).

use ferry_shared::telemetry::LogEvent;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::fleet::{Fleet, FleetProcess, noise};
use crate::ports::free_port;

/// The service name the workers are given through `OTEL_SERVICE_NAME`.
pub const WORKER_SERVICE: &str = "ferry-worker-traced";
/// The header the exporters are given through `OTEL_EXPORTER_OTLP_HEADERS`.
pub const HEADER: (&str, &str) = ("x-ferry-test", "traces-e2e");
/// The resource attribute they are given through `OTEL_RESOURCE_ATTRIBUTES`.
pub const RESOURCE_ATTRIBUTE: (&str, &str) = ("deployment.environment.name", "traces-test");
/// How long a process may take to connect and start consuming.
const START: Duration = Duration::from_secs(60);

/// The telemetry environment of a process: export to `endpoint` over `protocol` every 100 ms,
/// with [`HEADER`] and [`RESOURCE_ATTRIBUTE`].
pub fn otel_env(endpoint: &str, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("{}={}", HEADER.0, HEADER.1),
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("{}={}", RESOURCE_ATTRIBUTE.0, RESOURCE_ATTRIBUTE.1),
        ),
    ]
}

/// `env` as [`Fleet::spawn_with_env`] takes it.
pub fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Spawns a consuming worker named `name` with `env` and `OTEL_SERVICE_NAME` =
/// [`WORKER_SERVICE`] (no `--log-format`), and waits until it consumes; returns it and its
/// health and metrics address.
pub async fn traced_worker(
    fleet: &Fleet,
    name: &str,
    env: &[(&'static str, String)],
) -> anyhow::Result<(FleetProcess, SocketAddr)> {
    let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = as_refs(env);
    env.push(("OTEL_SERVICE_NAME", WORKER_SERVICE));
    let mut process = fleet.spawn_with_env(
        name,
        "ferry-worker",
        &["--health-listen", &health.to_string(), "consume"],
        &env,
    )?;
    process.wait_for_event(LogEvent::Consuming, START).await?;
    Ok((process, health))
}

/// Writes `count` files `traceNNN.xml` of about `size` bytes (distinct sizes); name -> size.
pub fn write_files(
    fleet: &Fleet,
    count: usize,
    size: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    (0..count)
        .map(|n| {
            let name = format!("trace{n:03}.xml");
            fleet.write_local(&name, &noise(size + n, rand::random()))?;
            Ok((name, (size + n) as u64))
        })
        .collect()
}

/// Waits until every file in `sent` is on the partner; fails after `timeout` with the end of
/// each process's log.
pub async fn wait_delivered(
    fleet: &Fleet,
    sent: &BTreeMap<String, u64>,
    processes: &[&FleetProcess],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let remote = fleet.remote_names();
        if sent.keys().all(|name| remote.contains(name)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: String = processes
                .iter()
                .map(|p| format!("==> {} <==\n{}\n", p.name, p.tail(30)))
                .collect();
            bail!("files not delivered within {timeout:?}: remote {remote:?}\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
