//! [`FlowNotify`]: who hears about a flow's runs, read from the flow's `notify:` section.
//!
//! ```yaml
//! notify:
//!   webhooks:
//!     - url: vault:secret/hooks/ops#url          # a secret reference (the URL may hold a token)
//!       headers:
//!         Authorization: vault:secret/hooks/ops#authorization
//!       on: [failure, dead_letter, success]     # default [failure, dead_letter]
//!       timeout: 10s                            # each request (default 10s)
//!       max_attempts: 5                         # tries of one notification (default 5)
//! ```
//!
//! - `url` and every header value are secret references, resolved when a notification is
//!   sent (so rotation needs no restart). A literal one (`literal:` or a bare string) is
//!   refused in hardened mode, like every other secret-bearing field.
//! - The URL must be `https://`. `http://` is accepted only for a loopback host
//!   (`localhost`, `127.0.0.0/8`, `::1`: a local relay or a test receiver), and never in
//!   hardened mode. A literal URL is checked here; one from a store is checked the same way
//!   once resolved, and a notification to a URL that breaks the rule is not sent.
//! - Errors name the webhook by its index (`notify.webhooks[0].url`) and never print the URL
//!   or a header value: either may be the secret.
//! - Header names are HTTP tokens; `Content-Type`, `Content-Length`, `Host`,
//!   `Transfer-Encoding`, `X-Ferry-Event` and `X-Ferry-Delivery` are ferry's to set.

use std::net::IpAddr;
use std::time::Duration;

use super::settings::SecretRules;
use super::yaml::{Cx, Field, Map};
use crate::secrets::SecretRef;

/// The flow keys read here (added to the flow's known keys).
pub(crate) const KEYS: &[&str] = &["notify"];

/// The keys of the `notify:` section.
pub(crate) const NOTIFY_KEYS: &[&str] = &["webhooks"];

/// The keys of one webhook.
pub(crate) const WEBHOOK_KEYS: &[&str] = &["url", "headers", "on", "timeout", "max_attempts"];

/// Default `timeout` of one webhook request.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `max_attempts` of one notification.
pub const DEFAULT_WEBHOOK_ATTEMPTS: u32 = 5;

/// The longest `timeout` accepted: a notification is not worth holding a connection longer.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Headers ferry sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "x-ferry-event",
    "x-ferry-delivery",
];

/// What happened to a flow-run, as a webhook subscribes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// The run finished and no file failed.
    Success,
    /// The run finished with failed files, or could not run (each attempt of a flow-run).
    Failure,
    /// The run was given up on: dead-lettered at once (no retry can help) or after its
    /// last attempt.
    DeadLetter,
}

impl NotifyEvent {
    /// Every event.
    pub const ALL: [NotifyEvent; 3] = [
        NotifyEvent::Success,
        NotifyEvent::Failure,
        NotifyEvent::DeadLetter,
    ];

    /// The word in `on:`, in the body's `event` and in the metric's `event` label.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Success => "success",
            NotifyEvent::Failure => "failure",
            NotifyEvent::DeadLetter => "dead_letter",
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flow's notifications (`notify:`); the default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowNotify {
    /// `notify.webhooks`, in written order.
    pub webhooks: Vec<Webhook>,
}

impl FlowNotify {
    /// The webhooks (with their index) that want `event`.
    pub fn webhooks_for(&self, event: NotifyEvent) -> impl Iterator<Item = (usize, &Webhook)> {
        self.webhooks
            .iter()
            .enumerate()
            .filter(move |(_, hook)| hook.on.contains(&event))
    }
}

/// One webhook: where to `POST` the notification, with which headers, on which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `url`: a secret reference to the URL.
    pub url: SecretRef,
    /// `headers`: name -> secret reference to the value, in written order.
    pub headers: Vec<(String, SecretRef)>,
    /// `on` (default `[failure, dead_letter]`).
    pub on: Vec<NotifyEvent>,
    /// `timeout` (default 10 s): the longest one request may take, connect included.
    pub timeout: Duration,
    /// `max_attempts` (default 5): requests of one notification before it is given up.
    pub max_attempts: u32,
    /// `http://` to a loopback host is allowed (false in hardened mode).
    pub allow_loopback_http: bool,
}

/// Why a webhook URL is refused. Its sentence never holds the URL (which may carry a
/// token): callers name the field or the secret reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    /// Not a URL at all.
    #[error("is not a URL (write https://host/path)")]
    NotAUrl,
    /// `http://` in hardened mode.
    #[error("must be an https:// URL (hardened mode allows no http://)")]
    HttpInHardenedMode,
    /// `http://` to a host other than loopback.
    #[error("must be an https:// URL (http:// only to a loopback host)")]
    HttpNotLoopback,
    /// Another scheme.
    #[error("must be an https:// URL")]
    NotHttps,
    /// No host.
    #[error("has no host")]
    NoHost,
}

/// Checks a webhook URL: `https://`, or `http://` to a loopback host when allowed.
pub fn check_url(text: &str, allow_loopback_http: bool) -> Result<(), WebhookUrlError> {
    let Ok(url) = url::Url::parse(text.trim()) else {
        return Err(WebhookUrlError::NotAUrl);
    };
    match url.scheme() {
        "https" => {}
        "http" if !allow_loopback_http => return Err(WebhookUrlError::HttpInHardenedMode),
        "http" if !is_loopback(&url) => return Err(WebhookUrlError::HttpNotLoopback),
        "http" => {}
        _ => return Err(WebhookUrlError::NotHttps),
    }
    if url.host().is_none() {
        return Err(WebhookUrlError::NoHost);
    }
    Ok(())
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Reads a flow's `notify:` section (absent: no notifications).
pub(crate) fn read(cx: &mut Cx<'_>, flow: &Map<'_>, rules: SecretRules) -> Option<FlowNotify> {
    let Some(field) = flow.get("notify") else {
        return Some(FlowNotify::default());
    };
    let map = field.map(cx, NOTIFY_KEYS)?;
    let Some(list) = map.get("webhooks") else {
        field.error(
            cx,
            "`notify` needs `webhooks:`, a list of `{url: ..., on: [...]}`",
        );
        return None;
    };
    let items = list.seq(cx)?;
    if items.is_empty() {
        list.error(cx, "list at least one webhook, or leave `notify` out");
        return None;
    }
    let mut webhooks = Vec::new();
    let mut ok = true;
    for item in &items {
        match read_webhook(cx, item.get(), rules) {
            Some(hook) => webhooks.push(hook),
            None => ok = false,
        }
    }
    ok.then_some(FlowNotify { webhooks })
}

fn read_webhook(cx: &mut Cx<'_>, item: Field<'_>, rules: SecretRules) -> Option<Webhook> {
    let map = item.map(cx, WEBHOOK_KEYS)?;
    let allow_loopback_http = !rules.hardened;
    let url = map.required(cx, "url").and_then(|f| {
        let reference = rules.read(cx, f, false)?;
        if let SecretRef::Literal(value) = &reference
            && let Err(reason) = check_url(value.expose(), allow_loopback_http)
        {
            // The sentence names the field (its index), never the URL.
            f.error(cx, format!("the webhook URL {reason}"));
            return None;
        }
        Some(reference)
    });
    let headers = map
        .get("headers")
        .map_or(Some(Vec::new()), |f| read_headers(cx, f, rules));
    let on = map.get("on").map_or(
        Some(vec![NotifyEvent::Failure, NotifyEvent::DeadLetter]),
        |f| read_events(cx, f),
    );
    let timeout = map
        .get("timeout")
        .map_or(Some(DEFAULT_WEBHOOK_TIMEOUT), |f| {
            let timeout = f.positive_duration(cx)?;
            if timeout > MAX_TIMEOUT {
                f.error(cx, "must be at most 2m");
                return None;
            }
            Some(timeout)
        });
    let max_attempts = map
        .get("max_attempts")
        .map_or(Some(DEFAULT_WEBHOOK_ATTEMPTS), |f| f.int(cx, 1u32, 20));
    Some(Webhook {
        url: url?,
        headers: headers?,
        on: on?,
        timeout: timeout?,
        max_attempts: max_attempts?,
        allow_loopback_http,
    })
}

fn read_headers(
    cx: &mut Cx<'_>,
    field: Field<'_>,
    rules: SecretRules,
) -> Option<Vec<(String, SecretRef)>> {
    let map = field.map(cx, &[])?;
    let mut headers = Vec::new();
    let mut ok = true;
    for (name, value) in map.entries() {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            value.error(cx, format!("`{name}` is not an HTTP header name"));
            ok = false;
            continue;
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            value.error(cx, format!("ferry sets `{name}` itself"));
            ok = false;
            continue;
        }
        match rules.read(cx, value, false) {
            Some(reference) => headers.push((name.to_owned(), reference)),
            None => ok = false,
        }
    }
    ok.then_some(headers)
}

fn read_events(cx: &mut Cx<'_>, field: Field<'_>) -> Option<Vec<NotifyEvent>> {
    let items = field.seq(cx)?;
    if items.is_empty() {
        field.error(
            cx,
            "list at least one event: `failure`, `dead_letter` or `success`",
        );
        return None;
    }
    let choices: Vec<(&str, NotifyEvent)> = NotifyEvent::ALL
        .iter()
        .map(|event| (event.as_str(), *event))
        .collect();
    let mut events = Vec::new();
    let mut ok = true;
    for item in &items {
        let item = item.get();
        match item.choice(cx, &choices) {
            Some(event) if events.contains(&event) => {
                item.error(cx, format!("`{event}` is listed twice"));
                ok = false;
            }
            Some(event) => events.push(event),
            None => ok = false,
        }
    }
    ok.then_some(events)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;

    fn load(text: &str, hardened: bool) -> (Option<FlowNotify>, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("flows/f.yaml"), &mut errors);
        let root = parse(&mut cx, text).expect("yaml");
        let map = Map::root(&mut cx, &root, KEYS).expect("map");
        let rules = SecretRules {
            hardened,
            vault_declared: true,
        };
        let notify = read(&mut cx, &map, rules);
        (notify, errors)
    }

    #[test]
    fn a_webhook_takes_its_defaults() {
        let (notify, errors) = load(
            "notify:\n  webhooks:\n    - url: https://hooks.example/x\n",
            false,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let hook = &notify.unwrap().webhooks[0];
        assert_eq!(hook.on, [NotifyEvent::Failure, NotifyEvent::DeadLetter]);
        assert_eq!(hook.timeout, DEFAULT_WEBHOOK_TIMEOUT);
        assert_eq!(hook.max_attempts, DEFAULT_WEBHOOK_ATTEMPTS);
        assert!(hook.headers.is_empty());
        let (notify, errors) = load("{}\n", false);
        assert!(errors.is_empty());
        assert_eq!(notify, Some(FlowNotify::default()));
    }

    #[test]
    fn urls_are_https_or_loopback_http_and_never_printed() {
        assert!(check_url("https://hooks.example/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
        assert!(check_url("http://localhost/x", true).is_ok());
        assert!(check_url("http://[::1]:9/x", true).is_ok());
        assert!(check_url("http://127.0.0.1:8080/x", false).is_err());
        assert!(check_url("http://hooks.example/x", true).is_err());
        assert!(check_url("ftp://hooks.example/x", true).is_err());
        assert!(check_url("hooks.example/x", true).is_err());

        let (_, errors) = load(
            "notify:\n  webhooks:\n    - url: http://hooks.example/x?token=s3cret\n",
            false,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let error = errors[0].to_string();
        assert!(error.contains("notify.webhooks[0].url"), "{error}");
        assert!(error.contains(":3:"), "the line: {error}");
        assert!(
            !error.contains("s3cret") && !error.contains("hooks.example"),
            "{error}"
        );
    }

    #[test]
    fn hardened_mode_refuses_literals_and_http() {
        let (_, errors) = load(
            "notify:\n  webhooks:\n    - url: env:HOOK_URL\n      headers:\n        Authorization: \"Bearer s3cret\"\n",
            true,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].field.ends_with("headers.Authorization"),
            "{errors:?}"
        );
        assert!(!errors[0].to_string().contains("s3cret"));
        let (_, errors) = load(
            "notify:\n  webhooks:\n    - url: literal:http://127.0.0.1/x\n",
            true,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn bad_events_headers_and_keys_say_where() {
        let (_, errors) = load(
            "notify:\n  webhooks:\n    - url: env:U\n      on: [failure, sucess]\n      retries: 3\n      headers:\n        \"Bad Header\": env:H\n        Content-Type: env:T\n",
            false,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text.iter().any(
            |e| e.contains("notify.webhooks[0].on[1]") && e.contains("`sucess` is not allowed")
        ));
        assert!(
            text.iter()
                .any(|e| e.contains("notify.webhooks[0].retries") && e.contains("unknown field"))
        );
        assert!(text.iter().any(|e| e.contains("not an HTTP header name")));
        assert!(text.iter().any(|e| e.contains("ferry sets `Content-Type`")));
        let (_, errors) = load(
            "notify:\n  webhooks:\n    - url: env:U\n      on: [failure, failure]\n",
            false,
        );
        assert!(errors[0].to_string().contains("listed twice"), "{errors:?}");
        let (_, errors) = load("notify:\n  webhooks: []\n", false);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn the_readme_flow_table_documents_every_notify_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md beside the workspace");
        for key in WEBHOOK_KEYS {
            let field = format!("`notify.webhooks[].{key}`");
            assert!(
                readme
                    .lines()
                    .any(|l| l.starts_with("| ") && l.contains(&field)),
                "README's flow table has no row for {field}"
            );
        }
    }
}
