//! Downloading one remote file: claim it, fetch it, recognise known content, commit it,
//! record it, tidy up.
//!
//! 1. **Claim** the remote file by (flow, name, size, modification time), so two workers
//!    never fetch the same file. Already recorded: a duplicate, unless the flow deletes
//!    remote files: then it is claimed all the same and fetched again, so that nothing is
//!    deleted that was not fetched and compared in this run. Claimed with a crashed
//!    attempt's commit intent: the local folder is looked at first (`commit.rs`).
//! 2. **Fetch** it into a part file in the destination directory, hashing in the same pass,
//!    over a pooled session, retried on transient errors.
//! 3. **Recognise** known content: the recorded delivery being rechecked (the same bytes:
//!    a duplicate, deleted remotely; other bytes: new content, delivered), or in `content`
//!    mode any earlier delivery of the flow. The part is discarded.
//! 4. **Commit**: the intent, written only while the claim is still ours, then the rename
//!    of the `fsync`ed part to its final name.
//! 5. **Record** under both keys (claim and content), which removes the intent and releases
//!    the claim.
//! 6. **Tidy up**: only now, delete or move the remote file if the flow says so
//!    (`after_transfer.rs`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tracing::{Instrument, field::Empty, info, info_span};

use super::commit::{self, Located};
use super::context::{RunContext, partner_failure, store_failure};
use super::local::hash_file;
use super::report::{FileError, FileErrorKind, FileReport, Recovery, RowDraft};
use crate::config::IdempotencyMode;
use crate::crash_point::{self, CrashPoint};
use crate::ftps::{DownloadOptions, DownloadedFile, RemoteEntry, printable};
use crate::idempotency::{Claim, ClaimOutcome, CommitIntent, DeliveryKey, DeliveryRecord};

/// Runs one remote file through the download steps; always ends with its report row.
pub(crate) async fn download_file(ctx: &RunContext<'_>, entry: RemoteEntry) -> FileReport {
    let span = info_span!(
        "file",
        flow.id = %ctx.plan.flow_id,
        run.id = %ctx.run_id,
        file.name = %printable(&entry.name),
        file.bytes = entry.size,
        file.size = Empty,
        file.sha256 = Empty,
        outcome = Empty,
        error.type = Empty,
    );
    // Boxed: the steps are a large state machine, and a debug build's stack (a test's, a
    // runtime worker's 2 MiB) must not hold it once per file in flight.
    let row = Box::pin(download_steps(ctx, &entry))
        .instrument(span.clone())
        .await;
    super::record_on_span(&span, &row);
    let source =
        super::dead_letter::Source::Remote(&remote_path(&ctx.plan.remote_dir, &entry.name));
    // Boxed like the steps: moving to the error folder is a rare, deep state machine.
    Box::pin(super::dead_letter::after_failure(ctx, &row, source))
        .instrument(span.clone())
        .await;
    super::audit::record_row(ctx, &span, &row).await;
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
    let kept = "the remote file is kept";

    // 1. Claim. A flow that deletes remote files claims even a recorded file, to fetch it
    //    again and compare: a file replaced under the same name, size and listed time is
    //    never deleted unfetched.
    let mut prior = Prior::Nothing;
    let claim = if ctx.plan.idempotency == IdempotencyMode::None {
        None
    } else {
        // A listing without a time: ask the server (MDTM). Servers that give none at all
        // make the key (name, size): a new file with the same name and size is then taken
        // for the old one until its record expires (unless the flow deletes remote files:
        // then it is fetched and compared, above).
        let modified = match entry.modified {
            Some(listed) => listed,
            None => match exact_time(ctx, &remote_path).await {
                Ok(time) => time.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
                Err(err) => return row.failed(err),
            },
        };
        let key = DeliveryKey::download(flow_id, &entry.name, size, modified);
        row.idempotency_key = Some(key.as_str().to_owned());
        let claimed = if ctx.plan.after_transfer.removes_source() {
            let store = ctx.store;
            store
                .claim_to_recheck(&key, ctx.owner, ctx.claim_lease)
                .await
        } else {
            ctx.store.claim(&key, ctx.owner, ctx.claim_lease).await
        };
        match claimed {
            Err(err) => return row.failed(store_failure(err)),
            Ok(ClaimOutcome::Claimed(claim)) => Some(claim),
            Ok(ClaimOutcome::Unfinished { claim, intent }) => {
                prior = Prior::Unfinished(intent);
                Some(claim)
            }
            Ok(ClaimOutcome::Recheck { claim, earlier }) => {
                prior = Prior::Recheck(earlier);
                Some(claim)
            }
            Ok(ClaimOutcome::ClaimedByOther { owner, expires_in }) => {
                info!(%owner, "another worker is fetching this file");
                return row.left_to_other_worker(owner, expires_in);
            }
            Ok(ClaimOutcome::AlreadyDelivered(record)) => {
                info!(delivered_to = %printable(&record.remote_path), by_run = %record.flow_run_id, "already fetched");
                row.sha256 = Some(record.sha256.clone());
                let row = row.earlier(&record).delivered_to(record.remote_path);
                return row.duplicate();
            }
        }
    };
    crash_point::reached(CrashPoint::Claimed);

    // 2. Fetch, or take what a crashed attempt left (see `commit.rs`).
    let placed = match prior.resume(&mut row).await {
        Some(placed) => placed,
        None => {
            let mut attempts = 0;
            let options = DownloadOptions {
                listed_size: entry.size,
                part_owner: flow_id.to_owned(),
                // The listed size and time: a part kept by a broken transfer is continued
                // only while the partner's file still shows both.
                resume_version: entry
                    .size
                    .zip(entry.modified)
                    .map(|(size, modified)| format!("{size}:{}", modified.timestamp())),
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
            match fetched {
                Ok(downloaded) => {
                    row.size = downloaded.bytes;
                    row.sha256 = Some(hex::encode(downloaded.sha256));
                    Placed::Part(downloaded)
                }
                Err(err) => {
                    ctx.release(claim).await;
                    return row.failed(err);
                }
            }
        }
    };
    let sha256 = row.sha256.clone().unwrap_or_default();
    let row_recovered = row.recovery.is_some_and(|r| r != Recovery::SentAgain);
    crash_point::reached(CrashPoint::Staged);

    // 3. Recognise known content: the bytes of the delivery being rechecked, or (`content`
    //    mode) of any earlier delivery of the flow.
    let known = match (&prior, &claim) {
        (Prior::Recheck(earlier), _) if earlier.sha256 == sha256 => Some(earlier.clone()),
        (Prior::Recheck(_), _) => {
            info!("the remote file changed since its recorded delivery: taking the new content");
            None
        }
        (_, Some(_)) if ctx.plan.idempotency == IdempotencyMode::Content => {
            let content_key = DeliveryKey::content(flow_id, &hex_digest(&sha256));
            match ctx.store.delivery(&content_key).await {
                Ok(known) => known,
                Err(err) => {
                    drop(placed);
                    ctx.release(claim).await;
                    return row.failed(store_failure(err));
                }
            }
        }
        _ => None,
    };
    if let Some(previous) = known {
        // Only a fresh part can be a known content; drop it (its guard removes it).
        drop(placed);
        info!(delivered_to = %printable(&previous.remote_path), "same content fetched before; discarded");
        if let Some(claim) = &claim {
            let record = ctx.record(&entry.name, row.size, &sha256, &previous.remote_path);
            if let Err(err) = commit::record(ctx, claim, &[], &record, kept).await {
                return row
                    .delivered_to(previous.remote_path)
                    .failed_after_delivery(err);
            }
        }
        let row = row.earlier(&previous).delivered_to(previous.remote_path);
        return match super::after_transfer::tidy_remote(ctx, &remote_path).await {
            Ok(tidied) => row
                .deleted_source(tidied.deleted())
                .moved_source(tidied.moved_to())
                .duplicate(),
            Err(err) => row.failed_after_delivery(err),
        };
    }

    // 4. Put in place: the intent under the claim, then the rename.
    let final_path = ctx.plan.local_dir.join(&entry.name);
    let local_path = match place(ctx, claim.as_ref(), placed, &entry.name, &final_path).await {
        Ok(path) => path,
        Err(err) => {
            ctx.release(claim).await;
            return row.failed(err);
        }
    };
    let delivered_to = local_path.display().to_string();
    let row = row.delivered_to(delivered_to.clone());
    crash_point::reached(CrashPoint::Renamed);
    super::mtime::keep_remote_time(ctx, entry, &remote_path, &local_path).await;

    // 5. Record under both keys (claim and content), which releases the claim.
    if let Some(claim) = &claim {
        let content_key = DeliveryKey::content(flow_id, &hex_digest(&sha256));
        let record = ctx.record(&entry.name, row.size, &sha256, &delivered_to);
        if let Err(err) = commit::record(ctx, claim, &[content_key], &record, kept).await {
            return row.failed_after_delivery(err);
        }
    }
    info!(local_path = %printable(&delivered_to), bytes = row.size, "fetched");
    crash_point::reached(CrashPoint::Recorded);

    // 6. Tidy up. A file finished from a crashed attempt's part was fetched by that
    //    attempt, not this run: the next run fetches it again and compares before deleting.
    let row = if row_recovered {
        row.transferred()
    } else {
        match super::after_transfer::tidy_remote(ctx, &remote_path).await {
            Ok(tidied) => row
                .deleted_source(tidied.deleted())
                .moved_source(tidied.moved_to())
                .transferred(),
            Err(err) => row.failed_after_delivery(err),
        }
    };
    crash_point::reached(CrashPoint::SourceDeleted);
    row
}

/// What the claim found besides the right to fetch.
enum Prior {
    /// A plain claim.
    Nothing,
    /// A crashed attempt's commit intent.
    Unfinished(CommitIntent),
    /// The file's recorded delivery, to compare the fetched bytes with.
    Recheck(DeliveryRecord),
}

impl Prior {
    /// For an unfinished attempt: what it left in the destination folder, if usable
    /// (`None`: fetch again). Notes the recovery on the row.
    async fn resume(&self, row: &mut RowDraft) -> Option<Placed> {
        let Prior::Unfinished(intent) = self else {
            return None;
        };
        let located = locate(intent).await;
        info!(part = %printable(&intent.temp_path), ?located, "an earlier attempt crashed before recording its delivery");
        row.recovery = Some(located.recovery());
        let placed = match located {
            Located::Staged => {
                let part = DownloadedFile::adopt(
                    PathBuf::from(&intent.temp_path),
                    intent.size,
                    intent.sha256_bytes(),
                )?;
                Placed::Part(part)
            }
            Located::InPlace => Placed::InPlace(PathBuf::from(&intent.final_path)),
            Located::Neither => return None,
        };
        row.size = intent.size;
        row.sha256 = Some(intent.sha256.clone());
        Some(placed)
    }
}

/// A complete download in the destination folder: under its part name, or already renamed
/// by a crashed attempt.
enum Placed {
    Part(DownloadedFile),
    InPlace(PathBuf),
}

/// Writes the commit intent (when the file is claimed) and renames the part into place; a
/// file already in place is only returned. A part that cannot be renamed is removed with its
/// intent (a later attempt fetches again: the remote file is still there).
async fn place(
    ctx: &RunContext<'_>,
    claim: Option<&Claim>,
    placed: Placed,
    name: &str,
    final_path: &Path,
) -> Result<PathBuf, FileError> {
    let part = match placed {
        Placed::InPlace(path) => return Ok(path),
        Placed::Part(part) => part,
    };
    let intent = commit::intent(
        ctx,
        part.temp_path().display().to_string(),
        final_path.display().to_string(),
        part.bytes,
        &part.sha256,
    );
    if let Some(claim) = claim {
        commit::begin(ctx, claim, &intent, "the remote file is kept").await?;
    }
    crash_point::reached(CrashPoint::IntentWritten);
    let final_name = name.to_owned();
    let replace = ctx.plan.overwrite;
    let persisted = tokio::task::spawn_blocking(move || {
        if replace {
            part.persist(&final_name)
        } else {
            part.persist_new(&final_name)
        }
    })
    .await;
    let failure = match persisted {
        Ok(Ok(path)) => return Ok(path),
        Ok(Err(err)) => partner_failure(&err),
        Err(join) => {
            FileError::retryable(FileErrorKind::LocalIo, format!("saving the file: {join}"))
        }
    };
    // The rename may have happened before the failure (a folder fsync that failed).
    if locate(&intent).await == Located::InPlace {
        return Ok(final_path.to_path_buf());
    }
    // The part is gone with the failed persist; the remote file is still there, so an
    // intent left behind would only make the next attempt fetch again.
    if let Some(claim) = claim {
        let _ = commit::abandon(ctx, claim).await;
    }
    Err(failure)
}

/// Looks at the destination folder for an intent's file: the part, complete, or the final
/// name with the intent's content. Both are hashed: a local check costs one read and leaves
/// no doubt.
async fn locate(intent: &CommitIntent) -> Located {
    let matches = |path: String| async move {
        matches!(hash_file(Path::new(&path)).await, Ok((sha, size))
            if size == intent.size && hex::encode(sha) == intent.sha256)
    };
    if matches(intent.temp_path.clone()).await {
        Located::Staged
    } else if matches(intent.final_path.clone()).await {
        Located::InPlace
    } else {
        Located::Neither
    }
}

/// The server's `MDTM` time of `path` (`None` when it offers none), with the run's retries.
pub(super) async fn exact_time(
    ctx: &RunContext<'_>,
    path: &str,
) -> Result<Option<DateTime<Utc>>, FileError> {
    let mut attempts = 0;
    let asked = ctx.with_retries(&mut attempts, || async {
        let mut session = ctx.pool.get().await?;
        let time = session.modified_time(path).await;
        session.keep_if_ok(time)
    });
    tokio::time::timeout_at(ctx.deadline, asked)
        .await
        .map_err(|_| ctx.timed_out())?
        .map_err(|err| partner_failure(&err))
}

/// A SHA-256 from its lowercase hex (all zeros if it is not one: never the case for hashes
/// ferry wrote itself).
fn hex_digest(hex: &str) -> [u8; 32] {
    let mut digest = [0u8; 32];
    let _ = hex::decode_to_slice(hex, &mut digest);
    digest
}

/// The remote file's path: the flow's remote folder and the listed name.
fn remote_path(remote_dir: &str, name: &str) -> String {
    format!("{}/{name}", remote_dir.trim_end_matches('/'))
}
