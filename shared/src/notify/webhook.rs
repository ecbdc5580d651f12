//! Delivering one notification to one webhook: resolve the URL and headers, check the URL,
//! `POST` the body, and retry with backoff until a 2xx answer or the webhook's
//! `max_attempts`.
//!
//! - Each request is bounded by the webhook's `timeout` (connect included); redirects are
//!   not followed (a 3xx is a refusal: the body would otherwise go somewhere unconfigured).
//! - Retried: no answer (refused, reset, timeout), `408`, `429` and `5xx`, after 1 s, 2 s,
//!   4 s... (equal jitter, at most 30 s; [`crate::backoff`]). Not retried: any other answer
//!   (a `4xx` says the request itself is wrong), a secret that cannot be resolved for good,
//!   a URL that is not `https://` (or loopback `http://`).
//! - Nothing logged names the URL or a header value: the webhook is named by its flow and
//!   index, a secret by its reference, and a transport error is stripped of its URL.

use std::time::Duration;

use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::{NotifyEvent, Webhook, check_url};
use crate::secrets::{Resolver, SecretError};
use crate::telemetry::LogEvent;

/// The first wait between two attempts.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How a notification ended (the metric's `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeliveryResult {
    /// A 2xx answer.
    Delivered,
    /// Given up.
    Failed,
}

impl DeliveryResult {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::Failed => "failed",
        }
    }
}

/// One notification to send.
pub(super) struct Delivery {
    pub(super) flow_id: String,
    pub(super) index: usize,
    pub(super) hook: Webhook,
    pub(super) event: NotifyEvent,
    pub(super) delivery_id: String,
    pub(super) body: Vec<u8>,
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    /// Worth another attempt; why not this time.
    Retry(String),
    /// No attempt can help; why.
    GiveUp(String),
}

/// Sends `delivery` until it is delivered or given up; logs and returns how it ended.
pub(super) async fn deliver(
    client: &reqwest::Client,
    resolver: &Resolver,
    delivery: &Delivery,
) -> DeliveryResult {
    let mut backoff = Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY);
    let max_attempts = delivery.hook.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let reason = match try_once(client, resolver, delivery).await {
            Attempt::Delivered(status) => {
                info!(
                    event = LogEvent::WebhookDelivered.as_str(),
                    notify.event = delivery.event.as_str(),
                    webhook = delivery.index,
                    attempt,
                    status,
                    "webhook notified"
                );
                return DeliveryResult::Delivered;
            }
            Attempt::GiveUp(reason) => reason,
            Attempt::Retry(reason) if attempt < max_attempts => {
                let delay = backoff.next_delay();
                debug!(
                    notify.event = delivery.event.as_str(),
                    webhook = delivery.index,
                    attempt,
                    reason,
                    ?delay,
                    "webhook notification failed; trying again"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            Attempt::Retry(reason) => reason,
        };
        warn!(
            event = LogEvent::WebhookFailed.as_str(),
            notify.event = delivery.event.as_str(),
            webhook = delivery.index,
            attempts = attempt,
            reason,
            "webhook notification given up"
        );
        return DeliveryResult::Failed;
    }
}

async fn try_once(client: &reqwest::Client, resolver: &Resolver, delivery: &Delivery) -> Attempt {
    let hook = &delivery.hook;
    let url = match resolver.resolve(&hook.url).await {
        Ok(url) => url,
        Err(error) => return secret_failed("url", &error),
    };
    if let Err(reason) = check_url(url.expose(), hook.allow_loopback_http) {
        // The reference, never the value.
        return Attempt::GiveUp(format!("the URL from `{}` {reason}", hook.url));
    }
    let mut request = client
        .post(url.expose().trim())
        .timeout(hook.timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("x-ferry-event", delivery.event.as_str())
        .header("x-ferry-delivery", delivery.delivery_id.as_str());
    for (name, reference) in &hook.headers {
        let value = match resolver.resolve(reference).await {
            Ok(value) => value,
            Err(error) => return secret_failed(name, &error),
        };
        let (Ok(name), Ok(mut value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) else {
            return Attempt::GiveUp(format!(
                "the value of header `{name}` from `{reference}` is not a valid header value"
            ));
        };
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    match request.body(delivery.body.clone()).send().await {
        Ok(answer) => {
            let status = answer.status();
            if status.is_success() {
                Attempt::Delivered(status.as_u16())
            } else if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Retry(format!("answered {}", status.as_u16()))
            } else {
                Attempt::GiveUp(format!("answered {} (not retried)", status.as_u16()))
            }
        }
        Err(error) => Attempt::Retry(transport_reason(error, hook.timeout)),
    }
}

/// A secret that could not be resolved: retried when the store may come back.
fn secret_failed(what: &str, error: &SecretError) -> Attempt {
    // A SecretError names the reference, never the value.
    let reason = format!("{what}: {error}");
    if error.is_transient() {
        Attempt::Retry(reason)
    } else {
        Attempt::GiveUp(reason)
    }
}

/// Why a request got no answer, without its URL.
fn transport_reason(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {timeout:?}")
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        format!("request failed: {}", error.without_url())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::secrets::{ResolverSettings, SecretRef};

    /// A loopback server answering every request with `status`; counts the requests.
    async fn answering(status: u16) -> (String, Arc<AtomicUsize>) {
        answering_with(status, String::new()).await
    }

    /// [`answering`] with `headers` (`name: value\r\n` lines) added to each answer.
    async fn answering_with(status: u16, headers: String) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                let headers = headers.clone();
                tokio::spawn(async move {
                    // The whole request fits one read (headers and a small body).
                    let mut buffer = vec![0; 64 * 1024];
                    if stream.read(&mut buffer).await.unwrap_or(0) > 0 {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                });
            }
        });
        (url, count)
    }

    fn delivery(url: SecretRef, max_attempts: u32) -> Delivery {
        Delivery {
            flow_id: "f".into(),
            index: 0,
            hook: Webhook {
                url,
                headers: Vec::new(),
                on: vec![NotifyEvent::Failure],
                timeout: Duration::from_secs(5),
                max_attempts,
                allow_loopback_http: true,
            },
            event: NotifyEvent::Failure,
            delivery_id: "d".into(),
            body: b"{}".to_vec(),
        }
    }

    fn client() -> reqwest::Client {
        super::super::http_client().unwrap()
    }

    #[tokio::test]
    async fn a_redirect_is_a_failed_delivery_and_never_followed() {
        let resolver = Resolver::new(ResolverSettings::default());
        let (elsewhere, followed) = answering(204).await;
        let (url, count) = answering_with(302, format!("location: {elsewhere}\r\n")).await;
        let hook = delivery(SecretRef::parse(&url).unwrap(), 3);
        assert_eq!(
            deliver(&client(), &resolver, &hook).await,
            DeliveryResult::Failed
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "a 3xx is final");
        assert_eq!(followed.load(Ordering::SeqCst), 0, "never followed");
    }

    #[tokio::test]
    async fn a_4xx_answer_is_final_and_a_5xx_is_retried_up_to_max_attempts() {
        let resolver = Resolver::new(ResolverSettings::default());
        let (url, count) = answering(400).await;
        let hook = delivery(SecretRef::parse(&url).unwrap(), 3);
        assert_eq!(
            deliver(&client(), &resolver, &hook).await,
            DeliveryResult::Failed
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "a 400 is not retried");

        let (url, count) = answering(500).await;
        let hook = delivery(SecretRef::parse(&url).unwrap(), 2);
        assert_eq!(
            deliver(&client(), &resolver, &hook).await,
            DeliveryResult::Failed
        );
        assert_eq!(count.load(Ordering::SeqCst), 2, "max_attempts requests");

        let (url, count) = answering(204).await;
        let hook = delivery(SecretRef::parse(&url).unwrap(), 2);
        assert_eq!(
            deliver(&client(), &resolver, &hook).await,
            DeliveryResult::Delivered
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_url_from_a_store_that_breaks_the_rule_or_cannot_be_read_is_never_requested() {
        let resolver = Resolver::new(ResolverSettings::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "http://hooks.example/x?token=s3cret\n").unwrap();
        let reference = SecretRef::parse(&format!("file:{}", file.display())).unwrap();
        let hook = delivery(reference, 3);
        match try_once(&client(), &resolver, &hook).await {
            Attempt::GiveUp(reason) => {
                assert!(reason.contains("must be an https:// URL"), "{reason}");
                assert!(reason.contains("file:"), "names the reference: {reason}");
                assert!(!reason.contains("s3cret") && !reason.contains("hooks.example"));
            }
            _ => panic!("an http:// URL to another host must not be requested"),
        }
        let missing = SecretRef::parse("env:FERRY_TEST_NO_SUCH_HOOK_URL").unwrap();
        let hook = delivery(missing, 3);
        assert!(matches!(
            try_once(&client(), &resolver, &hook).await,
            Attempt::GiveUp(_)
        ));
    }
}
