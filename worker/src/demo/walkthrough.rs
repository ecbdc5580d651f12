//! The demo's walkthrough: set up the partner, the configuration and the samples, run
//! both flows (each file shown as it arrives), check every file at its destination, run
//! both flows again and check that every file was skipped as a duplicate, say where the
//! audit trail and the metrics are, and stop the partner; `verdict.rs` prints the last line.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use ferry_shared::config::Config;
use ferry_shared::telemetry::{self, LogFormat, TelemetrySettings};
use ferry_shared::transfer::{self, Engine, FileReport, Outcome, RunReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::configuration::{self, DOWNLOAD_FLOW, Layout, UPLOAD_FLOW, USERNAME};
use super::partner::{Certificates, Partner};
use super::samples::{self, Arrival, Sample};
use super::verdict::Counted;

/// The walkthrough proper; the partner is stopped on every path once started.
pub(super) async fn walk(log_format: Option<LogFormat>) -> anyhow::Result<Counted> {
    let layout = Layout::create().context("creating the scratch folder")?;
    println!(
        "ferry demo: everything goes under {}",
        layout.scratch.display()
    );

    let certificates =
        Certificates::generate(&layout.secrets).context("making the run's certificates")?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    let partner = Partner::start(&layout.partner_root, &certificates, USERNAME, &password)
        .await
        .context("starting the demo FTPS partner")?;
    println!(
        "partner: FTPS server on {} (explicit TLS required on control and data, passive ports on 127.0.0.1), its disk: {}",
        partner.addr,
        layout.partner_root.display()
    );
    let result = with_partner(&layout, &partner, &certificates, &password, log_format).await;
    let stopped = partner.stop().await;
    match &stopped {
        Ok(()) => println!("partner: stopped; nothing of the demo is left listening"),
        Err(error) => println!("partner: {error:#}"),
    }
    let verdict = result?;
    stopped?;
    Ok(verdict)
}

/// Everything that needs the partner running.
async fn with_partner(
    layout: &Layout,
    partner: &Partner,
    certificates: &Certificates,
    password: &str,
    log_format: Option<LogFormat>,
) -> anyhow::Result<Counted> {
    let orders = samples::orders(&layout.outbox, &layout.partner_incoming())?;
    let statements = samples::statements(&layout.partner_outgoing(), &layout.inbox)?;
    println!(
        "samples: {} orders in {}, {} statements on the partner in /outgoing",
        orders.len(),
        layout.outbox.display(),
        statements.len()
    );

    let store = layout.scratch.join("state.db");
    let config_dir = configuration::write(layout, partner.addr, certificates, password, &store)?;
    println!(
        "configuration: {} (try `ferry-worker validate --config {}`)",
        config_dir.display(),
        config_dir.display()
    );
    let config = Config::load(&config_dir)
        .map_err(|errors| anyhow::anyhow!("the demo configuration is invalid:\n{errors}"))?;
    let config = Arc::new(config);
    let telemetry = telemetry::init(telemetry_settings(log_format))?;

    let engine = Engine::connect(config.clone(), crate::engine_options(&config))
        .await
        .context("opening ferry's store")?;
    println!("\nfirst run: every file is new");
    let delivered = {
        run_flow(&engine, UPLOAD_FLOW, &orders).await?;
        run_flow(&engine, DOWNLOAD_FLOW, &statements).await?;
        check_arrivals(&orders) + check_arrivals(&statements)
    };
    println!("\nsecond run: the same files again");
    let duplicates = {
        let up = run_flow(&engine, UPLOAD_FLOW, &orders).await?;
        let down = run_flow(&engine, DOWNLOAD_FLOW, &statements).await?;
        count_duplicates(&up) + count_duplicates(&down)
    };
    engine.close().await;

    println!();
    println!(
        "audit trail: ferry-worker audit --config {} --flow {UPLOAD_FLOW} (or --flow {DOWNLOAD_FLOW}; `audit verify` checks its hash chain)",
        config_dir.display()
    );
    let metrics = layout.scratch.join("metrics.prom");
    match telemetry.scrape().render() {
        Some(text) => {
            std::fs::write(&metrics, text)?;
            println!(
                "metrics: {} (what a worker serves on /metrics at worker.health_listen)",
                metrics.display()
            );
        }
        None => println!("metrics: none collected"),
    }
    Ok(Counted {
        delivered,
        duplicates,
        expected: orders.len() + statements.len(),
    })
}

/// Log lines on stderr at `warn` unless `RUST_LOG` says otherwise: the walkthrough's
/// own lines on stdout tell the story.
fn telemetry_settings(log_format: Option<LogFormat>) -> TelemetrySettings {
    let mut settings = TelemetrySettings::new("ferry-demo");
    settings.default_filter = "warn,rustify=off".to_owned();
    settings.log_format = log_format.unwrap_or_else(LogFormat::for_stderr);
    settings
}

/// Runs one flow as `ferry-worker run` does, showing each file as it is settled: a bar
/// on a terminal, a plain line per file otherwise.
async fn run_flow(engine: &Engine, flow: &str, samples: &[Sample]) -> anyhow::Result<RunReport> {
    println!("  {flow}:");
    let bar = std::io::stdout().is_terminal().then(|| {
        // On stdout, where the file lines go (stderr carries the log lines).
        let bar =
            ProgressBar::with_draw_target(Some(samples.len() as u64), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template("  [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let show = |row: &FileReport| {
        let line = file_line(flow, row);
        match &bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
                bar.set_message(row.name.clone());
            }
            None => println!("{line}"),
        }
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    let result = transfer::run_flow(engine, flow, None, &run_id, Some(&show)).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result.with_context(|| format!("running {flow}"))?;
    println!("  {}", report.summary_line());
    for row in report.files.iter().filter(|row| row.error.is_some()) {
        if let Some(error) = &row.error {
            println!("    {}: [{}] {}", row.name, error.kind, error.message);
        }
    }
    Ok(report)
}

/// One file as the engine settled it.
fn file_line(flow: &str, row: &FileReport) -> String {
    let place = match (flow, &row.remote_path, &row.local_path) {
        (UPLOAD_FLOW, Some(remote), _) => format!("partner:{remote}"),
        (_, _, Some(local)) => local.clone(),
        _ => String::new(),
    };
    let whereto = match row.outcome {
        _ if place.is_empty() => String::new(),
        Outcome::Transferred => format!(" -> {place}"),
        Outcome::Duplicate => format!(" (already delivered: {place})"),
        _ => format!(" ({place})"),
    };
    format!(
        "    {:<12} {:<30} {:>10} bytes{whereto}",
        row.outcome.as_str(),
        row.name,
        row.size
    )
}

/// Counts the samples found intact at their destination, saying which are not.
pub(super) fn check_arrivals(samples: &[Sample]) -> usize {
    samples
        .iter()
        .filter(|sample| match sample.arrival() {
            Arrival::Intact => true,
            other => {
                println!(
                    "    NOT DELIVERED: {} ({other:?} at {})",
                    sample.name,
                    sample.to.display()
                );
                false
            }
        })
        .count()
}

/// Files a run skipped as already delivered.
fn count_duplicates(report: &RunReport) -> usize {
    report
        .files
        .iter()
        .filter(|row| row.outcome == Outcome::Duplicate)
        .count()
}
