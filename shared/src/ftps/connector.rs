//! The TLS connector a session hands to suppaftp: tokio-rustls plus a record of every
//! handshake it made.
//!
//! suppaftp keeps the connector of `AUTH TLS` and reuses it (same config, same server name)
//! for every data connection, which is what makes data connections resume the control
//! connection's TLS session. Wrapping it lets ferry see what suppaftp hides:
//! - the control connection's protocol version, cipher suite and certificate chain (for the
//!   probe and the logs);
//! - whether each data connection resumed or made a full handshake (vsftpd, ProFTPD and
//!   FileZilla refuse data connections that do not resume; tests assert resumption);
//! - the typed rustls error of a failed handshake, which suppaftp flattens into a string.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion};
use suppaftp::tokio::AsyncTlsConnector;
use suppaftp::{FtpError, FtpResult};
use tokio::net::TcpStream;

use super::tls_stream::{BufferedTcp, CONTROL_READ_BUF, DATA_READ_BUF, FerryTlsStream};

/// The control connection's negotiated TLS parameters.
#[derive(Debug, Clone)]
pub struct ControlTls {
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: String,
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

#[derive(Debug, Default)]
pub(crate) struct Observations {
    pub(crate) control: Option<ControlTls>,
    pub(crate) data: DataTlsStats,
    /// Handshake kind of the most recent data connection.
    pub(crate) last_data: Option<HandshakeKind>,
    /// The rustls error of the most recent failed handshake.
    pub(crate) last_error: Option<rustls::Error>,
    /// Whether the most recent data connection's handshake failed.
    pub(crate) data_failed: bool,
}

/// Shared view of a session's handshakes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observer(Arc<Mutex<Observations>>);

impl Observer {
    pub(crate) fn get(&self) -> MutexGuard<'_, Observations> {
        // A poisoned lock only means a panic elsewhere; the counters are still meaningful.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// tokio-rustls connector that records handshakes in an [`Observer`].
pub(crate) struct ObservingConnector {
    inner: tokio_rustls::TlsConnector,
    observer: Observer,
}

impl std::fmt::Debug for ObservingConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObservingConnector")
    }
}

impl ObservingConnector {
    pub(crate) fn new(config: Arc<ClientConfig>, observer: Observer) -> Self {
        ObservingConnector {
            inner: tokio_rustls::TlsConnector::from(config),
            observer,
        }
    }

    async fn handshake(&self, domain: String, stream: TcpStream) -> FtpResult<FerryTlsStream> {
        let name = ServerName::try_from(domain)
            .map_err(|e| FtpError::SecureError(format!("invalid server name: {e}")))?;
        let capacity = if self.observer.get().control.is_none() {
            CONTROL_READ_BUF
        } else {
            DATA_READ_BUF
        };
        match self
            .inner
            .connect(name, BufferedTcp::new(stream, capacity))
            .await
        {
            Ok(tls) => {
                let conn = tls.get_ref().1;
                let mut obs = self.observer.get();
                if obs.control.is_none() {
                    obs.control = Some(ControlTls {
                        version: conn
                            .protocol_version()
                            .map(version_name)
                            .unwrap_or_else(|| "?".into()),
                        cipher: conn
                            .negotiated_cipher_suite()
                            .and_then(|s| s.suite().as_str())
                            .unwrap_or("?")
                            .to_string(),
                        chain: conn
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                            .unwrap_or_default(),
                    });
                } else {
                    let kind = conn.handshake_kind();
                    match kind {
                        Some(HandshakeKind::Resumed) => obs.data.resumed += 1,
                        _ => obs.data.full += 1,
                    }
                    obs.last_data = kind;
                    tracing::trace!(?kind, "data connection TLS handshake");
                }
                Ok(FerryTlsStream::from(tls))
            }
            Err(e) => {
                let message = e.to_string();
                {
                    let mut obs = self.observer.get();
                    if obs.control.is_some() {
                        obs.data_failed = true;
                    }
                    if let Some(tls) = super::trust::rustls_error_in(&e) {
                        obs.last_error = Some(tls.clone());
                    }
                }
                // A reset or EOF during the handshake is a network error, not a TLS one.
                if super::trust::rustls_error_in(&e).is_none() {
                    return Err(FtpError::ConnectionError(e));
                }
                Err(FtpError::SecureError(message))
            }
        }
    }
}

fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

impl AsyncTlsConnector for ObservingConnector {
    type Stream = FerryTlsStream;

    fn connect<'a, 'b, 'c>(
        &'a self,
        domain: &'b str,
        stream: TcpStream,
    ) -> Pin<Box<dyn Future<Output = FtpResult<Self::Stream>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(self.handshake(domain.to_owned(), stream))
    }
}
