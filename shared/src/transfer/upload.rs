//! Uploading one local file: identify it, claim it, send it, commit it, record it, tidy up.
//!
//! 1. **Identify.** `hash` mode reads the file once for its SHA-256 and keys on name and
//!    hash; `content` mode on the hash alone (a copy under another name is a duplicate);
//!    `name` mode uses name, size and modification time; `none` skips this and the claim.
//! 2. **Claim.** Already delivered: a duplicate (the source is still deleted when the flow
//!    says so). Claimed by another worker: left to it. Claimed with a crashed attempt's
//!    commit intent: the partner is looked at first (`commit.rs`), and the file is sent only
//!    if neither its temporary file nor its final name holds it.
//! 3. **Send** under the claim to a temporary name, over a pooled session, retried on
//!    transient errors. The partner side hashes in the same pass and keeps the file under
//!    its temporary name only if the hash equals the one claimed: a file changed since
//!    step 1 fails here and stays.
//! 4. **Commit**: the intent, written only while the claim is still ours, then the rename.
//! 5. **Record** the delivery (which also removes the intent and releases the claim).
//! 6. **Tidy up**: delete or archive the local file if the flow says so (`after_transfer.rs`);
//!    a failure is reported.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, field::Empty, info, info_span};

use super::commit::{self, Located};
use super::context::{RunContext, store_failure};
use super::hash_cache::HashSource;
use super::local::hash_file;
use super::report::{FileError, FileErrorKind, FileReport, RowDraft};
use super::selection::LocalFile;
use crate::config::IdempotencyMode;
use crate::crash_point::{self, CrashPoint};
use crate::ftps::{
    FtpsError, RemoteFile, RenamePolicy, StagedUpload, UploadOptions, Uploaded, Verified, printable,
};
use crate::idempotency::{Claim, ClaimOutcome, CommitIntent, DeliveryKey, IdempotencyError};

/// Runs one local file through the upload steps; always ends with its report row.
pub(crate) async fn upload_file(ctx: &RunContext<'_>, file: LocalFile) -> FileReport {
    let span = info_span!(
        "file",
        flow.id = %ctx.plan.flow_id,
        run.id = %ctx.run_id,
        file.name = %printable(&file.name),
        file.bytes = file.size,
        file.size = Empty,
        file.sha256 = Empty,
        outcome = Empty,
        error.type = Empty,
    );
    // Boxed: the steps are a large state machine, and a debug build's stack (a test's, a
    // runtime worker's 2 MiB) must not hold it once per file in flight.
    let row = Box::pin(upload_steps(ctx, &file))
        .instrument(span.clone())
        .await;
    super::record_on_span(&span, &row);
    let source = super::dead_letter::Source::Local(&file.path);
    // Boxed like the steps: moving to the error folder is a rare, deep state machine.
    Box::pin(super::dead_letter::after_failure(ctx, &row, source))
        .instrument(span.clone())
        .await;
    super::audit::record_row(ctx, &span, &row).await;
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
            match identify(ctx, file).await {
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

    let part_key = key.as_ref().map(DeliveryKey::digest);
    row.idempotency_key = key.as_ref().map(|k| k.as_str().to_owned());

    // 2. Claim.
    let mut unfinished = None;
    let claim = match key {
        None => None,
        Some(key) => match claim_unless_mine_in_flight(ctx, &key).await {
            Err(err) => return row.failed(store_failure(err)),
            Ok(ClaimOutcome::Claimed(claim)) => Some(claim),
            Ok(ClaimOutcome::Unfinished { claim, intent }) => {
                unfinished = Some(intent);
                Some(claim)
            }
            Ok(ClaimOutcome::ClaimedByOther { owner, expires_in }) => {
                info!(%owner, "another worker is sending this file");
                return row.left_to_other_worker(owner, expires_in);
            }
            // Uploads never ask for a recheck; were one to come, its claim is given back.
            Ok(ClaimOutcome::Recheck { claim, earlier }) => {
                ctx.release(Some(claim)).await;
                let row = row.earlier(&earlier).delivered_to(earlier.remote_path);
                return row.duplicate();
            }
            Ok(ClaimOutcome::AlreadyDelivered(record)) => {
                info!(delivered_to = %printable(&record.remote_path), by_run = %record.flow_run_id, "already delivered");
                let row = row.earlier(&record).delivered_to(record.remote_path);
                return match super::after_transfer::tidy_local(ctx, file).await {
                    Ok(tidied) => row
                        .deleted_source(tidied.deleted())
                        .moved_source(tidied.moved_to())
                        .duplicate(),
                    Err(err) => row.failed_after_delivery(err),
                };
            }
        },
    };
    crash_point::reached(CrashPoint::Claimed);

    // 3. Send, or finish what a crashed attempt left (see `commit.rs`).
    let policy = RenamePolicy {
        replace_existing: ctx.plan.overwrite,
    };
    let mut resumed = None;
    if let Some(intent) = unfinished {
        let located = ctx.under_claim(claim.as_ref(), locate(ctx, &intent)).await;
        match located {
            Ok(located) => {
                info!(temp = %printable(&intent.temp_path), ?located, "an earlier attempt crashed before recording its delivery");
                row.recovery = Some(located.recovery());
                if located != Located::Neither {
                    resumed = Some((located, intent));
                }
            }
            Err(err) => {
                ctx.release(claim).await;
                return row.failed(err);
            }
        }
    }
    let (remote_dir, remote_name) = remote_location(&ctx.plan.remote_dir, &file.name);
    let staged = match resumed {
        Some((located, intent)) => Resumed {
            located,
            staged: staged_of(&intent),
        },
        None => {
            let options = UploadOptions {
                expected_sha256,
                replace_existing: ctx.plan.overwrite,
                preserve_mtime: ctx.plan.preserve_mtime,
                resume: file.size >= LOOK_FOR_A_PART_FROM,
                // `name` mode: the part is named after the delivery key, so a retry after a
                // crash writes over the same part (the intent may point at it).
                part_key,
            };
            // A file below a `**` pattern's folders: create those the partner lacks.
            let subdirs = file.name.rsplit_once('/').map(|(dirs, _)| dirs);
            let mut attempts = 0;
            // A retry looks for the part the failed attempt left, whatever the file's size.
            let retrying = std::sync::atomic::AtomicBool::new(false);
            let send = ctx.with_retries(&mut attempts, || async {
                let options = UploadOptions {
                    resume: options.resume
                        || retrying.swap(true, std::sync::atomic::Ordering::Relaxed),
                    ..options
                };
                let mut session = ctx.pool.get().await?;
                let staged = async {
                    if let Some(subdirs) = subdirs {
                        let _created = session.make_dirs(&ctx.plan.remote_dir, subdirs).await?;
                    }
                    session
                        .stage_upload(&file.path, &remote_dir, remote_name, &options)
                        .await
                }
                .await;
                session.keep_if_ok(staged)
            });
            // Boxed: each step's state machine lives on the heap, not on a debug build's stack.
            let sent = ctx.under_claim(claim.as_ref(), Box::pin(send)).await;
            row.attempts = attempts;
            match sent {
                Ok(staged) => Resumed {
                    located: Located::Staged,
                    staged,
                },
                Err(err) => {
                    ctx.release(claim).await;
                    return row.failed(err);
                }
            }
        }
    };
    row.size = staged.staged.bytes;
    row.sha256 = Some(hex::encode(staged.staged.sha256));
    crash_point::reached(CrashPoint::Staged);

    // 4. Put in place: the intent under the claim, then the rename.
    let kept = "the local file is kept";
    let uploaded = match Box::pin(commit_upload(ctx, claim.as_ref(), staged, policy, kept)).await {
        Ok(uploaded) => uploaded,
        Err(err) => {
            ctx.release(claim).await;
            return row.failed(err);
        }
    };
    let sha256 = hex::encode(uploaded.sha256);
    let row = row
        .delivered_to(uploaded.remote_path.clone())
        .verified(uploaded.verified);
    crash_point::reached(CrashPoint::Renamed);
    if let Err(err) = Box::pin(super::markers::write_marker(ctx, &uploaded.remote_path)).await {
        ctx.release(claim).await;
        return row.failed_after_delivery(err);
    }

    // 5. Record.
    if let Some(claim) = &claim {
        let record = ctx.record(&file.name, uploaded.bytes, &sha256, &uploaded.remote_path);
        if let Err(err) = commit::record(ctx, claim, &[], &record, kept).await {
            return row.failed_after_delivery(err);
        }
    }
    info!(remote_path = %printable(&uploaded.remote_path), bytes = uploaded.bytes, "delivered");
    crash_point::reached(CrashPoint::Recorded);

    // 6. Tidy up.
    let row = match super::after_transfer::tidy_local(ctx, file).await {
        Ok(tidied) => row
            .deleted_source(tidied.deleted())
            .moved_source(tidied.moved_to())
            .transferred(),
        Err(err) => row.failed_after_delivery(err),
    };
    crash_point::reached(CrashPoint::SourceDeleted);
    row
}

/// The file's SHA-256 and size. A flow that keeps its files reads each one once while it
/// stays unchanged (`hash_cache.rs`); one that deletes or moves them reads every file, as
/// each is new.
async fn identify(ctx: &RunContext<'_>, file: &LocalFile) -> std::io::Result<([u8; 32], u64)> {
    if ctx.plan.after_transfer.removes_source() {
        return hash_file(&file.path).await;
    }
    let (sha256, size, source) = ctx.hashes.hash(&file.path).await?;
    if source == HashSource::Cached {
        tracing::debug!("unchanged since an earlier run: its hash is reused");
    }
    Ok((sha256, size))
}

/// A complete upload on the partner and where it stands: under its temporary name
/// ([`Located::Staged`]), or already renamed by a crashed attempt ([`Located::InPlace`]).
struct Resumed {
    located: Located,
    staged: StagedUpload,
}

/// Writes the commit intent (when the file is claimed) and renames the staged file into
/// place; a file already in place is only checked. A rename that fails is looked at once
/// more (its reply may have been lost after the server did it); when the file is not in
/// place, the intent is given up and only then the temporary file removed.
async fn commit_upload(
    ctx: &RunContext<'_>,
    claim: Option<&Claim>,
    resumed: Resumed,
    policy: RenamePolicy,
    kept: &str,
) -> Result<Uploaded, FileError> {
    let Resumed { located, staged } = resumed;
    let uploaded = Uploaded {
        bytes: staged.bytes,
        sha256: staged.sha256,
        verified: staged.verified,
        remote_path: staged.final_path.clone(),
    };
    if located == Located::InPlace {
        return Ok(uploaded);
    }
    let intent = commit::intent(
        ctx,
        staged.temp_path.clone(),
        staged.final_path.clone(),
        staged.bytes,
        &staged.sha256,
    );
    // No intent, no rename. The temporary file stays: the claim's new holder may be
    // writing the very same name (it comes from the content), and otherwise it is swept
    // or written over later.
    if let Some(claim) = claim {
        commit::begin(ctx, claim, &intent, kept).await?;
    }
    crash_point::reached(CrashPoint::IntentWritten);
    let mut attempts = 0;
    let rename = ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let renamed = session.commit_upload(&staged, policy).await;
        session.keep_if_ok(renamed)
    });
    let refused = match ctx.under_claim(claim, rename).await {
        Ok(uploaded) => return Ok(uploaded),
        Err(refused) => refused,
    };
    if let Ok(Located::InPlace) = ctx.under_claim(claim, locate(ctx, &intent)).await {
        info!("the rename was done although its reply said otherwise");
        return Ok(uploaded);
    }
    let may_discard = match claim {
        Some(claim) => commit::abandon(ctx, claim).await,
        None => true,
    };
    if may_discard {
        discard(ctx, &staged.temp_path).await;
    }
    Err(refused)
}

/// Looks at the partner for an intent's file (see [`Located`]).
async fn locate(ctx: &RunContext<'_>, intent: &CommitIntent) -> Result<Located, FtpsError> {
    let mut attempts = 0;
    ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let located = async {
            // The part is ferry's own: present (its size unknown without `SIZE`) is enough.
            // The final name may hold an older file: only the intent's exact size counts.
            let staged = match session.stat(&intent.temp_path).await? {
                RemoteFile::Present { size } => size.is_none_or(|s| s == intent.size),
                RemoteFile::Absent | RemoteFile::Unknown => false,
            };
            if staged {
                return Ok(Located::Staged);
            }
            let in_place = session.stat(&intent.final_path).await?
                == RemoteFile::Present {
                    size: Some(intent.size),
                };
            Ok(if in_place {
                Located::InPlace
            } else {
                Located::Neither
            })
        }
        .await;
        session.keep_if_ok(located)
    })
    .await
}

/// Removes a temporary file on the partner, best effort.
async fn discard(ctx: &RunContext<'_>, temp_path: &str) {
    if let Ok(mut session) = ctx.pool.get().await {
        session.discard_upload(temp_path).await;
        session.done();
    }
}

/// The staged upload an intent describes.
fn staged_of(intent: &CommitIntent) -> StagedUpload {
    StagedUpload {
        bytes: intent.size,
        sha256: intent.sha256_bytes(),
        // Checked by the crashed attempt before it wrote its intent; not by this run.
        verified: Verified::None,
        temp_path: intent.temp_path.clone(),
        final_path: intent.final_path.clone(),
    }
}

/// From this size on, even a first attempt asks the partner for a part an interrupted
/// earlier run left (one `SIZE` round trip, nothing next to sending 16 MiB again); smaller
/// files look for one only on a retry (see `ftps/resume.rs`).
const LOOK_FOR_A_PART_FROM: u64 = 16 * 1024 * 1024;

/// Where a selected file goes on the partner: its subdirectories (from `**` patterns) are
/// appended to the flow's remote directory (the upload creates those missing).
pub(crate) fn remote_location<'a>(remote_dir: &str, relative_name: &'a str) -> (String, &'a str) {
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
