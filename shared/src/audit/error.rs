//! [`AuditError`]: why the audit trail could not be written or read.

use thiserror::Error;

use crate::idempotency::IdempotencyError;
use crate::secrets::SecretError;

/// What kind of audit failure this is: a stable word to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditErrorKind {
    /// Redis did not answer or refused the command.
    Store,
    /// The HMAC key's secret reference could not be resolved.
    Key,
    /// Redis answered something the trail does not expect.
    Protocol,
    /// The output file could not be written.
    Io,
}

/// An audit trail operation that failed. Never carries a secret: store errors redact the
/// URL, secret errors name the reference, not its value.
#[derive(Debug, Error)]
pub enum AuditError {
    /// Redis did not answer or refused.
    #[error("audit trail of flow {flow}: {source}")]
    Store {
        /// The flow.
        flow: String,
        /// The store's error.
        #[source]
        source: Box<IdempotencyError>,
    },
    /// `audit.hmac_key` could not be resolved.
    #[error("audit.hmac_key could not be resolved: {source}")]
    Key {
        /// The resolver's error.
        #[source]
        source: Box<SecretError>,
    },
    /// Redis answered something unexpected.
    #[error("audit trail of flow {flow}: {reason}")]
    Protocol {
        /// The flow.
        flow: String,
        /// What was wrong.
        reason: String,
    },
    /// Writing the output failed.
    #[error("writing the audit trail: {0}")]
    Io(#[from] std::io::Error),
}

impl AuditError {
    /// The stable kind.
    pub fn kind(&self) -> AuditErrorKind {
        match self {
            AuditError::Store { .. } => AuditErrorKind::Store,
            AuditError::Key { .. } => AuditErrorKind::Key,
            AuditError::Protocol { .. } => AuditErrorKind::Protocol,
            AuditError::Io(_) => AuditErrorKind::Io,
        }
    }
}
