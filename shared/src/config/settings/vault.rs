//! The `vault:` section of `ferry.yaml`: where Vault (or OpenBao) is and how the worker logs
//! in to it, for `vault:` secret references.
//!
//! ```yaml
//! vault:
//!   address: https://vault.example:8200   # else VAULT_ADDR
//!   namespace: ferry                      # else VAULT_NAMESPACE
//!   ca_cert: /etc/ferry/vault-ca.pem      # else VAULT_CACERT
//!   auth:
//!     method: approle                     # token (default), approle or kubernetes
//!     role_id: env:VAULT_ROLE_ID
//!     secret_id: file:/run/secrets/vault-secret-id
//! ```
//!
//! The settings' types ([`VaultSettings`], [`VaultAuth`]) belong to the resolver that uses
//! them (`secrets/settings.rs`): `secrets` must not depend on `config`. This file holds the
//! section's known keys, defaults and checks.
//!
//! # Security
//!
//! Every credential (`token`, `role_id`, `secret_id`) is a secret reference, refused as a
//! literal in hardened mode. A key that the chosen method does not use is an error rather
//! than ignored: a `token` left beside `method: approle` would be a secret nobody reviews.

use std::path::PathBuf;

use super::fields::text_or_env;
use crate::config::yaml::{Cx, Loc, Map};
use crate::secrets::{SecretRef, VaultAuth, VaultSettings};

/// The keys of the `vault:` section.
pub(crate) const KEYS: &[&str] = &["address", "namespace", "ca_cert", "auth"];

/// The keys of `vault.auth` (each method uses some of them).
pub(crate) const AUTH_KEYS: &[&str] = &[
    "method",
    "token",
    "role_id",
    "secret_id",
    "mount",
    "role",
    "token_file",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Token,
    AppRole,
    Kubernetes,
}

/// The `vault:` section, present when written or when `VAULT_ADDR` is set; `root_loc`
/// locates the error of a missing address when the section itself is absent.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    vault: Option<&Map<'_>>,
    root_loc: Option<Loc>,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<VaultSettings> {
    let address = text_or_env(cx, vault, "address", "VAULT_ADDR", env);
    if vault.is_none() && address.is_none() {
        return None;
    }
    let namespace = text_or_env(cx, vault, "namespace", "VAULT_NAMESPACE", env);
    let ca_cert = text_or_env(cx, vault, "ca_cert", "VAULT_CACERT", env).map(PathBuf::from);
    let auth_field = vault.and_then(|v| v.get("auth"));
    let auth_map = auth_field.and_then(|f| f.map(cx, AUTH_KEYS));
    let auth = read_auth(cx, auth_map.as_ref(), hardened);
    let Some(address) = address else {
        let loc = vault.map(Map::loc).or(root_loc).unwrap_or_default();
        cx.error(
            loc,
            "vault.address",
            "missing Vault address; set vault.address (or VAULT_ADDR in the environment)",
        );
        return None;
    };
    Some(VaultSettings {
        address,
        namespace,
        ca_cert,
        auth: auth?,
    })
}

/// `vault.auth`: token (default, `env:VAULT_TOKEN`), approle or kubernetes.
fn read_auth(cx: &mut Cx<'_>, auth: Option<&Map<'_>>, hardened: bool) -> Option<VaultAuth> {
    let Some(auth) = auth else {
        return Some(VaultAuth::Token(SecretRef::Env("VAULT_TOKEN".to_string())));
    };
    let method = match auth.get("method") {
        Some(f) => f.choice(
            cx,
            &[
                ("token", Method::Token),
                ("approle", Method::AppRole),
                ("kubernetes", Method::Kubernetes),
            ],
        )?,
        None => Method::Token,
    };
    let (allowed, name): (&[&str], &str) = match method {
        Method::Token => (&["method", "token"], "token"),
        Method::AppRole => (&["method", "role_id", "secret_id", "mount"], "approle"),
        Method::Kubernetes => (&["method", "role", "mount", "token_file"], "kubernetes"),
    };
    for (key, field) in auth.entries() {
        if !allowed.contains(&key) {
            field.error(
                cx,
                format!("`{key}` is not used by the `{name}` method; remove it or change vault.auth.method"),
            );
        }
    }
    let mount = |cx: &mut Cx<'_>, default: &str| match auth.get("mount") {
        Some(f) => f.non_empty_str(cx),
        None => Some(default.to_string()),
    };
    match method {
        Method::Token => Some(VaultAuth::Token(match auth.get("token") {
            Some(f) => f.secret(cx, hardened)?,
            None => SecretRef::Env("VAULT_TOKEN".to_string()),
        })),
        Method::AppRole => {
            let role_id = auth
                .required(cx, "role_id")
                .and_then(|f| f.secret(cx, hardened));
            let secret_id = auth
                .required(cx, "secret_id")
                .and_then(|f| f.secret(cx, hardened));
            let mount = mount(cx, "approle");
            Some(VaultAuth::AppRole {
                mount: mount?,
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
        Method::Kubernetes => {
            let role = auth.required(cx, "role").and_then(|f| f.non_empty_str(cx));
            let token_file = match auth.get("token_file") {
                Some(f) => f.non_empty_str(cx).map(PathBuf::from),
                None => Some(PathBuf::from(
                    "/var/run/secrets/kubernetes.io/serviceaccount/token",
                )),
            };
            let mount = mount(cx, "kubernetes");
            Some(VaultAuth::Kubernetes {
                mount: mount?,
                role: role?,
                token_file: token_file?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn environment_address_and_the_default_token() {
        let env = [("VAULT_ADDR", "https://vault.env:8200")];
        let (settings, errors) = load("", &env);
        assert!(errors.is_empty(), "{errors:?}");
        let vault = settings.resolver.vault.unwrap();
        assert_eq!(vault.address, "https://vault.env:8200");
        assert!(
            matches!(vault.auth, VaultAuth::Token(SecretRef::Env(ref n)) if n == "VAULT_TOKEN")
        );
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(settings.resolver.vault.is_none());
    }

    #[test]
    fn a_section_without_an_address_is_an_error() {
        let (settings, errors) = load("vault:\n  namespace: ferry\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "vault.address");
        assert!(settings.resolver.vault.is_none());
    }

    #[test]
    fn auth_methods_check_their_fields() {
        let text = "vault:\n  address: https://v\n  auth:\n    method: approle\n    role: x\n    role_id: env:R\n";
        let (_, errors) = load(text, &[]);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["vault.auth.role", "vault.auth.secret_id"]);
    }

    #[test]
    fn hardened_mode_refuses_a_literal_token() {
        let text = "security:\n  hardened_mode: true\nvault:\n  address: https://v\n  auth:\n    token: hvs.LiteralToken\n";
        let (settings, errors) = load(text, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "vault.auth.token");
        assert_eq!((errors[0].line, errors[0].column), (Some(6), Some(5)));
        assert!(!errors[0].to_string().contains("LiteralToken"));
        assert!(settings.resolver.vault.is_none());
        // Outside hardened mode a literal token is accepted (and never printed).
        let (settings, errors) = load(&text.replace("true", "false"), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!format!("{settings:?}").contains("LiteralToken"));
    }
}
