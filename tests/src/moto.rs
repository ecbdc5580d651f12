//! moto's server as AWS Secrets Manager for the secret tests: one process on a free
//! loopback port, plus a helper that creates secrets through the real AWS SDK.
//!
//! moto accepts any credentials but routes a request by its SigV4 credential scope, so
//! every request must be signed (an unsigned one lands in moto's S3): the helper signs with
//! [`ACCESS_KEY_ID`]/[`SECRET_ACCESS_KEY`] in [`REGION`], and a resolver under test must
//! find credentials too (the tests put them in the environment for the default chain).

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;
use crate::tools::find_tool;

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// A dummy access key id (moto checks nothing).
pub const ACCESS_KEY_ID: &str = "AKIAFERRYTESTBED0000";
/// A dummy secret access key.
pub const SECRET_ACCESS_KEY: &str = "ferry-testbed-dummy-secret-access-key";

/// A running moto server, killed on drop.
pub struct Moto {
    /// `http://127.0.0.1:PORT`: the endpoint URL to give the SDK.
    pub endpoint: String,
    client: Client,
    server: ServerProcess,
    _dir: TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port of 127.0.0.1 and waits until it listens.
    pub async fn start() -> anyhow::Result<Moto> {
        let moto_server = find_tool("moto_server", &["venv/bin"])?;
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let mut command = Command::new(moto_server);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", dir.path());
        let log = dir.path().join("moto.log");
        let server = tokio::task::spawn_blocking(move || {
            ServerProcess::spawn("moto", command, &log, port, Duration::from_secs(60))
        })
        .await??;
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "ferry-testbed",
            ))
            .endpoint_url(&endpoint)
            .build();
        Ok(Moto {
            endpoint,
            client: Client::from_conf(config),
            server,
            _dir: dir,
        })
    }

    /// Creates secret `name` holding the string `value`.
    pub async fn create_secret(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("creating secret {name} in moto"))?;
        Ok(())
    }

    /// Creates secret `name` holding only binary data (no secret string).
    pub async fn create_binary_secret(&self, name: &str, value: &[u8]) -> anyhow::Result<()> {
        self.client
            .create_secret()
            .name(name)
            .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(value))
            .send()
            .await
            .with_context(|| format!("creating binary secret {name} in moto"))?;
        Ok(())
    }

    /// Puts a new current version of secret `name`.
    pub async fn put_secret(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .with_context(|| format!("updating secret {name} in moto"))?;
        Ok(())
    }

    /// The server's log so far (one line per request).
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// How many API requests (every Secrets Manager call is a `POST /`) the server has
    /// logged so far: the server-side count for single-flight tests.
    pub async fn request_count(&self) -> usize {
        // The log line is written as the response goes out: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.log_text().matches("\"POST / HTTP/1.1\"").count()
    }
}
