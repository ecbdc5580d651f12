//! A webhook receiver for the `notify:` tests: an HTTP/1.1 server (hyper) on a free
//! loopback port that records every request (path, headers, JSON body, when it came) and
//! answers as the test scripted: a status per request in order, or never (the connection
//! is held open without an answer). Once the script is spent it answers `200`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, with an empty body.
    Status(u16),
    /// No answer, ever (the request hangs until the client gives up).
    Never,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The request path (`/hook`).
    pub path: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, parsed as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
}

impl Hook {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's `event`.
    pub fn event(&self) -> &str {
        self.body["event"].as_str().unwrap_or_default()
    }
}

struct State {
    script: Vec<Answer>,
    hooks: Vec<Hook>,
}

/// The running receiver; it stops with the test's runtime.
#[derive(Clone)]
pub struct WebhookReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers `200` to everything.
    pub async fn start() -> WebhookReceiver {
        Self::scripted(Vec::new()).await
    }

    /// Starts a receiver that answers the n-th request with `script[n]`, then `200`.
    pub async fn scripted(script: Vec<Answer>) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook receiver");
        let receiver = WebhookReceiver {
            addr: listener.local_addr().expect("its address"),
            state: Arc::new(Mutex::new(State {
                script,
                hooks: Vec::new(),
            })),
            arrived: Arc::new(Notify::new()),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let this = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let this = this.clone();
                        async move { Ok::<_, Infallible>(this.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far.
    pub fn hooks(&self) -> Vec<Hook> {
        self.state.lock().expect("receiver state").hooks.clone()
    }

    /// Waits until `count` requests arrived (panics after `timeout` with those that did).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Hook> {
        self.wait_until(timeout, |hooks| hooks.len() >= count).await
    }

    /// Waits until `done` accepts the requests so far (panics after `timeout`).
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let hooks = self.hooks();
            if done(&hooks) {
                return hooks;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "webhook requests within {timeout:?} not as expected: {:#?}",
                hooks.iter().map(|h| (&h.path, &h.body)).collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let headers = request
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        let bytes = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let answer = {
            let mut state = self.state.lock().expect("receiver state");
            let answer = state
                .script
                .get(state.hooks.len())
                .copied()
                .unwrap_or(Answer::Status(200));
            state.hooks.push(Hook {
                path,
                headers,
                body: serde_json::from_slice(&bytes).unwrap_or_default(),
                at: Instant::now(),
            });
            answer
        };
        self.arrived.notify_waiters();
        match answer {
            Answer::Status(code) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                response
            }
            Answer::Never => std::future::pending().await,
        }
    }
}
