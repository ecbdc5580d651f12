//! TLS session reuse: every data connection resumes the control connection's TLS session.
//!
//! vsftpd (`require_ssl_reuse`), ProFTPD and FileZilla Server refuse a data connection that
//! does not resume the control session: it proves that whoever connects to the passive port is
//! the client that logged in, not a third party racing for the port. What makes it work:
//! - one [`TlsConnector`] per session, with one `ClientConfig` and the *same* server name for
//!   the control and every data connection (rustls's session cache is keyed by server name);
//! - a resumption store of the session's own ([`give_own_session_store`]): ProFTPD and
//!   FileZilla check that the data session belongs to *this* control session, and a store
//!   shared between parallel sessions to one host could hand one session's ticket to another;
//! - no early data: a replayed 0-RTT `STOR` could write twice.
//!
//! TLS 1.3 tickets are single use; when a server refuses a data connection that could not
//! resume, the session falls back to TLS 1.2 (`tls12_fallback.rs`). The handshake kind of each
//! data connection is counted ([`DataTlsStats`]) so tests and the probe can prove resumption.

use std::io;
use std::sync::Arc;

use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion};
use tokio::net::TcpStream;

use super::config::TlsVersion;
use super::error::{FtpsError, FtpsErrorKind};
use super::tls_stream::{BufferedTcp, CONTROL_READ_BUF, DATA_READ_BUF, TlsStream};

/// Gives `config` a resumption store of its own and turns early data off.
pub(crate) fn give_own_session_store(config: &mut ClientConfig) {
    config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(32)));
    config.enable_early_data = false;
}

/// The control connection's negotiated TLS parameters.
#[derive(Debug, Clone)]
pub struct ControlTls {
    /// The protocol version (`protocol_name()` prints `TLSv1.2` / `TLSv1.3`).
    pub version: TlsVersion,
    /// The cipher suite's IANA name.
    pub cipher: String,
    /// The server's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

/// Handshake counts of a session's data connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataTlsStats {
    /// Data connections that resumed the control session.
    pub resumed: u64,
    /// Data connections that made a full handshake.
    pub full: u64,
}

/// How the most recent data connection's handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataHandshake {
    /// It resumed the control session.
    Resumed,
    /// It made a full handshake (no ticket left, or the server would not resume).
    Full,
    /// It failed.
    Failed,
}

/// What a session saw of its TLS handshakes since it (re)connected.
#[derive(Debug, Default)]
pub(crate) struct TlsObservations {
    pub(crate) control: Option<ControlTls>,
    pub(crate) data: DataTlsStats,
    pub(crate) last_data: Option<DataHandshake>,
}

impl TlsObservations {
    /// Counts one data connection's handshake.
    pub(crate) fn record_data(&mut self, outcome: DataHandshake) {
        match outcome {
            DataHandshake::Resumed => self.data.resumed += 1,
            DataHandshake::Full => self.data.full += 1,
            DataHandshake::Failed => {}
        }
        self.last_data = Some(outcome);
        tracing::trace!(?outcome, "data connection TLS handshake");
    }
}

/// The TLS connector of one session: one config, one server name, for every connection.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector for `host` (checked against the certificate).
    pub(crate) fn new(config: Arc<ClientConfig>, host: &str) -> Result<Self, FtpsError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            FtpsError::new(
                FtpsErrorKind::Configuration,
                "TLS",
                format!("{host:?} is not a valid TLS server name: {e}"),
            )
        })?;
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(config),
            name,
        })
    }

    /// The control connection's handshake, and what it negotiated.
    pub(crate) async fn control(&self, tcp: TcpStream) -> io::Result<(TlsStream, ControlTls)> {
        let tls = self
            .inner
            .connect(self.name.clone(), BufferedTcp::new(tcp, CONTROL_READ_BUF))
            .await?;
        let conn = tls.get_ref().1;
        let control = ControlTls {
            version: match conn.protocol_version() {
                Some(ProtocolVersion::TLSv1_3) => TlsVersion::Tls13,
                _ => TlsVersion::Tls12,
            },
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("?")
                .to_string(),
            chain: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        };
        Ok((tls, control))
    }

    /// A data connection's handshake: an owned future, so it can run while the control
    /// connection is read (see `data.rs`). Its first poll sends the ClientHello.
    pub(crate) fn data(
        &self,
        tcp: TcpStream,
    ) -> impl Future<Output = io::Result<(TlsStream, DataHandshake)>> + Send + 'static {
        let connect = self
            .inner
            .connect(self.name.clone(), BufferedTcp::new(tcp, DATA_READ_BUF));
        async move {
            let tls = connect.await?;
            let kind = match tls.get_ref().1.handshake_kind() {
                Some(HandshakeKind::Resumed) => DataHandshake::Resumed,
                _ => DataHandshake::Full,
            };
            Ok((tls, kind))
        }
    }
}
