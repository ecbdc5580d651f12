//! Data connections: passive setup, the TLS handshake raced against the control connection,
//! and the end of a transfer.
//!
//! Setting one up (for `STOR`, `RETR`, `MLSD`, `LIST`):
//! 1. `EPSV` (or `PASV` once the server refused EPSV, remembered for the session); the
//!    address to dial follows the policy of `passive.rs`;
//! 2. TCP connect to it;
//! 3. the TLS handshake *starts* (its ClientHello is on the wire) before the command is sent,
//!    as curl does: old OpenSSL servers (Debian's ftpd-ssl) accept the data handshake only if
//!    the ClientHello is already waiting when they handle the command, and otherwise answer on
//!    the control connection and leave the data socket open;
//! 4. until the handshake is done *and* the server has said `150`/`125`, the control
//!    connection is read too: any refusal there (`425`, `550`, `522` ...) ends the wait at once
//!    with that reply as the error, instead of waiting for a handshake that will never finish.
//!
//! Ending one: an upload sends TLS `close_notify` and reads until the server closes (which
//! also collects TLS 1.3 tickets for the next resumption) while the final reply is read; a
//! download or listing reads to the end of the stream. Whether the stream ended with
//! `close_notify` is kept ([`DataChannel::ended_cleanly`]): an end without it may be a cut
//! connection, which a download must rule out by the byte count.

use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};

use super::classify::{ReplyTo, from_net_io, from_response, from_tls_error, rustls_error_in};
use super::control::Control;
use super::error::FtpsError;
use super::passive::{DataTarget, PassivePolicy};
use super::reply::Response;
use super::tls_session_reuse::{DataHandshake, TlsConnector, TlsObservations};
use super::tls_stream::TlsStream;

/// After a final reply has come, how long an upload's data connection may take to close.
const DRAIN_AFTER_REPLY: Duration = Duration::from_millis(250);
/// After a refused data connection, how long further replies of the same refusal may take.
const STRAY_AFTER_REFUSAL: Duration = Duration::from_millis(300);
/// How long to wait for the server's word on a data connection that failed.
const STRAY_REPLY_WAIT: Duration = Duration::from_secs(5);

/// How a session opens data connections.
#[derive(Debug)]
pub(crate) struct DataSetup {
    connector: TlsConnector,
    policy: PassivePolicy,
    epsv: bool,
    connect_timeout: Duration,
    idle_timeout: Duration,
    last_target: Option<DataTarget>,
    told_nat: bool,
}

/// An open data connection.
pub(crate) struct DataChannel {
    stream: TlsStream,
    /// The transfer's final reply, when it came before the data connection was ready.
    final_reply: Option<Response>,
    /// The stream ended without `close_notify`.
    cut: bool,
}

impl DataSetup {
    pub(crate) fn new(
        connector: TlsConnector,
        policy: PassivePolicy,
        epsv: bool,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        DataSetup {
            connector,
            policy,
            epsv,
            connect_timeout,
            idle_timeout,
            last_target: None,
            told_nat: false,
        }
    }

    /// Whether data connections are negotiated with EPSV (false once the server refused it).
    pub(crate) fn uses_epsv(&self) -> bool {
        self.epsv
    }

    /// The longest pause allowed in a data stream.
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Where the last data connection went.
    pub(crate) fn last_target(&self) -> Option<DataTarget> {
        self.last_target
    }

    /// Opens the data connection for `command` (see the module docs).
    pub(crate) async fn open(
        &mut self,
        control: &mut Control,
        tls: &mut TlsObservations,
        step: &str,
        command: &str,
        to: ReplyTo,
    ) -> Result<DataChannel, FtpsError> {
        let target = self.passive(control, step).await?;
        let tcp = self.connect(step, target).await?;

        let mut handshake = pin!(self.connector.data(tcp));
        // First poll: the ClientHello goes out now, before the command.
        let mut handshaken = match futures::poll!(handshake.as_mut()) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        };
        control.send(step, command).await?;

        let timeout = control.reply_timeout();
        let deadline = Instant::now() + timeout;
        let mut started = false;
        let mut final_reply: Option<Response> = None;
        loop {
            match handshaken.take() {
                Some(Err(e)) => {
                    tls.record_data(DataHandshake::Failed);
                    return Err(handshake_failed(control, step, e).await);
                }
                Some(Ok((stream, kind))) if started || final_reply.is_some() => {
                    tls.record_data(kind);
                    return Ok(DataChannel {
                        stream,
                        final_reply,
                        cut: false,
                    });
                }
                other => handshaken = other,
            }
            tokio::select! {
                biased;
                r = handshake.as_mut(), if handshaken.is_none() => handshaken = Some(r),
                reply = control.read_reply(step), if final_reply.is_none() => {
                    let reply = reply?;
                    if reply.is_preliminary() {
                        started = true;
                    } else if (200..300).contains(&reply.code) {
                        // The transfer is over already (some servers, for empty data).
                        final_reply = Some(reply);
                    } else {
                        if handshaken.is_none() {
                            tls.record_data(DataHandshake::Failed);
                        }
                        let err = from_response(step, &reply, to);
                        if started {
                            control.discard_stray_replies(step, STRAY_AFTER_REFUSAL).await;
                        }
                        return Err(if started {
                            err.context(
                                " (after accepting the command, the server refused the data \
                                 connection on the control connection)",
                            )
                        } else {
                            err
                        });
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(FtpsError::timeout(step, "data connection setup", timeout));
                }
            }
        }
    }

    /// `EPSV` or `PASV`, and the address to dial.
    async fn passive(
        &mut self,
        control: &mut Control,
        step: &str,
    ) -> Result<DataTarget, FtpsError> {
        loop {
            let verb = if self.epsv { "EPSV" } else { "PASV" };
            let reply = control.command(step, verb).await?;
            if self.epsv && matches!(reply.code, 500 | 501 | 502 | 504 | 522) {
                info!(reply = %reply.to_reply(), "EPSV refused; using PASV for this session");
                self.epsv = false;
                continue;
            }
            if !reply.is_positive() {
                return Err(from_response(step, &reply, ReplyTo::Other));
            }
            let peer = control.peer();
            let target = if self.epsv {
                self.policy.epsv(step, peer, &reply)?
            } else {
                self.policy.pasv(step, peer, &reply)?
            };
            if let Some(advertised) = target.replaced
                && !std::mem::replace(&mut self.told_nat, true)
            {
                info!(%advertised, used = %target.addr, "PASV advertised another address than the control peer; using the peer (NAT workaround)");
            }
            self.last_target = Some(target);
            return Ok(target);
        }
    }

    async fn connect(&self, step: &str, target: DataTarget) -> Result<TcpStream, FtpsError> {
        let connected =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(target.addr)).await;
        let tcp = match connected {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(passive_failed(step, target, e)),
            Err(_) => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.connect_timeout),
                );
                return Err(passive_failed(step, target, e));
            }
        };
        // Keeps the final small records of a transfer prompt.
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

fn passive_failed(step: &str, target: DataTarget, e: io::Error) -> FtpsError {
    let mut err = FtpsError::passive(step, target.addr, &e);
    if let Some(advertised) = target.replaced {
        err = err.context(format!(
            " (the server advertised {advertised}; ferry used the control peer's address)"
        ));
    }
    err.with_source(e)
}

/// The data handshake failed: the server usually says so on the control connection too;
/// read that reply (skipping a `150`) so the session stays in step, and report both.
async fn handshake_failed(control: &mut Control, step: &str, e: io::Error) -> FtpsError {
    let mut err = match rustls_error_in(&e) {
        Some(tls) => from_tls_error(step, tls.clone()),
        None => from_net_io(step, e),
    };
    err = err.context(" (data connection TLS handshake)");
    let said = tokio::time::timeout(STRAY_REPLY_WAIT, async {
        loop {
            let reply = control.read_reply(step).await?;
            if !reply.is_preliminary() {
                return Ok::<_, FtpsError>(reply);
            }
        }
    })
    .await;
    if let Ok(Ok(reply)) = said {
        err = err
            .context("; the server said")
            .with_reply(reply.to_reply());
        control
            .discard_stray_replies(step, STRAY_AFTER_REFUSAL)
            .await;
    }
    err
}

impl DataChannel {
    /// The stream, to write an upload into.
    pub(crate) fn stream(&mut self) -> &mut TlsStream {
        &mut self.stream
    }

    /// Reads data; the end of the stream is `Ok(0)`, with or without `close_notify`.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                debug!("data connection closed without close_notify");
                self.cut = true;
                Ok(0)
            }
            r => r,
        }
    }

    /// Whether the stream ended with TLS `close_notify` (meaningful after `read` gave 0).
    pub(crate) fn ended_cleanly(&self) -> bool {
        !self.cut
    }

    /// Ends an upload: `close_notify`, then the final reply (while the server closes), which
    /// it returns: some servers name the bytes they received in it (`verify.rs`).
    pub(crate) async fn finish_upload(
        mut self,
        control: &mut Control,
        step: &str,
        to: ReplyTo,
    ) -> Result<Response, FtpsError> {
        let timeout = control.reply_timeout();
        match tokio::time::timeout(timeout, self.stream.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The data connection broke: the final reply (if any) says why.
                let err = from_net_io(step, e);
                return Err(match self.final_reply(control, step, to).await {
                    Err(reply_err) if reply_err.reply().is_some() => reply_err,
                    _ => err,
                });
            }
            Err(_) => {
                return Err(FtpsError::timeout(
                    step,
                    "closing the data connection",
                    timeout,
                ));
            }
        }
        let stream = &mut self.stream;
        let mut drain = pin!(async move {
            let mut sink = [0u8; 4096];
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        let reply = match self.final_reply.take() {
            Some(reply) => {
                let _ = tokio::time::timeout(DRAIN_AFTER_REPLY, drain).await;
                reply
            }
            None => {
                let mut reply = pin!(control.reply(step, "final transfer reply"));
                tokio::select! {
                    _ = drain.as_mut() => reply.await?,
                    r = reply.as_mut() => {
                        let _ = tokio::time::timeout(DRAIN_AFTER_REPLY, drain).await;
                        r?
                    }
                }
            }
        };
        check_final(step, &reply, to)?;
        Ok(reply)
    }

    /// Ends a download or listing whose data was read to the end: our `close_notify` (vsftpd
    /// waits for it before it sends the final reply), then the final reply.
    pub(crate) async fn finish_read(
        mut self,
        control: &mut Control,
        step: &str,
        to: ReplyTo,
    ) -> Result<(), FtpsError> {
        let _ = tokio::time::timeout(DRAIN_AFTER_REPLY, self.stream.shutdown()).await;
        let DataChannel {
            stream,
            final_reply,
            ..
        } = self;
        drop(stream);
        let reply = final_reply_of(final_reply, control, step).await?;
        check_final(step, &reply, to)
    }

    /// Ends a transfer that failed on ferry's side: the final reply, if it comes.
    pub(crate) async fn abandon(self, control: &mut Control, step: &str) {
        let pending = self.final_reply;
        drop(self.stream);
        let _ = final_reply_of(pending, control, step).await;
    }

    async fn final_reply(
        &mut self,
        control: &mut Control,
        step: &str,
        to: ReplyTo,
    ) -> Result<(), FtpsError> {
        let reply = final_reply_of(self.final_reply.take(), control, step).await?;
        check_final(step, &reply, to)
    }
}

async fn final_reply_of(
    pending: Option<Response>,
    control: &mut Control,
    step: &str,
) -> Result<Response, FtpsError> {
    match pending {
        Some(reply) => Ok(reply),
        None => control.reply(step, "final transfer reply").await,
    }
}

fn check_final(step: &str, reply: &Response, to: ReplyTo) -> Result<(), FtpsError> {
    if (200..300).contains(&reply.code) {
        Ok(())
    } else {
        Err(from_response(step, reply, to))
    }
}

/// For the probe: the address a data connection used and the one advertised.
pub(crate) fn describe(target: Option<DataTarget>, epsv: bool) -> String {
    let mode = if epsv { "EPSV" } else { "PASV" };
    match target {
        Some(DataTarget {
            addr,
            replaced: Some(adv),
        }) => {
            format!("{mode}: data connection to {addr} (server advertised {adv}; NAT workaround)")
        }
        Some(DataTarget { addr, .. }) => format!("{mode}: data connection to {addr}"),
        None => format!("{mode}: no data connection"),
    }
}
