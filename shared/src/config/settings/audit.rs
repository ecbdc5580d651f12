//! The `audit:` section of `ferry.yaml`: the audit trail's switch, its retention and its HMAC
//! key. Its struct, known keys, defaults and checks live here together.
//!
//! ```yaml
//! audit:
//!   enabled: true            # default: on (ferry always has a Redis)
//!   retention:
//!     max_age: 400d          # trim records older than this (optional)
//!     max_records: 1000000   # keep at most this many records per flow (optional)
//!   hmac_key: vault:secret/ferry/audit#key   # optional: HMAC-SHA256 every record
//! ```
//!
//! No retention means the trail is never trimmed: export it (`ferry-worker audit export`) to
//! long-term storage and set a retention once the exports are in place. The HMAC key is a
//! secret reference like every other secret (a literal is refused in hardened mode); it is
//! resolved by the worker, never written to Redis, and needed again by `audit verify`. Keep
//! it: records are verified with the key configured when `verify` runs, so a new key fails
//! every record written under the old one. Setting a key on an existing trail is fine: the
//! unkeyed records before the first keyed one are pinned by its HMAC (see `audit/verify.rs`).

use std::time::Duration;

use crate::config::yaml::{Cx, Map};
use crate::secrets::SecretRef;

/// The keys of the `audit:` section.
pub(crate) const KEYS: &[&str] = &["enabled", "retention", "hmac_key"];
/// The keys of `audit.retention`.
pub(crate) const RETENTION_KEYS: &[&str] = &["max_age", "max_records"];

/// The audit trail's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// `audit.enabled` (default `true`): write a record per file event.
    pub enabled: bool,
    /// `audit.retention.max_age`: records older than this are trimmed (never, when absent).
    pub max_age: Option<Duration>,
    /// `audit.retention.max_records`: at most this many records are kept per flow.
    pub max_records: Option<u64>,
    /// `audit.hmac_key`: a secret reference; every record then carries an HMAC-SHA256.
    pub hmac_key: Option<SecretRef>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            max_age: None,
            max_records: None,
            hmac_key: None,
        }
    }
}

/// Reads the `audit:` section (`None` when absent: defaults; defaults stay for absent keys).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>, hardened: bool) -> AuditSettings {
    let mut settings = AuditSettings::default();
    let Some(section) = section else {
        return settings;
    };
    if let Some(enabled) = section.get("enabled").and_then(|f| f.bool(cx)) {
        settings.enabled = enabled;
    }
    if let Some(retention) = section
        .get("retention")
        .and_then(|f| f.map(cx, RETENTION_KEYS))
    {
        if let Some(age) = retention
            .get("max_age")
            .and_then(|f| f.positive_duration(cx))
        {
            settings.max_age = Some(age);
        }
        // At least 1: the record just written is always kept, so the head stays verifiable.
        if let Some(n) = retention
            .get("max_records")
            .and_then(|f| f.int(cx, 1u64, u64::from(u32::MAX)))
        {
            settings.max_records = Some(n);
        }
    }
    if let Some(key) = section.get("hmac_key").and_then(|f| f.secret(cx, hardened)) {
        settings.hmac_key = Some(key);
    }
    settings
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;

    fn load(text: &str, hardened: bool) -> (AuditSettings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let map = root
            .as_ref()
            .and_then(|node| Map::root(&mut cx, node, &["audit"]));
        let section = map
            .as_ref()
            .and_then(|m| m.get("audit"))
            .and_then(|f| f.map(&mut cx, KEYS));
        let settings = read(&mut cx, section.as_ref(), hardened);
        (settings, errors)
    }

    #[test]
    fn defaults_values_and_errors() {
        let (s, errors) = load("audit: {}\n", false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s, AuditSettings::default());

        let (s, errors) = load(
            "audit:\n  enabled: false\n  retention:\n    max_age: 30d\n    max_records: 10\n  hmac_key: env:AUDIT_KEY\n",
            false,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!s.enabled);
        assert_eq!(s.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(s.max_records, Some(10));
        assert!(s.hmac_key.is_some());

        let (_, errors) = load(
            "audit:\n  retention:\n    max_records: 0\n    max_age: 0s\n    keep: 1\n",
            false,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:?}");

        let (_, errors) = load("audit:\n  hmac_key: literal:abc\n", true);
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].to_string().contains("abc"), "{}", errors[0]);
    }
}
