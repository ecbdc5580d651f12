//! The audit trail from outside: `ferry-worker audit ...` as a child process, and the
//! trail's Redis stream read and rewritten directly, as someone tampering with it would.
//!
//! A stream entry cannot be edited in place, so [`Trail::rewrite`] deletes the stream and adds
//! every entry again under its own id (ids stay in order), with whatever the test changed.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use redis::Commands;

/// An `XRANGE` entry as Redis sends it.
type RawEntry = (String, Vec<(String, Vec<u8>)>);

/// One entry of a trail's stream: its id and its fields in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream id.
    pub id: String,
    /// `(name, value)` pairs: `record`, `hash`, and `hmac` when keyed.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets a field's value.
    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value;
        }
    }

    /// The record, parsed.
    pub fn record(&self) -> serde_json::Value {
        serde_json::from_slice(self.get("record").unwrap_or_default()).unwrap_or_default()
    }
}

/// Flow `flow`'s trail under `prefix` in the Redis at `url`.
pub struct Trail {
    conn: redis::Connection,
    stream: String,
    head: String,
}

impl Trail {
    /// Opens it.
    pub fn open(url: &str, prefix: &str, flow: &str) -> anyhow::Result<Trail> {
        let conn = redis::Client::open(url)?.get_connection()?;
        Ok(Trail {
            conn,
            stream: format!("{prefix}:{{flow:{flow}}}:audit"),
            head: format!("{prefix}:{{flow:{flow}}}:audit-head"),
        })
    }

    /// Every entry, in stream order.
    pub fn entries(&mut self) -> anyhow::Result<Vec<Entry>> {
        let raw: Vec<RawEntry> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .query(&mut self.conn)?;
        Ok(raw
            .into_iter()
            .map(|(id, fields)| Entry { id, fields })
            .collect())
    }

    /// Replaces the stream with `entries` (each under its own id, which must be in order).
    pub fn rewrite(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        let _: () = self.conn.del(&self.stream)?;
        for entry in entries {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&self.stream).arg(&entry.id);
            for (name, value) in &entry.fields {
                cmd.arg(name).arg(value.as_slice());
            }
            let _: String = cmd.query(&mut self.conn).context("XADD")?;
        }
        Ok(())
    }

    /// `XDEL` of one entry.
    pub fn delete(&mut self, id: &str) -> anyhow::Result<()> {
        let _: i64 = redis::cmd("XDEL")
            .arg(&self.stream)
            .arg(id)
            .query(&mut self.conn)?;
        Ok(())
    }

    /// Sets the head (`<seq> <hash>`), as a forger who rebuilt the chain would.
    pub fn set_head(&mut self, head: &str) -> anyhow::Result<()> {
        let _: () = self.conn.set(&self.head, head)?;
        Ok(())
    }
}

/// What `ferry-worker audit ...` did.
#[derive(Debug)]
pub struct AuditCommand {
    /// Its exit code.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `ferry-worker --config DIR audit ARGS...` with `env`, and collects what it did.
pub async fn audit_command(
    config_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<AuditCommand> {
    let binary = crate::tools::workspace_binary("ferry-worker")?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--config")
        .arg(config_dir)
        .arg("audit")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().await?;
    Ok(AuditCommand {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
