//! [`DeliveryRecord`]: the proof, kept in Redis for the retention period, that a file was
//! delivered, and what the engine needs to explain a skipped duplicate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was delivered, where and when; stored as JSON under the `delivered:` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The file's name as the flow saw it (local name for uploads, remote for downloads).
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// Where the file ended up (remote path for uploads, local path for downloads).
    pub remote_path: String,
    /// When the delivery was completed.
    pub delivered_at: DateTime<Utc>,
    /// The flow-run that delivered it.
    pub flow_run_id: String,
    /// The trace of that flow-run, to find it in the tracing back end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Free-form direction, e.g. `upload` or `download`.
    pub direction: String,
}
