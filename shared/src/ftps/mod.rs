//! The FTPS client: explicit TLS, passive mode, streaming transfers that a partner never sees
//! half-done, and errors an operator can act on.
//!
//! ferry speaks FTP itself over tokio and rustls (no FTP library): it must start a data
//! connection's TLS handshake before the command that uses it and watch the control
//! connection while that handshake runs, which no FTP crate allows. One [`Session`] is one
//! authenticated control connection, reused for many files (setting one up costs ~100 ms; a
//! small file ~3 ms).
//!
//! Where each behaviour lives:
//!
//! | file                   | concern                                                            |
//! |------------------------|--------------------------------------------------------------------|
//! | `session.rs`           | [`Session`]: its public operations and the one wrapper each runs in (reconnect, settle, fallback) |
//! | `connection.rs`        | one live connection (control, features, data setup) and the `Operation` trait |
//! | `connect.rs`           | connect and log in: TCP, greeting, AUTH TLS, PBSZ/PROT, USER/PASS, TYPE, FEAT; [`ProbeStep`] |
//! | `control.rs`           | the control connection: commands out, replies in, cancel-safe, STARTTLS-injection safe |
//! | `reply.rs`             | reply parsing (multi-line, bounded) and [`Reply`]                  |
//! | `data.rs`              | data connections: setup with the handshake raced against control replies, and their end |
//! | `passive.rs`           | passive-mode address policy (EPSV, PASV, NAT workaround, `allowed_data_addresses`) |
//! | `tls_session_reuse.rs` | TLS session reuse on data connections, the connector, handshake counts |
//! | `tls12_fallback.rs`    | the TLS 1.2 fallback for servers that refuse non-resumed TLS 1.3 data connections |
//! | `trust.rs`             | roots, fingerprint pinning, client identity (PKCS#8/1, SEC1, encrypted) |
//! | `tls_stream.rs`        | the TLS stream over a read-buffered socket (rustls reads 4 KiB at a time) |
//! | `upload.rs`            | streaming upload: temporary name, hash in the same pass, size check, rename |
//! | `download.rs`          | streaming download into a temporary file; the length and `close_notify` rule |
//! | `rename.rs`            | the rename protocol (`RNFR`/`RNTO`, when an existing target may be replaced) |
//! | `list.rs`              | reading a listing: MLSD or LIST, streaming, bounded, the MLSD-refused fallback |
//! | `listing.rs`           | parsing one MLSD/LIST line, and name safety                        |
//! | `server_time.rs`       | [`TimePrecision`], the listing's time zone, daylight saving, absurd times |
//! | `mdtm.rs`              | `MDTM`: one file's time to the second, and refining a listed entry's |
//! | `mkdir.rs`             | creating an upload's missing folders (`MKD`), tolerating a race    |
//! | `commands.rs`          | `DELE`, `SIZE`, whether a file exists                              |
//! | `paths.rs`             | joining remote paths; ferry's temporary names                      |
//! | `pipeline.rs`          | the disk side of a transfer (read/write + SHA-256) on its own thread |
//! | `printable.rs`         | partner text made safe for logs (no control or bidi characters)    |
//! | `probe.rs`             | the operator's step-by-step probe                                  |
//! | `config.rs`            | [`SessionConfig`], [`TlsSettings`], [`Timeouts`], [`TlsVersion`], [`ListingLimits`] |
//! | `error.rs`             | [`FtpsError`] and its [`FtpsErrorKind`]s                           |
//! | `classify.rs`          | which kind a reply, a socket error or a TLS error is               |
//!
//! Security, in short (details in each file):
//! - explicit TLS only; credentials travel only after the handshake and `PROT P`; a server
//!   refusing TLS ends the session, never a plaintext fallback; implicit TLS is refused;
//! - TLS 1.2 minimum; the server's name and chain are verified (custom CA as the only root, or
//!   the system roots); an optional SHA-256 pin of the leaf; `insecure_skip_verify` is loud;
//! - data connections resume the control connection's TLS session (per-session ticket store),
//!   so a third party cannot slip into the data channel of servers that check it; no 0-RTT;
//! - data connections go to the control peer only, unless the partner allows an address;
//! - names from listings and callers are single path components (no `..`, `/`, NUL, CR/LF):
//!   a partner cannot make ferry write outside its folder or smuggle a command;
//! - text from the partner is printed without control or bidi characters;
//! - secrets are [`Secret`](crate::secrets::Secret)s: never in logs, errors or `Debug`.

mod bandwidth;
mod classify;
mod commands;
mod config;
mod connect;
mod connection;
mod control;
mod data;
mod download;
mod download_resume;
mod empty_file;
mod error;
mod list;
mod listing;
mod mdtm;
mod mfmt;
mod mkdir;
mod name_encoding;
mod passive;
mod paths;
mod pipeline;
mod printable;
mod probe;
mod rename;
mod reply;
mod resume;
mod server_time;
mod session;
mod tls12_fallback;
mod tls_session_reuse;
mod tls_stream;
mod trust;
mod upload;
mod verify;

pub use bandwidth::BandwidthCap;
pub use commands::RemoteFile;
pub use config::{
    ListingLimits, ParseTlsSettingError, SessionConfig, Timeouts, TlsMode, TlsSettings, TlsVersion,
};
pub use connect::ProbeStep;
pub use download::{DownloadOptions, DownloadedFile};
pub use error::{FtpsError, FtpsErrorKind};
pub use listing::{NameError, RemoteEntry, check_name};
pub use mfmt::MtimeKept;
pub use name_encoding::NameEncoding;
pub use paths::{is_upload_part, is_working_file};
pub use pipeline::{BUF_SIZE, hash_to_end, open_no_follow};
pub use printable::printable;
pub use probe::probe;
pub use rename::RenamePolicy;
pub use reply::Reply;
pub use server_time::TimePrecision;
pub use session::Session;
pub use tls_session_reuse::{ControlTls, DataTlsStats};
pub use trust::{
    CertificateSummary, FingerprintMismatch, InvalidFingerprint, format_fingerprint,
    parse_fingerprint, sha256_fingerprint,
};
pub use upload::{StagedUpload, UploadOptions, Uploaded};
pub use verify::Verified;
