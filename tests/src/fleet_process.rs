//! A ferry binary run by a test as a child process ([`FleetProcess`]): its output in a log
//! file of its own (never an undrained pipe), its JSON log lines read back and waited on
//! by structured event, and its stop by pid (SIGTERM, or SIGKILL for the kill drills).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::telemetry::LogEvent;
use serde_json::Value;

use crate::log_lines::is_event;

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
