//! A Prometheus server of the test's own (Debian's `prometheus`, installed by
//! scripts/setup.d/prometheus.sh) that scrapes given loopback targets every second, queried
//! through its HTTP API as a dashboard or an alert rule would; and `promtool check metrics`,
//! Prometheus's own linter of an exposition page.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::ServerProcess;
use crate::prometheus::http_get;
use crate::tools::find_tool;

/// A running Prometheus, killed on drop.
pub struct PrometheusServer {
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    server: ServerProcess,
    _dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus on a free loopback port, scraping `GET /metrics` of each target
    /// every second (job `ferry`).
    pub async fn start(targets: &[SocketAddr]) -> anyhow::Result<PrometheusServer> {
        Self::start_with_rules(targets, &[]).await
    }

    /// [`PrometheusServer::start`], also loading the rule files `rules` (alerting and
    /// recording rules), evaluated every second.
    pub async fn start_with_rules(
        targets: &[SocketAddr],
        rules: &[&std::path::Path],
    ) -> anyhow::Result<PrometheusServer> {
        let prometheus = find_tool("prometheus", &[])?;
        let dir = tempfile::tempdir()?;
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let rules: Vec<String> = rules
            .iter()
            .map(|r| format!("\"{}\"", r.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: ferry\n    static_configs:\n      - targets: [{}]\n",
            rules.join(", "),
            targets.join(", ")
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let port = free_port();
        let mut command = Command::new(prometheus);
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let log = dir.path().join("prometheus.log");
        let server = tokio::task::spawn_blocking(move || {
            ServerProcess::spawn("prometheus", command, &log, port, Duration::from_secs(60))
        })
        .await??;
        Ok(PrometheusServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            server,
            _dir: dir,
        })
    }

    /// Polls `promql` every 500 ms until `done` accepts the series, or panics after `timeout`
    /// with the last answer, the scrape targets and the server's log. A Prometheus still
    /// opening its storage answers 503: that is "not yet" too.
    pub async fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        done: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Vec<(Value, f64)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let answer = self.query(promql);
            if let Ok(series) = &answer
                && done(series)
            {
                return answer.unwrap_or_default();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{promql}: {answer:?} within {timeout:?}\ntargets {:?}\n{}",
                self.targets(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let answer = http_get(self.addr, &path)?;
        let json: Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("not JSON: {}", answer.body))?;
        if json["status"] != "success" {
            bail!("query {promql:?} failed: {json}");
        }
        let series = json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        series
            .into_iter()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .context("a sample value")?
                    .parse::<f64>()?;
                Ok((s["metric"].clone(), value))
            })
            .collect()
    }

    /// The health of each scrape target (`up`, `down`, `unknown`) with its last error.
    pub fn targets(&self) -> anyhow::Result<Vec<(String, String)>> {
        let answer = http_get(self.addr, "/api/v1/targets")?;
        let json: Value = serde_json::from_str(&answer.body)?;
        Ok(json["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t["health"].as_str().unwrap_or_default().to_owned(),
                    t["lastError"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.server.log_text()
    }
}

/// `promtool check metrics` on `page`: `Ok` with its output when it finds nothing to say,
/// an error with its findings otherwise.
pub fn promtool_check_metrics(page: &str) -> anyhow::Result<String> {
    let promtool = find_tool("promtool", &[])?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(page.as_bytes())?;
    let output = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() || !text.trim().is_empty() {
        bail!("promtool check metrics: {}\n{text}", output.status);
    }
    Ok(text)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
