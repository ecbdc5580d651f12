//! [`SecretError`]: why a reference could not be resolved, in kinds a caller can act on.
//!
//! Every message starts with the reference (through its redacting `Display`, so a literal
//! shows as `literal:[redacted]`) and then says what went wrong, so an operator reading one
//! log line knows which partner setting to fix. No variant ever holds a resolved value: the
//! reasons come from the OS, from the store's own error text ("permission denied"), or from
//! a JSON syntax error's position, never from a secret's content.
//!
//! The back ends report a [`Fault`] (no reference, cheap to clone, so that one shared fetch
//! can fail every waiter), which the resolver turns into a [`SecretError`] naming the
//! reference each caller asked for.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::SecretRef;

/// A remote secret store, as named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// HashiCorp Vault or OpenBao (KV v2).
    Vault,
    /// AWS Secrets Manager.
    AwsSecretsManager,
}

impl Store {
    /// The store as a stable word: the `store` label of the secret metrics.
    pub fn label(self) -> &'static str {
        match self {
            Store::Vault => "vault",
            Store::AwsSecretsManager => "aws_secrets_manager",
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Vault => "Vault",
            Store::AwsSecretsManager => "AWS Secrets Manager",
        })
    }
}

/// Why a [`SecretRef`] could not be resolved.
///
/// Each message names the reference and the cause, never the value. Only
/// [`SecretError::Unavailable`] is worth retrying as is ([`SecretError::is_transient`]);
/// the others need an operator (a missing secret, a policy, a setting).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecretError {
    /// `env:NAME` and the variable is not set.
    #[error("secret `{reference}`: the environment variable `{variable}` is not set")]
    EnvUnset {
        /// The reference being resolved.
        reference: SecretRef,
        /// The variable's name.
        variable: String,
    },
    /// `env:NAME` and the variable's value is not valid UTF-8.
    #[error("secret `{reference}`: the environment variable `{variable}` is not valid UTF-8")]
    EnvNotUnicode {
        /// The reference being resolved.
        reference: SecretRef,
        /// The variable's name.
        variable: String,
    },
    /// `file:/path` and the file cannot be read (missing, a directory, no permission...).
    #[error("secret `{reference}`: cannot read `{}`: {cause}", path.display())]
    FileUnreadable {
        /// The reference being resolved.
        reference: SecretRef,
        /// The file.
        path: PathBuf,
        /// The OS's reason (its text is part of the message).
        cause: io::Error,
    },
    /// `file:/path` and the content is not UTF-8 text.
    #[error("secret `{reference}`: `{}` is not valid UTF-8 text", path.display())]
    FileNotUtf8 {
        /// The reference being resolved.
        reference: SecretRef,
        /// The file.
        path: PathBuf,
    },
    /// The reference needs a store that the settings do not configure (`vault:` without a
    /// Vault address).
    #[error("secret `{reference}`: no {store} is configured")]
    NotConfigured {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store it needs.
        store: Store,
    },
    /// The store's settings are unusable (a malformed address, an unreadable CA file, a
    /// Vault token that is itself a remote reference).
    #[error("secret `{reference}`: invalid {store} settings: {reason}")]
    InvalidSettings {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
        /// What is wrong.
        reason: String,
    },
    /// The store has no secret at that path or id (Vault 404, AWS `ResourceNotFoundException`).
    #[error("secret `{reference}`: {store} has no such secret")]
    NotFound {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
    },
    /// The secret exists but has no such field.
    #[error("secret `{reference}`: the secret has no field `{field}`")]
    FieldMissing {
        /// The reference being resolved.
        reference: SecretRef,
        /// The missing field.
        field: String,
    },
    /// A field was asked of an AWS secret whose string is not a JSON object.
    #[error("secret `{reference}`: the secret string is not a JSON object ({reason})")]
    NotJson {
        /// The reference being resolved.
        reference: SecretRef,
        /// The parser's complaint or the JSON type found (never the content).
        reason: String,
    },
    /// The AWS secret holds binary data (`SecretBinary`), not a string.
    #[error("secret `{reference}`: the secret holds binary data, not a string")]
    NotText {
        /// The reference being resolved.
        reference: SecretRef,
    },
    /// The store refused our identity access to this secret (Vault 403 after a fresh
    /// login, AWS `AccessDeniedException`, KMS decryption refused).
    #[error("secret `{reference}`: {store} denied access: {reason}")]
    PermissionDenied {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
        /// The store's own words.
        reason: String,
    },
    /// Logging in to the store failed for a reason that is not transient (a rejected role
    /// or secret id, an unreadable service-account token, an unset token variable).
    #[error("secret `{reference}`: logging in to {store} ({method}) failed: {reason}")]
    LoginFailed {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
        /// The login method: `token`, `approle`, `kubernetes`, `credentials`.
        method: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The store cannot be reached or is not serving (connection refused, timeout, 5xx,
    /// sealed, throttled). Transient: try again later.
    #[error("secret `{reference}`: {store} is unavailable: {reason}")]
    Unavailable {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
        /// The network or server error.
        reason: String,
    },
    /// The store answered something this client does not understand.
    #[error("secret `{reference}`: unexpected answer from {store}: {reason}")]
    Unexpected {
        /// The reference being resolved.
        reference: SecretRef,
        /// The store.
        store: Store,
        /// What was unexpected.
        reason: String,
    },
}

impl SecretError {
    /// The error's kind as a stable word, for metrics labels (`error_kind` of
    /// `ferry_secret_resolution_failures_total`).
    pub fn kind_label(&self) -> &'static str {
        match self {
            SecretError::EnvUnset { .. } => "env_unset",
            SecretError::EnvNotUnicode { .. } => "env_not_unicode",
            SecretError::FileUnreadable { .. } => "file_unreadable",
            SecretError::FileNotUtf8 { .. } => "file_not_utf8",
            SecretError::NotConfigured { .. } => "not_configured",
            SecretError::InvalidSettings { .. } => "invalid_settings",
            SecretError::NotFound { .. } => "not_found",
            SecretError::FieldMissing { .. } => "field_missing",
            SecretError::NotJson { .. } => "not_json",
            SecretError::NotText { .. } => "not_text",
            SecretError::PermissionDenied { .. } => "permission_denied",
            SecretError::LoginFailed { .. } => "login_failed",
            SecretError::Unavailable { .. } => "unavailable",
            SecretError::Unexpected { .. } => "unexpected",
        }
    }

    /// Whether retrying later may succeed with no change on our side (the store was
    /// unreachable or overloaded). A worker nacks the flow-run for a delayed retry on
    /// `true` and dead-letters it (an operator must act) on `false`.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::Unavailable { .. })
    }

    /// The reference that failed.
    pub fn reference(&self) -> &SecretRef {
        match self {
            SecretError::EnvUnset { reference, .. }
            | SecretError::EnvNotUnicode { reference, .. }
            | SecretError::FileUnreadable { reference, .. }
            | SecretError::FileNotUtf8 { reference, .. }
            | SecretError::NotConfigured { reference, .. }
            | SecretError::InvalidSettings { reference, .. }
            | SecretError::NotFound { reference, .. }
            | SecretError::FieldMissing { reference, .. }
            | SecretError::NotJson { reference, .. }
            | SecretError::NotText { reference }
            | SecretError::PermissionDenied { reference, .. }
            | SecretError::LoginFailed { reference, .. }
            | SecretError::Unavailable { reference, .. }
            | SecretError::Unexpected { reference, .. } => reference,
        }
    }
}

/// What a remote back end reports: a [`SecretError`] still missing its reference.
///
/// Cloneable so that one in-flight fetch shared by several callers (single flight) can
/// hand the same failure to each of them.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    NotConfigured,
    InvalidSettings(String),
    NotFound,
    NotText,
    PermissionDenied(String),
    LoginFailed {
        method: &'static str,
        reason: String,
    },
    Unavailable(String),
    Unexpected(String),
}

impl Fault {
    /// The caller's error: this fault, for `reference`, from `store`.
    pub(crate) fn into_error(self, store: Store, reference: &SecretRef) -> SecretError {
        let reference = reference.clone();
        match self {
            Fault::NotConfigured => SecretError::NotConfigured { reference, store },
            Fault::InvalidSettings(reason) => SecretError::InvalidSettings {
                reference,
                store,
                reason,
            },
            Fault::NotFound => SecretError::NotFound { reference, store },
            Fault::NotText => SecretError::NotText { reference },
            Fault::PermissionDenied(reason) => SecretError::PermissionDenied {
                reference,
                store,
                reason,
            },
            Fault::LoginFailed { method, reason } => SecretError::LoginFailed {
                reference,
                store,
                method,
                reason,
            },
            Fault::Unavailable(reason) => SecretError::Unavailable {
                reference,
                store,
                reason,
            },
            Fault::Unexpected(reason) => SecretError::Unexpected {
                reference,
                store,
                reason,
            },
        }
    }
}

/// An error and its chain of causes on one line (`a: b: c`), for network errors whose
/// useful part ("Connection refused") is several sources deep. Use only on errors that
/// cannot hold a secret (requests, connections), never on a response body's parse error.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_reference_and_only_unavailable_is_transient() {
        let reference = SecretRef::parse("vault:secret/acme#password").unwrap();
        let e = Fault::NotFound.into_error(Store::Vault, &reference);
        assert_eq!(
            e.to_string(),
            "secret `vault:secret/acme#password`: Vault has no such secret"
        );
        assert!(!e.is_transient());
        let e =
            Fault::Unavailable("connection refused".into()).into_error(Store::Vault, &reference);
        assert!(e.is_transient());
        assert_eq!(e.reference(), &reference);
    }

    #[test]
    fn a_literal_reference_never_shows_in_an_error() {
        let reference = SecretRef::parse("literal:hunter2").unwrap();
        let e = Fault::NotFound.into_error(Store::Vault, &reference);
        assert!(!e.to_string().contains("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
