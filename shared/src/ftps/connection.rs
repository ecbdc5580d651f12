//! [`Connection`]: one live, logged-in control connection and what came with it (the
//! server's features, the data-connection setup, the TLS handshakes seen), and
//! [`Operation`], the shape of everything a session does over it.
//!
//! A connection knows nothing about reconnecting or falling back: `session.rs` wraps each
//! operation and decides, from the operation's result, whether the connection can be reused.

use super::classify::{ReplyTo, from_response};
use super::control::Control;
use std::sync::Arc;

use super::bandwidth::BandwidthCap;
use super::data::{DataChannel, DataSetup};
use super::error::FtpsError;
use super::reply::Response;
use super::tls_session_reuse::TlsObservations;
use super::verify::HashCommand;
use crate::telemetry::metrics::partner::SessionOpen;

/// What the server offers, from `FEAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// `MLST`/`MLSD` (machine-readable listings).
    pub(crate) mlsd: bool,
    /// `SIZE`.
    pub(crate) size: bool,
    /// `MDTM` (a file's modification time to the second).
    pub(crate) mdtm: bool,
    /// `REST STREAM` (a transfer may restart at an offset; see `resume.rs`).
    pub(crate) rest_stream: bool,
    /// `MFMT` (set a file's modification time; see `mfmt.rs`).
    pub(crate) mfmt: bool,
    /// A command that hashes a stored file with SHA-256 (`HASH`, `XSHA256`; see `verify.rs`).
    pub(crate) hash: Option<HashCommand>,
}

/// One step of work over a connection: an upload, a download, a listing, a rename...
///
/// A struct per operation (holding its arguments) rather than a closure, so that a session
/// can run it twice (once more after the TLS 1.2 fallback) and borrow its arguments freely.
pub(crate) trait Operation {
    /// What the operation gives back.
    type Output;

    /// Runs the operation once over `conn`.
    fn run(
        &mut self,
        conn: &mut Connection,
    ) -> impl Future<Output = Result<Self::Output, FtpsError>> + Send;
}

/// One logged-in control connection.
#[derive(Debug)]
pub(crate) struct Connection {
    control: Control,
    data: DataSetup,
    tls: TlsObservations,
    features: Features,
    /// Counts the connection in `ferry_ftps_sessions_open` while it lives.
    open: Option<SessionOpen>,
    /// The partner's bandwidth cap, drawn from by every data transfer (`bandwidth.rs`).
    bandwidth: Option<Arc<BandwidthCap>>,
    /// Whether interrupted uploads may be resumed (the partner's `disable_resume` off).
    resume: bool,
}

impl Connection {
    pub(crate) fn new(
        control: Control,
        data: DataSetup,
        tls: TlsObservations,
        features: Features,
    ) -> Self {
        Connection {
            control,
            data,
            tls,
            features,
            open: None,
            bandwidth: None,
            resume: true,
        }
    }

    /// The same connection, counted as an open session until it is dropped.
    pub(crate) fn counted(mut self, open: SessionOpen) -> Self {
        self.open = Some(open);
        self
    }

    /// The same connection, its transfers held to `cap`.
    pub(crate) fn with_bandwidth(mut self, cap: Option<Arc<BandwidthCap>>) -> Self {
        self.bandwidth = cap;
        self
    }

    /// The same connection, with resuming uploads allowed or not.
    pub(crate) fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Whether an interrupted upload may be resumed (`resume.rs`).
    pub(crate) fn resume_allowed(&self) -> bool {
        self.resume
    }

    /// The partner's bandwidth cap, if it has one.
    pub(crate) fn bandwidth(&self) -> Option<Arc<BandwidthCap>> {
        self.bandwidth.clone()
    }

    /// The same connection with the features `FEAT` announced.
    pub(crate) fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }

    /// The control connection, to read a transfer's final reply.
    pub(crate) fn control(&mut self) -> &mut Control {
        &mut self.control
    }

    /// How names are written and read on this connection (the partner's
    /// `listing_encoding`).
    pub(crate) fn name_encoding(&self) -> super::NameEncoding {
        self.control.name_encoding()
    }

    /// What the server offers.
    pub(crate) fn features(&self) -> Features {
        self.features
    }

    /// The server refused `MLSD` although `FEAT` offered it: list with `LIST` from now on.
    pub(crate) fn stop_using_mlsd(&mut self) {
        self.features.mlsd = false;
    }

    /// How data connections are set up (and where the last one went).
    pub(crate) fn data_setup(&self) -> &DataSetup {
        &self.data
    }

    /// The longest pause allowed in a data stream.
    pub(crate) fn data_idle(&self) -> std::time::Duration {
        self.data.idle_timeout()
    }

    /// The TLS handshakes seen on this connection.
    pub(crate) fn tls(&self) -> &TlsObservations {
        &self.tls
    }

    /// Sends `line` and returns its reply, whatever its code.
    pub(crate) async fn command(&mut self, step: &str, line: &str) -> Result<Response, FtpsError> {
        self.control.command(step, line).await
    }

    /// Sends `line`; a reply other than 2xx/3xx is an error sorted as answering `to`.
    pub(crate) async fn accepted(
        &mut self,
        step: &str,
        line: &str,
        to: ReplyTo,
    ) -> Result<Response, FtpsError> {
        let reply = self.control.command(step, line).await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(from_response(step, &reply, to))
        }
    }

    /// Opens a data connection for `line` (`STOR x`, `RETR x`, `MLSD d`...).
    pub(crate) async fn open_data(
        &mut self,
        step: &str,
        line: &str,
        to: ReplyTo,
    ) -> Result<DataChannel, FtpsError> {
        self.data
            .open(&mut self.control, &mut self.tls, step, line, to)
            .await
    }

    /// Ends the connection politely.
    pub(crate) async fn quit(self) {
        self.control.quit().await;
    }
}
