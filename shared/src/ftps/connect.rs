//! Connecting and logging in, in the explicit-FTPS order that never relaxes:
//! TCP (with `TCP_NODELAY`, so no command round trip waits on delayed ACKs) -> plaintext
//! greeting -> `AUTH TLS` -> TLS handshake (trust from `trust.rs`) -> `PBSZ 0` -> `PROT P` ->
//! `USER`/`PASS` -> `TYPE I` -> `FEAT`.
//!
//! The user name and password go out only once the handshake succeeded and the server
//! accepted a protected data channel; a server that refuses `AUTH TLS` or `PROT P` ends the
//! session with [`FtpsErrorKind::TlsNotOffered`], never a plaintext fallback. Implicit TLS is
//! refused before any connection. Each step is reported to a callback (the probe prints them).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, warn};

use super::classify::{ReplyTo, from_net_io, from_response, from_tls_error, rustls_error_in};
use super::config::{SessionConfig, TlsMode, TlsVersion};
use super::connection::{Connection, Features};
use super::control::Control;
use super::data::DataSetup;
use super::error::{FtpsError, FtpsErrorKind};
use super::passive::PassivePolicy;
use super::tls_session_reuse::{TlsConnector, TlsObservations};
use super::trust::{self, CertificateSummary, SeenLeaf};
use super::verify::HashCommand;
use crate::telemetry::metrics::partner::PartnerMetrics;

/// One step of connecting or probing, reported to a callback (see `probe.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStep {
    /// Short step name: `tcp`, `greeting`, `auth-tls`, `certificate`, `pbsz-prot`, `login`,
    /// `type`, `feat`, `passive`, `data-tls`, `list`, `entry`.
    pub name: &'static str,
    /// One line of detail; never contains a secret.
    pub detail: String,
}

/// What a session remembers about a server across reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Learned {
    /// Highest TLS version to offer (lowered by the TLS 1.2 fallback).
    pub(crate) max_version: TlsVersion,
    /// EPSV still believed to work.
    pub(crate) epsv: bool,
    /// MLSD still believed to work (when FEAT offers it).
    pub(crate) mlsd: bool,
}

/// Connects, secures, logs in and reads the server's features, in an `ftps_connect` span.
/// With a partner id in `cfg`, counts the attempt (and its failure's kind), and the
/// connection as an open session while it lives (`telemetry/metrics/partner.rs`).
pub(crate) async fn connect(
    cfg: &SessionConfig,
    learned: Learned,
    on_step: &mut (dyn FnMut(ProbeStep) + Send),
) -> Result<Connection, FtpsError> {
    let span = tracing::info_span!(
        "ftps_connect",
        otel.kind = "client",
        server.address = %cfg.host,
        server.port = cfg.port,
        host = %cfg.host,
        port = cfg.port,
        user = %cfg.username
    );
    let result = steps(cfg, learned, on_step).instrument(span).await;
    let Some(partner) = cfg.partner_id.as_deref() else {
        return result;
    };
    let metrics = PartnerMetrics::global();
    match result {
        Ok(conn) => {
            metrics.record_connect(partner, None);
            Ok(conn.counted(metrics.session_opened(partner)))
        }
        Err(err) => {
            metrics.record_connect(partner, Some(err.kind().as_str()));
            Err(err)
        }
    }
}

/// Sets the partner's certificate expiry gauge from the leaf it presented (accepted or
/// not), when `cfg` names the partner and the certificate has a readable `notAfter`.
fn record_expiry(cfg: &SessionConfig, leaf: &[u8]) {
    if let Some(partner) = cfg.partner_id.as_deref()
        && let Some(not_after) = CertificateSummary::from_der(leaf).not_after
    {
        PartnerMetrics::global().record_certificate_expiry(partner, not_after.timestamp());
    }
}

async fn steps(
    cfg: &SessionConfig,
    learned: Learned,
    on_step: &mut (dyn FnMut(ProbeStep) + Send),
) -> Result<Connection, FtpsError> {
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
    let seen_leaf = SeenLeaf::default();
    let tls_config = trust::client_config(&cfg.tls, learned.max_version, Arc::clone(&seen_leaf))?;
    let connector = TlsConnector::new(tls_config, &cfg.host)?;
    let t = cfg.timeouts;

    // TCP.
    let step = format!("connect {}:{}", cfg.host, cfg.port);
    let tcp = match tokio::time::timeout(t.connect, connect_tcp(&cfg.host, cfg.port, &step)).await {
        Ok(r) => r?,
        Err(_) => return Err(FtpsError::timeout(&step, "TCP connect", t.connect)),
    };
    tcp.set_nodelay(true).map_err(|e| from_net_io(&step, e))?;
    let peer = tcp.peer_addr().map_err(|e| from_net_io(&step, e))?;
    on_step(ProbeStep {
        name: "tcp",
        detail: format!("connected to {peer} (TCP_NODELAY on)"),
    });
    let mut control = Control::new(tcp, peer, t.reply);
    control.set_name_encoding(cfg.name_encoding);

    // Greeting (plaintext); a 120 "ready in n minutes" is followed by the real one.
    let greeting = tokio::time::timeout(t.connect, async {
        loop {
            let reply = control.read_reply("greeting").await?;
            if !reply.is_preliminary() {
                return Ok::<_, FtpsError>(reply);
            }
        }
    })
    .await
    .map_err(|_| FtpsError::timeout("greeting", "server greeting", t.connect))??;
    if greeting.code != 220 {
        return Err(from_response("greeting", &greeting, ReplyTo::Other));
    }
    on_step(ProbeStep {
        name: "greeting",
        detail: greeting.to_reply().text,
    });

    // AUTH TLS and the handshake.
    let auth = control.command("AUTH TLS", "AUTH TLS").await?;
    if auth.code != 234 {
        return Err(from_response("AUTH TLS", &auth, ReplyTo::AuthTls));
    }
    let secured = tokio::time::timeout(t.reply, control.secure(&connector)).await;
    let control_tls = match secured {
        Err(_) => return Err(FtpsError::timeout("AUTH TLS", "TLS negotiation", t.reply)),
        Ok(Err(e)) => {
            // An untrusted or expired certificate still says when it expires.
            let seen = seen_leaf.lock().ok().and_then(|leaf| leaf.clone());
            if let Some(leaf) = seen {
                record_expiry(cfg, &leaf);
            }
            return Err(handshake_error(cfg, &seen_leaf, e));
        }
        Ok(Ok(c)) => c,
    };
    on_step(ProbeStep {
        name: "auth-tls",
        detail: format!(
            "AUTH TLS accepted; {} {}",
            control_tls.version.protocol_name(),
            control_tls.cipher
        ),
    });
    if let Some(leaf) = control_tls.chain.first() {
        record_expiry(cfg, leaf);
        on_step(ProbeStep {
            name: "certificate",
            detail: CertificateSummary::from_der(leaf).to_string(),
        });
    }
    info!(tls_version = control_tls.version.protocol_name(), cipher = %control_tls.cipher, "TLS established");

    // A protected data channel, before any credential.
    let mut conn = Connection::new(
        control,
        DataSetup::new(
            connector,
            PassivePolicy {
                nat_workaround: cfg.nat_workaround,
                allowed: cfg.allowed_data_addresses.clone(),
            },
            learned.epsv,
            t.connect,
            t.data_idle,
        ),
        TlsObservations {
            control: Some(control_tls),
            ..TlsObservations::default()
        },
        Features::default(),
    )
    .with_bandwidth(cfg.bandwidth.clone())
    .with_resume(cfg.resume);
    conn.accepted("PBSZ/PROT", "PBSZ 0", ReplyTo::Protection)
        .await?;
    conn.accepted("PBSZ/PROT", "PROT P", ReplyTo::Protection)
        .await?;
    on_step(ProbeStep {
        name: "pbsz-prot",
        detail: "PBSZ 0 and PROT P accepted (data connections are encrypted)".into(),
    });

    // Login: only now does the user name travel, encrypted.
    let user = conn
        .accepted("login", &format!("USER {}", cfg.username), ReplyTo::Login)
        .await?;
    if user.code == 331 {
        let password = cfg.password.as_ref().map(|p| p.expose()).unwrap_or("");
        let pass = conn
            .accepted("login", &format!("PASS {password}"), ReplyTo::Login)
            .await?;
        if pass.code != 230 && pass.code != 202 {
            return Err(from_response("login", &pass, ReplyTo::Login));
        }
    } else if user.code != 230 {
        return Err(from_response("login", &user, ReplyTo::Login));
    }
    on_step(ProbeStep {
        name: "login",
        detail: format!("logged in as {}", cfg.username),
    });

    conn.accepted("TYPE I", "TYPE I", ReplyTo::Other).await?;
    on_step(ProbeStep {
        name: "type",
        detail: "binary transfers (TYPE I)".into(),
    });

    // FEAT: optional; a server without it gets LIST and no SIZE check.
    let feat = conn.command("FEAT", "FEAT").await?;
    let features = if feat.code == 211 {
        let feature_lines: Vec<&str> = feat
            .lines
            .iter()
            .skip(1)
            .filter(|l| l.starts_with(' '))
            .map(|l| l.trim())
            .collect();
        let names: Vec<String> = feature_lines
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .map(|w| w.to_ascii_uppercase())
            .collect();
        let has = |k: &str| names.iter().any(|n| n == k);
        let mut sorted = names.clone();
        sorted.sort();
        on_step(ProbeStep {
            name: "feat",
            detail: sorted.join(" "),
        });
        Features {
            mlsd: learned.mlsd && (has("MLSD") || has("MLST")),
            size: has("SIZE"),
            mdtm: has("MDTM"),
            mfmt: has("MFMT"),
            rest_stream: feature_lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("REST STREAM")),
            // `HASH` (SHA-256 listed) is preferred to `XSHA256`: it is the documented one.
            hash: feature_lines
                .iter()
                .filter_map(|l| HashCommand::from_feat_line(l))
                .min_by_key(|c| *c != HashCommand::Hash),
        }
    } else {
        on_step(ProbeStep {
            name: "feat",
            detail: format!("FEAT not supported ({})", feat.to_reply()),
        });
        Features::default()
    };
    let features = Features {
        hash: select_hash(&mut conn, features.hash, &feat_hash_fallback(&feat)).await?,
        ..features
    };
    debug!(
        mlsd = features.mlsd,
        size = features.size,
        mdtm = features.mdtm,
        hash = ?features.hash,
        "session ready"
    );
    Ok(conn.with_features(features))
}

/// `XSHA256` when `FEAT` lists it beside `HASH` (the fallback if `OPTS HASH` is refused).
fn feat_hash_fallback(feat: &super::reply::Response) -> Option<HashCommand> {
    feat.lines
        .iter()
        .skip(1)
        .filter_map(|l| HashCommand::from_feat_line(l.trim()))
        .find(|c| *c == HashCommand::Xsha256)
}

/// Selects SHA-256 for `HASH` once per session (`OPTS HASH SHA-256`), so that each upload's
/// check (`verify.rs`) is one command; a server that refuses the option keeps `XSHA256` if it
/// lists it, else no hash command.
async fn select_hash(
    conn: &mut Connection,
    offered: Option<HashCommand>,
    fallback: &Option<HashCommand>,
) -> Result<Option<HashCommand>, FtpsError> {
    if offered != Some(HashCommand::Hash) {
        return Ok(offered);
    }
    let opts = conn.command("FEAT", "OPTS HASH SHA-256").await?;
    Ok(if opts.is_positive() {
        Some(HashCommand::Hash)
    } else {
        *fallback
    })
}

/// Sorts a failed control-connection handshake, with the certificate the server showed.
fn handshake_error(cfg: &SessionConfig, seen: &SeenLeaf, e: std::io::Error) -> FtpsError {
    let mut err = match rustls_error_in(&e) {
        Some(tls) => from_tls_error("TLS handshake", tls.clone()),
        None => from_net_io("TLS handshake", e),
    };
    if err.kind() == FtpsErrorKind::CertificateValidation
        && let Some(s) = seen
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|c| CertificateSummary::from_der(c)))
    {
        err = err.context(format!("; server presented {s}"));
    }
    if cfg.tls.client_cert_pem.is_none() && err.kind() == FtpsErrorKind::TlsHandshake {
        err = err.context(" (no client certificate is configured; the server may require one)");
    }
    err
}

async fn connect_tcp(host: &str, port: u16, step: &str) -> Result<TcpStream, FtpsError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            FtpsError::new(
                FtpsErrorKind::ConnectionRefused,
                step,
                format!("cannot resolve {host}: {e}"),
            )
            .with_source(e)
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => from_net_io(step, e),
        None => FtpsError::new(
            FtpsErrorKind::ConnectionRefused,
            step,
            format!("{host} resolves to no address"),
        ),
    })
}
