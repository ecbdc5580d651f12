//! The `retry:` section of `ferry.yaml`: per-file retries within one flow-run (exponential
//! back-off with full jitter). A flow's own `max_attempts` overrides `retry.max_attempts`.
//! Retries of a whole flow-run message are the broker's (`broker.retry_delays`).
//!
//! ```yaml
//! retry:
//!   max_attempts: 3
//!   base_delay: 2s
//!   max_delay: 60s
//! ```

use std::time::Duration;

use crate::config::yaml::{Cx, Map};

/// The keys of the `retry:` section.
pub(crate) const KEYS: &[&str] = &["max_attempts", "base_delay", "max_delay"];

/// Per-file transfer retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// `retry.max_attempts` (default 3): attempts per file, the first one included; a
    /// flow's `max_attempts` overrides it.
    pub max_attempts: u32,
    /// `retry.base_delay` (default 2s): the first back-off delay, doubled at each attempt.
    pub base_delay: Duration,
    /// `retry.max_delay` (default 60s): the longest back-off delay.
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Reads the `retry:` section (`None` when absent: defaults); `max_delay` shorter than
/// `base_delay` is an error.
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>) -> RetrySettings {
    let mut settings = RetrySettings::default();
    let Some(retry) = section else {
        return settings;
    };
    if let Some(n) = retry.get("max_attempts").and_then(|f| f.int(cx, 1u32, 100)) {
        settings.max_attempts = n;
    }
    if let Some(d) = retry.get("base_delay").and_then(|f| f.duration(cx)) {
        settings.base_delay = d;
    }
    if let Some(d) = retry.get("max_delay").and_then(|f| f.duration(cx)) {
        settings.max_delay = d;
    }
    if settings.max_delay < settings.base_delay {
        cx.error(
            retry.loc(),
            "retry.max_delay",
            "must not be shorter than retry.base_delay",
        );
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn max_delay_must_not_be_shorter_than_base_delay() {
        let (settings, errors) = load("retry:\n  base_delay: 5s\n  max_delay: 10s\n", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.retry.base_delay, Duration::from_secs(5));
        assert_eq!(settings.retry.max_delay, Duration::from_secs(10));
        // Against the default max_delay (60s) too.
        let (_, errors) = load("retry:\n  base_delay: 2m\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "retry.max_delay");
    }
}
