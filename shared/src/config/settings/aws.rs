//! The `aws:` section of `ferry.yaml`: the AWS Secrets Manager client for `aws:` secret
//! references.
//!
//! ```yaml
//! aws:
//!   region: eu-west-1                          # else AWS_REGION
//!   endpoint_url: https://vpce.example.aws     # else AWS_ENDPOINT_URL
//! ```
//!
//! The type ([`AwsSettings`]) belongs to the resolver (`secrets/settings.rs`). There are no
//! credential fields on purpose: credentials come from the SDK's default chain (instance
//! role, web identity, environment), never from `ferry.yaml`.

use super::fields::text_or_env;
use crate::config::yaml::{Cx, Map};
use crate::secrets::AwsSettings;

/// The keys of the `aws:` section.
pub(crate) const KEYS: &[&str] = &["region", "endpoint_url"];

/// Reads the `aws:` section (`None` when absent), each field else its environment variable.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> AwsSettings {
    AwsSettings {
        region: text_or_env(cx, section, "region", "AWS_REGION", env),
        endpoint_url: text_or_env(cx, section, "endpoint_url", "AWS_ENDPOINT_URL", env),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;

    #[test]
    fn file_wins_over_environment() {
        let env = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ];
        let (settings, errors) = load("aws:\n  region: eu-west-1\n", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.resolver.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            settings.resolver.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        let (_, errors) = load("aws:\n  access_key: x\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
