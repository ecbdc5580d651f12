//! The services a fleet stands on, as the fleet demo finds or starts them:
//! - RabbitMQ and Redis must already listen on their usual loopback ports (the demo says
//!   so and stops if they do not: it never installs or starts a system service);
//! - OpenBao (Vault's API), started here in dev mode on a free port with a root token made
//!   for the run, holds the partner's password as a KV v2 secret that the workers read
//!   through a `vault:` reference. Dev mode keeps everything in memory: the secret is gone
//!   when the demo stops the server.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpStream;

use super::http;
use super::processes::{DemoProcess, find_tool, free_port};

/// RabbitMQ's AMQP port on this machine.
pub const RABBITMQ: &str = "127.0.0.1:5672";
/// Redis's port on this machine.
pub const REDIS: &str = "127.0.0.1:6379";

/// Fails with what to do if RabbitMQ or Redis does not accept connections.
pub async fn require_broker_and_store() -> anyhow::Result<()> {
    for (name, addr) in [("RabbitMQ", RABBITMQ), ("Redis", REDIS)] {
        let connected =
            tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await;
        if !matches!(connected, Ok(Ok(_))) {
            bail!(
                "{name} is not listening on {addr}: the fleet demo needs RabbitMQ (guest/guest) and Redis there (or run the one-process demo: `ferry-worker demo`)"
            );
        }
    }
    Ok(())
}

/// A dev-mode OpenBao server of the demo.
pub struct OpenBao {
    /// Where it listens (plain HTTP on 127.0.0.1).
    pub addr: SocketAddr,
    /// Its root token (made for this run).
    pub token: String,
    process: DemoProcess,
}

impl OpenBao {
    /// Starts `bao server -dev` on a free port, its state and CLI home under `home`, and
    /// waits until it answers.
    pub async fn start(home: &Path, logs: &Path) -> anyhow::Result<OpenBao> {
        let bao = find_tool("bao")?;
        std::fs::create_dir_all(home)?;
        let addr = free_port()?;
        let token = format!("demo-root-{}", uuid::Uuid::new_v4().simple());
        let home = home.display().to_string();
        let mut process = DemoProcess::spawn(
            "openbao",
            &bao,
            &[
                "server",
                "-dev",
                &format!("-dev-listen-address={addr}"),
                "-dev-no-store-token",
            ],
            // The root token in the environment, not on the command line that `ps` shows.
            &[
                ("HOME", home.as_str()),
                ("BAO_DEV_ROOT_TOKEN_ID", token.as_str()),
            ],
            logs,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            process.check_running()?;
            if let Ok(response) = http::get(addr, "/v1/sys/health").await
                && response.status == 200
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "OpenBao did not answer within 30 s; its log: {}",
                    process.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(OpenBao {
            addr,
            token,
            process,
        })
    }

    /// Writes `{field: value}` as the KV v2 secret `secret/<path>` (dev mode mounts KV v2
    /// at `secret/`); a worker reads it as `vault:secret/<path>#<field>`.
    pub async fn put_secret(&self, path: &str, field: &str, value: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "data": { field: value } }).to_string();
        let response = http::post_json(
            self.addr,
            &format!("/v1/secret/data/{path}"),
            &[("X-Vault-Token", &self.token)],
            &body,
        )
        .await
        .context("writing the partner's password into OpenBao")?;
        if response.status != 200 {
            bail!("OpenBao refused the secret: HTTP {}", response.status);
        }
        Ok(())
    }

    /// Stops the server (its in-memory secrets go with it).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.process.stop().await
    }
}
