//! A finished file's audit events: the row's outcome, then the source's deletion (or its
//! move to the archive or processed folder) when this run did it (see [`crate::audit`] for the trail itself).
//!
//! The events are written after the row is final, so the trail never says more than the
//! report: a file is `transferred` in the trail exactly when it is in the report. The file's
//! outcome never waits on the trail's fate: `AuditLog::record` keeps what Redis refuses and
//! writes it later.

use tracing::Span;

use super::context::RunContext;
use super::report::{Direction, FileReport, Outcome};
use crate::audit::{AuditDirection, AuditEvent, AuditOutcome};

/// Writes `row`'s events to the trail, each also an event on `span` (the file's).
pub(crate) async fn record_row(ctx: &RunContext<'_>, span: &Span, row: &FileReport) {
    for event in events(ctx, row) {
        ctx.audit.record(span, event).await;
    }
}

/// Writes the events of rows that no file span covered (links not followed, files asked
/// for by name but absent), each under a `file` span of its own.
pub(crate) async fn record_unspanned(ctx: &RunContext<'_>, rows: &[FileReport]) {
    for row in rows.iter().filter(|row| {
        row.outcome == Outcome::Skipped
            || row
                .error
                .as_ref()
                .is_some_and(|e| e.kind == super::report::FileErrorKind::NotFound)
    }) {
        let span = tracing::info_span!(
            "file",
            flow.id = %ctx.plan.flow_id,
            run.id = %ctx.run_id,
            file.name = %crate::ftps::printable(&row.name),
            outcome = row.outcome.as_str(),
        );
        record_row(ctx, &span, row).await;
    }
}

/// The events of one row, in the order they happened.
fn events(ctx: &RunContext<'_>, row: &FileReport) -> Vec<AuditEvent> {
    let direction = match ctx.plan.direction {
        Direction::Upload => AuditDirection::Upload,
        Direction::Download => AuditDirection::Download,
    };
    let outcome = match row.outcome {
        Outcome::Transferred => AuditOutcome::Transferred,
        Outcome::Duplicate => AuditOutcome::Duplicate,
        Outcome::Failed => AuditOutcome::Failed,
        Outcome::LeftToOtherWorker => AuditOutcome::LeftToOtherWorker,
        Outcome::Skipped => AuditOutcome::SkippedLink,
    };
    let event = |outcome| AuditEvent {
        time: chrono::Utc::now(),
        flow: ctx.plan.flow_id.clone(),
        partner: ctx.plan.partner_id.clone(),
        direction,
        run_id: ctx.run_id.to_owned(),
        trace_id: ctx.trace_id.clone(),
        worker: ctx.owner.to_owned(),
        file: row.name.clone(),
        local_path: row.local_path.clone(),
        remote_path: row.remote_path.clone(),
        size: row.size,
        sha256: row.sha256.clone(),
        idempotency_key: row.idempotency_key.clone(),
        outcome,
        error_kind: row.error.as_ref().map(|e| e.kind.as_str().to_owned()),
        message: row.error.as_ref().map(|e| e.message.clone()),
    };
    let mut events = vec![event(outcome)];
    if let Some(to) = &row.source_moved_to {
        let mut moved = event(match direction {
            AuditDirection::Upload => AuditOutcome::Archived,
            AuditDirection::Download => AuditOutcome::RemoteMoved,
        });
        match direction {
            AuditDirection::Upload => moved.local_path = Some(to.clone()),
            AuditDirection::Download => moved.remote_path = Some(to.clone()),
        }
        events.push(moved);
    }
    if row.source_deleted {
        events.push(event(match direction {
            AuditDirection::Upload => AuditOutcome::SourceDeleted,
            AuditDirection::Download => AuditOutcome::RemoteDeleted,
        }));
    }
    events
}
