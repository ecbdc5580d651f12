//! Field readers that several sections of `ferry.yaml` share: a URL with its environment
//! fallback, a text with its environment fallback, a key or queue name prefix.
//!
//! The environment is read only when the field is absent from the file: the file, being
//! reviewed and versioned, wins. An empty variable counts as unset.

use crate::config::yaml::{Cx, Map};
use crate::secrets::redact_url;

/// `url` of a section, else the environment variable; in hardened mode a password written
/// in the file is refused (put the whole URL in the environment instead).
pub(super) fn url_field(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    env_name: &str,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let Some(field) = section.and_then(|s| s.get("url")) else {
        return env(env_name).filter(|v| !v.is_empty());
    };
    let url = field.non_empty_str(cx)?;
    if !url.contains("://") {
        field.error(cx, "must be a URL such as `scheme://host:port`");
        return None;
    }
    if hardened && url_has_password(&url) {
        field.error(
            cx,
            format!(
                "hardened mode forbids a password written in the configuration; remove it from the URL and set {env_name} in the environment instead"
            ),
        );
        return None;
    }
    Some(url)
}

/// Whether a URL carries a password in its user-info.
fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

/// A prefix for keys or exchange names: `[A-Za-z0-9._-]`, not empty.
pub(super) fn key_prefix(cx: &mut Cx<'_>, section: &Map<'_>, key: &str) -> Option<String> {
    let field = section.get(key)?;
    let text = field.str(cx)?;
    if !crate::config::is_valid_id(&text) {
        field.error(
            cx,
            "must be letters, digits, `.`, `_` or `-` only (it is part of key and queue names)",
        );
        return None;
    }
    Some(text)
}

/// A text field of a section, else an environment variable.
pub(super) fn text_or_env(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    key: &str,
    env_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    match section.and_then(|s| s.get(key)) {
        Some(field) => field.non_empty_str(cx),
        None => env(env_name).filter(|v| !v.is_empty()),
    }
}
