//! The processes the fleet demo starts (OpenBao, `ferry-scheduler`, two workers) and
//! stops again: each writes to its own log file in the demo's `logs/` folder (never an
//! undrained pipe), listens on its own loopback port, and is stopped by its own pid:
//! SIGTERM, a grace period for it to finish what it holds, then SIGKILL.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};

/// How long a process may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// A free port on 127.0.0.1 (bound, then released for the process to take).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A ferry binary beside this one (`ferry-scheduler`): the demo runs the binaries of the
/// same build.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding this binary")?;
    let binary = me.with_file_name(name);
    if !binary.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build -p {name}`; `scripts/demo --fleet` does)",
            binary.display()
        );
    }
    Ok(binary)
}

/// Finds an executable on `PATH`, then in the test bed's tool folder (where
/// `scripts/setup-test-env` puts OpenBao's `bao`).
pub fn find_tool(name: &str) -> anyhow::Result<PathBuf> {
    let testbed = std::env::var_os("FERRY_TESTBED_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/ferry-testbed"))
        });
    let mut folders: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    folders.extend(testbed.map(|home| home.join("venv/bin")));
    folders
        .into_iter()
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("`{name}` is not installed (not on PATH nor in the test bed: run scripts/setup-test-env)")
        })
}

/// One running process of the demo.
pub struct DemoProcess {
    /// The demo's name for it (`worker-1`), used in what it prints.
    pub name: String,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl DemoProcess {
    /// Starts `program ARGS...` with `env`, its output in `logs/<name>.log`, and no
    /// inherited variables that would point it at another configuration or broker.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        logs: &Path,
    ) -> anyhow::Result<DemoProcess> {
        let log = logs.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .env_remove("FERRY_CONFIG")
            .env_remove("FERRY_BROKER_URL")
            .env_remove("FERRY_REDIS_URL")
            .env_remove("FERRY_HEALTH_LISTEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_ADDR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(DemoProcess {
            name: name.to_owned(),
            log,
            child,
        })
    }

    /// Fails, naming the log, if the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); its log: {}",
                self.name,
                self.log.display()
            ),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period. Says which.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self
            .child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .context("no pid")?;
        kill_process(pid, Signal::TERM).with_context(|| format!("signalling {}", self.name))?;
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "{} did not stop within {STOP_GRACE:?} of SIGTERM and was killed",
                    self.name
                )
            }
        }
    }
}
