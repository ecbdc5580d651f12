//! [`Partner`]: one business partner's FTPS server, read from `partners/*.yaml`.
//!
//! The fields are those of the FTPS partner contract (see
//! `shared/reference/ftps-partner-spec.md`) plus the connection limits and timeouts added
//! since. Transport rules are enforced here, once: explicit TLS only, passive mode only.
//! Secret-bearing fields hold [`SecretRef`]s, resolved by the worker at run time.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

use super::settings::SecretRules;
use super::yaml::{Cx, Field, Loc, Map, Node};
use crate::secrets::SecretRef;

/// A partner's FTPS server and how to reach it.
#[derive(Debug, Clone)]
pub struct Partner {
    /// The `id` field: unique, `[A-Za-z0-9._-]` (safe in Redis keys and routing keys).
    pub id: String,
    /// A name for people (`display_name`; the id when absent).
    pub display_name: String,
    /// The FTPS settings (`protocol: ftps` is the only protocol).
    pub ftps: FtpsPartner,
    /// The file it was read from, relative to the configuration directory.
    pub source_file: PathBuf,
}

/// `ftps:` of a partner.
#[derive(Debug, Clone)]
pub struct FtpsPartner {
    /// Where the server is and how to talk to it (always passive mode).
    pub connection: FtpsConnection,
    /// The FTP login.
    pub auth: FtpsAuth,
    /// TLS trust and client identity (always explicit TLS: `AUTH TLS`).
    pub tls: FtpsTls,
}

/// How a partner's server writes file names (`connection.listing_encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListingEncoding {
    /// UTF-8 (RFC 2640), the default.
    #[default]
    Utf8,
    /// ISO 8859-1, for old servers on old disks.
    Latin1,
}

/// `ftps.connection`. Passive mode is implied: `passive: true` is required in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpsConnection {
    /// Server host name or IP; also the TLS server name.
    pub host: String,
    /// Control port (default 21).
    pub port: u16,
    /// The most sessions a worker opens to this partner at once (default 4).
    pub max_connections: u16,
    /// Connect data channels to the control connection's peer when the PASV reply
    /// advertises another address (a server behind NAT); default true.
    pub nat_workaround: bool,
    /// With `nat_workaround: false`, the addresses other than the control peer's that a
    /// PASV reply may name (refused in hardened mode); any other is refused, never dialled.
    pub allowed_data_addresses: Vec<IpAddr>,
    /// Most bytes of one directory listing (default 64 MiB).
    pub max_listing_bytes: u64,
    /// Most entries of one directory listing (default 200 000).
    pub max_listing_entries: u32,
    /// TCP connect plus TLS handshake (default 30s).
    pub connect_timeout: Duration,
    /// Waiting for a reply to one command (default 60s).
    pub command_timeout: Duration,
    /// Idle time on a data connection before the transfer fails (default 120s).
    pub data_timeout: Duration,
    /// The zone of the server's `LIST` times (default UTC): many servers list local time.
    pub listing_timezone: Tz,
    /// The zone of the server's `MDTM` replies (default UTC, as RFC 3659 says; vsftpd with
    /// `use_localtime=YES` answers local time).
    pub mdtm_timezone: Tz,
    /// Never send `EPSV`, only `PASV` (`disable_epsv`, default false): for servers whose
    /// `EPSV` answers but leads nowhere (a firewall that only knows `PASV`).
    pub disable_epsv: bool,
    /// Never list with `MLSD`, only `LIST` (`disable_mlsd`, default false): for servers that
    /// list `MLST` in `FEAT` but send broken `MLSD` lines.
    pub disable_mlsd: bool,
    /// List hidden entries too (`list_hidden`, default false): `LIST -a` where the server
    /// has no `MLSD`, for partners that put files whose names start with a dot (`MLSD`
    /// always lists them).
    pub list_hidden: bool,
    /// How the server writes file names (`listing_encoding`: `utf8`, the default, or
    /// `latin1` for old servers that send ISO 8859-1 names; see `ftps/name_encoding.rs`).
    pub listing_encoding: ListingEncoding,
    /// The most bytes per second this worker moves to and from the partner, all its sessions
    /// together (`max_bytes_per_second`; default: no cap).
    pub max_bytes_per_second: Option<u64>,
    /// Never resume an interrupted upload with `REST` (`disable_resume`, default false): for
    /// servers that mishandle `REST` before `STOR`.
    pub disable_resume: bool,
}

/// `ftps.auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpsAuth {
    /// The FTP user name.
    pub username: String,
    /// The password reference, when the server wants one.
    pub password: Option<SecretRef>,
}

/// `ftps.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpsTls {
    /// PEM CA certificate(s) to trust instead of the system roots.
    pub ca_cert: Option<SecretRef>,
    /// The client certificate and key for mutual TLS (`client_cert` + `client_private_key`).
    pub client_identity: Option<ClientIdentity>,
    /// SHA-256 of the server certificate (DER) that must match; `""` in the file means none.
    pub server_cert_fingerprint: Option<[u8; 32]>,
    /// Skip certificate verification entirely (rejected in hardened mode).
    pub insecure_skip_verify: bool,
    /// The highest TLS version offered (default 1.3; 1.2 for servers that mishandle 1.3).
    pub max_version: TlsVersion,
}

/// A client certificate for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain (`tls.client_cert`).
    pub cert: SecretRef,
    /// PEM private key, possibly encrypted PKCS#8 (`tls.client_private_key`).
    pub private_key: SecretRef,
    /// The key's passphrase when it is encrypted (`tls.client_key_passphrase`).
    pub key_passphrase: Option<SecretRef>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// How a partner's server certificate is trusted (for summaries and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustMode {
    /// Verified against the configured CA.
    Ca,
    /// The fingerprint alone decides (no CA configured).
    Pinned,
    /// Verified against the configured CA and pinned by fingerprint.
    CaAndPinned,
    /// Verified against the system's root certificates.
    SystemRoots,
    /// The chain is not verified (`insecure_skip_verify: true`); a configured pin still applies.
    Insecure,
}

impl Default for FtpsTls {
    /// No `tls:` section: system roots, no pin, no client certificate, up to TLS 1.3.
    fn default() -> Self {
        FtpsTls {
            ca_cert: None,
            client_identity: None,
            server_cert_fingerprint: None,
            insecure_skip_verify: false,
            max_version: TlsVersion::Tls13,
        }
    }
}

impl FtpsTls {
    /// How the server certificate is trusted.
    pub fn trust_mode(&self) -> TrustMode {
        match (
            self.insecure_skip_verify,
            self.ca_cert.is_some(),
            self.server_cert_fingerprint.is_some(),
        ) {
            (true, _, _) => TrustMode::Insecure,
            (false, true, true) => TrustMode::CaAndPinned,
            (false, true, false) => TrustMode::Ca,
            (false, false, true) => TrustMode::Pinned,
            (false, false, false) => TrustMode::SystemRoots,
        }
    }
}

impl std::fmt::Display for TrustMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrustMode::Ca => "CA",
            TrustMode::Pinned => "pinned",
            TrustMode::CaAndPinned => "CA+pinned",
            TrustMode::SystemRoots => "system roots",
            TrustMode::Insecure => "INSECURE",
        })
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

const ROOT_KEYS: &[&str] = &["id", "display_name", "protocol", "ftps"];
const CONNECTION_KEYS: &[&str] = &[
    "host",
    "port",
    "passive",
    "max_connections",
    "nat_workaround",
    "allowed_data_addresses",
    "max_listing_bytes",
    "max_listing_entries",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
    "listing_timezone",
    "mdtm_timezone",
    "disable_epsv",
    "disable_mlsd",
    "list_hidden",
    "listing_encoding",
    "max_bytes_per_second",
    "disable_resume",
];
const TLS_KEYS: &[&str] = &[
    "mode",
    "ca_cert",
    "client_cert",
    "client_private_key",
    "client_key_passphrase",
    "server_cert_fingerprint",
    "insecure_skip_verify",
    "max_version",
];

/// Reads one partner file. Returns the partner when it is complete, and its id with the
/// id's location for the caller's duplicate check. Every problem is recorded in `cx`.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    root: &Node,
    rules: SecretRules,
) -> (Option<Partner>, Option<(String, Loc)>) {
    let Some(map) = Map::root(cx, root, ROOT_KEYS) else {
        return (None, None);
    };
    let id = map
        .required(cx, "id")
        .and_then(|f| Some((super::read_id(cx, f, "partner")?, f.loc)));
    let display_name = map.get("display_name").and_then(|f| f.non_empty_str(cx));
    let protocol = map.required(cx, "protocol").and_then(|f| {
        let text = f.str(cx)?;
        if text != "ftps" {
            f.error(
                cx,
                format!("protocol `{text}` is not supported; ferry speaks `ftps` only"),
            );
            return None;
        }
        Some(())
    });
    let ftps = map
        .required(cx, "ftps")
        .and_then(|f| f.map(cx, &["connection", "auth", "tls"]))
        .and_then(|ftps| read_ftps(cx, &ftps, rules));
    let partner = match (&id, protocol, ftps) {
        (Some((id, _)), Some(()), Some(ftps)) => Some(Partner {
            id: id.clone(),
            display_name: display_name.unwrap_or_else(|| id.clone()),
            ftps,
            source_file: cx.file().to_path_buf(),
        }),
        _ => None,
    };
    (partner, id)
}

fn read_ftps(cx: &mut Cx<'_>, ftps: &Map<'_>, rules: SecretRules) -> Option<FtpsPartner> {
    let connection = ftps
        .required(cx, "connection")
        .and_then(|f| f.map(cx, CONNECTION_KEYS))
        .and_then(|c| read_connection(cx, &c, rules));
    let auth = ftps
        .required(cx, "auth")
        .and_then(|f| f.map(cx, &["username", "password"]))
        .and_then(|a| read_auth(cx, &a, rules));
    let tls = match ftps.get("tls") {
        Some(f) => f.map(cx, TLS_KEYS).and_then(|t| read_tls(cx, &t, rules)),
        None => Some(FtpsTls::default()),
    };
    Some(FtpsPartner {
        connection: connection?,
        auth: auth?,
        tls: tls?,
    })
}

fn read_connection(cx: &mut Cx<'_>, c: &Map<'_>, rules: SecretRules) -> Option<FtpsConnection> {
    let host = c.required(cx, "host").and_then(|f| f.non_empty_str(cx));
    let port = c
        .get("port")
        .map_or(Some(21), |f| f.int(cx, 1u16, u16::MAX));
    let passive = match c.get("passive") {
        None => {
            cx.error(
                c.loc(),
                "ftps.connection.passive",
                "passive mode is required; add passive: true (ferry supports passive FTPS only)",
            );
            None
        }
        Some(f) => match f.bool(cx) {
            Some(true) => Some(()),
            Some(false) => {
                f.error(
                    cx,
                    "passive mode is required; set passive: true (ferry supports passive FTPS only)",
                );
                None
            }
            None => None,
        },
    };
    let max_connections = c
        .get("max_connections")
        .map_or(Some(4), |f| f.int(cx, 1u16, 256));
    let nat_workaround = c.get("nat_workaround").map_or(Some(true), |f| f.bool(cx));
    let allowed_data_addresses = c
        .get("allowed_data_addresses")
        .map_or(Some(Vec::new()), |f| read_addresses(cx, f, rules));
    let max_listing_bytes = c
        .get("max_listing_bytes")
        .map_or(Some(64 * 1024 * 1024), |f| f.int(cx, 1024u64, 1 << 40));
    let max_listing_entries = c
        .get("max_listing_entries")
        .map_or(Some(200_000), |f| f.int(cx, 1u32, 100_000_000));
    let timeout = |cx: &mut Cx<'_>, key: &str, default: u64| {
        c.get(key).map_or(Some(Duration::from_secs(default)), |f| {
            f.positive_duration(cx)
        })
    };
    let connect_timeout = timeout(cx, "connect_timeout", 30);
    let command_timeout = timeout(cx, "command_timeout", 60);
    let data_timeout = timeout(cx, "data_timeout", 120);
    let zone = |cx: &mut Cx<'_>, key: &str| c.get(key).map_or(Some(Tz::UTC), |f| f.timezone(cx));
    let listing_timezone = zone(cx, "listing_timezone");
    let mdtm_timezone = zone(cx, "mdtm_timezone");
    let disable_epsv = c.get("disable_epsv").map_or(Some(false), |f| f.bool(cx));
    let disable_mlsd = c.get("disable_mlsd").map_or(Some(false), |f| f.bool(cx));
    let list_hidden = c.get("list_hidden").map_or(Some(false), |f| f.bool(cx));
    let listing_encoding = c
        .get("listing_encoding")
        .map_or(Some(ListingEncoding::Utf8), |f| {
            f.choice(
                cx,
                &[
                    ("utf8", ListingEncoding::Utf8),
                    ("latin1", ListingEncoding::Latin1),
                ],
            )
        });
    let disable_resume = c.get("disable_resume").map_or(Some(false), |f| f.bool(cx));
    // At least 1 KiB/s: a smaller cap is a typo that would make every transfer time out.
    let max_bytes_per_second = match c.get("max_bytes_per_second") {
        None => Some(None),
        Some(f) => f.int(cx, 1024u64, 1 << 40).map(Some),
    };
    passive?;
    Some(FtpsConnection {
        host: host?,
        port: port?,
        max_connections: max_connections?,
        nat_workaround: nat_workaround?,
        allowed_data_addresses: allowed_data_addresses?,
        max_listing_bytes: max_listing_bytes?,
        max_listing_entries: max_listing_entries?,
        connect_timeout: connect_timeout?,
        command_timeout: command_timeout?,
        data_timeout: data_timeout?,
        listing_timezone: listing_timezone?,
        mdtm_timezone: mdtm_timezone?,
        disable_epsv: disable_epsv?,
        disable_mlsd: disable_mlsd?,
        list_hidden: list_hidden?,
        listing_encoding: listing_encoding?,
        max_bytes_per_second: max_bytes_per_second?,
        disable_resume: disable_resume?,
    })
}

/// `allowed_data_addresses`: a list of IP addresses, refused in hardened mode (a PASV reply
/// that names another host than the control peer is how a server points a client elsewhere).
fn read_addresses(cx: &mut Cx<'_>, f: Field<'_>, rules: SecretRules) -> Option<Vec<IpAddr>> {
    if rules.hardened {
        f.error(
            cx,
            "hardened mode forbids allowed_data_addresses: data connections go to the control              connection's peer only",
        );
        return None;
    }
    let mut addresses = Vec::new();
    let mut ok = true;
    for item in f.seq(cx)? {
        let item = item.get();
        let Some(text) = item.str(cx) else {
            ok = false;
            continue;
        };
        match text.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) => {
                item.error(cx, format!("`{text}` is not an IP address"));
                ok = false;
            }
        }
    }
    ok.then_some(addresses)
}

/// Reads an optional secret-bearing field: `Err` when written but invalid (recorded).
/// `literal_allowed` for a field that holds no secret in practice (a CA certificate).
fn secret(
    cx: &mut Cx<'_>,
    map: &Map<'_>,
    key: &str,
    rules: SecretRules,
    literal_allowed: bool,
) -> Result<Option<SecretRef>, ()> {
    match map.get(key) {
        None => Ok(None),
        Some(field) => rules.read(cx, field, literal_allowed).map(Some).ok_or(()),
    }
}

fn read_auth(cx: &mut Cx<'_>, a: &Map<'_>, rules: SecretRules) -> Option<FtpsAuth> {
    let username = a.required(cx, "username").and_then(|f| f.non_empty_str(cx));
    let password = secret(cx, a, "password", rules, false);
    Some(FtpsAuth {
        username: username?,
        password: password.ok()?,
    })
}

fn read_tls(cx: &mut Cx<'_>, t: &Map<'_>, rules: SecretRules) -> Option<FtpsTls> {
    let mode = t.get("mode").map_or(Some(()), |f| {
        let text = f.str(cx)?;
        match text.as_str() {
            "explicit" => Some(()),
            "implicit" => {
                f.error(
                    cx,
                    "implicit TLS is not supported; use explicit (AUTH TLS on port 21)",
                );
                None
            }
            _ => {
                f.error(
                    cx,
                    format!("TLS mode `{text}` is unknown; use explicit (AUTH TLS on port 21)"),
                );
                None
            }
        }
    });
    let ca_cert = secret(cx, t, "ca_cert", rules, true);
    let client_cert = secret(cx, t, "client_cert", rules, false);
    let private_key = secret(cx, t, "client_private_key", rules, false);
    let passphrase = secret(cx, t, "client_key_passphrase", rules, false);
    let fingerprint = t
        .get("server_cert_fingerprint")
        .map_or(Some(None), |f| read_fingerprint(cx, f));
    let insecure = t.get("insecure_skip_verify").map_or(Some(false), |f| {
        let insecure = f.bool(cx)?;
        if insecure && rules.hardened {
            f.error(
                cx,
                "hardened mode forbids insecure_skip_verify: true; trust the server with ca_cert or server_cert_fingerprint",
            );
            return None;
        }
        Some(insecure)
    });
    let max_version =
        t.get("max_version")
            .map_or(Some(TlsVersion::Tls13), |f| match &f.node.value {
                super::yaml::Value::Str(s) if s == "1.2" => Some(TlsVersion::Tls12),
                super::yaml::Value::Str(s) if s == "1.3" => Some(TlsVersion::Tls13),
                super::yaml::Value::Float(x) if *x == 1.2 => Some(TlsVersion::Tls12),
                super::yaml::Value::Float(x) if *x == 1.3 => Some(TlsVersion::Tls13),
                _ => {
                    f.error(cx, "must be \"1.2\" or \"1.3\"");
                    None
                }
            });
    let (client_cert, private_key, passphrase) =
        (client_cert.ok()?, private_key.ok()?, passphrase.ok()?);
    let client_identity = match (client_cert, private_key) {
        (Some(cert), Some(private_key)) => Some(ClientIdentity {
            cert,
            private_key,
            key_passphrase: passphrase,
        }),
        (None, None) => {
            if passphrase.is_some() {
                cx.error(
                    t.loc(),
                    "ftps.tls.client_key_passphrase",
                    "a key passphrase needs client_cert and client_private_key",
                );
                return None;
            }
            None
        }
        (Some(_), None) | (None, Some(_)) => {
            cx.error(
                t.loc(),
                "ftps.tls",
                "mutual TLS needs both client_cert and client_private_key",
            );
            return None;
        }
    };
    mode?;
    Some(FtpsTls {
        ca_cert: ca_cert.ok()?,
        client_identity,
        server_cert_fingerprint: fingerprint?,
        insecure_skip_verify: insecure?,
        max_version: max_version?,
    })
}

/// SHA-256 as 64 hex digits, colons and case ignored; `""` means none.
fn read_fingerprint(cx: &mut Cx<'_>, f: Field<'_>) -> Option<Option<[u8; 32]>> {
    let text = f.str(cx)?;
    if text.trim().is_empty() {
        return Some(None);
    }
    let digits: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let mut bytes = [0u8; 32];
    match hex::decode_to_slice(&digits, &mut bytes) {
        Ok(()) => Some(Some(bytes)),
        Err(_) => {
            f.error(
                cx,
                "must be a SHA-256 fingerprint: 64 hex digits, optionally separated by colons (AB:CD:...)",
            );
            None
        }
    }
}
