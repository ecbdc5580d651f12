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
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::broker::{AmqpUrl, Broker, ConsumerOptions, Headers, PublisherOptions};
use ferry_shared::config::Config;
use ferry_shared::idempotency::{Store, StoreConfig};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

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

/// Spawns `binary --config DIR --log-format json EXTRA...` with stdout and stderr in
/// `logs/<name>.log`, without the environment variables that would change its logging.
pub fn spawn_binary(
    binary: &Path,
    config_dir: &Path,
    logs: &Path,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<FleetProcess> {
    let args: Vec<&str> = ["--log-format", "json"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    spawn_binary_with_env(binary, config_dir, logs, name, &args, &[])
}

/// Spawns `binary --config DIR ARGS...` like [`spawn_binary`], with `env` added (after the
/// logging variables are removed) and no log format forced.
pub fn spawn_binary_with_env(
    binary: &Path,
    config_dir: &Path,
    logs: &Path,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<FleetProcess> {
    std::fs::create_dir_all(logs)?;
    let log = logs.join(format!("{name}.log"));
    let out = std::fs::File::create(&log)?;
    let err = out.try_clone()?;
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config_dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("FERRY_LOG_FORMAT")
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_BROKER_URL")
        .env_remove("FERRY_REDIS_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // Other builds in the shared target directory may be replacing the binary right now
    // (missing for an instant, or "text file busy"): try again briefly.
    let mut tries = 0;
    let child = loop {
        match command.spawn() {
            Ok(child) => break child,
            Err(error)
                if tries < 20
                    && (error.kind() == std::io::ErrorKind::NotFound
                        || error.raw_os_error() == Some(26)) =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("starting {}", binary.display()));
            }
        }
    };
    Ok(FleetProcess {
        name: name.to_owned(),
        child,
        log,
        health: None,
        exit: None,
    })
}

/// A ferry binary run by a test; killed (SIGKILL) when dropped if still running.
pub struct FleetProcess {
    /// The test's name for it (`worker-a`, `scheduler-1`).
    pub name: String,
    child: Child,
    log: PathBuf,
    /// The HTTP address: a worker's health and metrics endpoints, a scheduler's metrics.
    pub health: Option<SocketAddr>,
    exit: Option<ExitStatus>,
}

impl FleetProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its JSON log lines so far (lines that are not JSON are skipped).
    pub fn lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The last `n` lines of its output, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Polls its log until `done` holds for its lines; fails after `timeout` or if the process
    /// exits, with the end of its log.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.lines()) {
                return Ok(());
            }
            if !self.is_running() {
                bail!(
                    "{} exited ({:?}) before {what}; log:\n{}",
                    self.name,
                    self.exit,
                    self.tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: no {what} within {timeout:?}; log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a log line that marks `event`.
    pub async fn wait_for_event(
        &mut self,
        event: LogEvent,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_for(&format!("event {event}"), timeout, |lines| {
            lines.iter().any(|l| is_event(l, event))
        })
        .await
    }

    /// SIGKILL, like a crash or an OOM kill; waits until it is gone.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        self.child.kill()?;
        let status = self.child.wait()?;
        self.exit = Some(status);
        Ok(status)
    }

    /// SIGTERM, what Kubernetes sends to stop a pod.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).context("process id 0")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        Ok(())
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.exit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGTERM, then waits up to `timeout` for the exit; fails unless it exits with 0.
    pub async fn stop(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.terminate()?;
        match self.wait_exit(timeout).await {
            Some(status) if status.success() => Ok(()),
            Some(status) => bail!(
                "{} exited with {status} after SIGTERM; log:\n{}",
                self.name,
                self.tail(30)
            ),
            None => bail!(
                "{} still running {timeout:?} after SIGTERM; log:\n{}",
                self.name,
                self.tail(30)
            ),
        }
    }

    /// `GET path` on its health address: the HTTP status code.
    pub fn http_get(&self, path: &str) -> anyhow::Result<u16> {
        let addr = self.health.context("this process has no health address")?;
        http_status(addr, path)
    }
}

impl Drop for FleetProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A bare HTTP/1.1 GET: the status code of the answer.
pub fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    crate::prometheus::http_get(addr, path).map(|answer| answer.status)
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

// ---------------------------------------------------------------------------------------
// Reading the JSON log lines.

/// The line's message (`fields.message`), or "".
pub fn msg(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// Whether a log line marks `event` (its `event` field; see [`LogEvent`]).
pub fn is_event(line: &Value, event: LogEvent) -> bool {
    line["fields"]["event"].as_str() == Some(event.as_str())
}

/// A field of the event itself (`fields.<name>`), as text.
pub fn field(line: &Value, name: &str) -> Option<String> {
    text(&line["fields"][name])
}

/// A field of the innermost enclosing span that has it (`spans[*].<name>`), as text.
pub fn span_field(line: &Value, name: &str) -> Option<String> {
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|span| text(&span[name]))
}

/// The line's `trace_id`.
pub fn trace_id(line: &Value) -> Option<&str> {
    line["trace_id"].as_str()
}

/// The line's `target` (the Rust module that logged it).
pub fn target(line: &Value) -> &str {
    line["target"].as_str().unwrap_or("")
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The line's timestamp as microseconds since the Unix epoch.
pub fn timestamp_micros(line: &Value) -> Option<i64> {
    parse_rfc3339_micros(line["timestamp"].as_str()?)
}

/// Parses `2026-11-24T22:08:29.591219Z` (UTC, as tracing-subscriber writes it).
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    let digits: String = frac.chars().take(6).collect();
    let micros = format!("{digits:0<6}").parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// A Rust `Duration` as `Debug` prints it (`1s`, `1.5s`, `250ms`), in milliseconds.
pub fn debug_duration_ms(text: &str) -> Option<f64> {
    let units = [
        ("ns", 1e-6),
        ("µs", 1e-3),
        ("us", 1e-3),
        ("ms", 1.0),
        ("s", 1000.0),
    ];
    units.iter().find_map(|(unit, factor)| {
        text.strip_suffix(unit)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n * factor)
    })
}

/// One flow-run's summary line (`flow f run <id> (upload): N transferred, ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The flow-run id.
    pub run_id: String,
    /// Files transferred.
    pub transferred: u64,
    /// Duplicates skipped.
    pub duplicates: u64,
    /// Files failed.
    pub failed: u64,
    /// Files left to other workers.
    pub left: u64,
}

/// Parses a run summary message; `None` for any other line.
pub fn parse_summary(message: &str) -> Option<RunSummary> {
    let rest = message.strip_prefix("flow ")?;
    let (_, rest) = rest.split_once(" run ")?;
    let (run_id, rest) = rest.split_once(' ')?;
    let (_, counts) = rest.split_once("): ")?;
    let number_before = |label: &str| -> Option<u64> {
        let at = counts.find(label)?;
        counts[..at]
            .rsplit([' ', ','])
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    Some(RunSummary {
        run_id: run_id.to_owned(),
        transferred: number_before(" transferred")?,
        duplicates: number_before(" duplicates skipped")?,
        failed: number_before(" failed")?,
        left: number_before(" left to other workers")?,
    })
}

/// The run summaries of one process's log, one per run. The engine logs the summary of every
/// run (`ferry_shared::transfer::engine`) and the worker's consume loop logs it again before
/// settling: when the engine's lines are there, they alone are counted, so that no run counts
/// twice.
pub fn run_summaries(lines: &[Value]) -> Vec<RunSummary> {
    let all: Vec<(&str, RunSummary)> = lines
        .iter()
        .filter_map(|l| parse_summary(msg(l)).map(|s| (target(l), s)))
        .collect();
    let from_engine = all
        .iter()
        .any(|(t, _)| *t == "ferry_shared::transfer::engine");
    all.into_iter()
        .filter(|(t, _)| !from_engine || *t == "ferry_shared::transfer::engine")
        .map(|(_, s)| s)
        .collect()
}

/// The worker's settlement lines (`flow-run message settled`): (flow-run id, how, trace id).
pub fn settlements(lines: &[Value]) -> Vec<(String, String, Option<String>)> {
    lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunSettled))
        .filter_map(|l| {
            Some((
                span_field(l, "flow_run_id")?,
                field(l, "settled").unwrap_or_default(),
                trace_id(l).map(str::to_owned),
            ))
        })
        .collect()
}

/// The scheduler's `flow-run published` lines: flow-run id -> (tick, trace id).
pub fn published(lines: &[Value]) -> BTreeMap<String, (String, Option<String>)> {
    lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunPublished))
        .filter_map(|l| {
            let id = field(l, "flow_run_id").or_else(|| span_field(l, "flow_run_id"))?;
            let tick = span_field(l, "tick").unwrap_or_default();
            Some((id, (tick, trace_id(l).map(str::to_owned))))
        })
        .collect()
}

/// Successful `RNTO <path>` per final file name, from vsftpd's protocol log: each command
/// line is paired with the next response of the same session (`[pid N]`).
pub fn rnto_counts(log: &str) -> BTreeMap<String, usize> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        let Some(pid) = line
            .split_once("[pid ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(pid, _)| pid.to_owned())
        else {
            continue;
        };
        if let Some((_, command)) = line.split_once("FTP command: ") {
            let quoted = command.rsplit_once(", \"").map(|(_, c)| c).unwrap_or("");
            let command = quoted.trim_end_matches('"');
            if let Some(path) = command.strip_prefix("RNTO ") {
                pending.insert(pid, path.to_owned());
            } else {
                pending.remove(&pid);
            }
        } else if let Some((_, response)) = line.split_once("FTP response: ")
            && let Some(path) = pending.remove(&pid)
        {
            let code = response.rsplit_once(", \"").map(|(_, c)| c).unwrap_or("");
            if code.starts_with("250") {
                let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
                *counts.entry(name).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_parse() {
        let s = parse_summary(
            "flow f run 1b2c (upload): 3 transferred, 17 duplicates skipped, 0 failed, \
             2 left to other workers, 1.0 MiB in 0.3s",
        )
        .expect("parses");
        assert_eq!(
            s,
            RunSummary {
                run_id: "1b2c".into(),
                transferred: 3,
                duplicates: 17,
                failed: 0,
                left: 2
            }
        );
        assert!(parse_summary("flow-run published").is_none());
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(
            parse_rfc3339_micros("1970-01-02T00:00:01.5Z"),
            Some(86_401_500_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2026-11-24T22:08:29.591219Z"),
            Some(1_795_558_109_591_219)
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(debug_duration_ms("1s"), Some(1000.0));
        assert_eq!(debug_duration_ms("1.5s"), Some(1500.0));
        assert_eq!(debug_duration_ms("250ms"), Some(250.0));
    }

    #[test]
    fn renames_are_counted_from_vsftpd_log() {
        let log = "Tue Nov 24 22:00:00 2026 [pid 7] [ferry-ftp] FTP command: Client \"127.0.0.1\", \"RNTO /in/a.xml\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 8] [ferry-ftp] FTP command: Client \"127.0.0.1\", \"RNTO /in/b.xml\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 7] [ferry-ftp] FTP response: Client \"127.0.0.1\", \"250 Rename successful.\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 8] [ferry-ftp] FTP response: Client \"127.0.0.1\", \"550 Rename failed.\"\n";
        let counts = rnto_counts(log);
        assert_eq!(counts.get("a.xml"), Some(&1));
        assert_eq!(counts.get("b.xml"), None);
    }
}
