//! Uploading one local file: identify it, claim it, send it, record it, tidy up.
//!
//! 1. **Identify.** `hash` mode reads the file once for its SHA-256 and keys on name and
//!    hash; `content` mode on the hash alone (a copy under another name is a duplicate);
//!    `name` mode uses name, size and modification time; `none` skips this and the claim.
//! 2. **Claim.** Already delivered: a duplicate (the source is still deleted when the flow
//!    says so). Claimed by another worker: left to it.
//! 3. **Send** under the claim, over a pooled session, retried on transient errors. The
//!    partner side writes a temporary name, hashes in the same pass and renames only if
//!    the hash equals the one claimed: a file changed since step 1 fails here and stays.
//! 4. **Record** the delivery (which also releases the claim).
//! 5. **Tidy up**: delete the local file if the flow says so; a failure is reported.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, field::Empty, info, info_span};

use super::context::{RunContext, store_failure};
use super::local::{hash_file, remove_file};
use super::report::{FileError, FileErrorKind, FileReport, RowDraft};
use super::selection::LocalFile;
use crate::config::IdempotencyMode;
use crate::ftps::{UploadOptions, printable};
use crate::idempotency::{ClaimOutcome, DeliveryKey, IdempotencyError, Recorded};

/// Runs one local file through the upload steps; always ends with its report row.
pub(crate) async fn upload_file(ctx: &RunContext<'_>, file: LocalFile) -> FileReport {
    let span = info_span!(
        "file",
        flow.id = %ctx.plan.flow_id,
        run.id = %ctx.run_id,
        file.name = %printable(&file.name),
        file.bytes = file.size,
        file.sha256 = Empty,
        outcome = Empty,
    );
    let row = upload_steps(ctx, &file).instrument(span.clone()).await;
    super::record_on_span(&span, &row);
    row
}

async fn upload_steps(ctx: &RunContext<'_>, file: &LocalFile) -> FileReport {
    let mut row = RowDraft::upload(&file.name, file.size, file.path.display().to_string());
    if let Some(stopped) = ctx.stopped() {
        return row.failed(stopped);
    }

    // 1. Identify.
    let flow_id = ctx.plan.flow_id.as_str();
    let mut expected_sha256 = None;
    let key = match ctx.plan.idempotency {
        mode @ (IdempotencyMode::Hash | IdempotencyMode::Content) => {
            match hash_file(&file.path).await {
                Ok((sha256, size)) => {
                    row.size = size;
                    let hex = hex::encode(sha256);
                    tracing::Span::current().record("file.sha256", hex.as_str());
                    row.sha256 = Some(hex);
                    expected_sha256 = Some(sha256);
                    Some(if mode == IdempotencyMode::Hash {
                        DeliveryKey::named_content(flow_id, &file.name, &sha256)
                    } else {
                        DeliveryKey::content(flow_id, &sha256)
                    })
                }
                Err(err) => {
                    return row.failed(FileError::retryable(
                        FileErrorKind::LocalIo,
                        format!("reading {} to hash it: {err}", file.path.display()),
                    ));
                }
            }
        }
        IdempotencyMode::Name => Some(DeliveryKey::name(
            flow_id,
            &file.name,
            file.size,
            file.modified,
        )),
        IdempotencyMode::None => None,
    };

    // 2. Claim.
    let claim = match key {
        None => None,
        Some(key) => match claim_unless_mine_in_flight(ctx, &key).await {
            Err(err) => return row.failed(store_failure(err)),
            Ok(ClaimOutcome::Claimed(claim)) => Some(claim),
            Ok(ClaimOutcome::ClaimedByOther { owner, expires_in }) => {
                info!(%owner, "another worker is sending this file");
                return row.left_to_other_worker(owner, expires_in);
            }
            Ok(ClaimOutcome::AlreadyDelivered(record)) => {
                info!(delivered_to = %printable(&record.remote_path), by_run = %record.flow_run_id, "already delivered");
                let row = row.earlier(&record).delivered_to(record.remote_path);
                return match delete_source(ctx, file).await {
                    Ok(()) => row.duplicate(),
                    Err(err) => row.failed_after_delivery(err),
                };
            }
        },
    };

    // 3. Send.
    let (remote_dir, remote_name) = remote_location(&ctx.plan.remote_dir, &file.name);
    let mut attempts = 0;
    let options = UploadOptions {
        expected_sha256,
        replace_existing: ctx.plan.overwrite,
    };
    let send = ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let sent = session
            .upload_with(&file.path, &remote_dir, remote_name, &options)
            .await;
        session.keep_if_ok(sent)
    });
    let sent = ctx.under_claim(claim.as_ref(), send).await;
    row.attempts = attempts;
    let uploaded = match sent {
        Ok(uploaded) => uploaded,
        Err(err) => {
            ctx.release(claim).await;
            return row.failed(err);
        }
    };
    let sha256 = hex::encode(uploaded.sha256);
    row.size = uploaded.bytes;
    row.sha256 = Some(sha256.clone());
    let row = row.delivered_to(uploaded.remote_path.clone());

    // 4. Record.
    if let Some(claim) = claim {
        let record = ctx.record(&file.name, uploaded.bytes, &sha256, &uploaded.remote_path);
        let recorded = ctx
            .store
            .record_delivery(&claim, &record, ctx.plan.retention)
            .await;
        match recorded {
            Ok(Recorded::ClaimHeld) => {}
            Ok(Recorded::ClaimLost) => {
                let kept = "the local file is kept";
                return row.failed_after_delivery(ctx.claim_lost(&uploaded.remote_path, kept));
            }
            Err(err) => {
                let mut error = store_failure(err);
                error.message = format!(
                    "delivered to {} but the delivery record could not be written ({}); the \
                     local file is kept, and a run after the claim expires may send it again",
                    uploaded.remote_path, error.message
                );
                return row.failed_after_delivery(error);
            }
        }
    }
    info!(remote_path = %printable(&uploaded.remote_path), bytes = uploaded.bytes, "delivered");

    // 5. Tidy up.
    match delete_source(ctx, file).await {
        Ok(()) => row.transferred(),
        Err(err) => row.failed_after_delivery(err),
    }
}

/// Deletes the local source when the flow says so (`delete_after_upload`).
async fn delete_source(ctx: &RunContext<'_>, file: &LocalFile) -> Result<(), FileError> {
    if !ctx.plan.delete_after_transfer {
        return Ok(());
    }
    remove_file(&file.path).await.map_err(|err| {
        FileError::permanent(
            FileErrorKind::DeleteSourceFailed,
            format!(
                "delivered, but the local file {} could not be deleted: {err}",
                file.path.display()
            ),
        )
    })
}

/// Where a selected file goes on the partner: its subdirectories (from `**` patterns) are
/// appended to the flow's remote directory, which must already hold them.
fn remote_location<'a>(remote_dir: &str, relative_name: &'a str) -> (String, &'a str) {
    match relative_name.rsplit_once('/') {
        Some((subdirs, name)) => (
            format!("{}/{subdirs}", remote_dir.trim_end_matches('/')),
            name,
        ),
        None => (remote_dir.to_owned(), relative_name),
    }
}

/// Claims `key`, but while the claim is held by this same worker (two files of one run with
/// the same content: a copy under another name) waits for it to be settled, up to one claim
/// lease: the copy then becomes a duplicate of the first file's delivery, or is sent if that
/// delivery failed, rather than being reported as left to another worker.
async fn claim_unless_mine_in_flight(
    ctx: &RunContext<'_>,
    key: &DeliveryKey,
) -> Result<ClaimOutcome, IdempotencyError> {
    let mine = format!("{}/", ctx.owner);
    let deadline = Instant::now() + ctx.claim_lease;
    let mut pause = Duration::from_millis(50);
    loop {
        let outcome = ctx.store.claim(key, ctx.owner, ctx.claim_lease).await?;
        match &outcome {
            ClaimOutcome::ClaimedByOther { owner, .. }
                if owner.starts_with(&mine) && Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            _ => return Ok(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::remote_location;

    #[test]
    fn subdirectories_follow_the_remote_directory() {
        assert_eq!(remote_location("/in", "a.xml"), ("/in".to_owned(), "a.xml"));
        assert_eq!(
            remote_location("/in/", "x/y/a.xml"),
            ("/in/x/y".to_owned(), "a.xml")
        );
    }
}
