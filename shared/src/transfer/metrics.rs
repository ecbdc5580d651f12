//! What a flow-run records in ferry's metrics (see `telemetry/metrics.rs` for the names,
//! labels and export): the run's counts come from its final [`RunReport`], in one place, so
//! that the engine's code paths need no metric calls of their own; each file's duration is
//! timed around the file's future, the one thing the report does not hold.
//!
//! Counts move when a run ends (a run's files are counted together, and a worker killed
//! mid-run counts nothing, as it reports nothing). The `flow` label only takes configured
//! flow ids: a message naming an unknown flow fails before anything is recorded, so no
//! message can mint new series.

use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::error::TransferError;
use super::report::{FileReport, Outcome, RunReport};
use crate::telemetry::metrics::{Metrics, RunOutcome};

/// Records a run that ran: its files by outcome and error kind, the bytes transferred, the
/// run's outcome and duration, and, when no file failed, the flow's last success.
pub(super) fn record_run(partner: &str, report: &RunReport) {
    let metrics = Metrics::global();
    let run = &report.run;
    let labels =
        crate::telemetry::metrics::file_labels(&run.flow_id, partner, run.direction.as_str());
    for row in &report.files {
        let error_kind = row.error.as_ref().map(|error| error.kind.as_str());
        metrics.record_file(&labels, row.outcome.as_str(), error_kind);
    }
    let bytes: u64 = report
        .files
        .iter()
        .filter(|row| row.outcome == Outcome::Transferred)
        .map(|row| row.size)
        .sum();
    metrics.transferred_bytes.add(bytes, &labels);
    let outcome = if report.covered_by.is_some() {
        RunOutcome::Covered
    } else if report.is_success() {
        RunOutcome::Success
    } else {
        RunOutcome::Failed
    };
    metrics.record_run_end(&run.flow_id, outcome, None, report.totals.duration);
}

/// Records a run that could not run, by its error's kind.
pub(super) fn record_not_run(flow: &str, error: &TransferError, elapsed: Duration) {
    Metrics::global().record_run_end(
        flow,
        RunOutcome::NotRun,
        Some(error.kind().as_str()),
        elapsed,
    );
}

/// Awaits one file's row and records how long it took, under the run's `labels`
/// (`telemetry::metrics::file_labels`).
pub(super) async fn timed_file(
    labels: &[KeyValue],
    file: impl Future<Output = FileReport>,
) -> FileReport {
    let started = Instant::now();
    let row = file.await;
    Metrics::global().record_file_duration(labels, row.outcome.as_str(), started.elapsed());
    row
}
