//! Health endpoints for Kubernetes probes.
//!
//! - `GET /healthz` (liveness): 200 while the process's event loop answers at all.
//! - `GET /readyz` (readiness): 200 while the worker is consuming (broker connected and
//!   Redis reachable), 503 otherwise, so that a worker cut off from its dependencies stops
//!   counting as available, and during shutdown, so no new traffic is routed to it.
//! - `GET /metrics`: every ferry metric in the Prometheus text format, collected at the
//!   request (see `ferry_shared::telemetry::metrics`). Same port, so one Service and one
//!   network policy cover probes and scrapes; it carries no secret and no file name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_shared::telemetry::{Scrape, prometheus_text};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The readiness flag that the consume loop sets and the endpoint reports.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the worker ready (consuming) or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the worker is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Binds `addr` and serves the endpoints until the task is aborted. Returns the bound
/// address (useful when `addr` has port 0).
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    scrape: Scrape,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let readiness = readiness.clone();
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, readiness.clone(), scrape.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    tracing::info!(%bound, metrics = "/metrics", "health endpoints listening (/healthz, /readyz)");
    Ok(bound)
}

async fn answer(
    req: Request<Incoming>,
    readiness: Readiness,
    scrape: Scrape,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if (req.method(), req.uri().path()) == (&Method::GET, "/metrics") {
        // Collecting walks every instrument under the SDK's locks: off the async threads.
        let text = tokio::task::spawn_blocking(move || scrape.render())
            .await
            .ok()
            .flatten();
        let Some(text) = text else {
            let mut response = Response::new(Full::new(Bytes::from_static(b"shutting down\n")));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(response);
        };
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
        );
        return Ok(response);
    }
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if readiness.get() => (StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}
