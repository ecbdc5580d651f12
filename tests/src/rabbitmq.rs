//! A private RabbitMQ node for tests that must stop and restart the broker (never the
//! machine's own broker on 5672, which other tests share).
//!
//! The node runs the machine's `rabbitmq-server` under a name and ports of its own
//! (`ferry-test-<port>@localhost`), with its database, logs, Erlang cookie and an empty
//! plugin list in a temporary folder, so it neither sees nor disturbs the shared broker.
//! [`RabbitNode::restart`] kills it (SIGKILL, like a crash) and starts it again on the same
//! ports and data, which keeps durable queues and confirmed messages.
//!
//! Tests that only need isolation, not a restart, take a [`Vhost`] of the machine's broker.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_shared::broker::AmqpUrl;
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;
use crate::tools::find_tool;

/// How long a node may take to boot (about 5 s here).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A RabbitMQ node owned by one test; killed when dropped.
pub struct RabbitNode {
    // Fields drop in order: the node must be dead before its folder is removed.
    server: Option<ServerProcess>,
    dir: TempDir,
    node_name: String,
    amqp_port: u16,
    dist_port: u16,
}

impl RabbitNode {
    /// Starts a fresh node on free loopback ports and waits until it accepts AMQP.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-rabbit-")
            .tempdir()
            .context("creating the node's folder")?;
        let amqp_port = free_port();
        let mut dist_port = free_port();
        while dist_port == amqp_port {
            dist_port = free_port();
        }
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "")?;
        // Our own config file: the machine's may pin the listener to 5672.
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{amqp_port}\nloopback_users.guest = true\n"),
        )?;
        let mut node = RabbitNode {
            dir,
            node_name: format!("ferry-test-{amqp_port}@localhost"),
            amqp_port,
            dist_port,
            server: None,
        };
        node.boot()?;
        Ok(node)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    /// The node's AMQP port.
    pub fn port(&self) -> u16 {
        self.amqp_port
    }

    /// Kills the node (SIGKILL to its process group) and waits until its port is closed,
    /// so that a following [`Self::boot`] cannot mistake the dying node for the new one.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.server = None;
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.amqp_port)).is_ok() {
            if Instant::now() > deadline {
                bail!(
                    "{} still listens on {} after SIGKILL",
                    self.node_name,
                    self.amqp_port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the node again on the same ports and data (after [`Self::kill`]).
    pub fn boot(&mut self) -> anyhow::Result<()> {
        self.server = None;
        let dir = self.dir.path();
        let mut command = Command::new(server_script()?);
        command
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node_name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
        let server = ServerProcess::spawn(
            &self.node_name,
            command,
            &dir.join("server.log"),
            self.amqp_port,
            BOOT_TIMEOUT,
        )?;
        self.server = Some(server);
        Ok(())
    }

    /// Kills the node and starts it again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.boot()
    }

    /// The node's folder (database, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        // Wait for the node to be gone before its folder is removed (it writes there).
        if let Err(error) = self.kill() {
            eprintln!("{error}");
        }
    }
}

/// The real `rabbitmq-server` script: the one on `PATH` in Debian's package is a wrapper
/// that switches to the `rabbitmq` user, which could not write our temporary folder.
fn server_script() -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if direct.is_file() {
        return Ok(direct);
    }
    find_tool("rabbitmq-server", &[])
}

/// Runs `rabbitmqctl` against the machine's broker; fails with its output.
pub fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let ctl = find_tool("rabbitmqctl", &[])?;
    let out = Command::new(ctl)
        .args(args)
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A virtual host of the machine's broker (127.0.0.1:5672), deleted with everything in it
/// when dropped.
pub struct Vhost {
    name: String,
}

impl Vhost {
    /// Creates `ferry-test-<test>-<pid>-<n>` and lets `guest` use it.
    pub fn create(test: &str) -> anyhow::Result<Vhost> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ferry-test-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        rabbitmqctl(&["add_vhost", &name])?;
        let vhost = Vhost { name };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])?;
        Ok(vhost)
    }

    /// `amqp://guest:guest@127.0.0.1:5672/<vhost>`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// [`Vhost::url`], parsed for the broker module.
    pub fn amqp_url(&self) -> AmqpUrl {
        AmqpUrl::parse(&self.url()).expect("a test vhost's URL parses")
    }

    /// The vhost's name (for `rabbitmqctl ... --vhost NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}
