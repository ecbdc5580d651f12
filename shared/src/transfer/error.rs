//! [`TransferError`]: why a whole flow-run could not run (as opposed to one file failing,
//! which is a row of the [`RunReport`](super::RunReport)).
//!
//! Each variant has a [`TransferErrorKind`] the CLI maps to an exit code: configuration
//! problems (2) versus everything else (1).

use std::path::PathBuf;
use std::time::Duration;

use crate::ftps::FtpsError;
use crate::idempotency::IdempotencyError;
use crate::secrets::SecretError;

/// What kind of problem stopped a run, for exit codes and alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferErrorKind {
    /// The flow or its partner is missing or unusable as configured (exit code 2).
    Configuration,
    /// A secret the partner needs could not be resolved.
    Secret,
    /// The idempotency store (Redis) is unreachable or misbehaving: nothing was moved.
    StoreUnavailable,
    /// Another run of the same flow held the flow lock for the whole wait.
    FlowBusy,
    /// The partner could not be reached or listed.
    Partner,
    /// The flow's local directory could not be read.
    LocalIo,
}

impl TransferErrorKind {
    /// A short stable name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferErrorKind::Configuration => "configuration",
            TransferErrorKind::Secret => "secret",
            TransferErrorKind::StoreUnavailable => "store-unavailable",
            TransferErrorKind::FlowBusy => "flow-busy",
            TransferErrorKind::Partner => "partner",
            TransferErrorKind::LocalIo => "local-io",
        }
    }
}

/// A flow-run that could not run at all. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The flow id is not in the configuration.
    #[error("unknown flow {flow_id:?}{}", suggestion(.known))]
    UnknownFlow {
        /// The id asked for.
        flow_id: String,
        /// The closest configured flow id, if one is close.
        known: Option<String>,
    },

    /// The flow or its partner cannot be run as configured.
    #[error("flow {flow_id}: {reason}")]
    Configuration {
        /// The flow.
        flow_id: String,
        /// What is wrong.
        reason: String,
    },

    /// A secret reference (of the partner, or the store's password) could not be resolved.
    #[error("{}{partner}'s {field} could not be resolved: {source}", flow_prefix(.flow_id))]
    Secret {
        /// The flow (empty when connecting the engine).
        flow_id: String,
        /// `partner X`, or `redis`.
        partner: String,
        /// Which field (`auth.password`, `tls.ca_cert`...).
        field: &'static str,
        /// The resolver's error.
        #[source]
        source: Box<SecretError>,
    },

    /// The idempotency store failed: the run moved nothing (or stopped moving files).
    #[error("{}no transfer without the idempotency store: {source}", flow_prefix(.flow_id))]
    Store {
        /// The flow (empty when connecting the engine).
        flow_id: String,
        /// The store's error.
        #[source]
        source: Box<IdempotencyError>,
    },

    /// Another run of this flow held its lock for the whole wait.
    #[error(
        "flow {flow_id} is busy: another run holds its lock{} (waited {waited:?}); \
         try again when it has finished",
        holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    FlowBusy {
        /// The flow.
        flow_id: String,
        /// The lock holder's owner token, when known.
        holder: Option<String>,
        /// How long this run waited.
        waited: Duration,
    },

    /// The partner could not be reached or its directory listed (download flows).
    #[error("flow {flow_id}: partner {partner}: {source}")]
    Partner {
        /// The flow.
        flow_id: String,
        /// The partner.
        partner: String,
        /// The FTPS error, with its kind.
        #[source]
        source: Box<FtpsError>,
    },

    /// The flow's local directory could not be read.
    #[error("flow {flow_id}: cannot read local directory {}: {source}", path.display())]
    LocalIo {
        /// The flow.
        flow_id: String,
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// `flow X: ` for errors of a flow-run, nothing for those of the engine's start.
fn flow_prefix(flow_id: &str) -> String {
    if flow_id.is_empty() {
        String::new()
    } else {
        format!("flow {flow_id}: ")
    }
}

fn suggestion(known: &Option<String>) -> String {
    known
        .as_deref()
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

impl TransferError {
    /// The kind of this error.
    pub fn kind(&self) -> TransferErrorKind {
        match self {
            TransferError::UnknownFlow { .. } | TransferError::Configuration { .. } => {
                TransferErrorKind::Configuration
            }
            TransferError::Secret { .. } => TransferErrorKind::Secret,
            TransferError::Store { .. } => TransferErrorKind::StoreUnavailable,
            TransferError::FlowBusy { .. } => TransferErrorKind::FlowBusy,
            TransferError::Partner { .. } => TransferErrorKind::Partner,
            TransferError::LocalIo { .. } => TransferErrorKind::LocalIo,
        }
    }

    /// Whether the configuration must change before this run can work (CLI exit code 2).
    pub fn is_configuration(&self) -> bool {
        self.kind() == TransferErrorKind::Configuration
    }

    /// Whether running the flow again later may succeed without a change (Redis or the
    /// partner back, the other run finished): the worker retries such runs.
    pub fn is_transient(&self) -> bool {
        match self {
            TransferError::Store { source, .. } => source.is_transient(),
            TransferError::FlowBusy { .. } => true,
            TransferError::Partner { source, .. } => source.is_transient(),
            TransferError::Secret { source, .. } => source.is_transient(),
            TransferError::LocalIo { .. } => true,
            TransferError::UnknownFlow { .. } | TransferError::Configuration { .. } => false,
        }
    }
}
