//! Streaming upload, so that a partner never sees a partial file and ferry never keeps a
//! whole file in memory.
//!
//! The local file is read once, in buffers of [`BUF_SIZE`](super::BUF_SIZE), on a disk thread
//! (`pipeline.rs`) that hashes each buffer (SHA-256) in the same pass while the previous one
//! is encrypted and sent. The data goes to a hidden temporary name in the target directory
//! (`paths.rs`); only after the server confirmed the transfer (226), the bytes sent match the
//! file's size (and the caller's expected hash), and the stored file passed the strongest
//! check the server offers (its SHA-256, else its size: `verify.rs`), is it renamed to its final name (`rename.rs`). Any
//! failure deletes the temporary file (best effort), but one: a transfer broken on the way
//! to a server that can resume keeps its part, named after the content, for the next
//! attempt to continue (`resume.rs`). The hash returned is the hash of the
//! bytes sent: it is the one the flow records.
//!
//! The two halves are separate operations, so that the flow engine can write its commit
//! intent between them (`idempotency/intent.rs`): [`Upload`] leaves a complete, checked
//! [`StagedUpload`] under the temporary name, and [`CommitUpload`] renames it. A refused
//! commit does not remove the temporary file: the engine first gives its intent up, then
//! calls [`DiscardUpload`].

use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use super::bandwidth::BandwidthCap;
use super::classify::{ReplyTo, from_net_io};
use super::connection::{Connection, Operation};
use super::control::check_line;
use super::data::DataChannel;
use super::error::{FtpsError, FtpsErrorKind};
use super::mfmt::{MtimeKept, set_modified};
use super::paths::{join_remote, remote_file, temp_name};
use super::pipeline::{FileReader, open_no_follow};
use super::rename::{RenamePolicy, rename};
use super::resume::resume_offset;
use super::verify::{Sent, Verified, verify_stored};
use crate::crash_point::{self, CrashPoint};

/// How an upload treats the content and an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// The SHA-256 the bytes sent must have (the one the claim was made for); a file that
    /// hashes differently changed since it was selected and is never renamed.
    pub expected_sha256: Option<[u8; 32]>,
    /// Replace a file already under the final name (the flow's `overwrite`).
    pub replace_existing: bool,
    /// Look for a part an interrupted attempt left under the temporary name and send only
    /// the rest (`resume.rs`); costs a `SIZE` round trip, so the engine asks on retries and
    /// for large files.
    pub resume: bool,
    /// Keep the local file's modification time on the partner (`MFMT`, where the server
    /// offers it: the flow's `preserve_mtime`).
    pub preserve_mtime: bool,
    /// What names the temporary file: the same key, the same name, so that a retry writes
    /// over a dead attempt's part. `None`: `expected_sha256`, else a random name.
    pub part_key: Option<[u8; 32]>,
}

/// A complete upload still under its temporary name on the partner: every byte confirmed,
/// size and hash checked, not yet renamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedUpload {
    /// Bytes sent (and confirmed).
    pub bytes: u64,
    /// SHA-256 of the bytes sent.
    pub sha256: [u8; 32],
    /// How the stored file was checked on the partner (`verify.rs`).
    pub verified: Verified,
    /// The temporary remote path the data is under.
    pub temp_path: String,
    /// The final remote path it is to get.
    pub final_path: String,
}

/// The outcome of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent (and confirmed).
    pub bytes: u64,
    /// SHA-256 of the bytes sent.
    pub sha256: [u8; 32],
    /// How the stored file was checked on the partner before its rename.
    pub verified: Verified,
    /// The final remote path.
    pub remote_path: String,
}

/// The first half of an upload: the data under its temporary name, checked.
pub(crate) struct Upload<'a> {
    local: &'a Path,
    remote_dir: &'a str,
    remote_name: &'a str,
    options: UploadOptions,
}

impl<'a> Upload<'a> {
    pub(crate) fn new(
        local: &'a Path,
        remote_dir: &'a str,
        remote_name: &'a str,
        options: &UploadOptions,
    ) -> Self {
        Upload {
            local,
            remote_dir,
            remote_name,
            options: *options,
        }
    }
}

impl Operation for Upload<'_> {
    type Output = StagedUpload;

    async fn run(&mut self, conn: &mut Connection) -> Result<StagedUpload, FtpsError> {
        let (final_path, step) = remote_file("upload", self.remote_dir, self.remote_name)?;
        let local = self.local.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || {
            let file =
                open_no_follow(&local).map_err(|e| (format!("opening {}", local.display()), e))?;
            let metadata = file
                .metadata()
                .map_err(|e| (format!("reading {}", local.display()), e))?;
            Ok::<_, (String, std::io::Error)>((file, metadata.len(), metadata.modified().ok()))
        })
        .await
        .map_err(|e| FtpsError::local_io(&step, std::io::Error::other(e)))?;
        let (file, expected_len, modified) =
            opened.map_err(|(what, e)| FtpsError::local_io(format!("{step}: {what}"), e))?;
        let expected_sha256 = self.options.expected_sha256;
        let part_key = self.options.part_key.or(expected_sha256);
        let temp_path = join_remote(
            self.remote_dir,
            &temp_name(self.remote_name, part_key.as_ref()),
        );
        let stor = format!("STOR {temp_path}");
        let mut offset = match part_key {
            Some(_) if self.options.resume => {
                resume_offset(conn, &step, &temp_path, expected_len).await?
            }
            _ => 0,
        };
        let mut data = match conn.open_data(&step, &stor, ReplyTo::NewPath).await {
            Ok(data) => data,
            // A part of this same content left by an attempt that died, on a server that
            // will not overwrite a file: remove it and store once more.
            Err(e)
                if part_key.is_some()
                    && e.reply().is_some_and(|r| r.code == 550 || r.code == 553) =>
            {
                debug!(temp = %temp_path, reply = ?e.reply(), "STOR refused; replacing a stale part");
                let _ = discard(conn, &temp_path, e).await;
                offset = 0;
                match conn.open_data(&step, &stor, ReplyTo::NewPath).await {
                    Ok(data) => data,
                    Err(e) => return Err(discard(conn, &temp_path, e).await),
                }
            }
            // The server may have created the temporary file before the data connection
            // failed (a refused handshake, a 425): remove it.
            Err(e) => return Err(discard(conn, &temp_path, e).await),
        };
        // From here on a temporary file may exist on the server: every failure removes it.
        let idle = conn.data_idle();
        if offset > 0 {
            info!(temp = %temp_path, offset, "resuming an interrupted upload: sending only the rest");
        }
        let sent = send(file, offset, &mut data, idle, conn.bandwidth(), &step).await;
        let finished = data
            .finish_upload(conn.control(), &step, ReplyTo::NewPath)
            .await;
        // A transfer broken on the way leaves its part for the next attempt to continue
        // (`resume.rs`), where the part's name is the content's and the server can resume.
        let resumable = part_key.is_some() && conn.features().rest_stream && conn.resume_allowed();
        let ((bytes, sha256), transfer_reply) = match (sent, finished) {
            (Ok(v), Ok(reply)) => (v, reply),
            // No final reply: the control connection is out of step, nothing more to say.
            (_, Err(f)) if !conn.control().in_step() => return Err(f),
            (Ok(_), Err(f)) => return Err(discard(conn, &temp_path, f).await),
            (Err(e), Err(f)) if e.kind() != FtpsErrorKind::LocalIo => {
                // The server's reply explains a broken data connection better than EPIPE.
                if resumable && f.is_transient() {
                    debug!(temp = %temp_path, "transfer broken; its part is kept to resume");
                    return Err(f);
                }
                return Err(discard(conn, &temp_path, f).await);
            }
            (Err(e), _) => return Err(discard(conn, &temp_path, e).await),
        };
        crash_point::reached(CrashPoint::AfterTransferReply);
        if let Some(expected) = expected_sha256
            && expected != sha256
        {
            let e = FtpsError::new(
                FtpsErrorKind::LocalFileChanged,
                &step,
                format!(
                    "the file changed since it was selected: sha256 of the bytes sent {} differs \
                     from the expected {}; not renamed",
                    hex::encode(sha256),
                    hex::encode(expected)
                ),
            );
            return Err(discard(conn, &temp_path, e).await);
        }
        if bytes != expected_len {
            let e = FtpsError::new(
                FtpsErrorKind::LocalFileChanged,
                &step,
                format!(
                    "the file changed during the upload: {expected_len} bytes when opened, {bytes} read"
                ),
            );
            return Err(discard(conn, &temp_path, e).await);
        }
        let sent = Sent {
            bytes,
            sha256: &sha256,
            transfer_reply: &transfer_reply,
        };
        let verified = match verify_stored(conn, &step, &temp_path, sent).await {
            Ok(verified) => verified,
            Err(e) => return Err(discard(conn, &temp_path, e).await),
        };
        if self.options.preserve_mtime
            && let Some(modified) = modified
        {
            match set_modified(conn, &step, &temp_path, modified).await {
                Ok(MtimeKept::Kept) => {}
                Ok(not_kept) => {
                    warn!(temp = %temp_path, ?not_kept, "the partner did not keep the modification time")
                }
                Err(e) => return Err(discard(conn, &temp_path, e).await),
            }
        }
        Ok(StagedUpload {
            bytes,
            sha256,
            verified,
            temp_path,
            final_path,
        })
    }
}

/// The second half of an upload: the rename of a [`StagedUpload`] to its final name under
/// a [`RenamePolicy`]. A failure leaves the temporary file where it is (see the module docs).
pub(crate) struct CommitUpload<'a> {
    pub(crate) staged: &'a StagedUpload,
    pub(crate) policy: RenamePolicy,
}

impl Operation for CommitUpload<'_> {
    type Output = Uploaded;

    async fn run(&mut self, conn: &mut Connection) -> Result<Uploaded, FtpsError> {
        let staged = self.staged;
        let step = format!("upload of {}", staged.final_path);
        rename(
            conn,
            &step,
            &staged.temp_path,
            &staged.final_path,
            self.policy,
        )
        .await?;
        Ok(Uploaded {
            bytes: staged.bytes,
            sha256: staged.sha256,
            verified: staged.verified,
            remote_path: staged.final_path.clone(),
        })
    }
}

/// Removes a [`StagedUpload`]'s temporary file (best effort: a failure is only logged).
pub(crate) struct DiscardUpload<'a> {
    pub(crate) temp_path: &'a str,
}

impl Operation for DiscardUpload<'_> {
    type Output = ();

    async fn run(&mut self, conn: &mut Connection) -> Result<(), FtpsError> {
        check_line("discard", self.temp_path)?;
        let reason = FtpsError::new(FtpsErrorKind::Protocol, "discard", "not renamed");
        let _ = discard(conn, self.temp_path, reason).await;
        Ok(())
    }
}

/// Best-effort removal of a remote temporary file after a failure; returns `err`.
async fn discard(conn: &mut Connection, temp_path: &str, err: FtpsError) -> FtpsError {
    if !conn.control().in_step() {
        return err;
    }
    match conn.command("discard", &format!("DELE {temp_path}")).await {
        Ok(r) if r.is_positive() => debug!(temp = temp_path, "temporary file removed"),
        _ => debug!(temp = temp_path, "temporary file could not be removed"),
    }
    err
}

/// Reads `file` once (on the disk thread, hashing there) and sends each buffer after the
/// first `skip` bytes (those the server has from an interrupted attempt: hashed, not sent).
async fn send(
    file: std::fs::File,
    skip: u64,
    data: &mut DataChannel,
    idle: std::time::Duration,
    cap: Option<Arc<BandwidthCap>>,
    step: &str,
) -> Result<(u64, [u8; 32]), FtpsError> {
    let mut reader = FileReader::start_after(file, skip);
    let mut sent: Result<(), FtpsError> = Ok(());
    let mut first = true;
    while let Some(buf) = reader.next().await {
        if let Some(cap) = &cap {
            cap.take(buf.len()).await;
        }
        sent = match tokio::time::timeout(idle, data.stream().write_all(&buf)).await {
            Ok(r) => r.map_err(|e| from_net_io(step, e)),
            Err(_) => Err(FtpsError::timeout(step, "data connection (upload)", idle)),
        };
        reader.recycle(buf);
        if first {
            first = false;
            let _ = data.stream().flush().await;
            crash_point::reached(CrashPoint::MidStream);
        }
        if sent.is_err() {
            break;
        }
    }
    let read = reader.finish().await;
    sent?;
    let (total, sha, _) =
        read.map_err(|e| FtpsError::local_io(format!("{step}: reading the local file"), e))?;
    Ok((total, sha))
}
