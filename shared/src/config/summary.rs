//! [`render_summary`]: the one-screen description of a loaded configuration that
//! `ferry-worker validate` and `ferry-scheduler validate` print, so an operator can check
//! what ferry understood (trust modes, schedules and their next fire times) before
//! deploying. It never shows a secret: URLs are redacted, references print as written and
//! literals as `literal:[redacted]`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::settings::redact_url;
use super::yaml::format_duration;
use super::{Config, Direction, Flow};
use crate::secrets::VaultAuth;

/// The summary of `config`, with schedules' next fire times computed from `now`.
pub fn render_summary(config: &Config, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, config, now);
    out
}

fn write_summary(out: &mut String, config: &Config, now: DateTime<Utc>) -> std::fmt::Result {
    let s = &config.settings;
    writeln!(out, "configuration: {}", config.dir.display())?;
    writeln!(
        out,
        "  hardened mode: {}",
        if s.hardened_mode { "on" } else { "off" }
    )?;
    let run_delays: Vec<String> = s
        .broker
        .retry_delays
        .iter()
        .map(|d| format_duration(*d))
        .collect();
    writeln!(
        out,
        "  broker: {} (exchange prefix `{}`, flow-run attempts: {}, delays {})",
        redact_url(&s.broker.url),
        s.broker.exchange_prefix,
        s.broker.max_attempts,
        run_delays.join(", ")
    )?;
    if let Some(path) = s.store.embedded_path() {
        writeln!(
            out,
            "  store: embedded, {} (key prefix `{}`, delivery records kept {}; one node only)",
            path.display(),
            s.redis.key_prefix,
            format_duration(s.redis.delivery_retention)
        )?;
    } else {
        write!(
            out,
            "  redis: {} (key prefix `{}`, delivery records kept {}",
            s.redis.topology.describe(&s.redis.url),
            s.redis.key_prefix,
            format_duration(s.redis.delivery_retention)
        )?;
        if let Some(password) = &s.redis.password {
            write!(out, ", password {password}")?;
        }
        writeln!(out, ")")?;
    }
    match &s.resolver.vault {
        Some(vault) => {
            let auth = match &vault.auth {
                VaultAuth::Token(token) => format!("token {token}"),
                VaultAuth::AppRole { mount, .. } => format!("approle at `{mount}`"),
                VaultAuth::Kubernetes { mount, role, .. } => {
                    format!("kubernetes role `{role}` at `{mount}`")
                }
            };
            writeln!(out, "  vault: {} ({auth})", vault.address)?;
        }
        None => writeln!(out, "  vault: not configured")?,
    }
    if let Some(region) = &s.resolver.aws.region {
        write!(out, "  aws: region {region}")?;
        if let Some(endpoint) = &s.resolver.aws.endpoint_url {
            write!(out, ", endpoint {endpoint}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "  secrets cache: {} (stale grace {}); worker: {} at once, health on {}; per-file attempts: {}, backoff {}..{}",
        format_duration(s.resolver.cache_ttl),
        format_duration(s.resolver.stale_grace),
        s.worker.concurrency,
        s.worker.health_listen,
        s.retry.max_attempts,
        format_duration(s.retry.base_delay),
        format_duration(s.retry.max_delay)
    )?;
    if let Some(endpoint) = &s.telemetry.otlp_endpoint {
        writeln!(out, "  traces: {endpoint}")?;
    }

    writeln!(out, "partners ({}):", config.partners.len())?;
    for partner in config.partners.values() {
        let c = &partner.ftps.connection;
        let tls = &partner.ftps.tls;
        writeln!(
            out,
            "  {}  {}:{}  TLS: {} (max {})  mTLS: {}  login: {}  sessions: {}",
            partner.id,
            c.host,
            c.port,
            tls.trust_mode(),
            tls.max_version,
            if tls.client_identity.is_some() {
                "yes"
            } else {
                "no"
            },
            partner.ftps.auth.username,
            c.max_connections
        )?;
    }

    writeln!(out, "flows ({}):", config.flows.len())?;
    for flow in config.flows.values() {
        write_flow(out, flow, now)?;
    }
    Ok(())
}

fn write_flow(out: &mut String, flow: &Flow, now: DateTime<Utc>) -> std::fmt::Result {
    let remote = format!("{}:{}", flow.remote.partner, flow.remote.path);
    let local = flow.local_path.display().to_string();
    let (from, to) = match flow.direction {
        Direction::Upload => (local, remote),
        Direction::Download => (remote, local),
    };
    let disabled = if flow.enabled { "" } else { " [DISABLED]" };
    writeln!(
        out,
        "  {}{disabled}  {}  {from} -> {to}",
        flow.id, flow.direction
    )?;
    let patterns: Vec<String> = flow
        .files
        .iter()
        .map(|f| {
            if f.exclude.is_empty() {
                f.pattern.clone()
            } else {
                format!("{} (not {})", f.pattern, f.exclude.join(", "))
            }
        })
        .collect();
    writeln!(
        out,
        "      files: {}  idempotency: {}  delete after: {}  attempts: {}",
        patterns.join(", "),
        flow.idempotency_mode,
        if flow.delete_after_transfer {
            "yes"
        } else {
            "no"
        },
        flow.max_attempts
    )?;
    match &flow.after_transfer {
        super::AfterTransfer::Archive(archive) => writeln!(
            out,
            "      after upload: archive to {}{}",
            archive.path.display(),
            if archive.date_folders {
                "/YYYY/MM/DD"
            } else {
                ""
            }
        )?,
        super::AfterTransfer::Move { path } => {
            writeln!(out, "      after download: move to {path} on the partner")?;
        }
        super::AfterTransfer::Keep | super::AfterTransfer::Delete => {}
    }
    match &flow.on_failure {
        super::OnFailure::Move(super::ErrorFolder::Local(path)) => {
            writeln!(out, "      on failure: move to {}", path.display())?;
        }
        super::OnFailure::Move(super::ErrorFolder::Remote(path)) => {
            writeln!(out, "      on failure: move to {path} on the partner")?;
        }
        super::OnFailure::Keep => {}
    }
    if flow.trigger.on_arrival {
        writeln!(
            out,
            "      on arrival: runs when files arrive in the local folder (settle {}, rescan every {})",
            format_duration(flow.trigger.settle),
            format_duration(flow.trigger.rescan_every)
        )?;
    }
    for (index, hook) in flow.notify.webhooks.iter().enumerate() {
        // The reference, never a literal URL (it may hold a token).
        let events: Vec<&str> = hook.on.iter().map(|e| e.as_str()).collect();
        writeln!(
            out,
            "      notify: webhook {index} ({}) on {}",
            hook.url,
            events.join(", ")
        )?;
    }
    match &flow.schedule {
        None => writeln!(out, "      schedule: manual/event only"),
        Some(schedule) => {
            let next = match schedule.next_after(now) {
                Some(next) if flow.enabled && schedule.timezone == chrono_tz::UTC => {
                    format!("next {}", next.format("%Y-%m-%d %H:%M:%S UTC"))
                }
                Some(next) if flow.enabled => format!(
                    "next {} ({} {})",
                    next.format("%Y-%m-%d %H:%M:%S UTC"),
                    next.with_timezone(&schedule.timezone)
                        .format("%Y-%m-%d %H:%M:%S %Z"),
                    schedule.timezone
                ),
                Some(_) => "not scheduled while disabled".to_string(),
                None => "never fires".to_string(),
            };
            writeln!(
                out,
                "      schedule: \"{}\" {}: {next}",
                schedule.cron_text, schedule.timezone
            )
        }
    }
}
