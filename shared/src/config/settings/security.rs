//! The `security:` section of `ferry.yaml`: hardened mode, read first because every other
//! section's secret-bearing fields depend on it.
//!
//! ```yaml
//! security:
//!   hardened_mode: true   # default false
//! ```
//!
//! # Security
//!
//! Hardened mode refuses literal secrets (a password in a URL, `literal:` references) and
//! `insecure_skip_verify`. It is a plain switch with no environment fallback: whether a
//! deployment is hardened must be visible in the reviewed file, not in a process's
//! environment.

use crate::config::yaml::{Cx, Map};

/// The keys of the `security:` section.
pub(crate) const KEYS: &[&str] = &["hardened_mode"];

/// Reads `security.hardened_mode` (`false` when absent or unreadable).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>) -> bool {
    section
        .and_then(|s| s.get("hardened_mode"))
        .and_then(|f| f.bool(cx))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;

    #[test]
    fn off_by_default_on_when_written() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!settings.hardened_mode);
        let (settings, errors) = load("security:\n  hardened_mode: true\n", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(settings.hardened_mode);
        let (settings, errors) = load("security:\n  hardened: true\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(!settings.hardened_mode);
    }
}
