//! The fleet demo's configuration: the one-process demo's partner and flows, with a
//! fleet's `ferry.yaml` (RabbitMQ, Redis, OpenBao, the scheduler's HTTP trigger) and the
//! partner's password as a `vault:` reference instead of a file.
//!
//! What a run leaves behind in the shared services is kept small: the broker's exchange
//! and queues are named `ferry-demo…` (reused by the next demo, empty when a demo ends;
//! a prefix of its own when a demo stopped halfway left messages there, see `mod.rs`), and
//! the Redis keys carry a prefix of their own per run, so a second demo starts from
//! nothing, with a one-day retention for the delivery records.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::super::configuration::{Layout, PARTNER, flows_yaml, partner_yaml, quoted};
use super::super::partner::Certificates;
use super::services::{RABBITMQ, REDIS};

/// Where the partner's password lives in OpenBao (KV v2 under `secret/`).
pub const PASSWORD_PATH: &str = "ferry-demo/partner";
/// Its field there.
pub const PASSWORD_FIELD: &str = "password";

/// What the fleet's `ferry.yaml` points at.
pub struct FleetSettings<'a> {
    /// OpenBao's address.
    pub vault: SocketAddr,
    /// OpenBao's token (written to a file and referenced as `file:`).
    pub vault_token: &'a str,
    /// Where the scheduler serves the HTTP trigger.
    pub trigger: SocketAddr,
    /// The token the trigger requires (written to a file and referenced as `file:`).
    pub trigger_token: &'a str,
    /// The scheduler's `/metrics` address.
    pub scheduler_metrics: SocketAddr,
    /// The Redis key prefix of this run.
    pub key_prefix: &'a str,
    /// The broker's exchange and queue prefix.
    pub exchange_prefix: &'a str,
}

/// Writes the configuration; returns the `--config` directory.
pub fn write(
    layout: &Layout,
    partner: SocketAddr,
    certificates: &Certificates,
    settings: &FleetSettings<'_>,
) -> anyhow::Result<PathBuf> {
    let vault_token = layout.secrets.join("vault-token");
    std::fs::write(&vault_token, settings.vault_token)?;
    let trigger_token = layout.secrets.join("trigger-token");
    std::fs::write(&trigger_token, settings.trigger_token)?;
    std::fs::write(
        layout.config.join("ferry.yaml"),
        ferry_yaml(settings, &vault_token, &trigger_token),
    )?;
    std::fs::write(
        layout
            .config
            .join("partners")
            .join(format!("{PARTNER}.yaml")),
        partner_yaml(
            partner,
            &certificates.ca_cert,
            &format!("vault:secret/{PASSWORD_PATH}#{PASSWORD_FIELD}"),
        ),
    )?;
    std::fs::write(
        layout.config.join("flows").join("demo.yaml"),
        flows_yaml(layout),
    )?;
    Ok(layout.config.clone())
}

/// `ferry.yaml` of the demo fleet.
fn ferry_yaml(settings: &FleetSettings<'_>, vault_token: &Path, trigger_token: &Path) -> String {
    format!(
        "# Written by `ferry-worker demo --fleet`.\n\
         broker:\n\
         \x20 url: amqp://guest:guest@{RABBITMQ}/%2f\n\
         \x20 exchange_prefix: {exchange_prefix}\n\
         \x20 retry_delays: [2s, 5s]\n\
         redis:\n\
         \x20 url: redis://{REDIS}\n\
         \x20 key_prefix: {prefix}\n\
         \x20 delivery_retention: 1d\n\
         vault:\n\
         \x20 # OpenBao in dev mode, started by the demo; the partner's password is read from it.\n\
         \x20 address: http://{vault}\n\
         \x20 auth:\n\
         \x20   method: token\n\
         \x20   token: {vault_token}\n\
         http_trigger:\n\
         \x20 # Upstream systems ask for a run: POST /v1/flows/FLOW/runs with this bearer token.\n\
         \x20 listen: {trigger}\n\
         \x20 token: {trigger_token}\n\
         scheduler:\n\
         \x20 metrics_listen: {metrics}\n\
         audit:\n\
         \x20 enabled: true\n",
        prefix = settings.key_prefix,
        exchange_prefix = settings.exchange_prefix,
        vault = settings.vault,
        vault_token = quoted(&format!("file:{}", vault_token.display())),
        trigger = settings.trigger,
        trigger_token = quoted(&format!("file:{}", trigger_token.display())),
        metrics = settings.scheduler_metrics,
    )
}
