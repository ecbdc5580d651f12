//! The local sources: environment variables, files and literals.
//!
//! They need no network and no login, so they are read afresh on every resolution (a
//! Kubernetes secret mounted as a file rotates in place and is seen at once). They are also
//! the only sources allowed for the credentials the remote stores need (the Vault token,
//! the AppRole ids), which are resolved here "non-recursively": a Vault token kept in
//! Vault would be a chicken-and-egg problem.

use std::path::Path;

use super::{Secret, SecretError, SecretRef};

/// Resolves an `env:`, `file:` or literal reference; `None` for a remote one (for the
/// credentials of a store, which must not depend on another store).
pub(crate) async fn resolve(reference: &SecretRef) -> Option<Result<Secret, SecretError>> {
    match reference {
        SecretRef::Env(variable) => Some(read_env(reference, variable)),
        SecretRef::File(path) => Some(read_file(reference, path).await),
        SecretRef::Literal(value) => Some(Ok(value.clone())),
        SecretRef::Vault { .. } | SecretRef::AwsSecretsManager { .. } => None,
    }
}

/// `env:NAME`: the variable's value.
pub(crate) fn read_env(reference: &SecretRef, variable: &str) -> Result<Secret, SecretError> {
    match std::env::var(variable) {
        Ok(value) => Ok(Secret::new(value)),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvUnset {
            reference: reference.clone(),
            variable: variable.to_string(),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode {
            reference: reference.clone(),
            variable: variable.to_string(),
        }),
    }
}

/// `file:/path`: the file's content, less one final line ending.
pub(crate) async fn read_file(reference: &SecretRef, path: &Path) -> Result<Secret, SecretError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|cause| SecretError::FileUnreadable {
            reference: reference.clone(),
            path: path.to_path_buf(),
            cause,
        })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::FileNotUtf8 {
        reference: reference.clone(),
        path: path.to_path_buf(),
    })?;
    Ok(Secret::new(strip_final_newline(text)))
}

/// Removes ONE final line ending (`\n` or `\r\n`), as editors and `echo` add one; any other
/// whitespace is part of the secret.
fn strip_final_newline(mut text: String) -> String {
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_final_newline_is_removed() {
        assert_eq!(strip_final_newline("pw".into()), "pw");
        assert_eq!(strip_final_newline("pw\n".into()), "pw");
        assert_eq!(strip_final_newline("pw\r\n".into()), "pw");
        assert_eq!(strip_final_newline("pw\n\n".into()), "pw\n");
        assert_eq!(strip_final_newline(" pw \r".into()), " pw \r");
    }
}
