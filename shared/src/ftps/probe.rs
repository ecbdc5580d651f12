//! The operator's probe: connect to a partner exactly as a flow would and report every step,
//! so that "it does not work" becomes "passive mode: data connection to 10.0.0.5:50000 failed".
//!
//! `ferry-worker probe` prints the steps it receives; this module only produces them. It uses
//! [`Session::connect`]'s own code path (not a re-implementation), so what the probe proves is
//! what the flows will do. No step detail ever contains a password, key or passphrase.

use super::config::SessionConfig;
use super::connect::ProbeStep;
use super::data::describe;
use super::error::FtpsError;
use super::paths::join_remote;
use super::printable::printable;
use super::session::Session;

/// Most listing entries reported one by one (the count is always reported).
const MAX_LISTED: usize = 50;

/// Connects step by step, lists `path` (the login directory when `None`), and reports each
/// step to `on_step`. On failure the error names the failing step and its kind.
pub async fn probe(
    cfg: &SessionConfig,
    path: Option<&str>,
    on_step: &mut (dyn FnMut(ProbeStep) + Send),
) -> Result<(), FtpsError> {
    let mut session = Session::connect_reporting(cfg, on_step).await?;
    let dir = path.unwrap_or(".");
    let entries = session.list(dir).await?;
    let target = session
        .connection()
        .and_then(|c| c.data_setup().last_target());
    on_step(ProbeStep {
        name: "passive",
        detail: describe(target, session.uses_epsv()),
    });
    let stats = session.data_tls_stats();
    on_step(ProbeStep {
        name: "data-tls",
        detail: format!(
            "data connection TLS session: {}",
            if stats.resumed > 0 {
                "resumed from the control connection"
            } else {
                "full handshake (no resumption)"
            }
        ),
    });
    on_step(ProbeStep {
        name: "list",
        detail: format!(
            "{} entries in {dir} (via {})",
            entries.len(),
            if session.uses_mlsd() {
                "MLSD, times in UTC".to_string()
            } else {
                format!("LIST, times read in {}", cfg.listing_timezone)
            }
        ),
    });
    for e in entries.iter().take(MAX_LISTED) {
        on_step(ProbeStep {
            name: "entry",
            detail: format!(
                "{} {} {} ({}) {}",
                if e.is_file { "file" } else { "dir " },
                e.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                e.modified
                    .map(|m| m.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                e.precision,
                printable(&e.name)
            ),
        });
    }
    // One file's exact time beside its listed one, so the operator can check the zones.
    if let Some(e) = entries
        .iter()
        .find(|e| e.is_file && !e.precision.is_exact())
        && session.offers_mdtm()
    {
        let detail = match session.modified_time(&join_remote(dir, &e.name)).await {
            Ok(Some(t)) => format!("{} (read in {})", t.to_rfc3339(), cfg.mdtm_timezone),
            Ok(None) => "refused".to_string(),
            Err(err) => format!("no time: {err}"),
        };
        on_step(ProbeStep {
            name: "mdtm",
            detail: format!("{}: {detail}", printable(&e.name)),
        });
    }
    session.quit().await;
    Ok(())
}
