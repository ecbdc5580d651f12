//! Fleet throughput: how many flow-run messages per second 1, 2 and 4 `ferry-worker`
//! processes settle, and the latency from publish to ack. Not part of the test suite: run it
//! through `scripts/bench-fleet` (release build).
//!
//! Set-up: the test bed's vsftpd as the partner, the machine's RabbitMQ (a virtual host of
//! its own) and Redis (a key prefix of its own), one upload flow with a few small files that
//! are delivered once by `ferry-worker run` before measuring, so that every measured run finds
//! duplicates only (hash the files, look the records up in Redis, ack).
//!
//! For each worker count: start the workers, wait until they consume, publish the messages
//! (confirmed, 32 publishes in flight), wait until the workers' logs hold one `Acked`
//! settlement per message, stop the workers.
//!
//! What is measured:
//! - latency of a message: the timestamp of the worker's JSON log line `flow-run message
//!   settled` (`settled: Acked`, written right after the broker took the ack) minus the
//!   message's `requested_at` (set when the message is built, just before it is published);
//!   both clocks are this machine's;
//! - throughput: messages / (last ack - first `requested_at`), i.e. publish start to drain
//!   end; the publishing rate is printed too, since the workers cannot go faster than it.
//!
//! Publishing as fast as it can (the default), the publisher outruns the workers, so the
//! latency is mostly time spent waiting in the queue; `FERRY_BENCH_RATE=<messages/s>` paces
//! the publishes below the workers' capacity to measure the latency of a run that does not
//! wait. `FERRY_BENCH_CONCURRENCY` sets `worker.concurrency` (default 4).
//! `FERRY_BENCH_FLOWS=<n>` (default 1) spreads the messages over `n` flows (`f`, `f2`, …,
//! the same files and partner): one flow's runs never overlap (its flow lock), so only many
//! flows show whether runs/s grow with workers. `FERRY_BENCH_FILES=<n>` (default 5) sets the
//! files in the flow's folder: `FERRY_BENCH_FILES=10000 scripts/bench-fleet 1 1` times one
//! re-check of a 10 000-file folder (one message: of several published at once, most would be
//! covered by the first run and finish at once, see `idempotency/coverage.rs`).
//!
//! Usage: `bench_fleet [MESSAGES] [WORKER COUNTS...]` (default 10000 messages; 1 2 4 workers).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::broker::{Headers, PublisherOptions};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{
    Fleet, FleetOptions, FleetProcess, is_event, noise, span_field, timestamp_micros,
};
use tokio::task::JoinSet;

/// Publishes in flight at once.
const IN_FLIGHT: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let mut counts: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if counts.is_empty() {
        counts = vec![1, 2, 4];
    }

    let bin_dir = ferry_tests::tools::workspace_binary_dir()?;
    let env_number = |name: &str| -> anyhow::Result<Option<u64>> {
        std::env::var(name)
            .ok()
            .map(|v| v.parse().with_context(|| format!("{name}={v}")))
            .transpose()
    };
    let rate = env_number("FERRY_BENCH_RATE")?.filter(|r| *r > 0);
    let concurrency = env_number("FERRY_BENCH_CONCURRENCY")?.unwrap_or(4);
    let flow_count = env_number("FERRY_BENCH_FLOWS")?.unwrap_or(1).max(1);
    let mut fleet = Fleet::start(
        "bench",
        FleetOptions {
            max_attempts: 10,
            concurrency: u16::try_from(concurrency)?,
            ..FleetOptions::default()
        },
    )
    .await?;
    fleet.use_binaries_in(&bin_dir);
    let files = env_number("FERRY_BENCH_FILES")?.unwrap_or(5) as usize;
    for n in 0..files {
        fleet.write_local(&format!("file{n}.xml"), &noise(4096, n as u64 + 1))?;
    }
    let flows: Vec<String> = (1..=flow_count)
        .map(|n| {
            if n == 1 {
                "f".to_owned()
            } else {
                format!("f{n}")
            }
        })
        .collect();
    add_copies_of_flow_f(fleet.config_dir(), &flows[1..])?;
    for flow in &flows {
        let first = std::process::Command::new(fleet.binary("ferry-worker")?)
            .arg("--config")
            .arg(fleet.config_dir())
            .args(["run", "--flow", flow])
            .output()?;
        if !first.status.success() || fleet.remote_names().len() != files {
            bail!(
                "the first run of {flow} did not deliver the files: {}{}",
                String::from_utf8_lossy(&first.stdout),
                String::from_utf8_lossy(&first.stderr)
            );
        }
    }
    println!(
        "binaries: {}; {flow_count} flow(s) with {files} files of 4 KiB each, all already delivered; worker.concurrency {concurrency}; publishing {}",
        bin_dir.display(),
        rate.map_or("as fast as confirms allow".to_owned(), |r| format!(
            "at {r}/s"
        ))
    );
    println!(
        "{messages} flow-run messages per row; latency = worker's ack log line - requested_at"
    );
    println!(
        "{:>7} {:>12} {:>14} {:>12} {:>10} {:>10} {:>10} {:>16}",
        "workers",
        "publish/s",
        "flow-runs/s",
        "drain (s)",
        "p50 (ms)",
        "p99 (ms)",
        "max (ms)",
        "worker CPU (s)"
    );

    let broker = fleet.broker().await?;
    let publisher = broker.publisher(PublisherOptions::default());
    for (round, &count) in counts.iter().enumerate() {
        let mut workers: Vec<FleetProcess> = (0..count)
            .map(|i| fleet.spawn_worker(&format!("bench-{round}-{count}w-{i}")))
            .collect::<Result<_, _>>()?;
        for worker in &mut workers {
            worker
                .wait_for_event(LogEvent::Consuming, Duration::from_secs(60))
                .await?;
        }

        // Publish.
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        let per_task = messages.div_ceil(IN_FLIGHT);
        for task in 0..IN_FLIGHT {
            let publisher = publisher.clone();
            let flows = flows.clone();
            let n = per_task.min(messages.saturating_sub(task * per_task));
            tasks.spawn(async move {
                let mut sent = Vec::with_capacity(n);
                for k in 0..n {
                    if let Some(rate) = rate {
                        let slot = (k * IN_FLIGHT + task) as f64 / rate as f64;
                        let at =
                            tokio::time::Instant::from_std(started) + Duration::from_secs_f64(slot);
                        tokio::time::sleep_until(at).await;
                    }
                    let flow = &flows[(k * IN_FLIGHT + task) % flows.len()];
                    let message = FlowRunMessage::new(flow, Trigger::Manual, None);
                    publisher.publish(&message, &Headers::new()).await?;
                    sent.push((
                        message.flow_run_id.to_string(),
                        message.requested_at.timestamp_micros(),
                    ));
                }
                anyhow::Ok(sent)
            });
        }
        let mut requested: HashMap<String, i64> = HashMap::with_capacity(messages);
        while let Some(joined) = tasks.join_next().await {
            requested.extend(joined??);
        }
        let publish_secs = started.elapsed().as_secs_f64();

        // Wait for the drain: one Acked settlement per message.
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let acked: usize = workers
                .iter()
                .map(|w| w.log_text().matches("\"settled\":\"Acked\"").count())
                .sum();
            if acked >= messages {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {acked} of {messages} acked within an hour");
            }
            for worker in &mut workers {
                if !worker.is_running() {
                    bail!("{} died:\n{}", worker.name, worker.tail(30));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let worker_cpu: f64 = workers.iter().map(|w| cpu_seconds(w.pid())).sum();
        for worker in &mut workers {
            worker.stop(Duration::from_secs(60)).await?;
        }

        // Latencies from the logs.
        let mut latencies = Vec::with_capacity(messages);
        let mut last_ack = i64::MIN;
        let mut retried = 0usize;
        for worker in &workers {
            for line in worker.lines() {
                if is_event(&line, LogEvent::FlowRunRetryScheduled) {
                    retried += 1;
                }
                if !is_event(&line, LogEvent::FlowRunSettled)
                    || line["fields"]["settled"].as_str() != Some("Acked")
                {
                    continue;
                }
                let Some(id) = span_field(&line, "flow_run_id") else {
                    continue;
                };
                let (Some(at), Some(requested_at)) = (timestamp_micros(&line), requested.get(&id))
                else {
                    continue;
                };
                latencies.push(at - requested_at);
                last_ack = last_ack.max(at);
            }
        }
        if latencies.len() != messages {
            bail!("{} acks matched for {messages} messages", latencies.len());
        }
        latencies.sort_unstable();
        let first_request = requested.values().copied().min().unwrap_or(0);
        let drain = (last_ack - first_request) as f64 / 1e6;
        let pct =
            |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize] as f64 / 1e3;
        println!(
            "{:>7} {:>12.0} {:>14.1} {:>12.1} {:>10.1} {:>10.1} {:>10.1} {:>16.1}{}",
            count,
            messages as f64 / publish_secs,
            messages as f64 / drain,
            drain,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            worker_cpu,
            if retried > 0 {
                format!("  ({retried} retries: flow busy)")
            } else {
                String::new()
            }
        );
    }
    let _ = publisher.close().await;
    let _ = broker.close().await;
    Ok(())
}

/// Writes `flows/copies.yaml`: each of `ids` a copy of the fleet's flow `f` (same folder,
/// partner and files).
fn add_copies_of_flow_f(config_dir: &std::path::Path, ids: &[String]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let f = std::fs::read_to_string(config_dir.join("flows/f.yaml"))?;
    let body = f
        .strip_prefix("flows:\n  f:\n")
        .context("flows/f.yaml starts with `flows:` and `f:`")?;
    let copies: String = ids.iter().map(|id| format!("  {id}:\n{body}")).collect();
    std::fs::write(
        config_dir.join("flows/copies.yaml"),
        format!("flows:\n{copies}"),
    )?;
    Ok(())
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// `getconf CLK_TCK` (100 on Linux).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}
