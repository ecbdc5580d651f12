//! `GET /metrics` of the scheduler (`scheduler.metrics_listen`, or `--metrics-listen`): its
//! metrics in the Prometheus text format, collected at the request (see
//! `ferry_shared::telemetry::metrics`). The scheduler has no other HTTP endpoint; `/healthz`
//! answers too, so the port can double as a liveness probe.

use std::convert::Infallible;
use std::net::SocketAddr;

use ferry_shared::telemetry::{Scrape, prometheus_text};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Binds `addr` and serves until the process ends. Returns the bound address.
pub async fn serve(addr: SocketAddr, scrape: Scrape) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, scrape.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    tracing::info!(%bound, "metrics endpoint listening (/metrics)");
    Ok(bound)
}

async fn answer(
    req: Request<Incoming>,
    scrape: Scrape,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body, content_type) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            // Collecting walks every instrument under the SDK's locks: off the async threads.
            let text = tokio::task::spawn_blocking(move || scrape.render())
                .await
                .ok()
                .flatten();
            match text {
                Some(text) => (
                    StatusCode::OK,
                    Bytes::from(text),
                    prometheus_text::CONTENT_TYPE,
                ),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Bytes::from_static(b"shutting down\n"),
                    "text/plain",
                ),
            }
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, Bytes::from_static(b"ok\n"), "text/plain"),
        _ => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found\n"),
            "text/plain",
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}
