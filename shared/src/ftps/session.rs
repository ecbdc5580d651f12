//! [`Session`]: one FTPS session to a partner, reused for many files, that reconnects when it
//! must and never reads a stale reply.
//!
//! Every operation (upload, download, listing, delete, rename) runs through one wrapper,
//! [`Session::run`]:
//! 1. reconnect first if there is no connection or the previous operation left it out of step;
//! 2. mark the session dirty, run the operation, and mark it clean again only if it succeeded
//!    or failed with a clean reply (a refused command leaves the control connection in step;
//!    a timeout, a lost connection or a cancelled future does not);
//! 3. if it failed in the way the TLS 1.2 fallback fixes (`tls12_fallback.rs`), reconnect at
//!    TLS 1.2 and run it once more.
//!
//! What the session learns about the server (EPSV refused, MLSD refused, TLS capped at 1.2)
//! outlives reconnects. The operations themselves live in their own files: `upload.rs`,
//! `download.rs`, `list.rs`, `rename.rs`, `commands.rs`, `mdtm.rs`.

use std::path::Path;

use chrono::{DateTime, Utc};
use tracing::{Instrument, info};

use super::commands::{Delete, RemoteFile, Stat};
use super::config::SessionConfig;
use super::connect::{self, Learned, ProbeStep};
use super::connection::{Connection, Operation};
use super::download::{Download, DownloadOptions, DownloadedFile};
use super::error::{FtpsError, FtpsErrorKind};
use super::list::List;
use super::listing::RemoteEntry;
use super::mdtm::{ModifiedTime, RefineModified};
use super::rename::{Rename, RenamePolicy};
use super::tls_session_reuse::{ControlTls, DataTlsStats};
use super::tls12_fallback::Tls12Fallback;
use super::upload::{CommitUpload, DiscardUpload, StagedUpload, Upload, UploadOptions, Uploaded};

/// One FTPS session to a partner, reused for many files.
pub struct Session {
    cfg: SessionConfig,
    conn: Option<Connection>,
    /// An operation did not finish cleanly: reconnect before the next one.
    dirty: bool,
    fallback: Tls12Fallback,
    epsv: bool,
    mlsd: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .field("user", &self.cfg.username)
            .field("connected", &self.conn.is_some())
            .field("max_version", &self.fallback.max_version())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, secures, logs in and reads the server's features.
    pub async fn connect(cfg: &SessionConfig) -> Result<Session, FtpsError> {
        Self::connect_reporting(cfg, &mut |_| {}).await
    }

    /// [`Session::connect`], reporting each step to `on_step` (used by the probe).
    pub(crate) async fn connect_reporting(
        cfg: &SessionConfig,
        on_step: &mut (dyn FnMut(ProbeStep) + Send),
    ) -> Result<Session, FtpsError> {
        let mut session = Session {
            cfg: cfg.clone(),
            conn: None,
            dirty: false,
            fallback: Tls12Fallback::new(cfg.tls.max_version),
            epsv: cfg.prefer_epsv,
            mlsd: cfg.use_mlsd,
        };
        session.conn = Some(connect::connect(cfg, session.learned(), on_step).await?);
        Ok(session)
    }

    fn learned(&self) -> Learned {
        Learned {
            max_version: self.fallback.max_version(),
            epsv: self.epsv,
            mlsd: self.mlsd,
        }
    }

    /// Whether this session had to cap TLS at 1.2 because the server refused data connections
    /// that did not resume under TLS 1.3; the caller should remember it for the partner.
    pub fn fell_back_to_tls12(&self) -> bool {
        self.fallback.fell_back()
    }

    /// The control connection's TLS version, cipher suite and server certificate chain.
    pub fn control_tls(&self) -> Option<ControlTls> {
        self.conn.as_ref().and_then(|c| c.tls().control.clone())
    }

    /// How many data connections resumed the control session's TLS session, and how many
    /// made a full handshake, since this session (re)connected.
    pub fn data_tls_stats(&self) -> DataTlsStats {
        self.conn.as_ref().map(|c| c.tls().data).unwrap_or_default()
    }

    /// Whether data connections are negotiated with EPSV (`false` once the server refused it).
    pub fn uses_epsv(&self) -> bool {
        self.epsv
    }

    /// Whether listings use `MLSD` (`false` without it in `FEAT`, or once it was refused).
    pub fn uses_mlsd(&self) -> bool {
        self.mlsd && self.conn.as_ref().is_some_and(|c| c.features().mlsd)
    }

    /// The session configuration (secrets stay redacted in its `Debug`).
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The connection, for the probe's report.
    pub(crate) fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// Lists `dir`: `MLSD` when the server offers it, `LIST` otherwise (and once MLSD was
    /// refused), `LIST -a` when the partner's `list_hidden` says so. Entries whose names
    /// would escape the directory are dropped with a warning.
    pub async fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, FtpsError> {
        self.list_with(dir, self.cfg.list_hidden).await
    }

    /// Lists `dir` with its hidden entries (`LIST -a` where the server has no `MLSD`):
    /// for finding ferry's own temporary files.
    pub async fn list_hidden(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, FtpsError> {
        self.list_with(dir, true).await
    }

    async fn list_with(&mut self, dir: &str, hidden: bool) -> Result<Vec<RemoteEntry>, FtpsError> {
        let span = tracing::debug_span!("ftps_list", dir, hidden);
        let mut op = List {
            dir,
            limits: self.cfg.listing_limits,
            zone: self.cfg.listing_timezone,
            hidden,
        };
        self.run(&mut op).instrument(span).await
    }

    /// Whether the server offers `MDTM` (in `FEAT`), so that a time can be made exact.
    pub fn offers_mdtm(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.features().mdtm)
    }

    /// `path`'s modification time to the second, from `MDTM` (one round trip; see
    /// `mdtm.rs`). `Ok(None)` when the server does not offer `MDTM` or refuses it for this
    /// file; a reply that is not a believable time is a [`FtpsErrorKind::Protocol`] error.
    pub async fn modified_time(&mut self, path: &str) -> Result<Option<DateTime<Utc>>, FtpsError> {
        let zone = self.cfg.mdtm_timezone;
        self.run(&mut ModifiedTime { path, zone }).await
    }

    /// Makes `entry`'s time (listed in `dir`) exact with `MDTM` when it is a file whose time
    /// is not ([`TimePrecision`](super::TimePrecision)): afterwards `entry.precision` says
    /// whether it is. One round trip for such an entry, none otherwise; errors as
    /// [`Session::modified_time`].
    pub async fn refine_modified(
        &mut self,
        dir: &str,
        entry: &mut RemoteEntry,
    ) -> Result<(), FtpsError> {
        let zone = self.cfg.mdtm_timezone;
        self.run(&mut RefineModified { dir, entry, zone }).await
    }

    /// Deletes a remote file.
    pub async fn delete(&mut self, remote_path: &str) -> Result<(), FtpsError> {
        self.run(&mut Delete { path: remote_path }).await
    }

    /// Creates the folders `relative` (`/`-separated) below `base` that are missing, with
    /// `MKD`, tolerating another worker creating them at the same time (see `mkdir.rs`).
    /// Returns how many it created.
    pub async fn make_dirs(&mut self, base: &str, relative: &str) -> Result<usize, FtpsError> {
        self.run(&mut super::mkdir::MakeDirs { base, relative })
            .await
    }

    /// Writes an empty file at `path` (a marker; see `empty_file.rs`), replacing one there.
    pub async fn write_empty(&mut self, path: &str) -> Result<(), FtpsError> {
        self.run(&mut super::empty_file::WriteEmpty { path }).await
    }

    /// Renames a remote file (see `rename.rs`): an existing target is replaced, only after
    /// the server refused `RNTO` and showed that the target exists.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), FtpsError> {
        let policy = RenamePolicy {
            replace_existing: true,
        };
        self.run(&mut Rename { from, to, policy }).await
    }

    /// Streams `local` to `remote_dir/remote_name` through a temporary name and a rename
    /// (replacing an existing file), hashing in the same pass. With `expected_sha256`, a file
    /// whose bytes sent hash differently (it changed since it was selected) is deleted, never
    /// renamed, and the error kind is [`FtpsErrorKind::LocalFileChanged`].
    pub async fn upload(
        &mut self,
        local: &Path,
        remote_dir: &str,
        remote_name: &str,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Uploaded, FtpsError> {
        let options = UploadOptions {
            expected_sha256,
            replace_existing: true,
            preserve_mtime: false,
            resume: false,
            part_key: None,
        };
        self.upload_with(local, remote_dir, remote_name, &options)
            .await
    }

    /// [`Session::upload`] with every option (see [`UploadOptions`]): [`Session::stage_upload`]
    /// then [`Session::commit_upload`] (the temporary file removed if the rename fails).
    pub async fn upload_with(
        &mut self,
        local: &Path,
        remote_dir: &str,
        remote_name: &str,
        options: &UploadOptions,
    ) -> Result<Uploaded, FtpsError> {
        let staged = self
            .stage_upload(local, remote_dir, remote_name, options)
            .await?;
        let policy = RenamePolicy {
            replace_existing: options.replace_existing,
        };
        match self.commit_upload(&staged, policy).await {
            Ok(uploaded) => Ok(uploaded),
            Err(e) if e.kind() == FtpsErrorKind::TemporaryFileVanished => Err(e),
            Err(e) => {
                self.discard_upload(&staged.temp_path).await;
                Err(e)
            }
        }
    }

    /// The first half of an upload: streams `local` to a temporary name beside
    /// `remote_dir/remote_name`, hashing in the same pass, and checks what the server
    /// stored (see `upload.rs`). Nothing carries the final name yet.
    pub async fn stage_upload(
        &mut self,
        local: &Path,
        remote_dir: &str,
        remote_name: &str,
        options: &UploadOptions,
    ) -> Result<StagedUpload, FtpsError> {
        let span = tracing::info_span!("ftps_upload", otel.kind = "client", server.address = %self.cfg.host, server.port = self.cfg.port, remote_dir, remote_name, local = %local.display());
        let mut op = Upload::new(local, remote_dir, remote_name, options);
        let staged = self.run(&mut op).instrument(span.clone()).await?;
        span.in_scope(|| info!(bytes = staged.bytes, sha256 = %hex::encode(staged.sha256), temp = %staged.temp_path, "uploaded under a temporary name"));
        Ok(staged)
    }

    /// The second half: renames `staged` to its final name under `policy` (`rename.rs`).
    /// A failure leaves the temporary file in place ([`Session::discard_upload`]).
    pub async fn commit_upload(
        &mut self,
        staged: &StagedUpload,
        policy: RenamePolicy,
    ) -> Result<Uploaded, FtpsError> {
        let span = tracing::info_span!("ftps_rename", otel.kind = "client", server.address = %self.cfg.host, server.port = self.cfg.port, from = %staged.temp_path, to = %staged.final_path);
        let uploaded = self
            .run(&mut CommitUpload { staged, policy })
            .instrument(span)
            .await?;
        info!(remote = %uploaded.remote_path, "renamed into place");
        Ok(uploaded)
    }

    /// Removes an upload's temporary file, best effort (a failure is logged, not returned).
    pub async fn discard_upload(&mut self, temp_path: &str) {
        let _ = self.run(&mut DiscardUpload { temp_path }).await;
    }

    /// Whether `path` is on the server, and its size where the server tells it.
    pub async fn stat(&mut self, path: &str) -> Result<RemoteFile, FtpsError> {
        self.run(&mut Stat { path }).await
    }

    /// Streams `remote_dir/remote_name` into a temporary file in `local_dir`, `fsync`s it and
    /// checks its size against `SIZE`; the caller decides whether to keep it
    /// ([`DownloadedFile::persist`]).
    pub async fn download(
        &mut self,
        remote_dir: &str,
        remote_name: &str,
        local_dir: &Path,
    ) -> Result<DownloadedFile, FtpsError> {
        self.download_with(
            remote_dir,
            remote_name,
            local_dir,
            &DownloadOptions::default(),
        )
        .await
    }

    /// [`Session::download`] with every option (see [`DownloadOptions`]).
    pub async fn download_with(
        &mut self,
        remote_dir: &str,
        remote_name: &str,
        local_dir: &Path,
        options: &DownloadOptions,
    ) -> Result<DownloadedFile, FtpsError> {
        let span = tracing::info_span!("ftps_download", otel.kind = "client", server.address = %self.cfg.host, server.port = self.cfg.port, remote_dir, remote_name, local_dir = %local_dir.display());
        let mut op = Download {
            remote_dir,
            remote_name,
            local_dir,
            options,
        };
        let downloaded = self.run(&mut op).instrument(span.clone()).await?;
        span.in_scope(|| info!(bytes = downloaded.bytes, sha256 = %hex::encode(downloaded.sha256), "downloaded"));
        Ok(downloaded)
    }

    /// Ends the session politely (`QUIT`); errors are ignored, the connection closes anyway.
    pub async fn quit(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.quit().await;
        }
    }

    /// Runs `op` as the module docs say: reconnect if needed, settle, TLS 1.2 fallback.
    async fn run<O: Operation>(&mut self, op: &mut O) -> Result<O::Output, FtpsError> {
        match self.run_once(op).await {
            Err(e)
                if self.fallback.should_retry(
                    &self.cfg.host,
                    self.conn.as_ref().map(|c| c.tls()),
                    &e,
                ) =>
            {
                self.conn = None;
                self.run_once(op).await
            }
            r => r,
        }
    }

    async fn run_once<O: Operation>(&mut self, op: &mut O) -> Result<O::Output, FtpsError> {
        if self.dirty || self.conn.is_none() {
            if self.conn.take().is_some() {
                info!(host = %self.cfg.host, "reconnecting: the previous operation did not finish cleanly");
            }
            self.dirty = false;
            self.conn = Some(connect::connect(&self.cfg, self.learned(), &mut |_| {}).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(FtpsError::new(
                FtpsErrorKind::ConnectionLost,
                "session",
                "the session is not connected",
            ));
        };
        // A cancelled operation leaves this set: the next one reconnects.
        self.dirty = true;
        let result = op.run(conn).await;
        self.epsv = conn.data_setup().uses_epsv();
        self.mlsd &= conn.features().mlsd;
        self.dirty = match &result {
            Ok(_) => false,
            Err(e) => !leaves_connection_in_step(e) || !conn.control().in_step(),
        };
        result
    }
}

/// Whether the control connection is still in step after `err`: a clean refusal (a reply)
/// or a local problem is; a timeout or a lost connection is not.
fn leaves_connection_in_step(err: &FtpsError) -> bool {
    let clean = err.reply().is_some()
        && !matches!(
            err.kind(),
            FtpsErrorKind::ConnectionLost | FtpsErrorKind::Timeout
        );
    let local = matches!(
        err.kind(),
        FtpsErrorKind::LocalIo
            | FtpsErrorKind::LocalFileChanged
            | FtpsErrorKind::InvalidPath
            | FtpsErrorKind::TargetExists
    );
    clean || local
}
