//! A server process owned by a test: logs to a file, waits until its port answers, and is
//! killed (with its whole process group) when the handle is dropped.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server started by the test bed.
pub struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` in its own process group with stdout and stderr appended to
    /// `log`, then waits up to `timeout` until `127.0.0.1:port` accepts TCP connections.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        port: u16,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut server = ServerProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        };
        server.wait_for_port(port, timeout)?;
        Ok(server)
    }

    fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on {port}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {port} within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far (for assertions and failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (its process group id too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Kill the whole group: some servers fork a child per session. Through the system
        // call, never `/usr/bin/kill -KILL -PGID`: Debian's procps misreads that negative
        // number without a `--` and signals every process on the machine.
        if let Some(pgid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
