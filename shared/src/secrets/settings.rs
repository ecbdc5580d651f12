//! How the worker reaches the secret stores: filled by `config` from `ferry.yaml` and the
//! environment, consumed by the resolver.

use std::path::PathBuf;
use std::time::Duration;

use super::SecretRef;

/// `secrets.stale_grace` when not written: long enough to ride out a Vault restart,
/// unseal or leader election and the first flow-run retries (5s, 30s, 2m, 10m), short
/// enough that a value is never used more than `cache_ttl` + 15 minutes after the store
/// last confirmed it.
pub const DEFAULT_STALE_GRACE: Duration = Duration::from_secs(15 * 60);

/// The longest `secrets.stale_grace` accepted: the grace is a bridge over an outage, not
/// a way to run for days on values nobody can revoke.
pub const MAX_STALE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Everything the resolver needs to know, parsed once at start.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// How long a resolved value is reused before it is fetched again (rotation delay).
    pub cache_ttl: Duration,
    /// How long past `cache_ttl` the last value fetched from Vault or AWS is still served
    /// when the store cannot be reached (refused, timeout, 5xx); zero turns it off. A
    /// definitive answer (403, 404) is never covered. See `secrets/stale.rs`.
    pub stale_grace: Duration,
    /// Vault or OpenBao, when any reference uses `vault:`.
    pub vault: Option<VaultSettings>,
    /// AWS Secrets Manager settings (region, endpoint); credentials come from the default chain.
    pub aws: AwsSettings,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            cache_ttl: Duration::from_secs(300),
            stale_grace: DEFAULT_STALE_GRACE,
            vault: None,
            aws: AwsSettings::default(),
        }
    }
}

/// Where Vault is and how to log in to it.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `https://vault.example:8200` (`vault.address` or `VAULT_ADDR`).
    pub address: String,
    /// Vault Enterprise / OpenBao namespace (`vault.namespace` or `VAULT_NAMESPACE`).
    pub namespace: Option<String>,
    /// A PEM CA file to trust for Vault's TLS certificate (`vault.ca_cert` or `VAULT_CACERT`).
    pub ca_cert: Option<PathBuf>,
    /// The login method.
    pub auth: VaultAuth,
}

/// How the worker logs in to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token, itself a reference (`env:VAULT_TOKEN` by default).
    Token(SecretRef),
    /// AppRole: role id and secret id, both references.
    AppRole {
        /// The auth mount, `approle` by default.
        mount: String,
        /// The role id.
        role_id: SecretRef,
        /// The secret id.
        secret_id: SecretRef,
    },
    /// Kubernetes: the pod's service-account token, exchanged for a Vault token.
    Kubernetes {
        /// The auth mount, `kubernetes` by default.
        mount: String,
        /// The Vault role bound to the service account.
        role: String,
        /// The token file, `/var/run/secrets/kubernetes.io/serviceaccount/token` by default.
        token_file: PathBuf,
    },
}

/// AWS Secrets Manager client settings; absent values fall back to the SDK's defaults
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the default credential chain).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// The region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// Another endpoint (moto in tests, a VPC endpoint in production).
    pub endpoint_url: Option<String>,
}
