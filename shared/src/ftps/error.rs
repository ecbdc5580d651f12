//! [`FtpsError`]: one error type for everything the FTPS client can fail at, sorted into
//! [`FtpsErrorKind`]s an operator (and the retry logic) can act on.
//!
//! The kinds follow the partner contract's "Common failures" table: a refused connection
//! points at a firewall, a certificate error at the trust configuration, an authentication
//! error at the credentials. Each error also knows whether trying again can help
//! ([`FtpsError::is_transient`]): network trouble and 4xx replies can clear up by themselves,
//! a wrong password or an untrusted certificate never will. Which kind a reply, a socket error
//! or a TLS error is lives in `classify.rs`.
//!
//! Security: messages carry the step, the server's reply code and text, addresses and
//! certificate fingerprints, never a password, a private key or a passphrase. Server replies
//! are kept printable and bounded ([`Reply`]); ferry never sends secrets in a command other
//! than `PASS`, and servers do not echo `PASS`.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::printable::printable;
use super::reply::Reply;

/// What went wrong, in terms an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FtpsErrorKind {
    /// Nothing accepted the TCP connection (firewall, wrong host or port, server down).
    ConnectionRefused,
    /// An established connection broke (reset, unexpected end, server said 421/426).
    ConnectionLost,
    /// The server does not speak explicit FTPS (`AUTH TLS` refused): never falls back to plaintext.
    TlsNotOffered,
    /// The TLS handshake failed for a reason other than the certificate (versions, ciphers,
    /// a client certificate the server requires or rejects...).
    TlsHandshake,
    /// The server's certificate was not accepted: unknown issuer, name mismatch, expired,
    /// fingerprint mismatch.
    CertificateValidation,
    /// The passive data connection could not be opened (the address tried is in the message).
    PassiveMode,
    /// The server refused the user name or password.
    AuthenticationFailed,
    /// The server refused the operation for lack of permission.
    PermissionDenied,
    /// The remote file or directory does not exist.
    NotFound,
    /// The server answered something ferry did not expect (code and text in the message).
    Protocol,
    /// A connect, a reply or the data connection stayed silent for longer than allowed.
    Timeout,
    /// Reading or writing a local file failed.
    LocalIo,
    /// The local file changed while it was being uploaded (its hash or size differs).
    LocalFileChanged,
    /// A name that would escape its directory or cannot be sent on the control connection.
    InvalidPath,
    /// The upload's temporary file is gone from the server before its rename (`RNFR`
    /// refused): a partner-side process may have taken it. Nothing was deleted; the file
    /// is not reported delivered.
    TemporaryFileVanished,
    /// The final name already exists on the partner and the flow does not allow replacing it.
    TargetExists,
    /// The data stream ended early: without TLS `close_notify` and short of the size the
    /// server announced (or with no size to check it against).
    Truncated,
    /// A listing is larger than the partner's limits allow (bytes or entries).
    ListingTooLarge,
    /// The session configuration cannot work (implicit TLS, unreadable key or certificate,
    /// wrong key passphrase...).
    Configuration,
}

impl FtpsErrorKind {
    /// A short stable name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FtpsErrorKind::ConnectionRefused => "connection_refused",
            FtpsErrorKind::ConnectionLost => "connection_lost",
            FtpsErrorKind::TlsNotOffered => "tls_not_offered",
            FtpsErrorKind::TlsHandshake => "tls_handshake",
            FtpsErrorKind::CertificateValidation => "certificate_validation",
            FtpsErrorKind::PassiveMode => "passive_mode",
            FtpsErrorKind::AuthenticationFailed => "authentication_failed",
            FtpsErrorKind::PermissionDenied => "permission_denied",
            FtpsErrorKind::NotFound => "not_found",
            FtpsErrorKind::Protocol => "protocol",
            FtpsErrorKind::Timeout => "timeout",
            FtpsErrorKind::LocalIo => "local_io",
            FtpsErrorKind::LocalFileChanged => "local_file_changed",
            FtpsErrorKind::InvalidPath => "invalid_path",
            FtpsErrorKind::TemporaryFileVanished => "temporary_file_vanished",
            FtpsErrorKind::TargetExists => "target_exists",
            FtpsErrorKind::Truncated => "truncated",
            FtpsErrorKind::ListingTooLarge => "listing_too_large",
            FtpsErrorKind::Configuration => "configuration",
        }
    }

    /// Whether this kind, by itself, is worth retrying. Replies refine it: a 4xx reply is
    /// always transient, a 5xx never (see [`FtpsError::is_transient`]).
    fn default_transient(self) -> bool {
        matches!(
            self,
            FtpsErrorKind::ConnectionRefused
                | FtpsErrorKind::ConnectionLost
                | FtpsErrorKind::PassiveMode
                | FtpsErrorKind::Timeout
                | FtpsErrorKind::LocalFileChanged
                | FtpsErrorKind::Truncated
        )
    }
}

impl fmt::Display for FtpsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An FTPS failure: its kind, the step that failed and what was seen.
///
/// `Display` reads like a sentence for an operator: `"upload of /in/a.xml: STOR refused:
/// 553 Could not create file. (permission_denied, permanent)"`.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {message}{} ({kind}, {})", reply_suffix(.reply), if self.is_transient() { "transient" } else { "permanent" })]
pub struct FtpsError {
    kind: FtpsErrorKind,
    step: String,
    message: String,
    reply: Option<Reply>,
    transient_override: Option<bool>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

fn reply_suffix(reply: &Option<Reply>) -> String {
    match reply {
        Some(r) => format!(": {r}"),
        None => String::new(),
    }
}

impl FtpsError {
    /// A new error of `kind` at `step` (what ferry was doing) with a message.
    /// The step and message are kept printable (a remote name in them cannot forge a log
    /// line or reverse its text).
    pub fn new(kind: FtpsErrorKind, step: impl Into<String>, message: impl Into<String>) -> Self {
        FtpsError {
            kind,
            step: printable(&step.into()).into_owned(),
            message: printable(&message.into()).into_owned(),
            reply: None,
            transient_override: None,
            source: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> FtpsErrorKind {
        self.kind
    }

    /// The step that failed (for example `"connect 127.0.0.1:2121"`, `"login"`, `"upload of /in/a"`).
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The server's reply, when the failure is a reply.
    pub fn reply(&self) -> Option<&Reply> {
        self.reply.as_ref()
    }

    /// Whether trying again (later, on a new connection) can help: refused, reset, timeout and
    /// 4xx replies can; authentication, certificate and 5xx replies cannot.
    pub fn is_transient(&self) -> bool {
        if let Some(t) = self.transient_override {
            return t;
        }
        match &self.reply {
            Some(r) if (400..500).contains(&r.code) => true,
            Some(r) if (500..600).contains(&r.code) => false,
            _ => self.kind.default_transient(),
        }
    }

    /// Appends to the message, keeping kind, step, reply and source.
    pub(crate) fn context(mut self, more: impl AsRef<str>) -> Self {
        self.message.push_str(&printable(more.as_ref()));
        self
    }

    pub(crate) fn with_reply(mut self, reply: Reply) -> Self {
        self.reply = Some(reply);
        self
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn transient(mut self, transient: bool) -> Self {
        self.transient_override = Some(transient);
        self
    }

    pub(crate) fn local_io(step: impl Into<String>, err: io::Error) -> Self {
        let message = err.to_string();
        FtpsError::new(FtpsErrorKind::LocalIo, step, message).with_source(err)
    }

    pub(crate) fn timeout(step: impl Into<String>, what: &str, after: std::time::Duration) -> Self {
        FtpsError::new(
            FtpsErrorKind::Timeout,
            step,
            format!("{what}: no answer within {after:?}"),
        )
    }

    /// The data connection to `addr` could not be opened.
    pub(crate) fn passive(step: impl Into<String>, addr: SocketAddr, err: &io::Error) -> Self {
        FtpsError::new(
            FtpsErrorKind::PassiveMode,
            step,
            format!(
                "data connection to {addr} failed: {err}; check that the server's passive port \
                 range is reachable (firewall, NAT) and that the advertised address is right"
            ),
        )
    }
}
