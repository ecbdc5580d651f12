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
