//! The control connection: one command line out, one reply in.
//!
//! It starts as plain TCP (greeting, `AUTH TLS`) and is upgraded to TLS by [`Control::secure`]
//! before anything else is sent. Bytes that arrive before the TLS handshake and after the
//! `234` reply are refused: in the clear, an attacker on the path could queue forged replies
//! that ferry would otherwise read as if they came through TLS (the STARTTLS injection flaw).
//!
//! [`Control::read_reply`] is cancel-safe: received bytes stay in the connection's buffer
//! until a whole reply is there, so it can be raced against a data connection's handshake
//! (`data.rs`) and dropped without losing or splitting a reply.
//!
//! Every command line is checked for CR, LF and NUL before it goes out (a name from a
//! listing can never smuggle a second command), and `PASS` is never logged.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::trace;

use super::classify::from_net_io;
use super::error::{FtpsError, FtpsErrorKind};
use super::name_encoding::NameEncoding;
use super::reply::{self, Parse, Response};
use super::tls_session_reuse::{ControlTls, TlsConnector};
use super::tls_stream::TlsStream;

/// The socket under the control connection.
enum Channel {
    /// Before `AUTH TLS`.
    Plain(TcpStream),
    /// After the TLS handshake.
    Tls(Box<TlsStream>),
    /// Between the two, or after a failed upgrade.
    Closed,
}

/// One control connection.
pub(crate) struct Control {
    channel: Channel,
    /// Received bytes not yet part of a returned reply.
    buf: Vec<u8>,
    peer: SocketAddr,
    reply_timeout: Duration,
    /// A command or reply failed half-way (timeout, I/O error, garbage): a reply may still
    /// be on its way, so nothing more may be read or sent on this connection.
    broken: bool,
    /// How names are written in commands (the partner's `listing_encoding`).
    encoding: NameEncoding,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("peer", &self.peer)
            .field("tls", &matches!(self.channel, Channel::Tls(_)))
            .finish_non_exhaustive()
    }
}

/// Refuses lines that cannot travel as one command.
pub(crate) fn check_line(step: &str, line: &str) -> Result<(), FtpsError> {
    if line.contains(['\0', '\r', '\n']) {
        return Err(FtpsError::new(
            FtpsErrorKind::InvalidPath,
            step,
            "the command contains a NUL, CR or LF character",
        ));
    }
    Ok(())
}

impl Control {
    /// A control connection over a connected socket; replies must come within `reply_timeout`.
    pub(crate) fn new(tcp: TcpStream, peer: SocketAddr, reply_timeout: Duration) -> Self {
        Control {
            channel: Channel::Plain(tcp),
            buf: Vec::with_capacity(1024),
            peer,
            reply_timeout,
            broken: false,
            encoding: NameEncoding::Utf8,
        }
    }

    /// Whether commands and replies are still in step (no failure half-way through one).
    pub(crate) fn in_step(&self) -> bool {
        !self.broken
    }

    /// The server's address (data connections go to this address, see `passive.rs`).
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// How long a reply may take.
    pub(crate) fn reply_timeout(&self) -> Duration {
        self.reply_timeout
    }

    /// The TLS handshake after `234`: the connection is encrypted from here on.
    pub(crate) async fn secure(
        &mut self,
        connector: &TlsConnector,
    ) -> Result<ControlTls, std::io::Error> {
        if !self.buf.is_empty() {
            self.channel = Channel::Closed;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the server sent data after accepting AUTH TLS and before the TLS handshake \
                 (possible command injection on the path); the connection is closed",
            ));
        }
        let Channel::Plain(tcp) = std::mem::replace(&mut self.channel, Channel::Closed) else {
            return Err(std::io::Error::other(
                "the control connection is not plain TCP",
            ));
        };
        let (tls, control) = connector.control(tcp).await?;
        self.channel = Channel::Tls(Box::new(tls));
        Ok(control)
    }

    /// Writes names in commands (and reads them in listings) in `encoding` from now on.
    pub(crate) fn set_name_encoding(&mut self, encoding: NameEncoding) {
        self.encoding = encoding;
    }

    /// How names are written on this connection.
    pub(crate) fn name_encoding(&self) -> NameEncoding {
        self.encoding
    }

    /// Sends one command line (CRLF added), its names in the connection's encoding.
    pub(crate) async fn send(&mut self, step: &str, line: &str) -> Result<(), FtpsError> {
        check_line(step, line)?;
        let encoded = self.encoding.encode(line).map_err(|c| {
            FtpsError::new(
                FtpsErrorKind::InvalidPath,
                step,
                format!(
                    "the name holds {c:?} (U+{:04X}), which the partner's listing_encoding {} cannot write",
                    u32::from(c),
                    self.encoding.as_str()
                ),
            )
            .transient(false)
        })?;
        if line.starts_with("PASS ") {
            trace!("> PASS ****");
        } else {
            trace!("> {line}");
        }
        let mut bytes = Vec::with_capacity(encoded.len() + 2);
        bytes.extend_from_slice(&encoded);
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            match &mut self.channel {
                Channel::Plain(tcp) => tcp.write_all(&bytes).await,
                Channel::Tls(tls) => {
                    tls.write_all(&bytes).await?;
                    tls.flush().await
                }
                Channel::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        let sent = match tokio::time::timeout(self.reply_timeout, write).await {
            Ok(r) => r.map_err(|e| from_net_io(step, e)),
            Err(_) => Err(FtpsError::timeout(
                step,
                "sending a command",
                self.reply_timeout,
            )),
        };
        self.broken |= sent.is_err();
        sent
    }

    /// Reads one whole reply, however long it takes (callers bound it). Cancel-safe.
    pub(crate) async fn read_reply(&mut self, step: &str) -> Result<Response, FtpsError> {
        let read = self.read_reply_inner(step).await;
        self.broken |= read.is_err();
        read
    }

    async fn read_reply_inner(&mut self, step: &str) -> Result<Response, FtpsError> {
        if self.broken {
            return Err(FtpsError::new(
                FtpsErrorKind::ConnectionLost,
                step,
                "the control connection is out of step after an earlier failure",
            ));
        }
        let mut chunk = [0u8; 2048];
        loop {
            match reply::parse(&self.buf) {
                Parse::Complete(response, used) => {
                    self.buf.drain(..used);
                    trace!("< {}", response.lines.join(" | "));
                    return Ok(response);
                }
                Parse::Invalid(why) => {
                    return Err(FtpsError::new(FtpsErrorKind::Protocol, step, why).transient(true));
                }
                Parse::NeedMore => {}
            }
            let n = match &mut self.channel {
                Channel::Plain(tcp) => tcp.read(&mut chunk).await,
                Channel::Tls(tls) => tls.read(&mut chunk).await,
                Channel::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            }
            .map_err(|e| from_net_io(step, e))?;
            if n == 0 {
                return Err(FtpsError::new(
                    FtpsErrorKind::ConnectionLost,
                    step,
                    "the server closed the control connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one reply within the reply timeout; `what` names it in a timeout error.
    pub(crate) async fn reply(&mut self, step: &str, what: &str) -> Result<Response, FtpsError> {
        let after = self.reply_timeout;
        match tokio::time::timeout(after, self.read_reply(step)).await {
            Ok(r) => r,
            Err(_) => {
                self.broken = true;
                Err(FtpsError::timeout(step, what, after))
            }
        }
    }

    /// Reads and drops replies that arrive within `wait`: some servers answer a failed data
    /// connection twice (Debian's ftpd-ssl sends two refusals), and the second must not be
    /// taken for the answer to the next command.
    pub(crate) async fn discard_stray_replies(&mut self, step: &str, wait: Duration) {
        while let Ok(reply) = tokio::time::timeout(wait, self.read_reply(step)).await {
            match reply {
                Ok(reply) => trace!(reply = %reply.to_reply(), "stray reply dropped"),
                Err(_) => return,
            }
        }
    }

    /// Sends `line` and reads its reply (whatever its code).
    pub(crate) async fn command(&mut self, step: &str, line: &str) -> Result<Response, FtpsError> {
        self.send(step, line).await?;
        let verb = line.split(' ').next().unwrap_or(line);
        let what = if verb == "PASS" {
            "PASS reply".to_owned()
        } else {
            format!("{verb} reply")
        };
        self.reply(step, &what).await
    }

    /// Says goodbye (`QUIT`), briefly; errors do not matter, the connection closes anyway.
    pub(crate) async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.send("QUIT", "QUIT").await?;
            self.read_reply("QUIT").await
        })
        .await;
        if let Channel::Tls(tls) = &mut self.channel {
            let _ = tokio::time::timeout(Duration::from_millis(200), tls.shutdown()).await;
        }
    }
}
