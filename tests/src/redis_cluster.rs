//! A private 3-master Redis Cluster on loopback ports, and a master with a replica watched
//! by one Redis Sentinel, for the tests that run ferry's store against those topologies.
//!
//! Each is started from scratch in its own temporary folder (AOF on, as ferry wants it)
//! and killed when its handle is dropped, so tests need no shared state and no clean-up.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;

/// Three masters, no replicas, all 16384 slots assigned; stopped when dropped.
pub struct RedisCluster {
    /// Declared before `dir`: the processes die before their folder goes.
    nodes: Vec<ServerProcess>,
    ports: Vec<u16>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts the nodes, joins them (`redis-cli --cluster create`) and waits for
    /// `cluster_state:ok` on every node.
    pub fn start() -> anyhow::Result<RedisCluster> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-redis-cluster-")
            .tempdir()?;
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir)?;
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "5000"])
                .args(["--appendonly", "yes", "--save", ""])
                .arg("--dir")
                .arg(&node_dir);
            nodes.push(ServerProcess::spawn(
                "redis-server (cluster)",
                command,
                &node_dir.join("redis.log"),
                port,
                Duration::from_secs(10),
            )?);
            ports.push(port);
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            ports,
            _dir: dir,
        };
        cluster.wait_until_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_until_ok(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let all_ok = self.ports.iter().all(|port| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if all_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().map(ServerProcess::log_text).collect();
                bail!(
                    "the cluster did not reach cluster_state:ok in {timeout:?}; logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:PORT` of every node (the seed list ferry is configured with).
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// `redis-cli -c` arguments reaching the cluster through its first node (`-c` follows
    /// `MOVED`, so any key can be read or written).
    pub fn cli_args(&self) -> Vec<String> {
        vec!["-c".into(), "-p".into(), self.ports[0].to_string()]
    }

    /// Every key matching `pattern`, from all masters.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ports
            .iter()
            .flat_map(|port| {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "--scan", "--pattern", pattern])
                    .output()
                    .expect("redis-cli");
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        keys
    }

    /// The value of `key` (`redis-cli -c GET`).
    pub fn get(&self, key: &str) -> String {
        let out = Command::new("redis-cli")
            .args(self.cli_args())
            .args(["GET", key])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// One master (with a replica, for failover) and one Redis Sentinel watching it under
/// [`RedisSentinel::MASTER_NAME`].
pub struct RedisSentinel {
    /// Declared before `dir`: the processes die before their folder goes.
    _sentinel: ServerProcess,
    _servers: Vec<ServerProcess>,
    /// The ports of the master and of the replica, as started.
    ports: [u16; 2],
    sentinel_port: u16,
    _dir: TempDir,
}

impl RedisSentinel {
    /// The name the sentinel knows the master by.
    pub const MASTER_NAME: &'static str = "ferry-master";

    /// Starts the master and its replica, waits until the replica is in sync, then starts
    /// the sentinel (`redis-server sentinel.conf --sentinel`) and waits until it names the
    /// master and knows the replica.
    pub fn start() -> anyhow::Result<RedisSentinel> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-redis-sentinel-")
            .tempdir()?;
        let ports = [free_port(), free_port()];
        let mut servers = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir(&node_dir)?;
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--appendonly", "yes", "--save", ""])
                .arg("--dir")
                .arg(&node_dir);
            if i == 1 {
                command.args(["--replicaof", "127.0.0.1", &ports[0].to_string()]);
            }
            servers.push(ServerProcess::spawn(
                "redis-server (sentinel's)",
                command,
                &node_dir.join("redis.log"),
                *port,
                Duration::from_secs(10),
            )?);
        }
        wait_for(Duration::from_secs(20), "the replica to sync", || {
            cli(ports[1], &["INFO", "replication"]).contains("master_link_status:up")
        })?;
        let sentinel_port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "bind 127.0.0.1\nport {sentinel_port}\ndir {}\n\
                 sentinel monitor {} 127.0.0.1 {} 1\n",
                dir.path().display(),
                Self::MASTER_NAME,
                ports[0]
            ),
        )?;
        let mut command = Command::new("redis-server");
        command.arg(&conf).arg("--sentinel");
        let sentinel = ServerProcess::spawn(
            "redis-server --sentinel",
            command,
            &dir.path().join("sentinel.log"),
            sentinel_port,
            Duration::from_secs(10),
        )?;
        let found = wait_for(Duration::from_secs(20), "the sentinel to know both", || {
            cli(sentinel_port, &["SENTINEL", "replicas", Self::MASTER_NAME])
                .contains(&ports[1].to_string())
        });
        found.with_context(|| sentinel.log_text())?;
        Ok(RedisSentinel {
            _sentinel: sentinel,
            _servers: servers,
            ports,
            sentinel_port,
            _dir: dir,
        })
    }

    /// `redis://127.0.0.1:PORT` of the sentinel.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel_port)
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> u16 {
        let out = cli(
            self.sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", Self::MASTER_NAME],
        );
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `redis://127.0.0.1:PORT` of the current master (to look at what ferry wrote).
    pub fn master_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.master_port())
    }

    /// Waits until the replica has everything the master has (`WAIT`), then makes the
    /// sentinel promote it (`SENTINEL FAILOVER`); returns once the sentinel names it and
    /// the old master has become its replica (it answers writes with `READONLY`).
    pub fn failover(&self) -> anyhow::Result<()> {
        let old = self.master_port();
        let new = if old == self.ports[0] {
            self.ports[1]
        } else {
            self.ports[0]
        };
        ensure!(
            cli(old, &["WAIT", "1", "5000"]).trim() == "1",
            "replica behind"
        );
        // NOGOODSLAVE until the sentinel has its own fresh link to the replica: ask again.
        wait_for(
            Duration::from_secs(30),
            "SENTINEL FAILOVER to be accepted",
            || {
                cli(
                    self.sentinel_port,
                    &["SENTINEL", "FAILOVER", Self::MASTER_NAME],
                )
                .contains("OK")
            },
        )?;
        wait_for(Duration::from_secs(30), "the failover", || {
            self.master_port() == new && cli(old, &["INFO", "replication"]).contains("role:slave")
        })
    }
}

/// `redis-cli -p port args...`, its output.
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Polls `done` every 100 ms for up to `timeout`.
fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
