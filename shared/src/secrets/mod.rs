//! Secret references and their resolution: under construction.

mod reference;
mod secret;
mod settings;

pub use reference::{SecretRef, SecretRefError};
pub use secret::Secret;
pub use settings::{AwsSettings, ResolverSettings, VaultAuth, VaultSettings};
