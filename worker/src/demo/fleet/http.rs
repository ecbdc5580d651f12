//! The fleet demo's HTTP calls, all to loopback: the scheduler's trigger
//! (`POST /v1/flows/{flow}/runs` with the bearer token), the workers' `/readyz` and
//! `/metrics`, OpenBao's KV API. One request per connection (`Connection: close`), so a plain HTTP/1.1
//! exchange over a TCP stream is all it takes; the demo needs no HTTP client library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take in all.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A response: its status code and body.
pub struct Response {
    /// The status code (`202`).
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// `GET path` on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` on `addr` with a JSON `body` and the extra `headers` (such as
/// `Authorization`).
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Response> {
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    exchange(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

async fn exchange(addr: SocketAddr, request: String) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("no answer from {addr} within {TIMEOUT:?}"))?
        .with_context(|| format!("talking to {addr}"))?;
    parse(&String::from_utf8_lossy(&raw))
}

/// Reads the status line and the body of a `Connection: close` response (the servers
/// here send a `Content-Length`, never a chunked body).
fn parse(text: &str) -> anyhow::Result<Response> {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("not an HTTP response: {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {head:?}"))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// The sum of a counter's samples in a Prometheus text page whose labels include every
/// `labels` pair (`flow="demo-upload"`), over all other labels.
pub fn counter_sum(page: &str, metric: &str, labels: &[(&str, &str)]) -> u64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_gives_its_status_and_body() {
        let response =
            parse("HTTP/1.1 202 Accepted\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n").unwrap();
        assert_eq!(response.status, 202);
        assert_eq!(response.body, "{\"a\":1}\n");
        assert!(parse("garbage").is_err());
    }

    #[test]
    fn counter_sum_adds_the_samples_with_the_labels() {
        let page = "# TYPE ferry_files_total counter\n\
                    ferry_files_total{flow=\"up\",outcome=\"duplicate\"} 3\n\
                    ferry_files_total{flow=\"up\",outcome=\"transferred\"} 4\n\
                    ferry_files_total{flow=\"down\",outcome=\"duplicate\"} 2\n\
                    ferry_files_total_other{flow=\"up\",outcome=\"duplicate\"} 9\n";
        assert_eq!(
            counter_sum(page, "ferry_files_total", &[("outcome", "duplicate")]),
            5
        );
        assert_eq!(counter_sum(page, "ferry_files_total", &[("flow", "up")]), 7);
        assert_eq!(counter_sum(page, "ferry_flow_runs_total", &[]), 0);
    }
}
