//! `ferry-worker run`: one flow-run now, in this process, without a broker. The same
//! engine call the consume loop makes, for operators and for scripts (`--json`).
//!
//! Exit codes: 0 when every file was transferred or skipped, 1 when any failed (or the run
//! could not run), 2 for a configuration error.
//!
//! The flow's webhooks (`notify:`) are told at the run's end; after printing the report the
//! process waits up to 5 s for those notifications, then exits whatever they came to (the
//! exit code never depends on them).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_shared::config::Config;
use ferry_shared::transfer::{self, Engine, FileReport};
use indicatif::{ProgressBar, ProgressStyle};

/// What to run and how to report it.
pub struct RunArgs {
    /// The flow.
    pub flow: String,
    /// Only these files (all matching files when empty).
    pub files: Vec<String>,
    /// One JSON object on stdout instead of the summary line.
    pub json: bool,
}

/// Runs the flow and prints its report.
pub async fn run(config: Arc<Config>, args: RunArgs) -> ExitCode {
    let engine = match Engine::connect(config.clone(), crate::engine_options(&config)).await {
        Ok(engine) => engine,
        Err(error) => return report_error(&error, args.json),
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    let only_files = (!args.files.is_empty()).then_some(args.files.as_slice());

    // A spinner on a terminal only: scripts and CI logs get the plain summary.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {pos} files done, last: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let progress = |row: &FileReport| {
        if let Some(bar) = &bar {
            bar.inc(1);
            bar.set_message(format!("{} ({})", row.name, row.outcome.as_str()));
        }
    };

    let result =
        transfer::run_flow(&engine, &args.flow, only_files, &run_id, Some(&progress)).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    engine.close().await;
    let code = match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => eprintln!("ferry-worker: cannot encode the report: {error}"),
                }
            } else {
                println!("{}", report.summary_line());
                for row in &report.files {
                    if let Some(holder) = &row.holder {
                        let name = ferry_shared::ftps::printable(&row.name);
                        let expires = holder
                            .expires_in_ms
                            .map(|ms| {
                                format!(
                                    ", which expires in {:.1}s unless renewed",
                                    ms as f64 / 1000.0
                                )
                            })
                            .unwrap_or_default();
                        println!(
                            "  left-to-other-worker: {name} (claimed by {}{expires})",
                            holder.owner
                        );
                    }
                }
                for row in report.files.iter().filter(|row| row.error.is_some()) {
                    if let Some(error) = &row.error {
                        let name = ferry_shared::ftps::printable(&row.name);
                        println!(
                            "  {}: {name} [{}] {}",
                            row.outcome.as_str(),
                            error.kind,
                            error.message
                        );
                    }
                }
            }
            if report.all_settled() {
                ExitCode::SUCCESS
            } else if report.is_success() {
                // Nothing failed, but files were left to another worker's claim: they are
                // not done yet, and a script must not take the run for finished.
                ExitCode::from(EXIT_LEFT_UNDONE)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => report_error(&error, args.json),
    };
    // The report is out; webhook notifications still under way get a short grace.
    engine
        .notifier()
        .drain(ferry_shared::notify::SHUTDOWN_GRACE)
        .await;
    code
}

/// Exit code of a run in which nothing failed but some files were held by another
/// worker's claim (not done yet).
const EXIT_LEFT_UNDONE: u8 = 3;

/// Prints a run that could not run at all; exit 2 for configuration, 1 otherwise.
fn report_error(error: &transfer::TransferError, json: bool) -> ExitCode {
    if json {
        let body = serde_json::json!({ "error": { "kind": error.kind().as_str(), "message": error.to_string() } });
        println!("{body}");
    } else {
        eprintln!(
            "ferry-worker: run failed [{}]: {error}",
            error.kind().as_str()
        );
    }
    if error.is_configuration() {
        ExitCode::from(ferry_shared::startup::EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
