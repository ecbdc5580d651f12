//! A private Redis for tests that freeze or stop it (the machine's Redis on 6379 is shared
//! by every test running at the same time and must never be paused).

use std::process::Command;

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;

/// A `redis-server` on a free loopback port, with nothing on disk; stopped when dropped.
pub struct RedisServer {
    /// Declared before `dir`: the process must die before its folder goes.
    process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts it; it answers when this returns.
    pub fn start() -> anyhow::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("ferry-redis-").tempdir()?;
        let port = free_port();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path());
        let process = ServerProcess::spawn(
            "redis-server",
            command,
            &dir.path().join("redis.log"),
            port,
            std::time::Duration::from_secs(10),
        )?;
        Ok(RedisServer {
            process,
            port,
            _dir: dir,
        })
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
