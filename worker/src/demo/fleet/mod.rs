//! `ferry-worker demo --fleet`: the demo's job done by a fleet, as production runs it.
//!
//! RabbitMQ and Redis must be running on their usual loopback ports (`services.rs`). The
//! demo starts OpenBao in dev mode and puts the partner's password in it, starts the same
//! local FTPS partner as the one-process demo, writes a fleet configuration
//! (`configuration.rs`), and starts `ferry-scheduler` (with its HTTP trigger) and two
//! `ferry-worker consume` processes, each with its own health port (`processes.rs`).
//!
//! It then asks for a run of each flow the way an upstream system does, `POST
//! /v1/flows/{flow}/runs` with the bearer token, shows each file arriving, and reads what
//! each worker did from its `/metrics`; asks again and counts the duplicates the workers
//! skipped; and stops everything it started (SIGTERM, then SIGKILL after a grace),
//! whatever happened. The verdict line is the one-process demo's.

mod configuration;
mod http;
mod processes;
mod services;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::broker::{AmqpUrl, Broker};
use ferry_shared::config::Config;

use super::configuration::{DOWNLOAD_FLOW, Layout, UPLOAD_FLOW, USERNAME};
use super::partner::{Certificates, Partner};
use super::samples::{self, Sample};
use super::verdict::Counted;
use super::walkthrough::check_arrivals;
use configuration::{FleetSettings, PASSWORD_FIELD, PASSWORD_PATH};
use processes::{DemoProcess, free_port, sibling_binary};
use services::{OpenBao, RABBITMQ, REDIS};

/// How long one round of runs may take before the demo gives up (the first round includes
/// the workers' first logins and secret look-ups).
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

/// The fleet demo; everything it started is stopped on every path.
pub async fn walk() -> anyhow::Result<Counted> {
    let layout = Layout::create().context("creating the scratch folder")?;
    println!(
        "ferry fleet demo: everything goes under {}",
        layout.scratch.display()
    );
    services::require_broker_and_store().await?;
    println!("services: RabbitMQ on {RABBITMQ}, Redis on {REDIS}");
    let bao = OpenBao::start(&layout.scratch.join("openbao"), &layout.logs)
        .await
        .context("starting OpenBao")?;
    println!(
        "secrets: OpenBao (dev mode) on http://{}; the partner's password goes in as vault:secret/{PASSWORD_PATH}#{PASSWORD_FIELD}",
        bao.addr
    );
    let result = with_openbao(&layout, &bao).await;
    let stopped = bao.stop().await;
    report_stop("OpenBao", &stopped);
    let counted = result?;
    stopped?;
    Ok(counted)
}

/// Everything that needs OpenBao: the partner, then the fleet.
async fn with_openbao(layout: &Layout, bao: &OpenBao) -> anyhow::Result<Counted> {
    let certificates =
        Certificates::generate(&layout.secrets).context("making the run's certificates")?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    bao.put_secret(PASSWORD_PATH, PASSWORD_FIELD, &password)
        .await?;
    let partner = Partner::start(&layout.partner_root, &certificates, USERNAME, &password)
        .await
        .context("starting the demo FTPS partner")?;
    println!(
        "partner: FTPS server on {} (explicit TLS required on control and data), its disk: {}",
        partner.addr,
        layout.partner_root.display()
    );
    let result = with_partner(layout, bao, &partner, &certificates).await;
    let stopped = partner.stop().await;
    match &stopped {
        Ok(()) => println!("partner: stopped"),
        Err(error) => println!("partner: {error:#}"),
    }
    let counted = result?;
    stopped?;
    Ok(counted)
}

/// The addresses of the fleet's processes.
struct Addresses {
    trigger: SocketAddr,
    trigger_token: String,
    workers: Vec<SocketAddr>,
}

/// Writes the configuration, starts the scheduler and two workers, runs the rounds, and
/// stops the processes.
async fn with_partner(
    layout: &Layout,
    bao: &OpenBao,
    partner: &Partner,
    certificates: &Certificates,
) -> anyhow::Result<Counted> {
    let orders = samples::orders(&layout.outbox, &layout.partner_incoming())?;
    let statements = samples::statements(&layout.partner_outgoing(), &layout.inbox)?;
    println!(
        "samples: {} orders in {}, {} statements on the partner in /outgoing",
        orders.len(),
        layout.outbox.display(),
        statements.len()
    );
    let addresses = Addresses {
        trigger: free_port()?,
        trigger_token: uuid::Uuid::new_v4().simple().to_string(),
        workers: vec![free_port()?, free_port()?],
    };
    let run_suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let key_prefix = format!("ferry-demo-{run_suffix}");
    let mut settings = FleetSettings {
        vault: bao.addr,
        vault_token: &bao.token,
        trigger: addresses.trigger,
        trigger_token: &addresses.trigger_token,
        scheduler_metrics: free_port()?,
        key_prefix: &key_prefix,
        exchange_prefix: "ferry-demo",
    };
    let mut config_dir = configuration::write(layout, partner.addr, certificates, &settings)?;
    let config = Config::load(&config_dir)
        .map_err(|errors| anyhow::anyhow!("the demo configuration is invalid:\n{errors}"))?;
    // An earlier demo stopped halfway may have left runs in the shared queues; this one's
    // workers would run them too, and count their duplicates. Then use queues of its own.
    let leftover = leftover_runs(&config).await?;
    if leftover > 0 {
        println!(
            "broker: {leftover} runs of an earlier demo wait in the `ferry-demo` queues; this demo uses queues named `{key_prefix}` instead"
        );
        settings.exchange_prefix = &key_prefix;
        config_dir = configuration::write(layout, partner.addr, certificates, &settings)?;
    }
    println!(
        "configuration: {} (Redis keys under `{key_prefix}:`)",
        config_dir.display()
    );

    let mut fleet = start_fleet(layout, &config_dir, &addresses)?;
    let result = rounds(&mut fleet, &addresses, &orders, &statements).await;
    if result.is_ok() {
        println!(
            "audit trail: ferry-worker audit --config {} --flow {UPLOAD_FLOW} (kept in Redis; `audit verify` checks its hash chain)",
            config_dir.display()
        );
        println!(
            "Redis: this demo's keys stay for the audit command; remove them with `redis-cli --scan --pattern '{key_prefix}:*' | xargs redis-cli del`"
        );
    }
    if result.is_err() {
        println!("logs of the fleet: {}", layout.logs.display());
    }
    for process in fleet {
        let name = process.name.clone();
        let stopped = process.stop().await;
        report_stop(&name, &stopped);
    }
    result.map(|(delivered, duplicates)| Counted {
        delivered,
        duplicates,
        expected: orders.len() + statements.len(),
    })
}

/// Runs waiting in the demo's work queue (declaring the queues if they are new).
async fn leftover_runs(config: &Config) -> anyhow::Result<u32> {
    let url = AmqpUrl::parse(&config.settings.broker.url)?;
    let broker = Broker::connect(&url, &ferry_shared::startup::topology(config))
        .await
        .context("connecting to RabbitMQ")?;
    let depth = broker.work_queue_depth().await;
    let _ = broker.close().await;
    Ok(depth?)
}

/// Starts `ferry-scheduler` and the two workers, each logging JSON to its own file.
fn start_fleet(
    layout: &Layout,
    config_dir: &std::path::Path,
    addresses: &Addresses,
) -> anyhow::Result<Vec<DemoProcess>> {
    let config = config_dir.display().to_string();
    let scheduler = DemoProcess::spawn(
        "scheduler",
        &sibling_binary("ferry-scheduler")?,
        &["--config", &config, "--log-format", "json"],
        &[],
        &layout.logs,
    )?;
    let mut fleet = vec![scheduler];
    let worker = sibling_binary("ferry-worker")?;
    for (index, health) in addresses.workers.iter().enumerate() {
        let health = health.to_string();
        fleet.push(DemoProcess::spawn(
            &format!("worker-{}", index + 1),
            &worker,
            &[
                "--config",
                &config,
                "--log-format",
                "json",
                "--health-listen",
                &health,
                "consume",
            ],
            &[],
            &layout.logs,
        )?);
    }
    println!(
        "fleet: ferry-scheduler (HTTP trigger on {}) and two workers (health and /metrics on {} and {}); logs in {}",
        addresses.trigger,
        addresses.workers[0],
        addresses.workers[1],
        layout.logs.display()
    );
    Ok(fleet)
}

/// Waits for the fleet, runs both flows twice through the HTTP trigger; returns the
/// samples delivered by the first round and the duplicates skipped by the second.
async fn rounds(
    fleet: &mut [DemoProcess],
    addresses: &Addresses,
    orders: &[Sample],
    statements: &[Sample],
) -> anyhow::Result<(usize, usize)> {
    wait_ready(fleet, addresses).await?;
    let samples: Vec<&Sample> = orders.iter().chain(statements).collect();

    println!("\nfirst round: every file is new");
    trigger_both(addresses).await?;
    wait_for_runs(fleet, addresses, 1, &samples).await?;
    let delivered = check_arrivals(orders) + check_arrivals(statements);
    show_who_ran_what(addresses).await?;

    println!("\nsecond round: the same files again");
    trigger_both(addresses).await?;
    wait_for_runs(fleet, addresses, 2, &[]).await?;
    let pages = metrics_pages(addresses).await?;
    let duplicates = pages
        .iter()
        .map(|page| http::counter_sum(page, "ferry_files_total", &[("outcome", "duplicate")]))
        .sum::<u64>() as usize;
    println!("  the workers skipped {duplicates} files as already delivered");
    show_who_ran_what(addresses).await?;

    println!();
    println!("metrics: each worker serves them on /metrics at its health address while it runs");
    Ok((delivered, duplicates))
}

/// Waits until both workers answer `/readyz` and the scheduler's trigger accepts
/// connections.
async fn wait_ready(fleet: &mut [DemoProcess], addresses: &Addresses) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for process in fleet.iter_mut() {
            process.check_running()?;
        }
        let mut ready = tokio::net::TcpStream::connect(addresses.trigger)
            .await
            .is_ok();
        for worker in &addresses.workers {
            ready &= matches!(http::get(*worker, "/readyz").await, Ok(r) if r.status == 200);
        }
        if ready {
            println!("fleet: the scheduler and both workers are ready");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the fleet was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asks the scheduler's HTTP trigger for a run of each flow, as an upstream system does.
async fn trigger_both(addresses: &Addresses) -> anyhow::Result<()> {
    let bearer = format!("Bearer {}", addresses.trigger_token);
    for flow in [UPLOAD_FLOW, DOWNLOAD_FLOW] {
        let path = format!("/v1/flows/{flow}/runs");
        let response = http::post_json(
            addresses.trigger,
            &path,
            &[("Authorization", &bearer)],
            r#"{"upstream_id":"ferry-demo"}"#,
        )
        .await?;
        if response.status != 202 {
            bail!(
                "POST {path} answered {}: {}",
                response.status,
                response.body.trim()
            );
        }
        let id = serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|body| body["flow_run_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!("  POST {path} -> 202, flow-run {id} queued");
    }
    Ok(())
}

/// Waits until the workers together report `runs` successful runs of each flow, printing
/// each of `samples` as it arrives at its destination.
async fn wait_for_runs(
    fleet: &mut [DemoProcess],
    addresses: &Addresses,
    runs: u64,
    samples: &[&Sample],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ROUND_TIMEOUT;
    let mut shown = BTreeSet::new();
    loop {
        for sample in samples {
            if !shown.contains(&sample.name) && sample.to.exists() {
                println!(
                    "    arrived: {:<30} -> {}",
                    sample.name,
                    sample.to.display()
                );
                shown.insert(sample.name.clone());
            }
        }
        let pages = metrics_pages(addresses).await?;
        let done = [UPLOAD_FLOW, DOWNLOAD_FLOW].iter().all(|flow| {
            let successes: u64 = pages
                .iter()
                .map(|page| {
                    http::counter_sum(
                        page,
                        "ferry_flow_runs_total",
                        &[("flow", flow), ("outcome", "success")],
                    )
                })
                .sum();
            successes >= runs
        });
        if done && shown.len() == samples.len() {
            return Ok(());
        }
        for process in fleet.iter_mut() {
            process.check_running()?;
        }
        if Instant::now() > deadline {
            bail!("the runs did not all succeed within {ROUND_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each worker's `/metrics` page.
async fn metrics_pages(addresses: &Addresses) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    for worker in &addresses.workers {
        let response = http::get(*worker, "/metrics").await?;
        if response.status != 200 {
            bail!("GET http://{worker}/metrics answered {}", response.status);
        }
        pages.push(response.body);
    }
    Ok(pages)
}

/// Prints, for each worker, the runs of each flow it has done so far and the secrets it
/// read from OpenBao (from its metrics).
async fn show_who_ran_what(addresses: &Addresses) -> anyhow::Result<()> {
    for (index, page) in metrics_pages(addresses).await?.iter().enumerate() {
        let runs: Vec<String> = [UPLOAD_FLOW, DOWNLOAD_FLOW]
            .iter()
            .map(|flow| {
                let count = http::counter_sum(page, "ferry_flow_runs_total", &[("flow", flow)]);
                format!("{flow} x{count}")
            })
            .collect();
        let from_vault = http::counter_sum(
            page,
            "ferry_secret_resolutions_total",
            &[("store", "vault"), ("outcome", "success")],
        );
        println!(
            "  worker-{}: runs {}; secrets read from OpenBao: {from_vault}",
            index + 1,
            runs.join(", ")
        );
    }
    Ok(())
}

/// Says how a process stopped.
fn report_stop(name: &str, stopped: &anyhow::Result<()>) {
    match stopped {
        Ok(()) => println!("{name}: stopped"),
        Err(error) => println!("{name}: {error:#}"),
    }
}
