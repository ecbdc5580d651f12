//! Streaming uploads and downloads over a [`Session`], so that a partner never sees a partial
//! file and ferry never keeps a whole file in memory.
//!
//! Upload: the local file is read once, in buffers of [`BUF_SIZE`](super::BUF_SIZE), on a
//! disk thread (`pipeline.rs`) that hashes each buffer (SHA-256) in the same pass while the
//! previous one is encrypted and sent. The data goes to a hidden temporary name in the target
//! directory (`.NAME.RANDOM.ferry-part`); only after the server confirmed the transfer (226),
//! the bytes sent match the file's size (and the caller's expected hash), and, where the
//! server offers `SIZE`, the stored size equals the bytes sent, is it renamed to its final
//! name. Any failure deletes the temporary file (best effort). The hash returned is the hash
//! of the bytes sent: it is the one the flow records.
//!
//! Download: streamed into a temporary file created (exclusively) in the destination folder,
//! written and hashed on the disk thread, `fsync`ed, its size checked against `SIZE`, and
//! handed back as a [`DownloadedFile`] that deletes itself unless
//! [`DownloadedFile::persist`]ed under its final name. A cancelled transfer (dropped future) leaves no final-name file on either side.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{Instrument, debug, info};

use super::error::{self, FtpsError, FtpsErrorKind, ReplyTo};
use super::listing::check_name;
use super::pipeline::{FileReader, FileWriter};
use super::session::{
    DataCmd, Session, Transfer, check_remote_path, eof_is_end, join_remote, within,
};

/// The outcome of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes sent (and confirmed).
    pub bytes: u64,
    /// SHA-256 of the bytes sent.
    pub sha256: [u8; 32],
    /// The final remote path.
    pub remote_path: String,
}

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

/// A hidden temporary name next to the final one: `.NAME.TAG.ferry-part`. With a key
/// given (the content's SHA-256 for an upload, a hash of the remote path for a download),
/// TAG comes from it, so a retry of the same transfer (after a crash or a cut connection)
/// writes over the same temporary file instead of leaving the first attempt's part behind;
/// only the holder of the transfer's claim moves it, so no two transfers share the name.
/// Without a key, TAG is random.
fn temp_name(name: &str, content: Option<&[u8; 32]>) -> String {
    let mut cut = name.len().min(160);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let tag = match content {
        Some(sha256) => hex::encode(&sha256[..6]),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    format!(".{}.{tag}.ferry-part", &name[..cut])
}

fn invalid_name(step: &str, e: super::listing::NameError) -> FtpsError {
    FtpsError::new(FtpsErrorKind::InvalidPath, step, e.to_string())
}

impl Session {
    /// Streams `local` to `remote_dir/remote_name` through a temporary name and a rename,
    /// hashing in the same pass. With `expected_sha256`, a file whose bytes sent hash
    /// differently (it changed since it was selected) is deleted, never renamed, and the
    /// error kind is [`FtpsErrorKind::LocalFileChanged`].
    pub async fn upload(
        &mut self,
        local: &Path,
        remote_dir: &str,
        remote_name: &str,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Uploaded, FtpsError> {
        let span =
            tracing::info_span!("ftps_upload", remote_dir, remote_name, local = %local.display());
        async {
            match self
                .upload_once(local, remote_dir, remote_name, expected_sha256)
                .await
            {
                Err(e) if !self.fell_back_to_tls12() && self.reuse_failure_suspected(&e) => {
                    self.fall_back_to_tls12(&e).await?;
                    self.upload_once(local, remote_dir, remote_name, expected_sha256)
                        .await
                }
                r => r,
            }
        }
        .instrument(span)
        .await
    }

    async fn upload_once(
        &mut self,
        local: &Path,
        remote_dir: &str,
        remote_name: &str,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Uploaded, FtpsError> {
        let final_path = join_remote(remote_dir, remote_name);
        let step = format!("upload of {final_path}");
        check_name(remote_name).map_err(|e| invalid_name(&step, e))?;
        check_remote_path(&step, remote_dir)?;
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| FtpsError::local_io(format!("{step}: opening {}", local.display()), e))?;
        let expected_len = file
            .metadata()
            .await
            .map_err(|e| FtpsError::local_io(format!("{step}: reading {}", local.display()), e))?
            .len();
        let file = file.into_std().await;
        self.ensure_ready().await?;
        self.dirty = true;
        let r = self
            .upload_inner(
                &step,
                file,
                expected_len,
                &final_path,
                remote_dir,
                remote_name,
                expected_sha256,
            )
            .await;
        match &r {
            Ok(u) => {
                self.dirty = false;
                info!(bytes = u.bytes, sha256 = %hex::encode(u.sha256), remote = %u.remote_path, "uploaded");
            }
            Err(e) => self.settle(e),
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_inner(
        &mut self,
        step: &str,
        file: std::fs::File,
        expected_len: u64,
        final_path: &str,
        remote_dir: &str,
        remote_name: &str,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Uploaded, FtpsError> {
        let temp_path = join_remote(
            remote_dir,
            &temp_name(remote_name, expected_sha256.as_ref()),
        );
        let stor = DataCmd::Stor(temp_path.clone());
        let mut stream = match self.open_data(step, &stor, ReplyTo::NewPath).await {
            Ok(stream) => stream,
            // A part of this same content left by an attempt that died, on a server that
            // will not overwrite a file: remove it and store once more (as a rename does).
            Err(e)
                if expected_sha256.is_some()
                    && e.reply().is_some_and(|r| r.code == 550 || r.code == 553) =>
            {
                debug!(temp = %temp_path, reply = ?e.reply(), "STOR refused; replacing a stale part");
                let _ = self.discard(&temp_path, e).await;
                self.open_data(step, &stor, ReplyTo::NewPath).await?
            }
            Err(e) => return Err(e),
        };
        // From here on a temporary file may exist on the server: every failure removes it.
        let sent = send(file, &mut stream, self.cfg.timeouts.data_idle, step).await;
        let finished = self.finish(step, stream, ReplyTo::NewPath).await;
        self.drop_if_out_of_step(&finished);
        let (bytes, sha256) = match (sent, finished) {
            (Ok(v), Ok(())) => v,
            (Ok(_), Err(e)) => return Err(self.discard(&temp_path, e).await),
            (Err(e), Err(f)) if f.reply().is_some() && e.kind() != FtpsErrorKind::LocalIo => {
                // The server's reply explains a broken data connection better than EPIPE.
                return Err(self.discard(&temp_path, f).await);
            }
            (Err(e), _) => return Err(self.discard(&temp_path, e).await),
        };
        if let Some(expected) = expected_sha256
            && expected != sha256
        {
            let e = FtpsError::new(
                FtpsErrorKind::LocalFileChanged,
                step,
                format!(
                    "the file changed since it was selected: sha256 of the bytes sent {} differs \
                     from the expected {}; not renamed",
                    hex::encode(sha256),
                    hex::encode(expected)
                ),
            );
            return Err(self.discard(&temp_path, e).await);
        }
        if bytes != expected_len {
            let e = FtpsError::new(
                FtpsErrorKind::LocalFileChanged,
                step,
                format!(
                    "the file changed during the upload: {expected_len} bytes when opened, {bytes} read"
                ),
            );
            return Err(self.discard(&temp_path, e).await);
        }
        match self.remote_size(step, &temp_path).await {
            Ok(Some(stored)) if stored != bytes => {
                let e = FtpsError::new(
                    FtpsErrorKind::Protocol,
                    step,
                    format!("the server stored {stored} bytes, ferry sent {bytes}"),
                )
                .transient(true);
                return Err(self.discard(&temp_path, e).await);
            }
            Ok(_) => {}
            Err(e) => return Err(self.discard(&temp_path, e).await),
        }
        if let Err(e) = self.rename_inner(step, &temp_path, final_path).await {
            return Err(self.discard(&temp_path, e).await);
        }
        Ok(Uploaded {
            bytes,
            sha256,
            remote_path: final_path.to_string(),
        })
    }

    /// A final reply that never came (timeout, lost connection) leaves the control connection
    /// out of step: drop it, so the next operation reconnects.
    fn drop_if_out_of_step(&mut self, finished: &Result<(), FtpsError>) {
        if let Err(e) = finished
            && e.reply().is_none()
        {
            self.ftp = None;
        }
    }

    /// Best-effort removal of a remote temporary file after a failure; returns `err`.
    async fn discard(&mut self, temp_path: &str, err: FtpsError) -> FtpsError {
        let wait = self
            .cfg
            .timeouts
            .reply
            .min(std::time::Duration::from_secs(5));
        if let Some(ftp) = self.ftp.as_mut() {
            match tokio::time::timeout(wait, ftp.rm(temp_path)).await {
                Ok(Ok(())) => debug!(temp = temp_path, "temporary file removed"),
                _ => debug!(temp = temp_path, "temporary file could not be removed"),
            }
        }
        err
    }

    /// Streams `remote_dir/remote_name` into a temporary file in `local_dir`, `fsync`s it and
    /// checks its size; the caller decides whether to keep it ([`DownloadedFile::persist`]).
    pub async fn download(
        &mut self,
        remote_dir: &str,
        remote_name: &str,
        local_dir: &Path,
    ) -> Result<DownloadedFile, FtpsError> {
        let span = tracing::info_span!("ftps_download", remote_dir, remote_name, local_dir = %local_dir.display());
        async {
            match self.download_once(remote_dir, remote_name, local_dir).await {
                Err(e) if !self.fell_back_to_tls12() && self.reuse_failure_suspected(&e) => {
                    self.fall_back_to_tls12(&e).await?;
                    self.download_once(remote_dir, remote_name, local_dir).await
                }
                r => r,
            }
        }
        .instrument(span)
        .await
    }

    async fn download_once(
        &mut self,
        remote_dir: &str,
        remote_name: &str,
        local_dir: &Path,
    ) -> Result<DownloadedFile, FtpsError> {
        let remote_path = join_remote(remote_dir, remote_name);
        let step = format!("download of {remote_path}");
        check_name(remote_name).map_err(|e| invalid_name(&step, e))?;
        check_remote_path(&step, remote_dir)?;
        self.ensure_ready().await?;
        self.dirty = true;
        let r = self
            .download_inner(&step, &remote_path, remote_name, local_dir)
            .await;
        match &r {
            Ok(d) => {
                self.dirty = false;
                info!(bytes = d.bytes, sha256 = %hex::encode(d.sha256), "downloaded");
            }
            Err(e) => self.settle(e),
        }
        r
    }

    async fn download_inner(
        &mut self,
        step: &str,
        remote_path: &str,
        remote_name: &str,
        local_dir: &Path,
    ) -> Result<DownloadedFile, FtpsError> {
        let expected = self.remote_size(step, remote_path).await?;
        // Named after the remote path: a download retried after a crash overwrites the part
        // the dead attempt left, instead of leaving it behind (claims keep two transfers of
        // one remote file apart).
        let tag: [u8; 32] = Sha256::digest(remote_path.as_bytes()).into();
        let path = local_dir.join(temp_name(remote_name, Some(&tag)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| FtpsError::local_io(format!("{step}: creating {}", path.display()), e))?;
        let file = file.into_std().await;
        let guard = TempGuard { path, armed: true };
        let mut stream = self
            .open_data(
                step,
                &DataCmd::Retr(remote_path.to_string()),
                ReplyTo::ExistingPath,
            )
            .await?;
        let received = receive(&mut stream, file, self.cfg.timeouts.data_idle, step).await;
        let finished = self.finish(step, stream, ReplyTo::ExistingPath).await;
        self.drop_if_out_of_step(&finished);
        let (bytes, sha256, file) = match (received, finished) {
            (Ok(v), Ok(())) => v,
            (Ok(_), Err(e)) => return Err(e),
            (Err(e), Err(f)) if f.reply().is_some() && e.kind() != FtpsErrorKind::LocalIo => {
                return Err(f);
            }
            (Err(e), _) => return Err(e),
        };
        let local_step = format!("{step}: writing {}", guard.path.display());
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| FtpsError::local_io(local_step, e))?;
        if let Some(n) = expected
            && n != bytes
        {
            return Err(FtpsError::new(
                FtpsErrorKind::Protocol,
                step,
                format!("received {bytes} bytes, the server announced {n}"),
            )
            .transient(true));
        }
        Ok(DownloadedFile {
            bytes,
            sha256,
            guard,
            dir: local_dir.to_path_buf(),
        })
    }
}

/// Reads `file` once (on the disk thread, hashing there) and sends each buffer.
async fn send(
    file: std::fs::File,
    stream: &mut Transfer,
    idle: std::time::Duration,
    step: &str,
) -> Result<(u64, [u8; 32]), FtpsError> {
    let mut reader = FileReader::start(file);
    let mut sent: Result<(), FtpsError> = Ok(());
    while let Some(buf) = reader.next().await {
        sent = within(idle, step, "data connection (upload)", async {
            stream
                .write_all(&buf)
                .await
                .map_err(|e| error::from_net_io(step, e))
        })
        .await;
        reader.recycle(buf);
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

/// Receives the data stream into `file` (written and hashed on the disk thread).
async fn receive(
    stream: &mut Transfer,
    file: std::fs::File,
    idle: std::time::Duration,
    step: &str,
) -> Result<(u64, [u8; 32], std::fs::File), FtpsError> {
    let mut writer = FileWriter::start(file);
    let mut received: Result<(), FtpsError> = Ok(());
    'outer: while let Some(mut buf) = writer.buffer().await {
        // Fill the buffer (rustls hands out one record at a time) to keep disk writes large.
        let mut n = 0;
        while n < buf.len() {
            let got = within(idle, step, "data connection (download)", async {
                stream
                    .read(&mut buf[n..])
                    .await
                    .or_else(|e| eof_is_end(e, 0))
                    .map_err(|e| error::from_net_io(step, e))
            })
            .await;
            match got {
                Ok(0) => {
                    buf.truncate(n);
                    if n > 0 {
                        writer.write(buf).await;
                    }
                    break 'outer;
                }
                Ok(k) => n += k,
                Err(e) => {
                    received = Err(e);
                    break 'outer;
                }
            }
        }
        if !writer.write(buf).await {
            break;
        }
    }
    let written = writer.finish().await;
    received?;
    written.map_err(|e| FtpsError::local_io(format!("{step}: writing the local file"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_bounded_and_stable_per_content() {
        let a = temp_name("report.xml", None);
        let b = temp_name("report.xml", None);
        assert_ne!(a, b, "unique without a known content");
        assert!(a.starts_with(".report.xml."));
        assert!(a.ends_with(".ferry-part"));
        assert!(check_name(&a).is_ok());
        let long = "é".repeat(200);
        assert!(temp_name(&long, None).len() < 200);
        let content = [0xab; 32];
        assert_eq!(
            temp_name("report.xml", Some(&content)),
            temp_name("report.xml", Some(&content)),
            "a retry of the same content reuses the same temporary file"
        );
        assert_eq!(
            temp_name("report.xml", Some(&content)),
            ".report.xml.abababababab.ferry-part"
        );
    }

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
}
