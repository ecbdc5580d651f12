//! The `http_trigger:` section of `ferry.yaml`: where upstream systems ask for a flow-run
//! over HTTP (`POST /v1/flows/{flow}/runs`, see [`crate::http_trigger`]) and the bearer token
//! they must show. Its struct, known keys, defaults and checks live here together.
//!
//! ```yaml
//! http_trigger:
//!   listen: 127.0.0.1:8470                 # absent: no HTTP trigger
//!   token: vault:secret/ferry/trigger#token  # the bearer token callers send
//! ```
//!
//! # Security
//!
//! The endpoint starts transfers, so it is off unless `listen` is set, and a token is
//! required whenever the endpoint can be reached from another host (an address that is not
//! loopback) and always in hardened mode. A token is a secret reference like any other: never
//! a literal in hardened mode, never logged. The port is its own, not the operations port:
//! exposing metrics to a scraper must not expose the power to start runs.

use std::net::SocketAddr;

use super::SecretRules;
use crate::config::yaml::{Cx, Map};
use crate::secrets::SecretRef;

/// The keys of the `http_trigger:` section.
pub(crate) const KEYS: &[&str] = &["listen", "token"];

/// The HTTP trigger's settings; [`Default`] is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpTriggerSettings {
    /// `http_trigger.listen`: the address to listen on; `None` turns the trigger off.
    pub listen: Option<SocketAddr>,
    /// `http_trigger.token`: the bearer token callers must send, as a secret reference;
    /// `None` accepts any caller (allowed only on loopback, outside hardened mode).
    pub token: Option<SecretRef>,
}

/// Reads the `http_trigger:` section (`None` when absent).
pub(crate) fn read(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    rules: SecretRules,
) -> HttpTriggerSettings {
    let hardened = rules.hardened;
    let Some(section) = section else {
        return HttpTriggerSettings::default();
    };
    let listen = section.get("listen").and_then(|f| f.listen_addr(cx));
    let token = section
        .get("token")
        .and_then(|field| rules.read(cx, field, false));
    let tokenless = token.is_none() && section.get("token").is_none();
    if let Some(addr) = listen
        && tokenless
    {
        if hardened {
            cx.error(
                section.loc(),
                "http_trigger.token",
                "hardened mode requires a bearer token for the HTTP trigger: set `token` to a secret reference",
            );
        } else if !addr.ip().is_loopback() {
            cx.error(
                section.loc(),
                "http_trigger.token",
                format!(
                    "the HTTP trigger listens on {addr}, reachable from other hosts: set `token` to a secret reference (only a loopback address may go without one)"
                ),
            );
        }
    }
    HttpTriggerSettings { listen, token }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;

    fn load(text: &str, hardened: bool) -> (HttpTriggerSettings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let map = root
            .as_ref()
            .and_then(|node| Map::root(&mut cx, node, &["http_trigger"]));
        let section = map
            .as_ref()
            .and_then(|m| m.get("http_trigger"))
            .and_then(|f| f.map(&mut cx, KEYS));
        let rules = SecretRules {
            hardened,
            vault_declared: true,
        };
        let settings = read(&mut cx, section.as_ref(), rules);
        (settings, errors)
    }

    #[test]
    fn off_by_default_and_loopback_may_go_without_a_token() {
        let (settings, errors) = load("{}\n", false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings, HttpTriggerSettings::default());

        let (settings, errors) = load("http_trigger:\n  listen: 127.0.0.1:8470\n", false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.listen, Some("127.0.0.1:8470".parse().unwrap()));
        assert_eq!(settings.token, None);
    }

    #[test]
    fn a_reachable_or_hardened_trigger_needs_a_token() {
        let (_, errors) = load("http_trigger:\n  listen: 0.0.0.0:8470\n", false);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "http_trigger.token");
        assert!(errors[0].to_string().contains("reachable from other hosts"));

        let (_, errors) = load("http_trigger:\n  listen: 127.0.0.1:8470\n", true);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("hardened mode requires"));

        let (settings, errors) = load(
            "http_trigger:\n  listen: 0.0.0.0:8470\n  token: env:FERRY_TRIGGER_TOKEN\n",
            true,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(settings.token.is_some());
    }

    #[test]
    fn hardened_mode_refuses_a_literal_token() {
        let (_, errors) = load(
            "http_trigger:\n  listen: 127.0.0.1:8470\n  token: literal:s3cret-token\n",
            true,
        );
        assert!(!errors.is_empty());
        assert!(
            errors
                .iter()
                .all(|e| !e.to_string().contains("s3cret-token")),
            "the token is never echoed: {errors:?}"
        );
    }
}
