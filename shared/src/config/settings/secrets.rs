//! The `secrets:` section of `ferry.yaml`: how long a value from Vault or AWS is reused
//! (`cache_ttl`) and how long past that it may still be served while the store cannot be
//! reached (`stale_grace`). Its known keys, defaults and checks live here together.

use crate::config::yaml::{Cx, Map};
use crate::secrets::{MAX_STALE_GRACE, ResolverSettings};

/// The keys of the `secrets:` section.
pub(crate) const KEYS: &[&str] = &["cache_ttl", "stale_grace"];

/// Reads the `secrets:` section (`None` when absent) into `resolver`'s `cache_ttl` and
/// `stale_grace` (defaults stay for absent keys; `vault.rs` and `aws.rs` fill the rest).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>, resolver: &mut ResolverSettings) {
    let Some(section) = section else {
        return;
    };
    if let Some(ttl) = section.get("cache_ttl").and_then(|f| f.duration(cx)) {
        resolver.cache_ttl = ttl;
    }
    if let Some(field) = section.get("stale_grace")
        && let Some(grace) = field.duration(cx)
    {
        // `0s` turns the grace off: an unreachable store fails the run at once.
        if grace > MAX_STALE_GRACE {
            field.error(
                cx,
                "must be at most 24h: the grace bridges a store outage, it must not keep unconfirmed secrets in use for days",
            );
        } else {
            resolver.stale_grace = grace;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;
    use crate::secrets::DEFAULT_STALE_GRACE;

    fn load(text: &str) -> (ResolverSettings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let mut resolver = ResolverSettings::default();
        let map = root
            .as_ref()
            .and_then(|node| Map::root(&mut cx, node, &["secrets"]));
        let section = map
            .as_ref()
            .and_then(|m| m.get("secrets"))
            .and_then(|f| f.map(&mut cx, KEYS));
        read(&mut cx, section.as_ref(), &mut resolver);
        (resolver, errors)
    }

    #[test]
    fn defaults_zero_and_bounds() {
        let (resolver, errors) = load("secrets:\n  cache_ttl: 1m\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(resolver.cache_ttl, Duration::from_secs(60));
        assert_eq!(resolver.stale_grace, DEFAULT_STALE_GRACE);

        let (resolver, errors) = load("secrets:\n  stale_grace: 0s\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(resolver.stale_grace, Duration::ZERO);

        let (resolver, errors) = load("secrets:\n  stale_grace: 2d\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "secrets.stale_grace");
        assert!(
            errors[0].to_string().contains("at most 24h"),
            "{}",
            errors[0]
        );
        assert_eq!(resolver.stale_grace, DEFAULT_STALE_GRACE);

        let (_, errors) = load("secrets:\n  stale_grace: soon\n");
        assert_eq!(errors[0].field, "secrets.stale_grace");

        let (_, errors) = load("secrets:\n  grace: 5m\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
