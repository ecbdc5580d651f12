//! What a [`Session`](super::Session) needs to know about one partner's FTPS server: address,
//! credentials, trust and timeouts, already resolved (secrets are values, not references).
//!
//! The transfer engine builds a [`SessionConfig`] from the partner's YAML once the secret
//! references are resolved; nothing here reads files or the environment.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;

use crate::secrets::Secret;

/// Everything needed to open one authenticated FTPS control connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host name (checked against the certificate) or IP address of the server.
    pub host: String,
    /// Control port (21 for most partners).
    pub port: u16,
    /// FTP login user name.
    pub username: String,
    /// FTP password; `None` sends an empty `PASS` when the server asks for one.
    pub password: Option<Secret>,
    /// How the server is trusted and how ferry presents itself.
    pub tls: TlsSettings,
    /// Replace a PASV reply's address by the control connection's peer address (as curl and
    /// lftp do for servers behind NAT that advertise a private address). Default `true`.
    pub nat_workaround: bool,
    /// With `nat_workaround` off, the addresses other than the control peer's that a `PASV`
    /// reply may name and ferry will dial (see `passive.rs`); any other is refused.
    pub allowed_data_addresses: Vec<IpAddr>,
    /// Try `EPSV` first (default `true`); `false` uses `PASV` only, for servers whose EPSV
    /// is broken behind a firewall. A refused EPSV switches the session to PASV anyway.
    pub prefer_epsv: bool,
    /// How large a directory listing may be.
    pub listing_limits: ListingLimits,
    /// The zone of the wall-clock times in `LIST` lines (default UTC): servers list their
    /// local time. `MLSD` times are UTC by RFC 3659 and never converted.
    pub listing_timezone: Tz,
    /// The zone of `MDTM` replies: UTC (the default) by RFC 3659; vsftpd with
    /// `use_localtime=YES` answers its local time.
    pub mdtm_timezone: Tz,
    /// Connect, reply and data-idle timeouts.
    pub timeouts: Timeouts,
    /// The configured partner's id: the `partner` label of the connect, session and
    /// certificate metrics (`telemetry/metrics/partner.rs`). `None` records none.
    pub partner_id: Option<String>,
    /// The partner's bandwidth cap, shared by its sessions in this process (`bandwidth.rs`);
    /// `None`: as fast as the network goes.
    pub bandwidth: Option<std::sync::Arc<super::BandwidthCap>>,
    /// List with `MLSD` when `FEAT` offers it (default `true`); `false` always uses `LIST`,
    /// for servers whose `MLSD` is broken although listed.
    pub use_mlsd: bool,
    /// Listings include hidden entries (`LIST -a`; default `false`, plain `LIST`): for
    /// partners whose files start with a dot.
    pub list_hidden: bool,
    /// How the server writes names (default UTF-8; see `name_encoding.rs`).
    pub name_encoding: super::NameEncoding,
    /// Resume an interrupted upload where the server's part ends (default `true`; see
    /// `resume.rs`); `false` for servers that mishandle `REST`.
    pub resume: bool,
}

impl SessionConfig {
    /// A configuration with the defaults: explicit TLS up to 1.3 with system roots, NAT
    /// workaround on, default timeouts, times in UTC, no password.
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>) -> Self {
        SessionConfig {
            host: host.into(),
            port,
            username: username.into(),
            password: None,
            tls: TlsSettings::default(),
            nat_workaround: true,
            allowed_data_addresses: Vec::new(),
            prefer_epsv: true,
            listing_limits: ListingLimits::default(),
            listing_timezone: Tz::UTC,
            mdtm_timezone: Tz::UTC,
            timeouts: Timeouts::default(),
            partner_id: None,
            bandwidth: None,
            use_mlsd: true,
            list_hidden: false,
            name_encoding: super::NameEncoding::Utf8,
            resume: true,
        }
    }
}

/// Trust and client identity for the TLS connections of a session.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `explicit` (the only mode ferry speaks) or `implicit` (refused with a clear error).
    pub mode: TlsMode,
    /// PEM CA certificate(s): when given, the only roots trusted; the system roots otherwise.
    pub ca_cert_pem: Option<String>,
    /// PEM client certificate chain for mutual TLS.
    pub client_cert_pem: Option<String>,
    /// PEM client private key (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1).
    pub client_key_pem: Option<Secret>,
    /// Passphrase of an encrypted PKCS#8 client key.
    pub client_key_passphrase: Option<Secret>,
    /// SHA-256 of the server's leaf certificate (DER): checked on the control connection,
    /// alone (self-signed partner, no `ca_cert_pem`) or on top of the CA check.
    pub server_cert_fingerprint: Option<[u8; 32]>,
    /// Accept any certificate (the fingerprint, if given, is still checked). Logged as a
    /// warning on every connect; the configuration refuses it in hardened mode.
    pub insecure_skip_verify: bool,
    /// Highest TLS version offered; the lowest is always 1.2.
    pub max_version: TlsVersion,
}

/// Highest TLS version a session offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 only (for servers that mishandle TLS 1.3).
    Tls12,
    /// TLS 1.2 or 1.3 (the default).
    #[default]
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = ParseTlsSettingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => Err(ParseTlsSettingError {
                field: "tls.max_version",
                value: other.to_string(),
                expected: "\"1.2\" or \"1.3\"",
            }),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl TlsVersion {
    /// The protocol's name as TLS libraries print it: `TLSv1.2`, `TLSv1.3`.
    pub fn protocol_name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// Bounds on one directory listing: a partner's listing is read and parsed line by line, and
/// only the entries are kept, so these bound ferry's memory whatever the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingLimits {
    /// Most bytes of listing data read (default 64 MiB, about 500 000 Unix `LIST` lines).
    pub max_bytes: u64,
    /// Most entries kept (default 200 000: about 40 MiB of entries, within a 256 MiB pod).
    pub max_entries: usize,
}

impl Default for ListingLimits {
    fn default() -> Self {
        ListingLimits {
            max_bytes: 64 * 1024 * 1024,
            max_entries: 200_000,
        }
    }
}

/// `tls.mode` of a partner: only explicit FTPS is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plaintext greeting, then `AUTH TLS` (the only mode ferry connects with).
    #[default]
    Explicit,
    /// TLS from the first byte (port 990): deprecated, refused at connect.
    Implicit,
}

impl FromStr for TlsMode {
    type Err = ParseTlsSettingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "explicit" => Ok(TlsMode::Explicit),
            "implicit" => Ok(TlsMode::Implicit),
            other => Err(ParseTlsSettingError {
                field: "tls.mode",
                value: other.to_string(),
                expected: "\"explicit\"",
            }),
        }
    }
}

/// A TLS setting's text is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} is not valid, expected {expected}")]
pub struct ParseTlsSettingError {
    field: &'static str,
    value: String,
    expected: &'static str,
}

/// How long each network step may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus greeting, for the control and each data connection.
    pub connect: Duration,
    /// Each command's reply (including the TLS handshake and the final transfer reply).
    pub reply: Duration,
    /// Longest pause in the data stream of a transfer or listing.
    pub data_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            reply: Duration::from_secs(30),
            data_idle: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_version_parses_the_config_values() {
        assert_eq!("1.2".parse::<TlsVersion>(), Ok(TlsVersion::Tls12));
        assert_eq!("1.3".parse::<TlsVersion>(), Ok(TlsVersion::Tls13));
        let err = "1.1".parse::<TlsVersion>().unwrap_err();
        assert!(err.to_string().contains("tls.max_version"), "{err}");
        assert_eq!(TlsVersion::default(), TlsVersion::Tls13);
    }

    #[test]
    fn tls_mode_parses() {
        assert_eq!("explicit".parse::<TlsMode>(), Ok(TlsMode::Explicit));
        assert_eq!("implicit".parse::<TlsMode>(), Ok(TlsMode::Implicit));
        assert!("tls".parse::<TlsMode>().is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut cfg = SessionConfig::new("h", 21, "u");
        cfg.password = Some(Secret::new("hunter2"));
        cfg.tls.client_key_pem = Some(Secret::new("-----BEGIN PRIVATE KEY-----"));
        cfg.tls.client_key_passphrase = Some(Secret::new("pass-phrase"));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("BEGIN PRIVATE"));
        assert!(!dbg.contains("pass-phrase"));
    }
}
