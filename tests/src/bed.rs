//! A flow engine's world for one test: a partner server from the test bed, a configuration
//! directory with a local folder, and a Redis key prefix deleted when the test ends, so that
//! engine tests run in parallel against the real Redis at 127.0.0.1:6379 (or
//! `FERRY_TEST_REDIS_URL`); or, after [`Bed::use_embedded_store`], the embedded store's
//! file in the configuration directory (`store: { kind: embedded, path: state.db }`). Also the small readers the tests assert with: the files of a
//! folder and their hashes, the rows of a report with an outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_shared::config::Config;
use ferry_shared::crash_point::CrashPoint;
use ferry_shared::transfer::{Engine, EngineOptions, Outcome, RunReport, run_flow};
use tempfile::TempDir;

pub use crate::fleet::{redis_url, sha256_hex};
use crate::ftp::{FtpServer, FtpServerKind, FtpServerOptions};
pub use crate::keyspace::Prefix;

/// One test's world: a partner server, a configuration directory with a local folder, and
/// a Redis prefix.
pub struct Bed {
    /// The partner's server.
    pub server: FtpServer,
    /// The configuration directory (`local/` is the flow's folder).
    pub dir: TempDir,
    /// The Redis key prefix of this test.
    pub prefix: Prefix,
    /// The Redis the configuration names (the machine's unless a test sets its own).
    pub redis: String,
    /// `redis.` lines written instead of `url: <redis>` (such as `cluster_nodes: [...]`),
    /// indented by two spaces, for a test on another Redis topology.
    pub redis_topology: Option<String>,
    /// The embedded store's file, when the configuration selects it (see
    /// [`Bed::use_embedded_store`]); `None`: Redis.
    pub embedded: Option<PathBuf>,
}

/// What a flow file says besides its partner and folders.
pub struct FlowSpec<'a> {
    /// `upload` or `download`.
    pub direction: &'a str,
    /// The remote folder.
    pub remote: &'a str,
    /// More flow fields, as YAML lines indented by four spaces.
    pub extra: &'a str,
}

impl Bed {
    pub async fn start(test: &str, kind: FtpServerKind) -> Bed {
        Self::start_with(test, FtpServerOptions::new(kind)).await
    }

    /// [`Bed::start`] with a server started as `opts` say.
    pub async fn start_with(test: &str, opts: FtpServerOptions) -> Bed {
        let kind = opts.kind;
        let server = FtpServer::start(opts)
            .await
            .unwrap_or_else(|e| panic!("starting {kind:?}: {e:#}"));
        server.create_dir("in").expect("remote in/");
        server.create_dir("out").expect("remote out/");
        let dir = tempfile::tempdir().expect("config dir");
        std::fs::create_dir(dir.path().join("local")).expect("local dir");
        std::fs::write(dir.path().join("ca.pem"), &server.pki.ca_cert_pem).expect("ca");
        Bed {
            server,
            dir,
            prefix: Prefix::new(test),
            redis: redis_url(),
            redis_topology: None,
            embedded: None,
        }
    }

    /// Makes the configuration select the embedded store, in `state.db` of the configuration
    /// directory (written as a relative path: resolved against the directory).
    pub fn use_embedded_store(&mut self) {
        self.embedded = Some(self.dir.path().join("state.db"));
    }

    pub fn local(&self) -> PathBuf {
        self.dir.path().join("local")
    }

    /// Writes `ferry.yaml`, the partner (at `port`, the server's by default) and flow `f`,
    /// and loads them.
    pub fn config(&self, flow: &FlowSpec<'_>, port: Option<u16>) -> Arc<Config> {
        let password = format!("literal:{}", self.server.password);
        self.config_with(flow, port, "", &password)
    }

    /// [`Bed::config`] with `settings_extra` appended to `ferry.yaml` (whole top-level
    /// sections, such as `vault:` and `secrets:`) and the partner's password written as
    /// `password` (a secret reference, such as `vault:secret/partner#password`).
    pub fn config_with(
        &self,
        flow: &FlowSpec<'_>,
        port: Option<u16>,
        settings_extra: &str,
        password: &str,
    ) -> Arc<Config> {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("partners")).expect("partners/");
        std::fs::create_dir_all(dir.join("flows")).expect("flows/");
        let redis =
            (self.redis_topology.clone()).unwrap_or_else(|| format!("  url: {}\n", self.redis));
        let store = if self.embedded.is_some() {
            "store:\n  kind: embedded\n  path: state.db\n"
        } else {
            ""
        };
        let settings = format!(
            "redis:\n{redis}  key_prefix: \"{}\"\n  delivery_retention: 1h\n{store}\
             retry:\n  max_attempts: 3\n  base_delay: 50ms\n  max_delay: 500ms\n\
             worker:\n  claim_lease: 3s\n{settings_extra}",
            self.prefix.0
        );
        std::fs::write(dir.join("ferry.yaml"), settings).expect("ferry.yaml");
        let partner = format!(
            "id: partner\nprotocol: ftps\nftps:\n  connection:\n    host: {}\n    port: {}\n    \
             passive: true\n    max_connections: 4\n  auth:\n    username: {}\n    \
             password: \"{password}\"\n  tls:\n    ca_cert: file:{}\n",
            self.server.host,
            port.unwrap_or(self.server.port),
            self.server.username,
            dir.join("ca.pem").display()
        );
        std::fs::write(dir.join("partners/partner.yaml"), partner).expect("partner");
        let side = if flow.direction == "upload" {
            "target"
        } else {
            "source"
        };
        let flows = format!(
            "flows:\n  f:\n    direction: {}\n    {side}:\n      partner: partner\n      \
             path: {}\n    local:\n      path: ./local\n    files:\n      - pattern: \"*.xml\"\n    \
             min_file_age: 0s\n{}",
            flow.direction, flow.remote, flow.extra
        );
        std::fs::write(dir.join("flows/f.yaml"), flows).expect("flow");
        Arc::new(Config::load(dir).unwrap_or_else(|e| panic!("config: {e}")))
    }

    /// [`Bed::config`] with `connection_extra` (lines indented by four spaces, such as
    /// `    disable_epsv: true\n`) added to the partner's `ftps.connection`.
    pub fn config_with_connection(
        &self,
        flow: &FlowSpec<'_>,
        connection_extra: &str,
    ) -> Arc<Config> {
        self.config(flow, None);
        let path = self.dir.path().join("partners/partner.yaml");
        let partner = std::fs::read_to_string(&path).expect("partner");
        let partner = partner.replacen(
            "    max_connections: 4\n",
            &format!("    max_connections: 4\n{connection_extra}"),
            1,
        );
        std::fs::write(&path, partner).expect("partner");
        Arc::new(Config::load(self.dir.path()).unwrap_or_else(|e| panic!("config: {e}")))
    }

    /// An engine for `flow` (written with [`Bed::config`]) as worker `w1`, with the
    /// test options of [`options`].
    pub async fn engine_for(&self, flow: &FlowSpec<'_>) -> Engine {
        self.engine(self.config(flow, None), options("w1")).await
    }

    pub async fn engine(&self, config: Arc<Config>, options: EngineOptions) -> Engine {
        Engine::connect(config, options)
            .await
            .unwrap_or_else(|e| panic!("{e}\n(start Redis on 127.0.0.1:6379)"))
    }

    /// `ferry-worker run --flow f --json` on this bed's configuration, as a child process
    /// whose output is collected (`.output()` drains both pipes while it runs).
    pub fn worker_run(&self) -> tokio::process::Command {
        let binary =
            crate::tools::workspace_binary("ferry-worker").unwrap_or_else(|e| panic!("{e:#}"));
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("--config")
            .arg(self.dir.path())
            .args(["run", "--flow", "f", "--json"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// A store on this bed's Redis (or embedded file) and key prefix (to look at or set up
    /// its records).
    pub async fn store(&self) -> ferry_shared::idempotency::Store {
        let mut config = match &self.embedded {
            Some(path) => ferry_shared::idempotency::StoreConfig::embedded(path),
            None => ferry_shared::idempotency::StoreConfig::new(self.redis.clone()),
        };
        config.key_prefix = self.prefix.0.clone();
        ferry_shared::idempotency::Store::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The Redis keys of flow `f` of kind `kind` (`claim`, `delivered`, `intent`, `lock`).
    pub fn flow_keys(&self, kind: &str) -> Vec<String> {
        if let Some(path) = &self.embedded {
            let prefix = format!("{}:{{flow:f}}:{kind}", self.prefix.0);
            return crate::embedded::live_rows(path, &prefix)
                .into_iter()
                .map(|(key, _)| key)
                .collect();
        }
        let pattern = format!("{}:{{flow:f}}:{kind}*", self.prefix.0);
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &self.redis, "--scan", "--pattern", &pattern])
            .output()
            .expect("redis-cli");
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// The file names of flow `f`'s delivery records.
    pub fn recorded_names(&self) -> std::collections::BTreeSet<String> {
        if let Some(path) = &self.embedded {
            let prefix = format!("{}:{{flow:f}}:delivered", self.prefix.0);
            return crate::embedded::live_rows(path, &prefix)
                .into_iter()
                .filter_map(|(_, json)| {
                    let record: serde_json::Value = serde_json::from_str(&json).ok()?;
                    record["file_name"].as_str().map(str::to_owned)
                })
                .collect();
        }
        self.flow_keys("delivered")
            .iter()
            .filter_map(|key| {
                let out = std::process::Command::new("redis-cli")
                    .args(["-u", &self.redis, "GET", key])
                    .output()
                    .expect("redis-cli");
                let record: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                record["file_name"].as_str().map(str::to_owned)
            })
            .collect()
    }

    /// Runs the flow in a `ferry-worker run --json` process; panics unless it exits 0.
    /// Returns its JSON report.
    pub async fn worker_run_ok(&self) -> serde_json::Value {
        let output = self.worker_run().output().await.expect("run");
        let (code, report) = parse_run(&output);
        assert_eq!(
            code,
            Some(0),
            "{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        report
    }

    /// Runs the flow in a `ferry-worker run` process that kills itself the `nth` time it
    /// reaches `point`; panics unless it died of `SIGKILL` (the drill must really have
    /// crashed there).
    pub async fn crash_run_at(&self, point: CrashPoint, nth: u32) {
        use std::os::unix::process::ExitStatusExt;
        let output = self
            .worker_run()
            .env("FERRY_CRASH_AT", format!("{}#{nth}", point.as_str()))
            .output()
            .await
            .expect("run");
        assert_eq!(
            output.status.signal(),
            Some(9),
            "the run did not crash at {}#{nth}: {:?}\n{}",
            point.as_str(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Name -> SHA-256 (hex) of the regular, non-hidden files in a server folder.
    pub fn remote_files(&self, dir: &str) -> BTreeMap<String, String> {
        files_in(&self.server.path(dir))
    }
}

pub fn upload(extra: &str) -> FlowSpec<'_> {
    FlowSpec {
        direction: "upload",
        remote: "/in",
        extra,
    }
}

pub fn download(extra: &str) -> FlowSpec<'_> {
    FlowSpec {
        direction: "download",
        remote: "/out",
        extra,
    }
}

pub fn options(worker: &str) -> EngineOptions {
    EngineOptions {
        worker_id: worker.to_owned(),
        claim_lease: Duration::from_secs(10),
        flow_lock_lease: Duration::from_secs(10),
        flow_lock_wait: Duration::from_secs(120),
    }
}

/// Name -> SHA-256 (hex) of the regular files in `dir` whose names do not start with `.`
/// (temporary files are hidden).
pub fn files_in(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().expect("type").is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read file");
        files.insert(name, sha256_hex(&bytes));
    }
    files
}

/// Every entry of `dir`, hidden ones included.
pub fn all_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes `count` files `f000.xml`... with distinct random content; returns name -> hash.
pub fn write_files(dir: &Path, count: usize, size: usize) -> BTreeMap<String, String> {
    (0..count)
        .map(|i| {
            let name = format!("f{i:03}.xml");
            let bytes: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
            std::fs::write(dir.join(&name), &bytes).expect("write file");
            (name, sha256_hex(&bytes))
        })
        .collect()
}

pub fn names_with(report: &RunReport, outcome: Outcome) -> Vec<&str> {
    report
        .files
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| r.name.as_str())
        .collect()
}

/// The exit code and the JSON report of a finished `ferry-worker run --json`.
pub fn parse_run(output: &std::process::Output) -> (Option<i32>, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

pub async fn run(engine: &Engine, run_id: &str) -> RunReport {
    run_flow(engine, "f", None, run_id, None)
        .await
        .unwrap_or_else(|e| panic!("run {run_id}: {e}"))
}
