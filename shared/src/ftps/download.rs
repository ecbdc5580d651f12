//! Streaming download into a temporary file that becomes the final file only when asked.
//!
//! The data is streamed into a temporary file created exclusively in the destination folder
//! (`paths.rs` names it per flow and remote path; a dead attempt's part is removed first), written and
//! hashed on the disk thread (`pipeline.rs`), `fsync`ed, and its length checked against the
//! size the server announces. A data stream that ends without TLS `close_notify` may be a cut
//! connection, and the server's `226` cannot be trusted to know it (the server may not see
//! the cut either): such a download is accepted only when its length equals the announced
//! size, and fails as [`FtpsErrorKind::Truncated`] otherwise (or when no size is known).
//!
//! Which size is announced ([`announced_size`]): a stream that ended with `close_notify`
//! and brought exactly the size the listing gave needs nothing more, so the common download
//! costs two commands (`EPSV`, `RETR`), not three. Otherwise, or when the listing gave no
//! size, the server's `SIZE` now is the size to match: the file may have changed since it
//! was listed, or the stream may have been cut. A server without `SIZE` leaves the listed
//! size. A listing that shows a wrong size therefore costs a `SIZE`, never a wrong file.
//!
//! A transfer broken on the way may keep its part for the next attempt, which then asks the
//! server for the rest only (`download_resume.rs`).
//!
//! The result is a [`DownloadedFile`] that deletes itself unless
//! [`DownloadedFile::persist`]ed under its final name. A cancelled transfer (dropped future)
//! leaves no final-name file.

use std::path::{Path, PathBuf};

use sha2::Sha256;
use tokio::time::timeout;
use tracing::{debug, info};

use super::classify::{ReplyTo, from_net_io};
use super::commands::size;
use super::connection::{Connection, Operation};
use super::data::DataChannel;
use super::download_resume::{self, KeptPart};
use super::error::{FtpsError, FtpsErrorKind};
use super::listing::check_name;
use super::paths::{
    download_part_name, download_part_prefix, random_download_part_name, remote_file,
};
use super::pipeline::FileWriter;
use crate::crash_point::{self, CrashPoint};

/// A downloaded file, still under its temporary name in the destination folder.
///
/// Dropping it deletes the temporary file; [`DownloadedFile::persist`] gives it its final name.
#[derive(Debug)]
pub struct DownloadedFile {
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of the bytes received.
    pub sha256: [u8; 32],
    guard: TempGuard,
    dir: PathBuf,
}

impl DownloadedFile {
    /// Takes over a part file a crashed attempt left complete, so it can be persisted like
    /// a fresh download. The caller has checked its size and hash against what that
    /// attempt recorded in its commit intent (`idempotency/intent.rs`). `None` when `part`
    /// names no folder.
    pub fn adopt(part: PathBuf, bytes: u64, sha256: [u8; 32]) -> Option<DownloadedFile> {
        let dir = part.parent()?.to_path_buf();
        Some(DownloadedFile {
            bytes,
            sha256,
            guard: TempGuard {
                path: part,
                armed: true,
            },
            dir,
        })
    }

    /// Where the data is now (a hidden temporary name in the destination folder).
    pub fn temp_path(&self) -> &Path {
        &self.guard.path
    }

    /// Renames the file to `final_name` in its folder (replacing an existing file) and
    /// `fsync`s the folder so the rename survives a crash.
    pub fn persist(mut self, final_name: &str) -> Result<PathBuf, FtpsError> {
        let step = format!("saving {final_name}");
        check_name(final_name)
            .map_err(|e| FtpsError::new(FtpsErrorKind::InvalidPath, step.clone(), e.to_string()))?;
        let dest = self.dir.join(final_name);
        std::fs::rename(&self.guard.path, &dest)
            .map_err(|e| FtpsError::local_io(step.clone(), e))?;
        self.guard.armed = false;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FtpsError::local_io(step, e))?;
        Ok(dest)
    }
}

impl DownloadedFile {
    /// Like [`DownloadedFile::persist`], but never replaces a file already under
    /// `final_name` (atomically: a hard link that fails if the name exists): such a file is
    /// left as it is and the error is [`FtpsErrorKind::TargetExists`].
    pub fn persist_new(self, final_name: &str) -> Result<PathBuf, FtpsError> {
        let step = format!("saving {final_name}");
        check_name(final_name)
            .map_err(|e| FtpsError::new(FtpsErrorKind::InvalidPath, step.clone(), e.to_string()))?;
        let dest = self.dir.join(final_name);
        match std::fs::hard_link(&self.guard.path, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(FtpsError::new(
                    FtpsErrorKind::TargetExists,
                    step,
                    format!(
                        "{} already exists and the flow does not replace files (overwrite: false)",
                        dest.display()
                    ),
                )
                .transient(false));
            }
            Err(e) => return Err(FtpsError::local_io(step, e)),
        }
        // The guard removes the temporary name; the data stays under the final one.
        drop(self.guard);
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FtpsError::local_io(step, e))?;
        Ok(dest)
    }
}

/// Deletes a local temporary file when dropped, unless disarmed.
#[derive(Debug)]
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a download knows besides the file's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadOptions {
    /// The size the listing gave: a stream that ends with `close_notify` and brings exactly
    /// this many bytes needs no `SIZE` (see the module docs).
    pub listed_size: Option<u64>,
    /// Who downloads (the flow id): parts of one owner never touch another's.
    pub part_owner: String,
    /// The remote file's version as the listing shows it (its size and time): a broken
    /// transfer's part is kept under this label, and continued only for the same version
    /// (`download_resume.rs`). `None`: never kept, never continued.
    pub resume_version: Option<String>,
}

/// One download.
pub(crate) struct Download<'a> {
    pub(crate) remote_dir: &'a str,
    pub(crate) remote_name: &'a str,
    pub(crate) local_dir: &'a Path,
    pub(crate) options: &'a DownloadOptions,
}

impl Operation for Download<'_> {
    type Output = DownloadedFile;

    async fn run(&mut self, conn: &mut Connection) -> Result<DownloadedFile, FtpsError> {
        let (remote_path, step) = remote_file("download", self.remote_dir, self.remote_name)?;
        // Without a listed size, `SIZE` first: resuming needs the length up front.
        let listed = match self.options.listed_size {
            Some(listed) => Some(listed),
            None => size(conn, &step, &remote_path).await?,
        };
        let prefix = download_part_prefix(self.remote_name, &self.options.part_owner, &remote_path);
        // Resuming needs the version to label the part with, the file's length, and a server
        // that restarts at an offset.
        let resume = match (&self.options.resume_version, listed) {
            (Some(version), Some(len)) if conn.features().rest_stream && conn.resume_allowed() => {
                Some((version.clone(), len))
            }
            _ => None,
        };
        let dir = self.local_dir.to_path_buf();
        let (part_prefix, wanted) = (prefix.clone(), resume.clone());
        let created = tokio::task::spawn_blocking(move || open_part(&dir, &part_prefix, wanted))
            .await
            .map_err(|e| FtpsError::local_io(&step, std::io::Error::other(e)))?;
        let (path, opened) = created
            .map_err(|(path, e)| FtpsError::local_io(format!("{step}: creating {path}"), e))?;
        let mut guard = TempGuard { path, armed: true };
        let (file, start) = match opened {
            Opened::Kept(kept) => continue_at(conn, &step, kept).await?,
            Opened::Fresh(file) => (file, Start::default()),
        };
        let resumed_at = start.offset;
        let retr = format!("RETR {remote_path}");
        let mut data = conn.open_data(&step, &retr, ReplyTo::ExistingPath).await?;
        let expected = listed.map(|len| len.saturating_sub(resumed_at));
        let received = receive(
            &mut data,
            file,
            (start, expected),
            conn.data_idle(),
            conn.bandwidth(),
            &step,
        )
        .await;
        let clean_end = data.ended_cleanly();
        // A broken transfer keeps its part for the next attempt, where it may; never a
        // continued one (the server may have ignored `REST`: its bytes are not trusted
        // unless the stream ends whole, see below).
        let keep_part = |guard: &mut TempGuard, error: &FtpsError| {
            if let Some((version, _)) = &resume
                && resumed_at == 0
                && error.is_transient()
                && download_resume::keep(self.local_dir, &prefix, &guard.path, version)
            {
                guard.armed = false;
            }
        };
        let (bytes, sha256, file) = match received {
            Ok(v) => {
                // A server that saw the cut answers 426 here.
                if let Err(e) = data
                    .finish_read(conn.control(), &step, ReplyTo::ExistingPath)
                    .await
                {
                    keep_part(&mut guard, &e);
                    return Err(e);
                }
                v
            }
            Err(e) => {
                data.abandon(conn.control(), &step).await;
                keep_part(&mut guard, &e);
                return Err(e);
            }
        };
        let local_step = format!("{step}: writing {}", guard.path.display());
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| FtpsError::local_io(local_step, e))?;
        // A continued stream must end with close_notify: a server that ignored `REST` and was
        // then cut could otherwise hand over exactly the missing length of the wrong bytes.
        if resumed_at > 0 && !clean_end {
            return Err(FtpsError::new(
                FtpsErrorKind::Truncated,
                &step,
                format!(
                    "the continued transfer (from byte {resumed_at}) ended without TLS close_notify; its part is dropped"
                ),
            )
            .transient(true));
        }
        let announced = announced_size(conn, &step, &remote_path, listed, bytes, clean_end)
            .await?
            .or(listed);
        if let Err(e) = check_length(&step, bytes, announced, clean_end) {
            if e.kind() == FtpsErrorKind::Truncated {
                keep_part(&mut guard, &e);
            }
            return Err(e);
        }
        Ok(DownloadedFile {
            bytes,
            sha256,
            guard,
            dir: self.local_dir.to_path_buf(),
        })
    }
}

/// Where a transfer's stream starts: the bytes a kept part already holds, and their hash.
#[derive(Default)]
struct Start {
    offset: u64,
    hasher: Sha256,
}

/// A transfer's part, as opened.
enum Opened {
    /// Empty: the stream starts at the first byte.
    Fresh(std::fs::File),
    /// A kept part to continue.
    Kept(KeptPart),
}

/// This transfer's part: a fresh one (see [`create_part`]), or, when `resume` gives the
/// remote file's version and length, the kept part of that version moved under the
/// fresh part's name (see `download_resume.rs`).
fn open_part(
    dir: &Path,
    prefix: &str,
    resume: Option<(String, u64)>,
) -> Result<(PathBuf, Opened), (String, std::io::Error)> {
    let (file, path) = create_part(dir, prefix)?;
    let Some((version, len)) = resume else {
        return Ok((path, Opened::Fresh(file)));
    };
    match download_resume::take_kept(dir, prefix, &path, &version, len) {
        // The kept part now has the fresh part's name; the fresh (empty) file is dropped.
        Ok(Some(kept)) => Ok((path, Opened::Kept(kept))),
        Ok(None) => Ok((path, Opened::Fresh(file))),
        Err(e) => {
            debug!(error = %e, "a kept part could not be read; starting over");
            Ok((path, Opened::Fresh(file)))
        }
    }
}

/// Asks the server to start at the kept part's end (`REST`); a refusal starts over,
/// emptying the part.
async fn continue_at(
    conn: &mut Connection,
    step: &str,
    kept: KeptPart,
) -> Result<(std::fs::File, Start), FtpsError> {
    let reply = conn.command(step, &format!("REST {}", kept.len)).await?;
    if reply.code == 350 {
        return Ok((
            kept.file,
            Start {
                offset: kept.len,
                hasher: kept.hasher,
            },
        ));
    }
    info!(reply = ?reply.code, "the server refused REST; fetching the whole file");
    let file = kept.file;
    let emptied = {
        use std::io::Seek;
        let mut file = &file;
        file.set_len(0).and_then(|()| file.rewind())
    };
    emptied.map_err(|e| FtpsError::local_io(format!("{step}: emptying the kept part"), e))?;
    Ok((file, Start::default()))
}

/// Creates this transfer's part exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`: nothing already
/// there, a planted link included, is ever opened). The part's name is fixed per owner and
/// remote path, so a dead attempt's part is removed by name first (the claim keeps live
/// attempts apart): one `unlink`, never a scan of the folder. If something reappears under
/// that name in between, a random name is used instead.
fn create_part(
    dir: &Path,
    prefix: &str,
) -> Result<(std::fs::File, PathBuf), (String, std::io::Error)> {
    use std::os::unix::fs::OpenOptionsExt;
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let path = dir.join(download_part_name(prefix));
    match std::fs::remove_file(&path) {
        Ok(()) => debug!(part = %path.display(), "removed a dead attempt's part"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err((path.display().to_string(), e)),
    }
    match create(&path) {
        Ok(file) => Ok((file, path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let path = dir.join(random_download_part_name(prefix));
            create(&path)
                .map(|file| (file, path.clone()))
                .map_err(|e| (path.display().to_string(), e))
        }
        Err(e) => Err((path.display().to_string(), e)),
    }
}

/// The size a download of `bytes` must match (see the module docs): `listed` (the listing's
/// size, or `SIZE` before the transfer when the listing gave none) when the stream ended with
/// `close_notify` and brought exactly that, else the server's `SIZE` now (`None` when it has
/// none: then the listed size is all there is).
async fn announced_size(
    conn: &mut Connection,
    step: &str,
    remote_path: &str,
    listed: Option<u64>,
    bytes: u64,
    clean_end: bool,
) -> Result<Option<u64>, FtpsError> {
    match listed {
        Some(listed) if clean_end && listed == bytes => Ok(Some(listed)),
        _ => size(conn, step, remote_path).await,
    }
}

/// The length rule of the module docs.
fn check_length(
    step: &str,
    bytes: u64,
    announced: Option<u64>,
    clean_end: bool,
) -> Result<(), FtpsError> {
    match announced {
        Some(n) if n == bytes => Ok(()),
        Some(n) => Err(FtpsError::new(
            if clean_end {
                FtpsErrorKind::Protocol
            } else {
                FtpsErrorKind::Truncated
            },
            step,
            format!("received {bytes} bytes, the server announced {n}"),
        )
        .transient(true)),
        None if clean_end => Ok(()),
        None => Err(FtpsError::new(
            FtpsErrorKind::Truncated,
            step,
            format!(
                "the data connection ended after {bytes} bytes without TLS close_notify, and \
                 the server gave no size to check them against: the file may be cut short"
            ),
        )),
    }
}

/// Receives the data stream into `file` (written and hashed on the disk thread); `expected`,
/// the bytes the stream should bring, sizes the buffers.
async fn receive(
    data: &mut DataChannel,
    file: std::fs::File,
    (start, expected): (Start, Option<u64>),
    idle: std::time::Duration,
    cap: Option<std::sync::Arc<super::BandwidthCap>>,
    step: &str,
) -> Result<(u64, [u8; 32], std::fs::File), FtpsError> {
    let mut writer = FileWriter::continuing(file, start.hasher, start.offset, expected);
    let mut received: Result<(), FtpsError> = Ok(());
    let mut first = true;
    'outer: while let Some(mut buf) = writer.buffer().await {
        // Fill the buffer (rustls hands out one record at a time) to keep disk writes large.
        let mut n = 0;
        while n < buf.len() {
            let got = match timeout(idle, data.read(&mut buf[n..])).await {
                Ok(r) => r.map_err(|e| from_net_io(step, e)),
                Err(_) => Err(FtpsError::timeout(step, "data connection (download)", idle)),
            };
            match got {
                Ok(0) => {
                    buf.truncate(n);
                    if n > 0 {
                        writer.write(buf).await;
                    }
                    break 'outer;
                }
                Ok(k) => {
                    // Received already: waiting here slows the sender through TCP's window.
                    if let Some(cap) = &cap {
                        cap.take(k).await;
                    }
                    n += k
                }
                Err(e) => {
                    received = Err(e);
                    break 'outer;
                }
            }
        }
        if !writer.write(buf).await {
            break;
        }
        if first {
            first = false;
            crash_point::reached(CrashPoint::MidStream);
        }
    }
    let written = writer.finish().await;
    received?;
    written.map_err(|e| FtpsError::local_io(format!("{step}: writing the local file"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A downloaded file of 4 bytes waiting at `temp` in `dir`.
    fn downloaded(temp: &Path, dir: &Path) -> DownloadedFile {
        DownloadedFile {
            bytes: 4,
            sha256: [0; 32],
            guard: TempGuard {
                path: temp.to_path_buf(),
                armed: true,
            },
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn downloaded_file_deletes_itself_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".x.tmp");
        std::fs::write(&p, b"data").unwrap();
        drop(downloaded(&p, dir.path()));
        assert!(!p.exists());

        std::fs::write(&p, b"data").unwrap();
        let d = downloaded(&p, dir.path());
        assert!(d.persist("../escape").is_err());
        assert!(!p.exists(), "a failed persist still cleans up");
        std::fs::write(&p, b"data").unwrap();
        let d = downloaded(&p, dir.path());
        let dest = d.persist("final.txt").unwrap();
        assert_eq!(std::fs::read(dest).unwrap(), b"data");
        assert!(!p.exists());
    }

    #[test]
    fn a_stream_without_close_notify_needs_the_announced_length() {
        assert!(check_length("s", 10, Some(10), false).is_ok());
        assert!(check_length("s", 10, None, true).is_ok());
        let cut = check_length("s", 4, Some(10), false).unwrap_err();
        assert_eq!(cut.kind(), FtpsErrorKind::Truncated);
        let unknown = check_length("s", 4, None, false).unwrap_err();
        assert_eq!(unknown.kind(), FtpsErrorKind::Truncated);
        let short = check_length("s", 4, Some(10), true).unwrap_err();
        assert_eq!(short.kind(), FtpsErrorKind::Protocol);
    }
}
