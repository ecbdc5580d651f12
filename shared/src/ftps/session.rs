//! [`Session`]: one authenticated FTPS control connection, reused for many files.
//!
//! Connecting follows the explicit-FTPS order and never relaxes it:
//! TCP (with `TCP_NODELAY`, so no command round trip waits on delayed ACKs) -> plaintext
//! greeting -> `AUTH TLS` -> TLS handshake (trust from [`super::trust`]) -> `PBSZ 0` ->
//! `PROT P` -> `USER`/`PASS` -> `TYPE I` -> `FEAT`. The user name and password go out only
//! once the handshake succeeded and the server accepted a protected data channel; a server
//! that refuses `AUTH TLS` or `PROT P` ends the session with [`FtpsErrorKind::TlsNotOffered`],
//! never a plaintext fallback. Implicit TLS is refused before any connection.
//!
//! Data connections are passive only: `EPSV` first, `PASV` once EPSV is refused (remembered
//! for the session). A PASV address other than the control connection's peer is replaced by
//! the peer's address when `nat_workaround` is on (the default, as curl and lftp do). Each
//! data connection resumes the control connection's TLS session (same connector, same server
//! name, per-session ticket store), is closed with `close_notify`, and its final reply is read.
//!
//! TLS 1.3 and session reuse: ProFTPD (and others) refuse a data connection that does not
//! resume the control session, and under TLS 1.3 rustls can run out of single-use tickets
//! (see `rust-crates.md`). When a data transfer fails on a session negotiated at TLS 1.3 and
//! its data handshake was not a resumption, the operation reconnects the session capped at
//! TLS 1.2 and retries once; [`Session::fell_back_to_tls12`] tells the caller to remember it
//! for the partner (`tls.max_version: "1.2"`).
//!
//! Every network step has a timeout. An operation that fails in a way that may leave the
//! control connection out of step (timeout, lost connection, a cancelled future) marks the
//! session dirty; the next operation reconnects first instead of reading a stale reply.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suppaftp::tokio::{ImplAsyncFtpStream, TransferStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, warn};

use super::config::{SessionConfig, TlsMode, TlsVersion};
use super::connector::{ControlTls, DataTlsStats, Observer, ObservingConnector};
use super::error::{self, FtpsError, FtpsErrorKind, Reply, ReplyTo};
use super::listing::{self, Parsed, RemoteEntry};
use super::tls_stream::FerryTlsStream;
use super::trust::{self, CertificateSummary, SeenLeaf};

pub(crate) type Ftp = ImplAsyncFtpStream<FerryTlsStream>;
pub(crate) type Transfer = TransferStream<FerryTlsStream>;

/// Longest listing line accepted (a hostile server cannot make ferry buffer more).
const MAX_LIST_LINE: u64 = 16 * 1024;
/// Most entries accepted in one listing.
const MAX_LIST_ENTRIES: usize = 1_000_000;

/// One step of connecting or probing, reported to a callback (see [`super::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStep {
    /// Short step name: `tcp`, `greeting`, `auth-tls`, `certificate`, `pbsz-prot`, `login`,
    /// `type`, `feat`, `passive`, `list`.
    pub name: &'static str,
    /// One line of detail; never contains a secret.
    pub detail: String,
}

/// What the passive-connection builder saw during the last data command.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DataAttempt {
    /// The address ferry connected (or tried to connect) to.
    pub(crate) addr: Option<SocketAddr>,
    /// The address the server advertised, when it was replaced (NAT workaround).
    pub(crate) advertised: Option<SocketAddr>,
    /// Whether the TCP connection succeeded.
    pub(crate) connected: bool,
    /// The connect error, when it failed.
    pub(crate) error: Option<std::io::ErrorKind>,
}

/// The data command a transfer stream is opened for.
pub(crate) enum DataCmd {
    /// `STOR path`.
    Stor(String),
    /// `RETR path`.
    Retr(String),
    /// A listing command line (`MLSD dir`, `LIST dir`).
    Listing(String),
}

/// What the server offers, from FEAT.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Features {
    pub(crate) mlsd: bool,
    pub(crate) size: bool,
}

/// One authenticated FTPS control connection, reused for many files.
pub struct Session {
    pub(crate) cfg: SessionConfig,
    pub(crate) ftp: Option<Ftp>,
    /// An operation did not finish cleanly: reconnect before the next one.
    pub(crate) dirty: bool,
    /// EPSV still believed to work on this server.
    epsv: bool,
    pub(crate) features: Features,
    max_version: TlsVersion,
    fell_back: bool,
    pub(crate) observer: Observer,
    seen_leaf: SeenLeaf,
    pub(crate) attempt: Arc<Mutex<DataAttempt>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .field("user", &self.cfg.username)
            .field("connected", &self.ftp.is_some())
            .field("max_version", &self.max_version)
            .finish_non_exhaustive()
    }
}

/// Runs `fut` with a timeout; on expiry the error names `step` and `what`.
pub(crate) async fn within<T>(
    after: Duration,
    step: &str,
    what: &str,
    fut: impl Future<Output = Result<T, FtpsError>>,
) -> Result<T, FtpsError> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(FtpsError::timeout(step, what, after)),
    }
}

/// Joins a remote directory and a name with exactly one `/`.
pub(crate) fn join_remote(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Refuses paths that cannot travel on one control line.
pub(crate) fn check_remote_path(step: &str, path: &str) -> Result<(), FtpsError> {
    if path.contains(['\0', '\r', '\n']) {
        return Err(FtpsError::new(
            FtpsErrorKind::InvalidPath,
            step,
            "the remote path contains a NUL, CR or LF character",
        ));
    }
    Ok(())
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
            ftp: None,
            dirty: false,
            epsv: cfg.prefer_epsv,
            features: Features::default(),
            max_version: cfg.tls.max_version,
            fell_back: false,
            observer: Observer::default(),
            seen_leaf: SeenLeaf::default(),
            attempt: Arc::default(),
        };
        session.open(on_step).await?;
        Ok(session)
    }

    /// Whether this session had to cap TLS at 1.2 because the server refused data connections
    /// that did not resume under TLS 1.3; the caller should remember it for the partner.
    pub fn fell_back_to_tls12(&self) -> bool {
        self.fell_back
    }

    /// The control connection's TLS version, cipher suite and server certificate chain.
    pub fn control_tls(&self) -> Option<ControlTls> {
        self.observer.get().control.clone()
    }

    /// How many data connections resumed the control session's TLS session, and how many
    /// made a full handshake, since this session (re)connected.
    pub fn data_tls_stats(&self) -> DataTlsStats {
        self.observer.get().data
    }

    /// Whether data connections are negotiated with EPSV (`false` once the server refused it).
    pub fn uses_epsv(&self) -> bool {
        self.epsv
    }

    /// The session configuration (secrets stay redacted in its `Debug`).
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Opens (or re-opens) the control connection, in an `ftps_connect` span.
    async fn open(&mut self, on_step: &mut (dyn FnMut(ProbeStep) + Send)) -> Result<(), FtpsError> {
        let span = tracing::info_span!(
            "ftps_connect",
            host = %self.cfg.host,
            port = self.cfg.port,
            user = %self.cfg.username
        );
        self.open_steps(on_step).instrument(span).await
    }

    async fn open_steps(
        &mut self,
        on_step: &mut (dyn FnMut(ProbeStep) + Send),
    ) -> Result<(), FtpsError> {
        let cfg = &self.cfg.clone();
        if cfg.tls.mode == TlsMode::Implicit {
            return Err(FtpsError::new(
                FtpsErrorKind::Configuration,
                "connect",
                "tls.mode implicit is not supported: ferry speaks explicit FTPS only (AUTH TLS \
                 on the plaintext control port)",
            ));
        }
        if cfg.tls.insecure_skip_verify {
            warn!(
                host = %cfg.host,
                "tls.insecure_skip_verify is on: the server certificate is NOT verified; anyone \
                 on the path can read and change this partner's files"
            );
        }
        // Fresh observations and trust state for this connection.
        self.observer = Observer::default();
        self.seen_leaf = SeenLeaf::default();
        let tls_config =
            trust::client_config(&cfg.tls, self.max_version, Arc::clone(&self.seen_leaf))?;
        let t = cfg.timeouts;

        // TCP.
        let step = format!("connect {}:{}", cfg.host, cfg.port);
        let tcp = within(
            t.connect,
            &step,
            "TCP connect",
            connect_tcp(&cfg.host, cfg.port, &step),
        )
        .await?;
        tcp.set_nodelay(true)
            .map_err(|e| error::from_net_io(&step, e))?;
        let peer = tcp.peer_addr().map_err(|e| error::from_net_io(&step, e))?;
        on_step(ProbeStep {
            name: "tcp",
            detail: format!("connected to {peer} (TCP_NODELAY on)"),
        });

        // Greeting (plaintext).
        let mut ftp = within(t.connect, "greeting", "server greeting", async {
            Ftp::connect_with_stream(tcp)
                .await
                .map_err(|e| error::from_ftp("greeting", e, ReplyTo::Other))
        })
        .await?;
        on_step(ProbeStep {
            name: "greeting",
            detail: ftp.get_welcome_msg().unwrap_or("").trim().to_string(),
        });

        // Passive data connections: our own builder, so ferry knows the address it used.
        ftp.set_mode(if self.epsv {
            Mode::ExtendedPassive
        } else {
            Mode::Passive
        });
        ftp.set_passive_nat_workaround(false);
        let attempt = Arc::clone(&self.attempt);
        let nat = cfg.nat_workaround;
        let connect_timeout = t.connect;
        let ftp = ftp.passive_stream_builder(move |advertised| {
            let attempt = Arc::clone(&attempt);
            Box::pin(async move {
                let addr = if nat && advertised.ip() != peer.ip() {
                    SocketAddr::new(peer.ip(), advertised.port())
                } else {
                    advertised
                };
                if let Ok(mut a) = attempt.lock() {
                    *a = DataAttempt {
                        addr: Some(addr),
                        advertised: (addr != advertised).then_some(advertised),
                        connected: false,
                        error: None,
                    };
                }
                let res =
                    match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
                        Ok(r) => r,
                        Err(_) => Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {connect_timeout:?}"),
                        )),
                    };
                if let Ok(mut a) = attempt.lock() {
                    a.connected = res.is_ok();
                    a.error = res.as_ref().err().map(|e| e.kind());
                }
                let s = res.map_err(FtpError::ConnectionError)?;
                // Not critical for bulk data, but keeps the final small records prompt.
                let _ = s.set_nodelay(true);
                Ok(s)
            })
        });

        // AUTH TLS, handshake, PBSZ 0, PROT P.
        let connector = ObservingConnector::new(tls_config, self.observer.clone());
        let secured = tokio::time::timeout(t.reply, ftp.into_secure(connector, &cfg.host)).await;
        let ftp = match secured {
            Err(_) => {
                return Err(FtpsError::timeout("AUTH TLS", "TLS negotiation", t.reply));
            }
            Ok(Ok(ftp)) => ftp,
            Ok(Err(e)) => return Err(self.secure_error(e)),
        };
        let control = self.observer.get().control.clone();
        if let Some(c) = &control {
            on_step(ProbeStep {
                name: "auth-tls",
                detail: format!("AUTH TLS accepted; {} {}", c.version, c.cipher),
            });
            if let Some(leaf) = c.chain.first() {
                on_step(ProbeStep {
                    name: "certificate",
                    detail: CertificateSummary::from_der(leaf).to_string(),
                });
            }
            info!(tls_version = %c.version, cipher = %c.cipher, "TLS established");
        }
        on_step(ProbeStep {
            name: "pbsz-prot",
            detail: "PBSZ 0 and PROT P accepted (data connections are encrypted)".into(),
        });
        self.ftp = Some(ftp);
        let ftp = self.ftp_mut("login")?;

        // Login: only now does the user name travel, encrypted.
        let password = cfg.password.as_ref().map(|p| p.expose()).unwrap_or("");
        within(t.reply, "login", "login reply", async {
            ftp.login(cfg.username.as_str(), password)
                .await
                .map_err(|e| error::from_ftp("login", e, ReplyTo::Login))
        })
        .await?;
        on_step(ProbeStep {
            name: "login",
            detail: format!("logged in as {}", cfg.username),
        });

        within(t.reply, "TYPE I", "TYPE reply", async {
            ftp.transfer_type(FileType::Binary)
                .await
                .map_err(|e| error::from_ftp("TYPE I", e, ReplyTo::Other))
        })
        .await?;
        on_step(ProbeStep {
            name: "type",
            detail: "binary transfers (TYPE I)".into(),
        });

        // FEAT: optional; a server without it gets LIST and no SIZE check.
        let feat = tokio::time::timeout(t.reply, ftp.feat()).await;
        self.features = match feat {
            Ok(Ok(f)) => {
                let has = |k: &str| f.keys().any(|x| x.eq_ignore_ascii_case(k));
                let features = Features {
                    mlsd: has("MLSD") || has("MLST"),
                    size: has("SIZE"),
                };
                let mut names: Vec<&String> = f.keys().collect();
                names.sort();
                on_step(ProbeStep {
                    name: "feat",
                    detail: names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                });
                features
            }
            Ok(Err(FtpError::UnexpectedResponse(r))) => {
                on_step(ProbeStep {
                    name: "feat",
                    detail: format!("FEAT not supported ({})", Reply::from_response(&r)),
                });
                Features::default()
            }
            Ok(Err(e)) => return Err(error::from_ftp("FEAT", e, ReplyTo::Other)),
            Err(_) => return Err(FtpsError::timeout("FEAT", "FEAT reply", t.reply)),
        };
        debug!(
            mlsd = self.features.mlsd,
            size = self.features.size,
            "session ready"
        );
        self.dirty = false;
        Ok(())
    }

    /// Sorts the failure of `into_secure` (AUTH TLS, handshake, PBSZ/PROT).
    fn secure_error(&self, e: FtpError) -> FtpsError {
        let handshake_done = self.observer.get().control.is_some();
        let last_tls = self.observer.get().last_error.take();
        let seen = self
            .seen_leaf
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|c| CertificateSummary::from_der(c)));
        let err = match (e, last_tls) {
            (FtpError::SecureError(_), Some(tls)) => {
                let mut err = trust::from_tls_error("TLS handshake", tls);
                if err.kind() == FtpsErrorKind::CertificateValidation
                    && let Some(s) = seen
                {
                    err = err.context(format!("; server presented {s}"));
                }
                err
            }
            (FtpError::UnexpectedResponse(r), _) if !handshake_done => {
                error::from_reply("AUTH TLS", Reply::from_response(&r), ReplyTo::AuthTls)
            }
            (FtpError::UnexpectedResponse(r), _) => {
                error::from_reply("PBSZ/PROT", Reply::from_response(&r), ReplyTo::Protection)
            }
            (e, _) if handshake_done => error::from_ftp("PBSZ/PROT", e, ReplyTo::Protection),
            (e, _) => error::from_ftp("AUTH TLS", e, ReplyTo::AuthTls),
        };
        if self.cfg.tls.client_cert_pem.is_none() && err.kind() == FtpsErrorKind::TlsHandshake {
            return err
                .context(" (no client certificate is configured; the server may require one)");
        }
        err
    }

    pub(crate) fn ftp_mut(&mut self, step: &str) -> Result<&mut Ftp, FtpsError> {
        self.ftp.as_mut().ok_or_else(|| {
            FtpsError::new(
                FtpsErrorKind::ConnectionLost,
                step,
                "the session is not connected",
            )
        })
    }

    /// Reconnects when the previous operation left the session out of step.
    pub(crate) async fn ensure_ready(&mut self) -> Result<(), FtpsError> {
        if self.ftp.is_some() && !self.dirty {
            return Ok(());
        }
        if let Some(ftp) = self.ftp.take() {
            drop(ftp);
            info!(host = %self.cfg.host, "reconnecting: the previous operation did not finish cleanly");
        }
        self.open(&mut |_| {}).await
    }

    /// After an operation failed: keep the connection only if the failure was a clean reply.
    pub(crate) fn settle(&mut self, err: &FtpsError) {
        let clean = err.reply().is_some()
            && !matches!(
                err.kind(),
                FtpsErrorKind::ConnectionLost | FtpsErrorKind::Timeout
            );
        let local = matches!(
            err.kind(),
            FtpsErrorKind::LocalIo | FtpsErrorKind::LocalFileChanged | FtpsErrorKind::InvalidPath
        );
        self.dirty = !(clean || local);
    }

    /// Whether a failed data operation looks like the server refusing a data connection that
    /// did not resume the TLS session under TLS 1.3 (the case the 1.2 fallback fixes).
    pub(crate) fn reuse_failure_suspected(&self, err: &FtpsError) -> bool {
        if self.max_version != TlsVersion::Tls13 {
            return false;
        }
        let obs = self.observer.get();
        let tls13 = obs.control.as_ref().is_some_and(|c| c.version == "TLSv1.3");
        let not_resumed = obs.data_failed || obs.last_data == Some(rustls::HandshakeKind::Full);
        let transport = matches!(
            err.kind(),
            FtpsErrorKind::ConnectionLost
                | FtpsErrorKind::TlsHandshake
                | FtpsErrorKind::PassiveMode
        ) || err
            .reply()
            .is_some_and(|r| matches!(r.code, 425 | 426 | 450 | 451 | 522));
        tls13 && not_resumed && transport
    }

    /// Reconnects capped at TLS 1.2 (see the module docs).
    pub(crate) async fn fall_back_to_tls12(&mut self, err: &FtpsError) -> Result<(), FtpsError> {
        warn!(
            host = %self.cfg.host,
            error = %err,
            "a data connection failed without TLS session reuse under TLS 1.3; reconnecting \
             with TLS 1.2 (set tls.max_version: \"1.2\" for this partner)"
        );
        self.max_version = TlsVersion::Tls12;
        self.fell_back = true;
        self.ftp = None;
        self.open(&mut |_| {}).await
    }

    /// Opens the data connection for `cmd`: EPSV (PASV once EPSV is refused), TCP connect
    /// to the passive address, the command, then the TLS handshake resuming the session.
    pub(crate) async fn open_data(
        &mut self,
        step: &str,
        cmd: &DataCmd,
        to: ReplyTo,
    ) -> Result<Transfer, FtpsError> {
        let reply_timeout = self.cfg.timeouts.reply;
        loop {
            if let Ok(mut a) = self.attempt.lock() {
                *a = DataAttempt::default();
            }
            {
                let mut obs = self.observer.get();
                obs.last_data = None;
                obs.data_failed = false;
                obs.last_error = None;
            }
            let ftp = self.ftp_mut(step)?;
            let started = tokio::time::timeout(reply_timeout, start_data(ftp, cmd)).await;
            let err = match started {
                Err(_) => {
                    return Err(FtpsError::timeout(
                        step,
                        "data connection setup",
                        reply_timeout,
                    ));
                }
                Ok(Ok(t)) => {
                    let a = self.attempt.lock().map(|a| *a).unwrap_or_default();
                    if let (Some(addr), Some(adv)) = (a.addr, a.advertised) {
                        info!(advertised = %adv, used = %addr, "PASV advertised another address than the control peer; using the peer (NAT workaround)");
                    }
                    return Ok(t);
                }
                Ok(Err(e)) => e,
            };
            let attempt = self.attempt.lock().map(|a| *a).unwrap_or_default();
            let data_failed = self.observer.get().data_failed;
            match err {
                FtpError::UnexpectedResponse(r)
                    if attempt.addr.is_none()
                        && self.epsv
                        && matches!(r.status.code(), 500 | 501 | 502 | 504 | 522) =>
                {
                    info!(reply = %Reply::from_response(&r), "EPSV refused; using PASV for this session");
                    self.epsv = false;
                    self.ftp_mut(step)?.set_mode(Mode::Passive);
                }
                FtpError::ConnectionError(io) if attempt.addr.is_some() && !attempt.connected => {
                    let addr = attempt
                        .addr
                        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                    let mut e = FtpsError::passive(step, addr, &io);
                    if let Some(adv) = attempt.advertised {
                        e = e.context(format!(
                            " (the server advertised {adv}; ferry used the control peer's address)"
                        ));
                    }
                    return Err(e.with_source(io));
                }
                e if data_failed => {
                    // The server sent its preliminary reply and will answer the failed data
                    // connection on the control connection: read that reply to stay in step.
                    let tls = self.observer.get().last_error.take();
                    let mut err = match (tls, e) {
                        (Some(tls), _) => trust::from_tls_error(step, tls),
                        (None, e) => error::from_ftp(step, e, to),
                    };
                    if let Some(reply) = self.read_stray_reply().await {
                        err = err.context("; the server said").with_reply(reply);
                    }
                    return Err(err);
                }
                e => return Err(error::from_ftp(step, e, to)),
            }
        }
    }

    /// Reads one reply the server sent on its own (after a failed data connection).
    /// Returns `None` and marks the session dirty when nothing sensible comes.
    pub(crate) async fn read_stray_reply(&mut self) -> Option<Reply> {
        let wait = self.cfg.timeouts.reply.min(Duration::from_secs(5));
        let ftp = self.ftp.as_mut()?;
        match tokio::time::timeout(wait, ftp.read_response_in(&[])).await {
            Ok(Err(FtpError::UnexpectedResponse(r))) => Some(Reply::from_response(&r)),
            _ => {
                self.dirty = true;
                None
            }
        }
    }

    /// Finishes a transfer stream: `close_notify`, then the final reply (with the reply timeout).
    pub(crate) async fn finish(
        &mut self,
        step: &str,
        stream: Transfer,
        to: ReplyTo,
    ) -> Result<(), FtpsError> {
        let t = self.cfg.timeouts.reply;
        within(t, step, "final transfer reply", async {
            stream
                .finish()
                .await
                .map_err(|e| error::from_ftp(step, e, to))
        })
        .await
    }

    /// Lists `dir`: `MLSD` when the server offers it, `LIST` otherwise. Entries whose names
    /// would escape the directory are dropped with a warning.
    pub async fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, FtpsError> {
        let span = tracing::debug_span!("ftps_list", dir);
        async {
            match self.list_once(dir).await {
                Err(e) if !self.fell_back && self.reuse_failure_suspected(&e) => {
                    self.fall_back_to_tls12(&e).await?;
                    self.list_once(dir).await
                }
                r => r,
            }
        }
        .instrument(span)
        .await
    }

    async fn list_once(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, FtpsError> {
        let step = format!("listing of {dir}");
        check_remote_path(&step, dir)?;
        self.ensure_ready().await?;
        self.dirty = true;
        let r = self.list_inner(&step, dir).await;
        match &r {
            Ok(_) => self.dirty = false,
            Err(e) => self.settle(e),
        }
        r
    }

    async fn list_inner(&mut self, step: &str, dir: &str) -> Result<Vec<RemoteEntry>, FtpsError> {
        let mlsd = self.features.mlsd;
        let line = if mlsd {
            format!("MLSD {dir}")
        } else {
            format!("LIST {dir}")
        };
        let stream = self
            .open_data(step, &DataCmd::Listing(line), ReplyTo::ExistingPath)
            .await?;
        let idle = self.cfg.timeouts.data_idle;
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut lines: Vec<String> = Vec::new();
        let mut buf = Vec::new();
        let read: Result<(), FtpsError> = async {
            loop {
                buf.clear();
                let n = within(idle, step, "listing data", async {
                    (&mut reader)
                        .take(MAX_LIST_LINE)
                        .read_until(b'\n', &mut buf)
                        .await
                        .or_else(|e| eof_is_end(e, 0))
                        .map_err(|e| error::from_net_io(step, e))
                })
                .await?;
                if n == 0 {
                    return Ok(());
                }
                if !buf.ends_with(b"\n") && n as u64 == MAX_LIST_LINE {
                    return Err(FtpsError::new(
                        FtpsErrorKind::Protocol,
                        step,
                        "a listing line is too long",
                    ));
                }
                if lines.len() >= MAX_LIST_ENTRIES {
                    return Err(FtpsError::new(
                        FtpsErrorKind::Protocol,
                        step,
                        "the listing has too many entries",
                    ));
                }
                lines.push(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        .await;
        let stream = reader.into_inner();
        if let Err(e) = read {
            // Collect the final reply if it comes; the read error is what matters.
            let _ = self.finish(step, stream, ReplyTo::ExistingPath).await;
            return Err(e);
        }
        self.finish(step, stream, ReplyTo::ExistingPath).await?;

        let now = chrono::Utc::now();
        let mut entries = Vec::with_capacity(lines.len());
        let (mut unsafe_names, mut unknown) = (0usize, 0usize);
        for l in &lines {
            let parsed = if mlsd {
                listing::parse_mlsd(l)
            } else {
                listing::parse_list(l, now)
            };
            match parsed {
                Parsed::Entry(e) => entries.push(e),
                Parsed::Skip => {}
                Parsed::Unsafe(name) => {
                    unsafe_names += 1;
                    warn!(name = %name.escape_debug(), "listing entry dropped: its name would escape the directory");
                }
                Parsed::Unknown => unknown += 1,
            }
        }
        if unknown > 0 {
            warn!(unknown, "listing lines not understood were skipped");
        }
        debug!(entries = entries.len(), unsafe_names, "listing read");
        Ok(entries)
    }

    /// Deletes a remote file.
    pub async fn delete(&mut self, remote_path: &str) -> Result<(), FtpsError> {
        let step = format!("delete of {remote_path}");
        check_remote_path(&step, remote_path)?;
        self.ensure_ready().await?;
        self.dirty = true;
        let r = self
            .simple(
                &step,
                ReplyTo::ExistingPath,
                |ftp, p| Box::pin(ftp.rm(p)),
                remote_path,
            )
            .await;
        match &r {
            Ok(_) => self.dirty = false,
            Err(e) => self.settle(e),
        }
        r
    }

    /// Renames a remote file (`RNFR`/`RNTO`); the target is replaced where the server allows.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), FtpsError> {
        let step = format!("rename of {from} to {to}");
        check_remote_path(&step, from)?;
        check_remote_path(&step, to)?;
        self.ensure_ready().await?;
        self.dirty = true;
        let r = self.rename_inner(&step, from, to).await;
        match &r {
            Ok(_) => self.dirty = false,
            Err(e) => self.settle(e),
        }
        r
    }

    pub(crate) async fn rename_inner(
        &mut self,
        step: &str,
        from: &str,
        to: &str,
    ) -> Result<(), FtpsError> {
        let t = self.cfg.timeouts.reply;
        let ftp = self.ftp_mut(step)?;
        let first = tokio::time::timeout(t, ftp.rename(from, to)).await;
        match first {
            Err(_) => Err(FtpsError::timeout(step, "rename reply", t)),
            Ok(Ok(())) => Ok(()),
            // RNTO refused: some servers will not replace an existing file. Delete the
            // target and try once more (the temp file is complete, so the window is short).
            Ok(Err(FtpError::UnexpectedResponse(r)))
                if r.status == Status::FileUnavailable
                    || r.status.code() == 553
                    || r.status.code() == 550 =>
            {
                debug!(reply = %Reply::from_response(&r), "rename refused; replacing the existing target");
                let _ = tokio::time::timeout(t, ftp.rm(to)).await;
                match tokio::time::timeout(t, ftp.rename(from, to)).await {
                    Err(_) => Err(FtpsError::timeout(step, "rename reply", t)),
                    Ok(r) => r.map_err(|e| error::from_ftp(step, e, ReplyTo::NewPath)),
                }
            }
            Ok(Err(e)) => Err(error::from_ftp(step, e, ReplyTo::NewPath)),
        }
    }

    /// `SIZE` of a remote file; `Ok(None)` when the server does not answer SIZE.
    pub(crate) async fn remote_size(
        &mut self,
        step: &str,
        path: &str,
    ) -> Result<Option<u64>, FtpsError> {
        if !self.features.size {
            return Ok(None);
        }
        let t = self.cfg.timeouts.reply;
        let ftp = self.ftp_mut(step)?;
        match tokio::time::timeout(t, ftp.size(path)).await {
            Err(_) => Err(FtpsError::timeout(step, "SIZE reply", t)),
            Ok(Ok(n)) => Ok(Some(n as u64)),
            Ok(Err(FtpError::UnexpectedResponse(r))) if r.status.code() == 550 => Err(
                error::from_reply(step, Reply::from_response(&r), ReplyTo::ExistingPath),
            ),
            Ok(Err(FtpError::UnexpectedResponse(_) | FtpError::BadResponse)) => Ok(None),
            Ok(Err(e)) => Err(error::from_ftp(step, e, ReplyTo::ExistingPath)),
        }
    }

    async fn simple<'a>(
        &'a mut self,
        step: &str,
        to: ReplyTo,
        op: impl FnOnce(
            &'a mut Ftp,
            &'a str,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<(), FtpError>> + Send + 'a>>,
        arg: &'a str,
    ) -> Result<(), FtpsError> {
        let t = self.cfg.timeouts.reply;
        let ftp = self.ftp.as_mut().ok_or_else(|| {
            FtpsError::new(
                FtpsErrorKind::ConnectionLost,
                step,
                "the session is not connected",
            )
        })?;
        match tokio::time::timeout(t, op(ftp, arg)).await {
            Err(_) => Err(FtpsError::timeout(step, "reply", t)),
            Ok(r) => r.map_err(|e| error::from_ftp(step, e, to)),
        }
    }

    /// Ends the session politely (`QUIT`); errors are ignored, the connection closes anyway.
    pub async fn quit(mut self) {
        if let Some(mut ftp) = self.ftp.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), ftp.quit()).await;
        }
    }
}

/// A TLS data stream that ends without `close_notify` is reported as `UnexpectedEof` by
/// rustls; ferry treats it as the end of the data and lets the final reply (and the size
/// check) decide, since the control connection is authenticated.
pub(crate) fn eof_is_end(e: std::io::Error, zero: usize) -> Result<usize, std::io::Error> {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        debug!("data connection closed without close_notify");
        Ok(zero)
    } else {
        Err(e)
    }
}

async fn connect_tcp(host: &str, port: u16, step: &str) -> Result<TcpStream, FtpsError> {
    let addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| {
        FtpsError::new(
            FtpsErrorKind::ConnectionRefused,
            step,
            format!("cannot resolve {host}: {e}"),
        )
        .with_source(e)
    })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => error::from_net_io(step, e),
        None => FtpsError::new(
            FtpsErrorKind::ConnectionRefused,
            step,
            format!("{host} resolves to no address"),
        ),
    })
}

async fn start_data(ftp: &mut Ftp, cmd: &DataCmd) -> Result<Transfer, FtpError> {
    match cmd {
        DataCmd::Stor(p) => ftp.put_with_stream(p).await,
        DataCmd::Retr(p) => ftp.retr_as_stream(p).await,
        DataCmd::Listing(line) => ftp
            .custom_data_command(line, &[Status::AboutToSend, Status::AlreadyOpen])
            .await
            .map(|(_, s)| s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_join_with_one_slash() {
        assert_eq!(join_remote("/in", "a b.xml"), "/in/a b.xml");
        assert_eq!(join_remote("/in/", "a"), "/in/a");
        assert_eq!(join_remote("", "a"), "a");
        assert_eq!(join_remote(".", "a"), "a");
        assert_eq!(join_remote("/", "a"), "/a");
    }

    #[test]
    fn control_characters_never_reach_the_wire() {
        let e = check_remote_path("upload", "/in/a\r\nDELE b").unwrap_err();
        assert_eq!(e.kind(), FtpsErrorKind::InvalidPath);
    }
}
