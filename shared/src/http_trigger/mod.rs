//! The HTTP trigger: upstream systems ask for a flow-run with `POST /v1/flows/{flow}/runs`.
//!
//! The fleet's scheduler serves it and publishes the flow-run message with confirms (the
//! same message `ferry-scheduler trigger` publishes); a single-node process serves it over
//! its own run queue. Either way the run is queued, not run, when the answer is sent:
//! `202 Accepted` with the flow-run id, which the run's report, logs, trace and audit records
//! carry. The contract is `docs/openapi/http-trigger.yaml`, checked against the running
//! endpoint by the tests.
//!
//! | answer | when |
//! |---|---|
//! | 202 | the run is queued (body: `flow_run_id`, `flow`, `trigger`) |
//! | 400 | the body is not a valid run request (the detail names the field) |
//! | 401 | a token is configured and the request lacks it or has another one |
//! | 404 | no such flow, or another path |
//! | 405 | another method than `POST` on a run path |
//! | 409 | the flow is disabled (`enabled: false`) |
//! | 413 | the body is larger than a flow-run message may be (1 MiB) |
//! | 415 | a body that is not `application/json` |
//! | 503 | the queue (RabbitMQ) did not confirm, or the token could not be resolved; retry later |
//!
//! Bad input never gets a 500: every refusal above is the caller's to fix, and 503 is the
//! only answer that says "try again". Errors are `application/problem+json` (RFC 9457).
//! The caller's `traceparent` header, when present, is the parent of the request's span, so
//! an upstream system's trace continues through the queue into the run.
//!
//! The check of the caller comes first (see `auth.rs`): without the token nobody learns which
//! flows exist. The settings, and why a reachable endpoint must have a token, are in
//! [`crate::config::HttpTriggerSettings`].

mod auth;
pub mod body;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::config::Config;
use crate::message::FlowRunMessage;
pub use crate::run_requests::{QueueUnavailable, RunRequests};
use crate::secrets::{Resolver, SecretRef};
use crate::telemetry;

/// The endpoint's state: the flows it knows, the token it asks for, where runs go.
pub struct HttpTrigger<R> {
    /// Flow id -> enabled.
    flows: BTreeMap<String, bool>,
    token: Option<SecretRef>,
    resolver: Resolver,
    runs: R,
}

impl<R: RunRequests> HttpTrigger<R> {
    /// The trigger of `config`'s flows, with `config.settings.http_trigger.token`.
    pub fn new(config: &Config, resolver: Resolver, runs: R) -> Self {
        HttpTrigger {
            flows: config
                .flows
                .iter()
                .map(|(id, flow)| (id.clone(), flow.enabled))
                .collect(),
            token: config.settings.http_trigger.token.clone(),
            resolver,
            runs,
        }
    }

    /// Binds `addr` and serves until the process ends. Returns the bound address.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let authenticated = self.token.is_some();
        let trigger = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let trigger = trigger.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let trigger = trigger.clone();
                        async move { Ok::<_, Infallible>(trigger.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%bound, authenticated, "HTTP trigger listening (POST /v1/flows/{{flow}}/runs)");
        Ok(bound)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(flow) = run_path_flow(req.uri().path()).map(str::to_owned) else {
            return problem(
                StatusCode::NOT_FOUND,
                "no such resource: runs are requested with POST /v1/flows/{flow}/runs",
            );
        };
        if req.method() != Method::POST {
            let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, "use POST to request a run");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if let Some(refusal) = self.authorize(&req).await {
            return refusal;
        }
        match self.flows.get(&flow) {
            None => {
                return problem(
                    StatusCode::NOT_FOUND,
                    &format!("no flow `{flow}` in the configuration"),
                );
            }
            Some(false) => {
                return problem(
                    StatusCode::CONFLICT,
                    &format!(
                        "flow `{flow}` is disabled (enabled: false); it runs neither on schedule nor on request"
                    ),
                );
            }
            Some(true) => {}
        }
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(is_json);
        let trace_headers = trace_headers(&req);
        let body = match Limited::new(req.into_body(), body::MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than {} bytes", body::MAX_BODY_BYTES),
                );
            }
        };
        if !body.iter().all(u8::is_ascii_whitespace) && json != Some(true) {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as application/json",
            );
        }
        let message = match body::run_message(&flow, &body) {
            Ok(message) => message,
            Err(bad) => return problem(StatusCode::BAD_REQUEST, &bad.0),
        };
        self.queue(message, trace_headers).await
    }

    /// `None` when the caller may go on; otherwise the refusal.
    async fn authorize(&self, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let reference = self.token.as_ref()?;
        let expected = match self.resolver.resolve(reference).await {
            Ok(secret) => secret,
            Err(error) => {
                tracing::warn!(error = %error, "HTTP trigger: the token could not be resolved; refusing requests");
                return Some(unavailable("the trigger cannot check tokens right now"));
            }
        };
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        match auth::check(header, expected.expose()) {
            auth::Verdict::Allowed => None,
            verdict => {
                let mut response = problem(
                    StatusCode::UNAUTHORIZED,
                    "send Authorization: Bearer <token>",
                );
                let challenge = if verdict == auth::Verdict::Wrong {
                    "Bearer realm=\"ferry\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"ferry\""
                };
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                Some(response)
            }
        }
    }

    /// Queues the run under a span that continues the caller's trace; answers 202 or 503.
    async fn queue(
        &self,
        message: FlowRunMessage,
        caller: BTreeMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let span = tracing::info_span!(
            "http_trigger.request",
            otel.kind = "server",
            http.request.method = "POST",
            http.route = "/v1/flows/{flow}/runs",
            flow_id = %message.flow_id,
            flow_run_id = %message.flow_run_id,
        );
        telemetry::set_parent_from(&span, &caller);
        async {
            let headers = telemetry::inject_current_context();
            match self.runs.request(&message, &headers).await {
                Ok(()) => {
                    tracing::info!(trigger = %message.trigger, "flow-run requested over HTTP");
                    accepted(&message)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "HTTP trigger: the run could not be queued");
                    unavailable(&error.to_string())
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The flow id of `/v1/flows/{flow}/runs`, or `None` for any other path.
fn run_path_flow(path: &str) -> Option<&str> {
    let flow = path.strip_prefix("/v1/flows/")?.strip_suffix("/runs")?;
    (!flow.is_empty() && !flow.contains('/')).then_some(flow)
}

/// Whether a `Content-Type` value is JSON (`application/json`, parameters allowed).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The caller's W3C trace context headers.
fn trace_headers(req: &Request<Incoming>) -> BTreeMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = req.headers().get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `202 Accepted` with the run's id.
fn accepted(message: &FlowRunMessage) -> Response<Full<Bytes>> {
    let trigger = match &message.trigger {
        crate::message::Trigger::Event { .. } => "event",
        _ => "manual",
    };
    let body = serde_json::json!({
        "flow_run_id": message.flow_run_id,
        "flow": message.flow_id,
        "trigger": trigger,
    });
    json_response(StatusCode::ACCEPTED, "application/json", &body)
}

/// `503` with a `Retry-After`.
fn unavailable(detail: &str) -> Response<Full<Bytes>> {
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, detail);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// An RFC 9457 problem answer.
fn problem(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    json_response(status, "application/problem+json", &body)
}

fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_run_paths_name_a_flow() {
        assert_eq!(
            run_path_flow("/v1/flows/acme-upload/runs"),
            Some("acme-upload")
        );
        assert_eq!(run_path_flow("/v1/flows//runs"), None);
        assert_eq!(run_path_flow("/v1/flows/a/b/runs"), None);
        assert_eq!(run_path_flow("/v1/flows/a/runs/"), None);
        assert_eq!(run_path_flow("/v2/flows/a/runs"), None);
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
    }
}
