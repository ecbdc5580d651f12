//! Which [`FtpsErrorKind`] a failure is: a refused reply (whose meaning depends on the
//! command it answered: a 550 to `RETR` is a missing file, to `STOR` a refusal to create
//! one), a socket error, or a rustls error (certificate trouble versus handshake trouble).
//!
//! Kept apart from `error.rs` so that the error type depends on nothing and everything that
//! needs to sort a failure depends on it, never the other way round.

use std::io;

use rustls::{CertificateError, Error as TlsError};

use super::error::{FtpsError, FtpsErrorKind};
use super::reply::{Reply, Response};

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
    if let Some(tls) = rustls_error_in(&err) {
        return from_tls_error(step, tls.clone());
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

/// A reply that refused `step`, as an error.
pub(crate) fn from_response(step: &str, response: &Response, to: ReplyTo) -> FtpsError {
    from_reply(step, response.to_reply(), to)
}

/// Finds a rustls error carried by an I/O error (tokio-rustls wraps them).
pub(crate) fn rustls_error_in(err: &io::Error) -> Option<&TlsError> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
}

/// Sorts a rustls error into certificate or handshake trouble, with an operator's hint.
pub(crate) fn from_tls_error(step: &str, err: TlsError) -> FtpsError {
    let (kind, message) = match &err {
        TlsError::InvalidCertificate(cert) => {
            let why = match cert {
                CertificateError::UnknownIssuer => {
                    "issued by an unknown CA: tls.ca_cert missing, wrong, or its chain incomplete"
                        .to_string()
                }
                CertificateError::BadSignature => {
                    "its signature does not verify against the trusted CA: tls.ca_cert is not \
                     the CA that issued it (perhaps another CA with the same name)"
                        .to_string()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!("not valid for the host name ferry connects to ({err})")
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("expired ({err})")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!("not valid yet ({err})")
                }
                CertificateError::Other(other) => other.to_string(),
                _ => err.to_string(),
            };
            (
                FtpsErrorKind::CertificateValidation,
                format!("server certificate rejected: {why}"),
            )
        }
        TlsError::AlertReceived(alert) => (
            FtpsErrorKind::TlsHandshake,
            format!(
                "the server aborted the TLS handshake with alert {alert:?} (a client certificate \
                 it requires or rejects, or no common protocol version or cipher)"
            ),
        ),
        _ => (
            FtpsErrorKind::TlsHandshake,
            format!("TLS handshake failed: {err}"),
        ),
    };
    FtpsError::new(kind, step, message)
        .with_source(err)
        .transient(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u32, text: &str) -> Reply {
        Response {
            code,
            lines: vec![format!("{code} {text}")],
        }
        .to_reply()
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
