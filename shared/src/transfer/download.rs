//! Downloading one remote file: claim it, fetch it, recognise known content, put it in
//! place, record it, tidy up.
//!
//! 1. **Claim** the remote file by (flow, name, size, modification time), so two workers
//!    never fetch the same file; already recorded: a duplicate (deleted on the partner
//!    when the flow says so).
//! 2. **Fetch** it into a temporary file in the destination directory, hashing in the
//!    same pass, over a pooled session, retried on transient errors.
//! 3. **Recognise** content delivered before under another name or time (`content` mode
//!    only): the temporary file is discarded and the file is a duplicate.
//! 4. **Put in place**: fsync and rename the temporary file to its final name.
//! 5. **Record** under both keys (claim and content), which releases the claim.
//! 6. **Tidy up**: only now, delete the remote file if the flow says so.

use chrono::{DateTime, Utc};
use tracing::{Instrument, field::Empty, info, info_span};

use super::context::{RunContext, partner_failure, store_failure};
use super::report::{FileError, FileErrorKind, FileReport, RowDraft};
use crate::config::IdempotencyMode;
use crate::ftps::{DownloadOptions, RemoteEntry, printable};
use crate::idempotency::{ClaimOutcome, DeliveryKey, Recorded};

/// Runs one remote file through the download steps; always ends with its report row.
pub(crate) async fn download_file(ctx: &RunContext<'_>, entry: RemoteEntry) -> FileReport {
    let span = info_span!(
        "file",
        flow.id = %ctx.plan.flow_id,
        run.id = %ctx.run_id,
        file.name = %printable(&entry.name),
        file.bytes = entry.size,
        file.sha256 = Empty,
        outcome = Empty,
    );
    let row = download_steps(ctx, &entry).instrument(span.clone()).await;
    super::record_on_span(&span, &row);
    row
}

async fn download_steps(ctx: &RunContext<'_>, entry: &RemoteEntry) -> FileReport {
    let size = entry.size.unwrap_or(0);
    let flow_id = ctx.plan.flow_id.as_str();
    let remote_dir = ctx.plan.remote_dir.as_str();
    let remote_path = remote_path(remote_dir, &entry.name);
    let mut row = RowDraft::download(&entry.name, size, remote_path.clone());
    if let Some(stopped) = ctx.stopped() {
        return row.failed(stopped);
    }

    // 1. Claim.
    let claim = if ctx.plan.idempotency == IdempotencyMode::None {
        None
    } else {
        // Servers that give no time make the key (name, size): a new file with the same
        // name and size is then taken for the old one until its record expires.
        let modified = entry.modified.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let key = DeliveryKey::download(flow_id, &entry.name, size, modified);
        match ctx.store.claim(&key, ctx.owner, ctx.claim_lease).await {
            Err(err) => return row.failed(store_failure(err)),
            Ok(ClaimOutcome::Claimed(claim)) => Some(claim),
            Ok(ClaimOutcome::ClaimedByOther { owner, expires_in }) => {
                info!(%owner, "another worker is fetching this file");
                return row.left_to_other_worker(owner, expires_in);
            }
            Ok(ClaimOutcome::AlreadyDelivered(record)) => {
                info!(delivered_to = %printable(&record.remote_path), by_run = %record.flow_run_id, "already fetched");
                row.sha256 = Some(record.sha256.clone());
                let row = row.earlier(&record).delivered_to(record.remote_path);
                return match delete_source(ctx, &remote_path).await {
                    Ok(()) => row.duplicate(),
                    Err(err) => row.failed_after_delivery(err),
                };
            }
        }
    };

    // 2. Fetch.
    let mut attempts = 0;
    let options = DownloadOptions {
        listed_size: entry.size,
        part_owner: flow_id.to_owned(),
    };
    let fetch = ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let fetched = session
            .download_with(remote_dir, &entry.name, &ctx.plan.local_dir, &options)
            .await;
        session.keep_if_ok(fetched)
    });
    let fetched = ctx.under_claim(claim.as_ref(), fetch).await;
    row.attempts = attempts;
    let downloaded = match fetched {
        Ok(downloaded) => downloaded,
        Err(err) => {
            ctx.release(claim).await;
            return row.failed(err);
        }
    };
    let sha256 = hex::encode(downloaded.sha256);
    row.size = downloaded.bytes;
    row.sha256 = Some(sha256.clone());
    let content_key = DeliveryKey::content(flow_id, &downloaded.sha256);

    // 3. Recognise known content.
    if ctx.plan.idempotency == IdempotencyMode::Content && claim.is_some() {
        let known = match ctx.store.delivery(&content_key).await {
            Ok(known) => known,
            Err(err) => {
                drop(downloaded);
                ctx.release(claim).await;
                return row.failed(store_failure(err));
            }
        };
        if let (Some(previous), Some(claim)) = (known, &claim) {
            drop(downloaded);
            info!(delivered_to = %printable(&previous.remote_path), "same content fetched before; discarded");
            let record = ctx.record(&entry.name, row.size, &sha256, &previous.remote_path);
            match ctx
                .store
                .record_delivery(claim, &record, ctx.plan.retention)
                .await
            {
                Ok(Recorded::ClaimHeld) => {}
                Ok(Recorded::ClaimLost) => {
                    let kept = "the remote file is kept";
                    let error = ctx.claim_lost(&previous.remote_path, kept);
                    return row
                        .delivered_to(previous.remote_path)
                        .failed_after_delivery(error);
                }
                Err(err) => return row.failed(store_failure(err)),
            }
            let row = row.earlier(&previous).delivered_to(previous.remote_path);
            return match delete_source(ctx, &remote_path).await {
                Ok(()) => row.duplicate(),
                Err(err) => row.failed_after_delivery(err),
            };
        }
    }

    // 4. Put in place.
    let final_name = entry.name.clone();
    let replace = ctx.plan.overwrite;
    let persisted = tokio::task::spawn_blocking(move || {
        if replace {
            downloaded.persist(&final_name)
        } else {
            downloaded.persist_new(&final_name)
        }
    })
    .await;
    let local_path = match persisted {
        Ok(Ok(path)) => path,
        Ok(Err(err)) => {
            ctx.release(claim).await;
            return row.failed(partner_failure(&err));
        }
        Err(join) => {
            ctx.release(claim).await;
            return row.failed(FileError::retryable(
                FileErrorKind::LocalIo,
                format!("saving the file: {join}"),
            ));
        }
    };
    let delivered_to = local_path.display().to_string();
    let row = row.delivered_to(delivered_to.clone());

    // 5. Record.
    if let Some(claim) = claim {
        let record = ctx.record(&entry.name, row.size, &sha256, &delivered_to);
        let recorded = ctx
            .store
            .record_delivery_also(&claim, &[content_key], &record, ctx.plan.retention)
            .await;
        match recorded {
            Ok(Recorded::ClaimHeld) => {}
            Ok(Recorded::ClaimLost) => {
                let error = ctx.claim_lost(&delivered_to, "the remote file is kept");
                return row.failed_after_delivery(error);
            }
            Err(err) => {
                let mut error = store_failure(err);
                error.message = format!(
                    "fetched to {delivered_to} but the delivery record could not be written \
                     ({}); the remote file is kept",
                    error.message
                );
                return row.failed_after_delivery(error);
            }
        }
    }
    info!(local_path = %printable(&delivered_to), bytes = row.size, "fetched");

    // 6. Tidy up.
    match delete_source(ctx, &remote_path).await {
        Ok(()) => row.transferred(),
        Err(err) => row.failed_after_delivery(err),
    }
}

/// The remote file's path: the flow's remote folder and the listed name.
fn remote_path(remote_dir: &str, name: &str) -> String {
    format!("{}/{name}", remote_dir.trim_end_matches('/'))
}

/// Deletes the remote source when the flow says so (`delete_after_download`).
async fn delete_source(ctx: &RunContext<'_>, path: &str) -> Result<(), FileError> {
    if !ctx.plan.delete_after_transfer {
        return Ok(());
    }
    let mut attempts = 0;
    ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let deleted = session.delete(path).await;
        session.keep_if_ok(deleted)
    })
    .await
    .map_err(|err| {
        let mut error = partner_failure(&err);
        error.kind = FileErrorKind::DeleteSourceFailed;
        error.message = format!(
            "fetched, but the remote file {} could not be deleted: {}",
            printable(path),
            error.message
        );
        error
    })
}
