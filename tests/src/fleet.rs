//! A ferry fleet for end-to-end tests: the real `ferry-worker` and `ferry-scheduler` binaries
//! as child processes, a real FTPS partner (vsftpd from the test bed), the real Redis and a
//! RabbitMQ of the test's own (a virtual host on the machine's broker, or a private node).
//!
//! [`Fleet::start`] writes a configuration directory (`ferry.yaml`, one partner, one upload
//! flow `f` from `local/` to the partner's `/in`) with a unique exchange prefix and Redis key
//! prefix. Every process it spawns logs JSON lines (`--log-format json`) to a file the test
//! reads back through [`FleetProcess::lines`]. Dropping the fleet kills what is still running,
//! deletes the Redis keys and the virtual host (with its queues and exchanges).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use ferry_shared::broker::{AmqpUrl, Broker, ConsumerOptions, Headers, PublisherOptions};
use ferry_shared::config::Config;
use ferry_shared::idempotency::{Store, StoreConfig};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// A fleet test imports the fleet, its processes and their log lines from here.
pub use crate::fleet_process::{FleetProcess, http_status, spawn_binary, spawn_binary_with_env};
pub use crate::log_lines::{
    RunSummary, debug_duration_ms, field, is_event, msg, parse_rfc3339_micros, parse_summary,
    published, rnto_counts, run_summaries, settlements, span_field, target, timestamp_micros,
    trace_id,
};

use crate::ftp::{FtpServer, FtpServerKind, FtpServerOptions};
use crate::ports::free_port;
use crate::rabbitmq::Vhost;
use crate::tools::workspace_binary;

/// The Redis the tests use (`FERRY_TEST_REDIS_URL`, default the machine's).
pub fn redis_url() -> String {
    std::env::var("FERRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// How to set a fleet up; [`FleetOptions::default`] is a quiet fleet on its own vhost.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// `schedule_cron` of flow `f` (`None`: triggered runs only).
    pub schedule_cron: Option<String>,
    /// `broker.retry_delays`, as YAML durations.
    pub retry_delays: Vec<String>,
    /// `broker.max_attempts`.
    pub max_attempts: u32,
    /// `worker.claim_lease`.
    pub claim_lease: String,
    /// `worker.concurrency`.
    pub concurrency: u16,
    /// `retry.max_attempts` (per file, inside one run).
    pub file_attempts: u32,
    /// The partner's port: the FTPS server's when `None` (set it to a dead port to make the
    /// partner unreachable).
    pub partner_port: Option<u16>,
    /// The broker URL; a fresh vhost of the machine's broker when `None`.
    pub broker_url: Option<String>,
    /// The partner's password as configured: the server's when `None` (set another to make
    /// the login fail).
    pub partner_password: Option<String>,
    /// The partner's FTPS server: vsftpd with a valid certificate when `None`.
    pub server: Option<FtpServerOptions>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            schedule_cron: None,
            retry_delays: vec!["1s".into(), "2s".into()],
            max_attempts: 3,
            claim_lease: "3s".into(),
            concurrency: 4,
            file_attempts: 2,
            partner_port: None,
            broker_url: None,
            partner_password: None,
            server: None,
        }
    }
}

/// One test's fleet: partner server, configuration directory, broker and Redis namespaces.
pub struct Fleet {
    /// The partner's FTPS server.
    pub server: FtpServer,
    /// The broker's `exchange_prefix` (unique).
    pub exchange_prefix: String,
    /// The Redis `key_prefix` (unique).
    pub key_prefix: String,
    /// The broker URL in `ferry.yaml`.
    pub broker_url: String,
    dir: TempDir,
    vhost: Option<Vhost>,
    bin_dir: Option<PathBuf>,
}

impl Fleet {
    /// Starts vsftpd, writes the configuration and checks that it loads.
    pub async fn start(test: &str, options: FleetOptions) -> anyhow::Result<Fleet> {
        let server_options = options
            .server
            .clone()
            .unwrap_or_else(|| FtpServerOptions::new(FtpServerKind::Vsftpd));
        let server = FtpServer::start(server_options).await?;
        server.create_dir("in")?;
        let (vhost, broker_url) = match &options.broker_url {
            Some(url) => (None, url.clone()),
            None => {
                let test = test.to_owned();
                let vhost = tokio::task::spawn_blocking(move || Vhost::create(&test)).await??;
                let url = vhost.url();
                (Some(vhost), url)
            }
        };
        let random = rand::random::<u64>();
        let fleet = Fleet {
            server,
            exchange_prefix: format!("ferry-test-{random:016x}"),
            key_prefix: format!("ferry-test-fleet-{test}-{random:016x}"),
            broker_url,
            dir: tempfile::Builder::new().prefix("ferry-fleet-").tempdir()?,
            vhost,
            bin_dir: None,
        };
        fleet.write_config(&options)?;
        fleet.config()?;
        Ok(fleet)
    }

    fn write_config(&self, options: &FleetOptions) -> anyhow::Result<()> {
        let dir = self.dir.path();
        for sub in ["partners", "flows", "local", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("ca.pem"), &self.server.pki.ca_cert_pem)?;
        let settings = format!(
            "broker:\n  url: \"{}\"\n  exchange_prefix: \"{}\"\n  retry_delays: [{}]\n  \
             max_attempts: {}\n\
             redis:\n  url: \"{}\"\n  key_prefix: \"{}\"\n  delivery_retention: 1h\n\
             worker:\n  concurrency: {}\n  shutdown_grace: 10s\n  claim_lease: {}\n\
             retry:\n  max_attempts: {}\n  base_delay: 50ms\n  max_delay: 200ms\n",
            self.broker_url,
            self.exchange_prefix,
            options.retry_delays.join(", "),
            options.max_attempts,
            redis_url(),
            self.key_prefix,
            options.concurrency,
            options.claim_lease,
            options.file_attempts,
        );
        std::fs::write(dir.join("ferry.yaml"), settings)?;
        let partner = partner_yaml(
            &self.server,
            options.partner_port.unwrap_or(self.server.port),
            options
                .partner_password
                .as_deref()
                .unwrap_or(&self.server.password),
            &dir.join("ca.pem"),
        );
        std::fs::write(dir.join("partners/partner.yaml"), partner)?;
        let schedule = options
            .schedule_cron
            .as_ref()
            .map(|cron| format!("    schedule_cron: \"{cron}\"\n"))
            .unwrap_or_default();
        let flow = format!(
            "flows:\n  f:\n    direction: upload\n    target:\n      partner: partner\n      \
             path: /in\n    local:\n      path: ./local\n    files:\n      - pattern: \"*.xml\"\n    \
             min_file_age: 0s\n{schedule}"
        );
        std::fs::write(dir.join("flows/f.yaml"), flow)?;
        Ok(())
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The flow's local folder (what it uploads).
    pub fn local(&self) -> PathBuf {
        self.dir.path().join("local")
    }

    /// The configuration as the binaries load it.
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::load(self.dir.path()).map_err(|e| anyhow::anyhow!("config: {e}"))
    }

    /// A broker handle on the fleet's topology (declared as the binaries declare it).
    pub async fn broker(&self) -> anyhow::Result<Broker> {
        let config = self.config()?;
        let url = AmqpUrl::parse(&self.broker_url)?;
        Ok(Broker::connect(&url, &ferry_shared::startup::topology(&config)).await?)
    }

    /// Publishes (with confirms) a manual run of flow `f` of all its files, as
    /// `ferry-scheduler trigger --flow f` would; the message, for its flow-run id.
    pub async fn publish_manual_run(&self) -> anyhow::Result<FlowRunMessage> {
        let message = FlowRunMessage::new("f", Trigger::Manual, None);
        let broker = self.broker().await?;
        broker
            .publisher(PublisherOptions::default())
            .publish(&message, &Headers::new())
            .await?;
        let _ = broker.close().await;
        Ok(message)
    }

    /// Takes (and acks) every message in the fleet's work queue, as a worker would, until
    /// none comes for 5 s; checks that the queue is then empty.
    pub async fn drain_work_queue(&self) -> Vec<FlowRunMessage> {
        self.drain_work_queue_with_headers()
            .await
            .into_iter()
            .map(|(message, _)| message)
            .collect()
    }

    /// [`Fleet::drain_work_queue`], with each message's headers (trace context...).
    pub async fn drain_work_queue_with_headers(&self) -> Vec<(FlowRunMessage, Headers)> {
        let broker = self.broker().await.expect("broker");
        let mut consumer = broker.consumer(ConsumerOptions {
            prefetch: 50,
            ..ConsumerOptions::default()
        });
        let mut messages = Vec::new();
        while let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(5), consumer.next()).await
        {
            let message = delivery
                .message()
                .expect("a valid flow-run message")
                .clone();
            let headers = delivery.headers().clone();
            delivery.ack().await.expect("ack");
            messages.push((message, headers));
        }
        consumer.shutdown().await;
        assert_eq!(broker.work_queue_depth().await.expect("depth"), 0);
        let _ = broker.close().await;
        messages
    }

    /// The idempotency store under the fleet's key prefix.
    pub async fn store(&self) -> anyhow::Result<Store> {
        let mut config = StoreConfig::new(redis_url());
        config.key_prefix = self.key_prefix.clone();
        Ok(Store::connect(&config).await?)
    }

    /// Writes `local/<name>` atomically (a hidden name first, then a rename, so a run never
    /// picks up half a file); returns its SHA-256 (hex).
    pub fn write_local(&self, name: &str, contents: &[u8]) -> anyhow::Result<String> {
        let hidden = self.local().join(format!(".{name}.writing"));
        std::fs::write(&hidden, contents)?;
        std::fs::rename(&hidden, self.local().join(name))?;
        Ok(sha256_hex(contents))
    }

    /// Name -> SHA-256 of the partner's visible files in `/in` (temporary uploads are hidden).
    pub fn remote_files(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        for (name, path) in self.remote_entries() {
            if !name.starts_with('.')
                && let Ok(bytes) = std::fs::read(&path)
            {
                files.insert(name, sha256_hex(&bytes));
            }
        }
        files
    }

    /// Names of the partner's visible files in `/in` (without reading them).
    pub fn remote_names(&self) -> Vec<String> {
        self.remote_entries()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// Hidden (temporary) files in the partner's `/in`, with their sizes.
    pub fn remote_temporaries(&self) -> Vec<(String, u64)> {
        self.remote_entries()
            .into_iter()
            .filter(|(name, _)| name.starts_with('.'))
            .map(|(name, path)| {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                (name, size)
            })
            .collect()
    }

    fn remote_entries(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.server.path("in")) else {
            return Vec::new();
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        names.sort();
        names
    }

    /// How many times the partner accepted a rename onto each final name in `/in`, read from
    /// vsftpd's protocol log (`RNTO` answered `250`): a file that arrived twice shows 2.
    pub fn renames_onto(&self) -> BTreeMap<String, usize> {
        rnto_counts(&self.server.log_text())
    }

    /// Spawns `ferry-worker consume` with its own health port.
    pub fn spawn_worker(&self, name: &str) -> anyhow::Result<FleetProcess> {
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut process = self.spawn(
            name,
            "ferry-worker",
            &["--health-listen", &health.to_string(), "consume"],
        )?;
        process.health = Some(health);
        Ok(process)
    }

    /// Spawns `ferry-worker probe --partner partner` (it exits by itself).
    pub fn spawn_probe(&self, name: &str) -> anyhow::Result<FleetProcess> {
        self.spawn(name, "ferry-worker", &["probe", "--partner", "partner"])
    }

    /// Makes every process spawned from now on push its metrics (and spans) over OTLP/HTTP
    /// to `collector` (`telemetry.otlp_endpoint` in `ferry.yaml`).
    pub fn push_telemetry_to(&self, collector: SocketAddr) -> anyhow::Result<()> {
        self.append_settings(&format!(
            "telemetry:\n  otlp_endpoint: \"http://{collector}\"\n"
        ))
    }

    /// Appends `yaml` (top-level sections absent so far) to `ferry.yaml`.
    pub fn append_settings(&self, yaml: &str) -> anyhow::Result<()> {
        let settings = self.config_dir().join("ferry.yaml");
        let mut text = std::fs::read_to_string(&settings)?;
        text.push_str(yaml);
        std::fs::write(&settings, text)?;
        Ok(())
    }

    /// Sets the partner's `auth.password` to the secret reference `reference`.
    pub fn set_partner_password(&self, reference: &str) -> anyhow::Result<()> {
        let partner = self.config_dir().join("partners/partner.yaml");
        let yaml = std::fs::read_to_string(&partner)?;
        let start = yaml.find("password: ").context("a password line")?;
        let end = start + yaml[start..].find('\n').context("a line end")?;
        let yaml = format!(
            "{}password: \"{reference}\"{}",
            &yaml[..start],
            &yaml[end..]
        );
        std::fs::write(&partner, yaml)?;
        Ok(())
    }

    /// Spawns `ferry-worker consume` and waits (up to `timeout`) until it consumes.
    pub async fn spawn_consuming_worker(
        &self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<FleetProcess> {
        let mut worker = self.spawn_worker(name)?;
        worker.wait_for_event(LogEvent::Consuming, timeout).await?;
        Ok(worker)
    }

    /// Spawns `ferry-scheduler` (the tick loop) with its own metrics port.
    pub fn spawn_scheduler(&self, name: &str) -> anyhow::Result<FleetProcess> {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut process = self.spawn(
            name,
            "ferry-scheduler",
            &["--metrics-listen", &metrics.to_string()],
        )?;
        process.health = Some(metrics);
        Ok(process)
    }

    /// Spawns the binaries found in `dir` (a release build, for benchmarks) instead of those
    /// next to the test executable.
    pub fn use_binaries_in(&mut self, dir: impl Into<PathBuf>) {
        self.bin_dir = Some(dir.into());
    }

    /// The path of one of ferry's binaries (`ferry-worker`, `ferry-scheduler`).
    pub fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        match &self.bin_dir {
            Some(dir) => Ok(dir.join(name)),
            None => workspace_binary(name),
        }
    }

    /// Spawns `binary --config DIR ARGS...` with `env` added and no `--log-format` (the
    /// binary picks its default: JSON, since its output is a file); for the `scheduler` and
    /// `worker` commands, give their listen option in `args` as [`Fleet::spawn_worker`] does.
    pub fn spawn_with_env(
        &self,
        name: &str,
        binary: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<FleetProcess> {
        spawn_binary_with_env(
            &self.binary(binary)?,
            self.config_dir(),
            &self.config_dir().join("logs"),
            name,
            args,
            env,
        )
    }

    fn spawn(&self, name: &str, binary: &str, extra: &[&str]) -> anyhow::Result<FleetProcess> {
        spawn_binary(
            &self.binary(binary)?,
            self.config_dir(),
            &self.config_dir().join("logs"),
            name,
            extra,
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        delete_redis_keys(&self.key_prefix);
        // The vhost (queues, exchanges) goes with its own drop.
        let _ = self.vhost.take();
    }
}

/// `partners/partner.yaml` for `server` on `port`, logging in with `password` and trusting
/// the CA certificate in `ca`.
pub fn partner_yaml(server: &FtpServer, port: u16, password: &str, ca: &Path) -> String {
    format!(
        "id: partner\nprotocol: ftps\nftps:\n  connection:\n    host: {}\n    port: {}\n    \
         passive: true\n    max_connections: 4\n  auth:\n    username: {}\n    \
         password: \"literal:{}\"\n  tls:\n    ca_cert: file:{}\n",
        server.host,
        port,
        server.username,
        password,
        ca.display()
    )
}

/// Deletes every Redis key that starts with `prefix`.
pub fn delete_redis_keys(prefix: &str) {
    let pattern = format!("{prefix}*");
    let keys = Command::new("redis-cli")
        .args(["-u", &redis_url(), "--scan", "--pattern", &pattern])
        .output();
    if let Ok(out) = keys {
        let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for chunk in keys.chunks(500) {
            let mut args = vec!["-u".to_owned(), redis_url(), "DEL".to_owned()];
            args.extend(chunk.iter().cloned());
            let _ = Command::new("redis-cli").args(&args).output();
        }
    }
}

/// SHA-256 (hex).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` pseudo-random bytes (fast xorshift; distinct for each seed).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
