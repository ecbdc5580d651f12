//! A private Redis for tests that freeze, stop or restart it (the machine's Redis on 6379 is
//! shared by every test running at the same time and must never be paused).

use std::process::Command;

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;

/// A `redis-server` on a free loopback port, with nothing on disk; stopped when dropped.
pub struct RedisServer {
    /// Declared before `dir`: the process must die before its folder goes.
    process: ServerProcess,
    port: u16,
    appendonly: bool,
    dir: TempDir,
}

impl RedisServer {
    /// Starts it with nothing on disk; it answers when this returns.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(false)
    }

    /// Starts it with `appendonly yes` (`appendfsync everysec`), as ferry wants it in
    /// production: what it was told survives [`RedisServer::restart`].
    pub fn start_durable() -> anyhow::Result<RedisServer> {
        Self::start_with(true)
    }

    fn start_with(appendonly: bool) -> anyhow::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("ferry-redis-").tempdir()?;
        let port = free_port();
        let process = spawn(dir.path(), port, appendonly)?;
        Ok(RedisServer {
            process,
            port,
            appendonly,
            dir,
        })
    }

    /// Stops the server (`SHUTDOWN`: the AOF is flushed), leaves it down for `down`, and
    /// starts it again on the same port and folder; it answers when this returns.
    pub fn restart(&mut self, down: std::time::Duration) -> anyhow::Result<()> {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "SHUTDOWN"])
            .output()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "redis did not stop");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(down);
        self.process = spawn(self.dir.path(), self.port, self.appendonly)?;
        Ok(())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.process.pid() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// `redis-server` on `port` with its files in `dir`.
fn spawn(dir: &std::path::Path, port: u16, appendonly: bool) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new("redis-server");
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", ""])
        .args(["--appendonly", if appendonly { "yes" } else { "no" }])
        .args(["--appendfsync", "everysec"])
        .arg("--dir")
        .arg(dir);
    ServerProcess::spawn(
        "redis-server",
        command,
        &dir.join("redis.log"),
        port,
        std::time::Duration::from_secs(10),
    )
}
