//! [`FlowPlan`]: one flow's configuration, turned into the engine's terms once per run.
//!
//! The engine never reads the configuration types directly: this is the one place that
//! knows their shape, applies the defaults of the issue (3 attempts, 2 s base delay, 60 s
//! cap, 5 min run limit, 4 sessions per partner) and compiles the globs.

use std::path::PathBuf;
use std::time::Duration;

use super::error::TransferError;
use super::report::Direction;
use super::retry::RetryPolicy;
use crate::config::{self, Config, FileSelector, IdempotencyMode};

/// Everything the engine needs to run one flow.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    /// The flow's id.
    pub flow_id: String,
    /// Upload or download.
    pub direction: Direction,
    /// The partner's id.
    pub partner_id: String,
    /// The directory on the partner's server.
    pub remote_dir: String,
    /// The local directory (source of uploads, destination of downloads).
    pub local_dir: PathBuf,
    /// Which files the flow takes (any selector matching).
    pub selectors: Vec<FileSelector>,
    /// Files modified more recently than this are left for a later run.
    pub min_file_age: Duration,
    /// How delivered files are recognised.
    pub idempotency: IdempotencyMode,
    /// Delete the source (local file for uploads, remote file for downloads) once the
    /// delivery is recorded.
    pub delete_after_transfer: bool,
    /// What happens to the source once the delivery is recorded (see `after_transfer.rs`).
    pub after_transfer: config::AfterTransfer,
    /// What happens to a file that failed for good (see `dead_letter.rs`).
    pub on_failure: config::OnFailure,
    /// Replace a file already under the same name at the destination.
    pub overwrite: bool,
    /// Take links to regular files inside the local folder.
    pub follow_links: bool,
    /// Keep each file's modification time at the destination.
    pub preserve_mtime: bool,
    /// The partner's marker-file convention (see `markers.rs`).
    pub done_marker: Option<config::DoneMarker>,
    /// Per-file retries of transient errors.
    pub retry: RetryPolicy,
    /// The run's time limit.
    pub run_timeout: Duration,
    /// How long delivery records are kept.
    pub retention: Duration,
    /// Sessions opened to the partner at most.
    pub max_connections: usize,
    /// The order files are taken in and how many one run takes.
    pub limits: config::FlowLimits,
}

impl FlowPlan {
    /// The plan of flow `flow_id`, from the loaded configuration.
    pub fn from_config(config: &Config, flow_id: &str) -> Result<Self, TransferError> {
        let Some(flow) = config.flows.get(flow_id) else {
            let known = config
                .flows
                .keys()
                .map(|k| (strsim::jaro_winkler(k, flow_id), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone());
            return Err(TransferError::UnknownFlow {
                flow_id: flow_id.to_owned(),
                known,
            });
        };
        let configuration = |reason: String| TransferError::Configuration {
            flow_id: flow_id.to_owned(),
            reason,
        };
        if !flow.enabled {
            return Err(configuration(
                "the flow is disabled (`enabled: false`)".into(),
            ));
        }
        let partner = config.partner_of(flow).ok_or_else(|| {
            configuration(format!(
                "partner {:?} is not configured",
                flow.remote.partner
            ))
        })?;
        let retry = &config.settings.retry;
        Ok(FlowPlan {
            flow_id: flow.id.clone(),
            direction: match flow.direction {
                config::Direction::Upload => Direction::Upload,
                config::Direction::Download => Direction::Download,
            },
            partner_id: partner.id.clone(),
            remote_dir: flow.remote.path.clone(),
            local_dir: flow.local_path.clone(),
            selectors: flow.files.clone(),
            min_file_age: flow.min_file_age,
            idempotency: flow.idempotency_mode,
            delete_after_transfer: flow.delete_after_transfer,
            after_transfer: flow.after_transfer.clone(),
            on_failure: flow.on_failure.clone(),
            overwrite: flow.overwrite,
            follow_links: flow.follow_links,
            preserve_mtime: flow.preserve_mtime,
            done_marker: flow.done_marker.clone(),
            retry: RetryPolicy {
                max_attempts: flow.max_attempts,
                base_delay: retry.base_delay,
                max_delay: retry.max_delay,
            },
            run_timeout: flow.run_timeout,
            retention: config.settings.redis.delivery_retention,
            max_connections: usize::from(partner.ftps.connection.max_connections),
            limits: flow.limits,
        })
    }

    /// Whether a file, by its `/`-separated name relative to the flow's directory, is one
    /// the flow takes.
    pub fn selects(&self, relative_name: &str) -> bool {
        self.selectors.iter().any(|s| s.matches(relative_name))
    }

    /// Whether the local walk descends into subdirectories (a pattern says `**`).
    pub fn is_recursive(&self) -> bool {
        self.selectors.iter().any(|s| s.pattern.contains("**"))
    }
}
