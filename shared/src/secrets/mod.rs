//! Secrets: where they are written ([`SecretRef`]), what they resolve to ([`Secret`]),
//! and the one [`Resolver`] that fetches them from the environment, files, Vault/OpenBao
//! or AWS Secrets Manager, with a cache and single-flight fetches in front of the remote
//! stores. Every error ([`SecretError`]) names the reference and never the value.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferry_shared::secrets::SecretError> {
//! use ferry_shared::secrets::{Resolver, ResolverSettings, SecretRef};
//!
//! let resolver = Resolver::new(ResolverSettings::default());
//! let reference = SecretRef::parse("env:PARTNER_PASSWORD").expect("a valid reference");
//! let password = resolver.resolve(&reference).await?;
//! assert!(!password.expose().is_empty());
//! # Ok(())
//! # }
//! ```

mod aws;
mod error;
mod local;
mod redact;
mod reference;
mod resolver;
mod secret;
mod settings;
mod stale;
mod vault;

pub use error::{SecretError, Store};
pub use redact::redact_url;
pub use reference::{SecretRef, SecretRefError};
pub use resolver::Resolver;
pub use secret::Secret;
pub use settings::{
    AwsSettings, DEFAULT_STALE_GRACE, MAX_STALE_GRACE, ResolverSettings, VaultAuth, VaultSettings,
};
