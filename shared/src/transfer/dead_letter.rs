//! The error folder (`on_failure: move`): a file that failed its last attempt in the
//! flow-run's last attempt leaves the flow's folder for `error_path`, with a reason file
//! `<name>.error.json` beside it (flow, run, error kind, message, time), so that an
//! operator finds it and the next runs stop failing on it.
//!
//! **When.** Only a row that failed before delivery, on the file itself: not one that was
//! delivered and failed a later step (its delivery is recorded: moving it would hide a
//! delivered file among failed ones), not a lost claim (another worker owns the file now),
//! not an unanswering store or a run out of time (the file was not really tried). A
//! permanent failure (`transient: false`, such as `target_exists`) is final at once: no
//! retry can help, and the worker dead-letters such a run without retrying it. A transient
//! one moves only in the flow-run's last attempt: the worker says which attempt a run is
//! ([`as_run_attempt`]); a run outside it (the CLI's one-shot run) is its own last attempt.
//!
//! **Secrets.** The message is the row's, which is written without secrets (see
//! [`FileError`]); the reason file adds no other text.
//!
//! Moving is best effort: a failure to move (the partner gone) is logged and the file stays
//! where it was, to be tried again by the next run.

use std::future::Future;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use super::after_transfer::{archive_file, file_name, rename_into};
use super::context::RunContext;
use super::report::{FileErrorKind, FileReport, Outcome};
use crate::config::{ErrorFolder, OnFailure};
use crate::ftps::printable;

tokio::task_local! {
    /// Whether the flow-run being run is its last attempt (set by the worker).
    static FINAL_RUN_ATTEMPT: bool;
}

/// Runs `run` (a flow-run) knowing whether it is the run's last attempt: only then do
/// failed files move to the flow's error folder.
pub fn as_run_attempt<F: Future>(final_attempt: bool, run: F) -> impl Future<Output = F::Output> {
    // Boxed at once: a run is a large state machine, and a debug build's stack (a test's,
    // a runtime worker's 2 MiB) must not hold it inline in the caller's.
    FINAL_RUN_ATTEMPT.scope(final_attempt, Box::pin(run))
}

/// Whether this run is the last attempt (a run outside [`as_run_attempt`] is).
fn final_run_attempt() -> bool {
    FINAL_RUN_ATTEMPT.try_with(|last| *last).unwrap_or(true)
}

/// Where a failed file is.
pub(crate) enum Source<'a> {
    /// An upload's local file.
    Local(&'a Path),
    /// A download's file on the partner.
    Remote(&'a str),
}

/// The reason file's content.
#[derive(Serialize)]
struct Reason<'a> {
    flow: &'a str,
    run_id: &'a str,
    file: &'a str,
    error_kind: &'a str,
    message: &'a str,
    attempts: u32,
    time: String,
}

/// Moves the failed file of `row` to the error folder when the flow says so and the
/// failure is final (see the module docs).
pub(crate) async fn after_failure(ctx: &RunContext<'_>, row: &FileReport, source: Source<'_>) {
    let OnFailure::Move(folder) = &ctx.plan.on_failure else {
        return;
    };
    let Some(error) = row.error.as_ref() else {
        return;
    };
    let on_the_file = !matches!(
        error.kind,
        FileErrorKind::LeaseLost
            | FileErrorKind::StoreUnavailable
            | FileErrorKind::RunTimeout
            | FileErrorKind::DeleteSourceFailed
            | FileErrorKind::NotFound
            | FileErrorKind::LinkNotFollowed
    );
    // A permanent failure is final in any attempt: no retry can help it, and the worker
    // dead-letters such a run at once. A transient one waits for the run's last attempt.
    let last_try = !error.transient || final_run_attempt();
    if row.outcome != Outcome::Failed || !on_the_file || !last_try {
        return;
    }
    let reason = Reason {
        flow: &ctx.plan.flow_id,
        run_id: ctx.run_id,
        file: &row.name,
        error_kind: error.kind.as_str(),
        message: &error.message,
        attempts: row.attempts,
        time: chrono::Utc::now().to_rfc3339(),
    };
    let Ok(json) = serde_json::to_vec_pretty(&reason) else {
        return;
    };
    let moved = match (folder, source) {
        (ErrorFolder::Local(dir), Source::Local(path)) => move_local(path, dir, json).await,
        (ErrorFolder::Remote(dir), Source::Remote(path)) => move_remote(ctx, path, dir, json).await,
        _ => return,
    };
    match moved {
        Ok(to) => info!(moved_to = %printable(&to), "failed for good: moved to the error folder"),
        Err(err) => {
            warn!(error = %err, "failed for good, but could not be moved to the error folder; it stays")
        }
    }
}

/// Moves a local file into `dir` (never overwriting) and writes its reason file beside it.
async fn move_local(path: &Path, dir: &Path, json: Vec<u8>) -> Result<String, String> {
    let path = path.to_path_buf();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = archive_file(&path, &dir, &name).map_err(|e| e.to_string())?;
        let reason = reason_path(&to);
        std::fs::write(&reason, json).map_err(|e| e.to_string())?;
        Ok(to.display().to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `<file>.error.json` beside `to`.
fn reason_path(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".error.json");
    to.with_file_name(name)
}

/// Renames a partner's file into `dir` and uploads its reason file beside it.
async fn move_remote(
    ctx: &RunContext<'_>,
    path: &str,
    dir: &str,
    json: Vec<u8>,
) -> Result<String, String> {
    let local_reason =
        std::env::temp_dir().join(format!("ferry-reason-{}.json", uuid::Uuid::new_v4()));
    tokio::fs::write(&local_reason, json)
        .await
        .map_err(|e| e.to_string())?;
    let moved = async {
        let mut session = ctx.pool.get().await.map_err(|e| e.to_string())?;
        let done = async {
            let to = rename_into(&mut session, path, dir).await?;
            let reason_name = format!("{}.error.json", file_name(&to));
            session
                .upload(&local_reason, dir.trim_end_matches('/'), &reason_name, None)
                .await?;
            Ok::<_, crate::ftps::FtpsError>(to)
        }
        .await;
        session.keep_if_ok(done).map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_file(&local_reason).await;
    moved
}
