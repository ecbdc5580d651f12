//! [`FtpsError`]: one error type for everything the FTPS client can fail at, sorted into
//! [`FtpsErrorKind`]s an operator (and the retry logic) can act on.
//!
//! The kinds follow the partner contract's "Common failures" table: a refused connection
//! points at a firewall, a certificate error at the trust configuration, an authentication
//! error at the credentials. Each error also knows whether trying again can help
//! ([`FtpsError::is_transient`]): network trouble and 4xx replies can clear up by themselves,
//! a wrong password or an untrusted certificate never will.
//!
//! Security: messages carry the step, the server's reply code and text, addresses and
//! certificate fingerprints, never a password, a private key or a passphrase. Server replies
//! are echoed as received (trimmed and cut to a bounded length) because they are what the
//! operator needs to see; ferry never sends secrets in a command other than `PASS`, and
//! servers do not echo `PASS`.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use suppaftp::FtpError;

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
        )
    }
}

impl fmt::Display for FtpsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server reply kept in an error: the code and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u32,
    /// The reply text (code stripped, lines joined, cut to a bounded length).
    pub text: String,
}

impl Reply {
    /// Longest reply text kept in an error.
    const MAX_TEXT: usize = 300;

    pub(crate) fn from_response(response: &suppaftp::types::Response) -> Reply {
        let raw = String::from_utf8_lossy(&response.body);
        let mut text = String::new();
        for line in raw.lines() {
            let line = line.trim();
            // Strip the "550 " / "550-" prefix that each reply line may carry.
            let line = match line.get(..4) {
                Some(p) if p.as_bytes()[..3].iter().all(u8::is_ascii_digit) => line[4..].trim(),
                _ => line,
            };
            if line.is_empty() {
                continue;
            }
            if !text.is_empty() {
                text.push_str(" / ");
            }
            text.push_str(line);
        }
        if text.len() > Self::MAX_TEXT {
            let mut cut = Self::MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        Reply {
            code: response.status.code(),
            text,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
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
    pub fn new(kind: FtpsErrorKind, step: impl Into<String>, message: impl Into<String>) -> Self {
        FtpsError {
            kind,
            step: step.into(),
            message: message.into(),
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
        self.message.push_str(more.as_ref());
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

/// Which command a reply answered: decides what an ambiguous code (550) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyTo {
    /// USER / PASS.
    Login,
    /// AUTH TLS.
    AuthTls,
    /// PBSZ / PROT.
    Protection,
    /// RETR, SIZE, MLSD, LIST, CWD, DELE, RNFR: the path must exist.
    ExistingPath,
    /// STOR, RNTO: the path is being created.
    NewPath,
    /// Anything else.
    Other,
}

/// Turns a refused reply into an error of the right kind.
pub(crate) fn from_reply(step: &str, reply: Reply, to: ReplyTo) -> FtpsError {
    let text = reply.text.to_ascii_lowercase();
    let says_permission = ["permission", "denied", "not allowed", "forbidden", "access"]
        .iter()
        .any(|w| text.contains(w));
    let says_missing = [
        "no such",
        "not found",
        "not exist",
        "doesn't exist",
        "does not exist",
        "failed to open",
        "can't open",
        "cannot open",
        "not a regular file",
        "unknown file",
    ]
    .iter()
    .any(|w| text.contains(w));
    let (kind, message) = match (reply.code, to) {
        (_, ReplyTo::AuthTls) => (
            FtpsErrorKind::TlsNotOffered,
            "the server refused AUTH TLS: it does not offer explicit FTPS; ferry never falls \
             back to plaintext, so no credentials were sent"
                .to_string(),
        ),
        (_, ReplyTo::Protection) => (
            FtpsErrorKind::TlsNotOffered,
            "the server refused PBSZ/PROT P (protected data channel); ferry never sends data in \
             plaintext"
                .to_string(),
        ),
        (530 | 331 | 332, ReplyTo::Login) | (430 | 530, _) => (
            FtpsErrorKind::AuthenticationFailed,
            "the server refused the login: wrong user name or password, or a locked account"
                .to_string(),
        ),
        (421, _) => (
            FtpsErrorKind::ConnectionLost,
            "the server is closing the connection".to_string(),
        ),
        (425, _) => (
            FtpsErrorKind::PassiveMode,
            "the server could not open the data connection".to_string(),
        ),
        (426, _) => (
            FtpsErrorKind::ConnectionLost,
            "the server aborted the transfer".to_string(),
        ),
        (522, _) => (
            FtpsErrorKind::TlsHandshake,
            "the server refused the TLS data connection".to_string(),
        ),
        (550 | 450 | 553 | 552 | 532 | 451, _) if says_permission && !says_missing => (
            FtpsErrorKind::PermissionDenied,
            "the server refused the operation (permission)".to_string(),
        ),
        (550 | 450 | 553, _) if says_missing => (
            FtpsErrorKind::NotFound,
            "the remote path does not exist".to_string(),
        ),
        (550 | 450, ReplyTo::ExistingPath) => (
            FtpsErrorKind::NotFound,
            "the remote path is not available".to_string(),
        ),
        (550 | 553 | 532, ReplyTo::NewPath) => (
            FtpsErrorKind::PermissionDenied,
            "the server refused to create the file".to_string(),
        ),
        _ => (
            FtpsErrorKind::Protocol,
            "unexpected reply from the server".to_string(),
        ),
    };
    FtpsError::new(kind, step, message).with_reply(reply)
}

/// Sorts an I/O error of the network into a kind.
pub(crate) fn from_net_io(step: &str, err: io::Error) -> FtpsError {
    if let Some(tls) = super::trust::rustls_error_in(&err) {
        return super::trust::from_tls_error(step, tls.clone());
    }
    let kind = match err.kind() {
        io::ErrorKind::ConnectionRefused => FtpsErrorKind::ConnectionRefused,
        io::ErrorKind::TimedOut => FtpsErrorKind::Timeout,
        io::ErrorKind::InvalidInput => FtpsErrorKind::InvalidPath,
        _ => FtpsErrorKind::ConnectionLost,
    };
    let message = match kind {
        FtpsErrorKind::ConnectionRefused => format!(
            "connection refused ({err}): nothing listens there, or a firewall blocks the port"
        ),
        _ => err.to_string(),
    };
    FtpsError::new(kind, step, message).with_source(err)
}

/// Sorts a suppaftp error met at `step`, where a refused reply answered `to`.
pub(crate) fn from_ftp(step: &str, err: FtpError, to: ReplyTo) -> FtpsError {
    match err {
        FtpError::ConnectionError(io) => from_net_io(step, io),
        FtpError::UnexpectedResponse(response) => {
            from_reply(step, Reply::from_response(&response), to)
        }
        FtpError::SecureError(msg) => FtpsError::new(FtpsErrorKind::TlsHandshake, step, msg),
        FtpError::BadResponse => FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            "the server sent a reply ferry cannot parse",
        )
        .transient(false),
        FtpError::InvalidAddress(e) => FtpsError::new(
            FtpsErrorKind::PassiveMode,
            step,
            format!("the server advertised an invalid passive address: {e}"),
        ),
        FtpError::DataConnectionAlreadyOpen => FtpsError::new(
            FtpsErrorKind::Protocol,
            step,
            "a data connection is already open on this session",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;
    use suppaftp::types::Response;

    fn reply(code: u32, text: &str) -> Reply {
        Reply::from_response(&Response::new(
            Status::from(code),
            format!("{code} {text}\r\n").into_bytes(),
        ))
    }

    #[test]
    fn reply_text_strips_codes_and_joins_lines() {
        let r = Reply::from_response(&Response::new(
            Status::from(550),
            b"550-First line\r\n550 Second line\r\n".to_vec(),
        ));
        assert_eq!(r.code, 550);
        assert_eq!(r.text, "First line / Second line");
    }

    #[test]
    fn login_refusal_is_authentication_and_permanent() {
        let e = from_reply("login", reply(530, "Login incorrect."), ReplyTo::Login);
        assert_eq!(e.kind(), FtpsErrorKind::AuthenticationFailed);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("530 Login incorrect."), "{e}");
    }

    #[test]
    fn ambiguous_550_depends_on_the_command() {
        let e = from_reply(
            "download",
            reply(550, "Failed to open file."),
            ReplyTo::ExistingPath,
        );
        assert_eq!(e.kind(), FtpsErrorKind::NotFound);
        let e = from_reply(
            "upload",
            reply(553, "Could not create file."),
            ReplyTo::NewPath,
        );
        assert_eq!(e.kind(), FtpsErrorKind::PermissionDenied);
        let e = from_reply("upload", reply(550, "Permission denied."), ReplyTo::NewPath);
        assert_eq!(e.kind(), FtpsErrorKind::PermissionDenied);
        assert!(!e.is_transient());
        let e = from_reply(
            "rename",
            reply(550, "No such file or directory"),
            ReplyTo::NewPath,
        );
        assert_eq!(e.kind(), FtpsErrorKind::NotFound);
    }

    #[test]
    fn four_hundreds_are_transient_five_hundreds_are_not() {
        let e = from_reply("upload", reply(451, "Local error"), ReplyTo::Other);
        assert!(e.is_transient());
        let e = from_reply("upload", reply(501, "Syntax error"), ReplyTo::Other);
        assert_eq!(e.kind(), FtpsErrorKind::Protocol);
        assert!(!e.is_transient());
        let e = from_reply(
            "upload",
            reply(425, "Can't open data connection"),
            ReplyTo::Other,
        );
        assert_eq!(e.kind(), FtpsErrorKind::PassiveMode);
        assert!(e.is_transient());
    }

    #[test]
    fn refused_auth_tls_says_no_plaintext_fallback() {
        let e = from_reply("AUTH TLS", reply(500, "Unknown command"), ReplyTo::AuthTls);
        assert_eq!(e.kind(), FtpsErrorKind::TlsNotOffered);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("never falls back"));
    }

    #[test]
    fn network_errors_are_sorted() {
        let e = from_net_io(
            "connect",
            io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
        );
        assert_eq!(e.kind(), FtpsErrorKind::ConnectionRefused);
        assert!(e.is_transient());
        let e = from_net_io(
            "list",
            io::Error::new(io::ErrorKind::ConnectionReset, "reset"),
        );
        assert_eq!(e.kind(), FtpsErrorKind::ConnectionLost);
        assert!(e.is_transient());
    }
}
