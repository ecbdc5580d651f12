//! The operations HTTP endpoint that both binaries serve: probes and the metrics scrape.
//!
//! - `GET /healthz` (liveness): 200 while the process's event loop answers at all.
//! - `GET /readyz` (readiness, when the process has a [`Readiness`]): 200 while it is ready
//!   (a worker: consuming, broker connected and Redis reachable), 503 otherwise, so that a
//!   worker cut off from its dependencies, or shutting down, stops counting as available.
//!   A process without a readiness flag (the scheduler) answers 404: it has no such probe.
//! - `GET /metrics`: every ferry metric in the Prometheus text format, collected at the
//!   request (see [`crate::telemetry::metrics`]); 503 once telemetry has shut down.
//!
//! One port for probes and scrapes, so one Service and one network policy cover both. Nothing
//! served here carries a secret or a file name. The server is plain HTTP/1.1 on the address
//! the configuration gives (`worker.health_listen`, `scheduler.metrics_listen`), loopback by
//! default: exposing it is the operator's decision.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::telemetry::{Scrape, prometheus_text};

/// A readiness flag that the process sets and `/readyz` reports.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the process is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the endpoint reports.
#[derive(Debug, Clone)]
pub struct OpsEndpoint {
    /// Renders `/metrics`.
    pub scrape: Scrape,
    /// Answers `/readyz`; `None` for a process without a readiness probe.
    pub readiness: Option<Readiness>,
}

impl OpsEndpoint {
    /// Binds `addr` and serves until the process ends. Returns the bound address (useful when
    /// `addr` has port 0).
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let readyz = self.readiness.is_some();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let endpoint = self.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| endpoint.clone().answer(req));
                    // A client that hangs up mid-request is its own problem, not the server's.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%bound, readyz, "operations endpoint listening (/healthz, /metrics)");
        Ok(bound)
    }

    async fn answer(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        if req.method() != Method::GET {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
        }
        Ok(match req.uri().path() {
            "/metrics" => self.metrics().await,
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match &self.readiness {
                Some(readiness) if readiness.get() => text(StatusCode::OK, "ready\n"),
                Some(_) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        })
    }

    async fn metrics(self) -> Response<Full<Bytes>> {
        // Collecting walks every instrument under the SDK's locks: off the async threads.
        let scrape = self.scrape;
        let rendered = tokio::task::spawn_blocking(move || scrape.render())
            .await
            .ok()
            .flatten();
        let Some(body) = rendered else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
        );
        response
    }
}

/// A plain-text response.
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
