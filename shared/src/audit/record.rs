//! [`AuditRecord`]: one file event of the audit trail, and its canonical encoding.
//!
//! A record says what happened to one file and everything an operator needs to answer
//! "did it go, when, by which worker, with which bytes, and if not, why": the time (UTC, to
//! the nanosecond), the flow, partner and direction, the flow-run and its trace, the
//! worker, the file's name, local and remote paths, size and SHA-256, its idempotency key,
//! the outcome and, for a failure, the error's kind and a redacted message.
//!
//! **Canonical encoding.** A record is stored as the compact JSON `serde_json` writes for
//! this struct: fields in declaration order, no whitespace, the time as RFC 3339 with nine
//! fractional digits. The hash chain covers those exact bytes (see `chain.rs`), so `verify`
//! never re-encodes a record: it hashes what is stored, and a parser's leniency cannot hide
//! an edit. `seq` and `prev` are inside the encoded bytes, so a record cannot be moved to
//! another place of the chain without changing its hash.
//!
//! **No secrets.** The message is the report row's, which the engine already made
//! printable and secret-free (FTPS errors never carry credentials); it additionally goes
//! through [`redact_url`](crate::secrets::redact_url) word by word, so that a URL with a
//! password in its user-info can never reach the trail.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What happened to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    /// Delivered by this run.
    Transferred,
    /// Already delivered before: not sent again.
    Duplicate,
    /// Not delivered, or delivered but a follow-up step failed (the error says which).
    Failed,
    /// An upload's local source was deleted after its delivery was recorded.
    SourceDeleted,
    /// A download's remote file was deleted after its delivery was recorded.
    RemoteDeleted,
    /// An upload's local source was moved to the archive folder after its delivery was
    /// recorded (the event's local path is the archived file).
    Archived,
    /// A download's remote file was moved to the processed folder after its delivery was
    /// recorded (the event's remote path is where it went).
    RemoteMoved,
    /// Another worker held the file's claim and delivers it.
    LeftToOtherWorker,
    /// A symbolic link the flow does not follow: left where it is.
    SkippedLink,
}

impl AuditOutcome {
    /// The word used in the trail and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Transferred => "transferred",
            AuditOutcome::Duplicate => "duplicate",
            AuditOutcome::Failed => "failed",
            AuditOutcome::SourceDeleted => "source-deleted",
            AuditOutcome::RemoteDeleted => "remote-deleted",
            AuditOutcome::Archived => "archived",
            AuditOutcome::RemoteMoved => "remote-moved",
            AuditOutcome::LeftToOtherWorker => "left-to-other-worker",
            AuditOutcome::SkippedLink => "skipped-link",
        }
    }
}

impl std::fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way the flow moves files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditDirection {
    /// Local directory to the partner.
    Upload,
    /// The partner to the local directory.
    Download,
}

/// The event itself, before it has a place in the chain (what the engine hands over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (UTC, nanoseconds).
    #[serde(serialize_with = "time_ns", deserialize_with = "parse_time")]
    pub time: DateTime<Utc>,
    /// The flow.
    pub flow: String,
    /// The flow's partner.
    pub partner: String,
    /// Which way.
    pub direction: AuditDirection,
    /// The flow-run.
    pub run_id: String,
    /// The flow-run's trace, when one is exported.
    pub trace_id: Option<String>,
    /// The worker (`<host>-<pid>`).
    pub worker: String,
    /// The file's name (relative to the flow's directory).
    pub file: String,
    /// The local path (an upload's source, a download's destination).
    pub local_path: Option<String>,
    /// The remote path (an upload's destination, a download's source).
    pub remote_path: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex, when known.
    pub sha256: Option<String>,
    /// The idempotency key the file was claimed and recorded under.
    pub idempotency_key: Option<String>,
    /// What happened.
    pub outcome: AuditOutcome,
    /// For a failure or a skip: the error's stable kind.
    pub error_kind: Option<String>,
    /// For a failure or a skip: what went wrong, redacted.
    pub message: Option<String>,
}

/// One record of a flow's audit trail: the event, its place (`seq`) and its link (`prev`).
/// Stored as one flat JSON object (`seq`, `prev`, then the event's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the flow's chain: 1 for the first record ever written, +1 for each next.
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's stored bytes; 64 zeros for the first.
    pub prev: String,
    /// The event (its message redacted).
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditRecord {
    /// `event` at position `seq`, linked to `prev`.
    pub fn new(mut event: AuditEvent, seq: u64, prev: String) -> Self {
        event.message = event.message.map(|m| redact(&m));
        AuditRecord { seq, prev, event }
    }

    /// The canonical bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, integers and enums always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Each word of `message` with any URL password replaced by `***`.
fn redact(message: &str) -> String {
    message
        .split(' ')
        .map(crate::secrets::redact_url)
        .collect::<Vec<_>>()
        .join(" ")
}

fn time_ns<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Nanos, true))
}

fn parse_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(file: &str, outcome: AuditOutcome) -> AuditEvent {
        AuditEvent {
            time: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default(),
            flow: "f".into(),
            partner: "p".into(),
            direction: AuditDirection::Upload,
            run_id: "r".into(),
            trace_id: None,
            worker: "w".into(),
            file: file.into(),
            local_path: Some(format!("/l/{file}")),
            remote_path: Some(format!("/in/{file}")),
            size: 3,
            sha256: Some("ab".repeat(32)),
            idempotency_key: Some("k".into()),
            outcome,
            error_kind: None,
            message: Some("failed at redis://:hunter2@h:6379 today".into()),
        }
    }

    #[test]
    fn encoding_is_stable_round_trips_and_redacts() {
        let record = AuditRecord::new(event("a.xml", AuditOutcome::Failed), 1, "0".repeat(64));
        let bytes = record.encode();
        let text = String::from_utf8(bytes.clone()).unwrap_or_default();
        assert!(text.starts_with(r#"{"seq":1,"prev":"000"#), "{text}");
        assert!(
            text.contains(r#""time":"2023-11-14T22:13:20.123456789Z""#),
            "{text}"
        );
        assert!(text.contains(r#""outcome":"failed""#), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let back = AuditRecord::decode(&bytes).expect("parses");
        assert_eq!(back, record);
        assert_eq!(back.encode(), bytes);
    }
}
