//! The `broker:` section of `ferry.yaml`: RabbitMQ, where flow-runs are queued, retried and
//! dead-lettered, and which flows this deployment's workers serve.
//!
//! ```yaml
//! broker:
//!   url: amqps://ferry@rabbit.example:5671/%2f   # else FERRY_BROKER_URL, else the default
//!   exchange_prefix: ferry
//!   retry_delays: [5s, 30s, 2m, 10m, 30m]
//!   max_attempts: 6
//!   bindings: ["#"]
//! ```
//!
//! # Security
//!
//! The URL may carry a password: `Debug` redacts it, and in hardened mode a password written
//! in the file is refused (the whole URL then comes from `FERRY_BROKER_URL`).

use std::fmt;
use std::time::Duration;

use super::fields::{key_prefix, url_field};
use crate::config::yaml::{Cx, Map};
use crate::secrets::redact_url;

/// The broker URL used when neither `broker.url` nor `FERRY_BROKER_URL` is set.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The keys of the `broker:` section.
pub(crate) const KEYS: &[&str] = &[
    "url",
    "exchange_prefix",
    "retry_delays",
    "max_attempts",
    "bindings",
];

/// RabbitMQ settings. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `broker.url`, else `FERRY_BROKER_URL`, else [`DEFAULT_BROKER_URL`]. May hold a password:
    /// print it with [`redact_url`].
    pub url: String,
    /// `broker.exchange_prefix` (default `ferry`): names of exchanges and queues start with it.
    pub exchange_prefix: String,
    /// `broker.retry_delays` (default `[5s, 30s, 2m, 10m, 30m]`): how long a flow-run that
    /// failed in a way that may pass waits before attempt n+1 (the last delay repeats).
    pub retry_delays: Vec<Duration>,
    /// `broker.max_attempts` (default 6): attempts of one flow-run message, the first one
    /// included, before it is dead-lettered with its last error.
    pub max_attempts: u32,
    /// `broker.bindings` (default `["#"]`, every flow): routing patterns of the flows this
    /// deployment's workers serve (flow ids, `*` for one word, `#` for any), so that a
    /// deployment can dedicate workers to some partners.
    pub bindings: Vec<String>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            url: DEFAULT_BROKER_URL.to_string(),
            exchange_prefix: "ferry".to_string(),
            retry_delays: [5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 6,
            bindings: vec!["#".to_string()],
        }
    }
}

impl fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("url", &redact_url(&self.url))
            .field("exchange_prefix", &self.exchange_prefix)
            .field("retry_delays", &self.retry_delays)
            .field("max_attempts", &self.max_attempts)
            .field("bindings", &self.bindings)
            .finish()
    }
}

/// Reads the `broker:` section (`None` when absent), with `env` for `FERRY_BROKER_URL`.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> BrokerSettings {
    let mut settings = BrokerSettings::default();
    if let Some(url) = url_field(cx, section, "FERRY_BROKER_URL", hardened, env) {
        settings.url = url;
    }
    let Some(broker) = section else {
        return settings;
    };
    if let Some(prefix) = key_prefix(cx, broker, "exchange_prefix") {
        settings.exchange_prefix = prefix;
    }
    if let Some(field) = broker.get("retry_delays")
        && let Some(items) = field.seq(cx)
    {
        // Every item is read (not stopping at the first bad one) so all are reported.
        let read: Vec<Option<Duration>> = items
            .iter()
            .map(|item| item.get().positive_duration(cx))
            .collect();
        let delays: Option<Vec<Duration>> = read.into_iter().collect();
        match delays {
            Some(delays) if !delays.is_empty() => settings.retry_delays = delays,
            Some(_) => field.error(cx, "give at least one delay, such as `[5s, 30s, 2m]`"),
            None => {}
        }
    }
    if let Some(n) = broker
        .get("max_attempts")
        .and_then(|f| f.int(cx, 1u32, 100))
    {
        settings.max_attempts = n;
    }
    if let Some(field) = broker.get("bindings")
        && let Some(items) = field.seq(cx)
    {
        let mut bindings = Vec::new();
        for item in &items {
            let item = item.get();
            let Some(pattern) = item.str(cx) else {
                continue;
            };
            if is_routing_pattern(&pattern) {
                bindings.push(pattern);
            } else {
                item.error(
                    cx,
                    format!(
                        "`{pattern}` is not a routing pattern: write flow ids, `*` (one word) or `#` (any words), such as `invoices-out` or `#`"
                    ),
                );
            }
        }
        if items.is_empty() {
            field.error(cx, "give at least one pattern; `#` serves every flow");
        } else if bindings.len() == items.len() {
            settings.bindings = bindings;
        }
    }
    settings
}

/// Whether `pattern` is a topic binding over flow ids: a flow id, `*` or `#`. Flow ids may
/// contain `.`, which topic routing reads as a word separator, so the words of a pattern
/// are checked one by one.
fn is_routing_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.split('.').all(|word| {
            matches!(word, "*" | "#")
                || (!word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn environment_url_only_when_the_file_has_none() {
        let env = [("FERRY_BROKER_URL", "amqp://env-host")];
        let (settings, errors) = load("", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.broker.url, "amqp://env-host");
        let (settings, errors) = load("broker:\n  url: amqp://file-host\n", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.broker.url, "amqp://file-host");
    }

    #[test]
    fn bad_delays_and_bindings_are_each_reported_and_defaults_kept() {
        let text = "broker:\n  retry_delays: [5s, 0s, soon]\n  bindings: [invoices-out, 'a b']\n";
        let (settings, errors) = load(text, &[]);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "broker.retry_delays[1]",
                "broker.retry_delays[2]",
                "broker.bindings[1]"
            ],
            "{errors:?}"
        );
        assert_eq!(settings.broker, BrokerSettings::default());
    }

    #[test]
    fn routing_patterns() {
        assert!(is_routing_pattern("invoices-out"));
        assert!(is_routing_pattern("acme.*"));
        assert!(is_routing_pattern("#"));
        assert!(!is_routing_pattern("acme..x"));
        assert!(!is_routing_pattern("a b"));
        assert!(!is_routing_pattern(""));
    }
}
