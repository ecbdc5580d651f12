//! [`SecretRef`]: where a secret lives, as written in the configuration.
//!
//! A field that may hold a secret holds a *reference* that the worker resolves at run time,
//! so that a rotated password needs no restart and the configuration files hold no secret.
//! The syntax, shared by every secret-bearing field:
//!
//! | written                  | meaning                                                      |
//! |--------------------------|--------------------------------------------------------------|
//! | `env:NAME`               | the environment variable `NAME`                              |
//! | `file:/path`             | the file's content, less one final newline                   |
//! | `vault:MOUNT/PATH#FIELD` | field `FIELD` of the KV v2 secret `PATH` under mount `MOUNT` |
//! | `aws-sm:ID#FIELD`        | JSON field `FIELD` of AWS Secrets Manager secret `ID`         |
//! | `aws-sm:ID`              | the whole secret string of `ID`                               |
//! | `literal:VALUE`          | `VALUE` itself                                               |
//! | anything else            | a literal                                                    |
//!
//! Hardened mode forbids literals in secret-bearing fields: [`SecretRef::is_literal`].

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use super::Secret;

/// A parsed secret reference. `Debug` and `Display` never show a literal's value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: an environment variable of the worker.
    Env(String),
    /// `file:/path`: a file on the worker's disk (a mounted Kubernetes secret, say).
    File(PathBuf),
    /// `vault:MOUNT/PATH#FIELD`: a field of a Vault (or OpenBao) KV v2 secret.
    Vault {
        /// The KV v2 mount, e.g. `secret`.
        mount: String,
        /// The secret's path under the mount, e.g. `partners/insurance`.
        path: String,
        /// The field of the secret's data.
        field: String,
    },
    /// `aws-sm:ID#FIELD`: an AWS Secrets Manager secret, or one JSON field of it.
    AwsSecretsManager {
        /// The secret's name or ARN.
        secret_id: String,
        /// The JSON field to take; the whole secret string when absent.
        field: Option<String>,
    },
    /// `literal:VALUE` or a bare string: the value written in the configuration itself.
    Literal(Secret),
}

/// Why a reference could not be parsed. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretRefError {
    /// `env:` with no variable name.
    #[error(
        "`env:` must be followed by an environment variable name, as in `env:PARTNER_PASSWORD`"
    )]
    EmptyEnvName,
    /// `file:` with no path.
    #[error("`file:` must be followed by a path, as in `file:/run/secrets/partner-password`")]
    EmptyFilePath,
    /// `vault:` not of the form `MOUNT/PATH#FIELD`.
    #[error(
        "a Vault reference must look like `vault:MOUNT/PATH#FIELD`, as in `vault:secret/partners/acme#password`"
    )]
    MalformedVault,
    /// `aws-sm:` with no secret id.
    #[error(
        "an AWS Secrets Manager reference must look like `aws-sm:SECRET_ID` or `aws-sm:SECRET_ID#FIELD`"
    )]
    MalformedAws,
}

impl SecretRef {
    /// Where the reference points, as a stable word: the `store` label of the secret
    /// metrics (`env`, `file`, `literal`, `vault`, `aws_secrets_manager`).
    pub fn store_label(&self) -> &'static str {
        match self {
            SecretRef::Env(_) => "env",
            SecretRef::File(_) => "file",
            SecretRef::Literal(_) => "literal",
            SecretRef::Vault { .. } => "vault",
            SecretRef::AwsSecretsManager { .. } => "aws_secrets_manager",
        }
    }

    /// Parses a reference as written in a configuration field.
    pub fn parse(text: &str) -> Result<SecretRef, SecretRefError> {
        if let Some(name) = text.strip_prefix("env:") {
            if name.trim().is_empty() {
                return Err(SecretRefError::EmptyEnvName);
            }
            return Ok(SecretRef::Env(name.trim().to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.trim().is_empty() {
                return Err(SecretRefError::EmptyFilePath);
            }
            return Ok(SecretRef::File(PathBuf::from(path.trim())));
        }
        if let Some(rest) = text.strip_prefix("vault:") {
            let (location, field) = rest.split_once('#').ok_or(SecretRefError::MalformedVault)?;
            let (mount, path) = location
                .split_once('/')
                .ok_or(SecretRefError::MalformedVault)?;
            if mount.is_empty() || path.trim_matches('/').is_empty() || field.is_empty() {
                return Err(SecretRefError::MalformedVault);
            }
            return Ok(SecretRef::Vault {
                mount: mount.to_string(),
                path: path.trim_matches('/').to_string(),
                field: field.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("aws-sm:") {
            let (secret_id, field) = match rest.split_once('#') {
                Some((id, field)) if !field.is_empty() => (id, Some(field.to_string())),
                Some(_) => return Err(SecretRefError::MalformedAws),
                None => (rest, None),
            };
            if secret_id.is_empty() {
                return Err(SecretRefError::MalformedAws);
            }
            return Ok(SecretRef::AwsSecretsManager {
                secret_id: secret_id.to_string(),
                field,
            });
        }
        let value = text.strip_prefix("literal:").unwrap_or(text);
        Ok(SecretRef::Literal(Secret::new(value)))
    }

    /// Whether the value is written in the configuration itself (forbidden in hardened mode).
    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }
}

impl fmt::Display for SecretRef {
    /// The reference as an operator would write it, except that a literal shows as
    /// `literal:[redacted]`: safe for logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Vault { mount, path, field } => write!(f, "vault:{mount}/{path}#{field}"),
            SecretRef::AwsSecretsManager {
                secret_id,
                field: Some(field),
            } => {
                write!(f, "aws-sm:{secret_id}#{field}")
            }
            SecretRef::AwsSecretsManager {
                secret_id,
                field: None,
            } => write!(f, "aws-sm:{secret_id}"),
            SecretRef::Literal(_) => f.write_str("literal:[redacted]"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            SecretRef::parse("env:PW").unwrap(),
            SecretRef::Env("PW".into())
        );
        assert_eq!(
            SecretRef::parse("file:/run/s").unwrap(),
            SecretRef::File("/run/s".into())
        );
        assert_eq!(
            SecretRef::parse("vault:secret/partners/acme#password").unwrap(),
            SecretRef::Vault {
                mount: "secret".into(),
                path: "partners/acme".into(),
                field: "password".into()
            }
        );
        assert_eq!(
            SecretRef::parse("aws-sm:prod/acme#password").unwrap(),
            SecretRef::AwsSecretsManager {
                secret_id: "prod/acme".into(),
                field: Some("password".into())
            }
        );
        assert_eq!(
            SecretRef::parse("aws-sm:prod/acme").unwrap(),
            SecretRef::AwsSecretsManager {
                secret_id: "prod/acme".into(),
                field: None
            }
        );
        assert!(SecretRef::parse("literal:pw").unwrap().is_literal());
        assert!(SecretRef::parse("hunter2").unwrap().is_literal());
    }

    #[test]
    fn malformed_references_are_errors() {
        assert_eq!(SecretRef::parse("env:"), Err(SecretRefError::EmptyEnvName));
        assert_eq!(
            SecretRef::parse("file:"),
            Err(SecretRefError::EmptyFilePath)
        );
        assert_eq!(
            SecretRef::parse("vault:secret#pw"),
            Err(SecretRefError::MalformedVault)
        );
        assert_eq!(
            SecretRef::parse("vault:secret/x"),
            Err(SecretRefError::MalformedVault)
        );
        assert_eq!(
            SecretRef::parse("aws-sm:#f"),
            Err(SecretRefError::MalformedAws)
        );
    }

    #[test]
    fn literals_never_print() {
        let r = SecretRef::parse("literal:hunter2").unwrap();
        assert_eq!(r.to_string(), "literal:[redacted]");
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
