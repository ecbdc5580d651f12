//! A standalone ferry node for end-to-end tests: the real `ferry-worker standalone` as a
//! child process over the embedded store (a SQLite file in the configuration directory),
//! a real FTPS partner (vsftpd from the test bed), and nothing else: the broker URL in
//! `ferry.yaml` points at a closed port and there is no Redis section, so a node that
//! touched either would fail.
//!
//! [`Node::start`] writes `ferry.yaml`, one partner and one upload flow per [`NodeFlow`]
//! (from `local/<flow>/` to the partner's `/<flow>`), with the HTTP trigger on a loopback
//! port of its own. Processes log JSON lines to `logs/<name>.log` ([`FleetProcess::lines`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::fleet::{FleetProcess, partner_yaml, rnto_counts, sha256_hex, spawn_binary_with_env};
use crate::ftp::{FtpServer, FtpServerKind, FtpServerOptions};
use crate::http_client::{HttpAnswer, request};
use crate::ports::free_port;
use crate::tools::workspace_binary;

/// One upload flow of the node.
#[derive(Debug, Clone)]
pub struct NodeFlow {
    /// Its id; it uploads `local/<id>/*.xml` to the partner's `/<id>`.
    pub id: String,
    /// Its `schedule_cron` (six fields, seconds first); `None`: triggered runs only.
    pub cron: Option<String>,
    /// `trigger.on_arrival: true` (with a short `settle`): run when files arrive.
    pub on_arrival: bool,
    /// More flow fields, as YAML lines indented by four spaces (such as `notify:`).
    pub extra: String,
}

impl NodeFlow {
    /// A flow run only when triggered.
    pub fn triggered(id: &str) -> Self {
        NodeFlow {
            id: id.to_owned(),
            cron: None,
            on_arrival: false,
            extra: String::new(),
        }
    }

    /// A flow run when files arrive in its folder (`trigger.on_arrival`).
    pub fn on_arrival(id: &str) -> Self {
        NodeFlow {
            on_arrival: true,
            ..Self::triggered(id)
        }
    }

    /// A flow on `cron`.
    pub fn scheduled(id: &str, cron: &str) -> Self {
        NodeFlow {
            cron: Some(cron.to_owned()),
            ..Self::triggered(id)
        }
    }
}

/// How to set a node up.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Its flows.
    pub flows: Vec<NodeFlow>,
    /// `broker.retry_delays`, as YAML durations (the run queue's delays).
    pub retry_delays: Vec<String>,
    /// `broker.max_attempts`.
    pub max_attempts: u32,
    /// `worker.concurrency`.
    pub concurrency: u16,
    /// The partner's port: the FTPS server's when `None` (a closed port makes the partner
    /// unreachable).
    pub partner_port: Option<u16>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            flows: vec![NodeFlow::triggered("f")],
            retry_delays: vec!["1s".into(), "2s".into()],
            max_attempts: 3,
            concurrency: 4,
            partner_port: None,
        }
    }
}

/// One test's node: partner server, configuration directory, trigger address.
pub struct Node {
    /// The partner's FTPS server.
    pub server: FtpServer,
    /// Where the HTTP trigger listens.
    pub trigger: SocketAddr,
    dir: TempDir,
}

impl Node {
    /// Starts vsftpd, writes the configuration and checks that it loads.
    pub async fn start(options: NodeOptions) -> anyhow::Result<Node> {
        let server = FtpServer::start(FtpServerOptions::new(FtpServerKind::Vsftpd)).await?;
        for flow in &options.flows {
            server.create_dir(&flow.id)?;
        }
        let node = Node {
            server,
            trigger: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: tempfile::Builder::new().prefix("ferry-node-").tempdir()?,
        };
        node.write_config(&options)?;
        ferry_shared::config::Config::load(node.config_dir())
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        Ok(node)
    }

    fn write_config(&self, options: &NodeOptions) -> anyhow::Result<()> {
        let dir = self.dir.path();
        for sub in ["partners", "flows", "local", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("ca.pem"), &self.server.pki.ca_cert_pem)?;
        let settings = format!(
            "store:\n  kind: embedded\n  path: state.db\n\
             broker:\n  url: \"amqp://guest:guest@127.0.0.1:1/%2f\"\n  retry_delays: [{}]\n  \
             max_attempts: {}\n\
             worker:\n  concurrency: {}\n  shutdown_grace: 10s\n  claim_lease: 3s\n\
             retry:\n  max_attempts: 2\n  base_delay: 50ms\n  max_delay: 200ms\n\
             http_trigger:\n  listen: {}\n",
            options.retry_delays.join(", "),
            options.max_attempts,
            options.concurrency,
            self.trigger,
        );
        std::fs::write(dir.join("ferry.yaml"), settings)?;
        self.write_partner(options.partner_port.unwrap_or(self.server.port))?;
        for flow in &options.flows {
            std::fs::create_dir_all(self.local(&flow.id))?;
            let schedule = flow
                .cron
                .as_ref()
                .map(|cron| format!("    schedule_cron: \"{cron}\"\n"))
                .unwrap_or_default();
            let trigger = if flow.on_arrival {
                "    trigger:\n      on_arrival: true\n      settle: 200ms\n"
            } else {
                ""
            };
            let yaml = format!(
                "flows:\n  {id}:\n    direction: upload\n    target:\n      partner: partner\n      \
                 path: /{id}\n    local:\n      path: ./local/{id}\n    files:\n      - pattern: \
                 \"*.xml\"\n    min_file_age: 0s\n{schedule}{trigger}{extra}",
                id = flow.id,
                extra = flow.extra,
            );
            std::fs::write(dir.join(format!("flows/{}.yaml", flow.id)), yaml)?;
        }
        Ok(())
    }

    /// Writes the partner with `port` as its port (the server's, or a closed one).
    pub fn write_partner(&self, port: u16) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let partner = partner_yaml(
            &self.server,
            port,
            &self.server.password,
            &dir.join("ca.pem"),
        );
        std::fs::write(dir.join("partners/partner.yaml"), partner)?;
        Ok(())
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The embedded store's file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// A flow's local folder (what it uploads).
    pub fn local(&self, flow: &str) -> PathBuf {
        self.dir.path().join("local").join(flow)
    }

    /// Writes `local/<flow>/<name>` atomically (a hidden name, then a rename); returns its
    /// SHA-256 (hex).
    pub fn write_local(&self, flow: &str, name: &str, contents: &[u8]) -> anyhow::Result<String> {
        let hidden = self.local(flow).join(format!(".{name}.writing"));
        std::fs::write(&hidden, contents)?;
        std::fs::rename(&hidden, self.local(flow).join(name))?;
        Ok(sha256_hex(contents))
    }

    /// Name -> SHA-256 of the partner's visible files in `/<flow>`.
    pub fn remote_files(&self, flow: &str) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.server.path(flow)) else {
            return files;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.')
                && entry.file_type().is_ok_and(|t| t.is_file())
                && let Ok(bytes) = std::fs::read(entry.path())
            {
                files.insert(name, sha256_hex(&bytes));
            }
        }
        files
    }

    /// How many times the partner accepted a rename onto each final path (vsftpd's log):
    /// a file that arrived twice shows 2.
    pub fn renames_onto(&self) -> BTreeMap<String, usize> {
        rnto_counts(&self.server.log_text())
    }

    /// Spawns `ferry-worker standalone` with its own health port and `env` added.
    pub fn spawn(&self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<FleetProcess> {
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut process = spawn_binary_with_env(
            &workspace_binary("ferry-worker")?,
            self.config_dir(),
            &self.config_dir().join("logs"),
            name,
            &[
                "--log-format",
                "json",
                "--health-listen",
                &health.to_string(),
                "standalone",
            ],
            env,
        )?;
        process.health = Some(health);
        Ok(process)
    }

    /// Waits (up to `timeout`) until the node's HTTP trigger answers.
    pub async fn wait_for_trigger(
        &self,
        node: &mut FleetProcess,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while request(self.trigger, "GET", "/v1/flows/f/runs", &[], b"").is_err() {
            anyhow::ensure!(
                node.is_running(),
                "{} exited before its trigger listened:\n{}",
                node.name,
                node.tail(30)
            );
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no trigger within {timeout:?}:\n{}",
                node.tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// `POST /v1/flows/<flow>/runs` on the node's trigger.
    pub fn trigger_run(&self, flow: &str) -> anyhow::Result<HttpAnswer> {
        request(
            self.trigger,
            "POST",
            &format!("/v1/flows/{flow}/runs"),
            &[],
            b"",
        )
    }

    /// Runs `ferry-worker --config DIR ARGS...` to its end: exit code and standard output.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
        let out = tokio::process::Command::new(workspace_binary("ferry-worker")?)
            .arg("--config")
            .arg(self.config_dir())
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("FERRY_CRASH_AT")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running ferry-worker")?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// `ferry-worker dead-letters`: the node's dead letters (a JSON array).
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let (code, stdout) = self.command(&["dead-letters"]).await?;
        anyhow::ensure!(code == Some(0), "dead-letters exited {code:?}: {stdout}");
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))
    }
}
