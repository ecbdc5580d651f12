//! The FTPS client: explicit TLS, passive mode, streaming transfers that a partner never sees
//! half-done, and errors an operator can act on.
//!
//! Built on suppaftp (async, tokio) and rustls. One [`Session`] is one authenticated control
//! connection, reused for many files (setting one up costs ~100 ms; a small file ~3 ms).
//!
//! | file            | concern                                                              |
//! |-----------------|----------------------------------------------------------------------|
//! | `config.rs`     | [`SessionConfig`], [`TlsSettings`], [`Timeouts`], [`TlsVersion`]     |
//! | `trust.rs`      | roots, fingerprint pinning, client identity (PKCS#8/1, SEC1, encrypted) |
//! | `tls_stream.rs` | the TLS stream over a read-buffered socket (rustls reads 4 KiB at a time) |
//! | `connector.rs`  | the TLS connector that records handshakes (version, resumption)      |
//! | `session.rs`    | connect/login order, passive mode, listing, delete, rename, TLS 1.2 fallback |
//! | `transfer.rs`   | streaming upload (temp name + rename) and download (temp file)       |
//! | `pipeline.rs`   | the disk side of a transfer (read/write + SHA-256) on its own thread |
//! | `listing.rs`    | MLSD/LIST parsing and name safety                                    |
//! | `probe.rs`      | the operator's step-by-step probe                                    |
//! | `error.rs`      | [`FtpsError`] and its [`FtpsErrorKind`]s                             |
//!
//! Security, in short (details in each file):
//! - explicit TLS only; credentials travel only after the handshake and `PROT P`; a server
//!   refusing TLS ends the session, never a plaintext fallback; implicit TLS is refused;
//! - TLS 1.2 minimum; the server's name and chain are verified (custom CA as the only root, or
//!   the system roots); an optional SHA-256 pin of the leaf; `insecure_skip_verify` is loud;
//! - data connections resume the control connection's TLS session (per-session ticket store),
//!   so a third party cannot slip into the data channel of servers that check it; no 0-RTT;
//! - names from listings and callers are single path components (no `..`, `/`, NUL, CR/LF):
//!   a partner cannot make ferry write outside its folder or smuggle a command;
//! - secrets are [`Secret`](crate::secrets::Secret)s: never in logs, errors or `Debug`.
//!
//! Known limit: under TLS 1.3 some servers (ProFTPD) refuse every third data connection
//! because rustls uses each session ticket once; a session that sees this reconnects capped at
//! TLS 1.2 and retries once ([`Session::fell_back_to_tls12`] tells the caller to remember it).

mod config;
mod connector;
mod error;
mod listing;
mod pipeline;
mod probe;
mod session;
mod tls_stream;
mod transfer;
mod trust;

pub use config::{ParseTlsSettingError, SessionConfig, Timeouts, TlsMode, TlsSettings, TlsVersion};
pub use connector::{ControlTls, DataTlsStats};
pub use error::{FtpsError, FtpsErrorKind, Reply};
pub use listing::{NameError, RemoteEntry, check_name};
pub use pipeline::BUF_SIZE;
pub use probe::probe;
pub use session::{ProbeStep, Session};
pub use transfer::{DownloadedFile, Uploaded};
pub use trust::{
    CertificateSummary, FingerprintMismatch, InvalidFingerprint, format_fingerprint,
    parse_fingerprint, sha256_fingerprint,
};
