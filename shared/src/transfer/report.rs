//! The result of one flow-run: a row per file and the totals, as the CLI prints them
//! (`summary_line`) and as `--json` serialises them.
//!
//! The report is the operator's answer to "what happened to my files?": every file the run
//! looked at has exactly one row, and a row that is not a success says why.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::ftps::{FtpsErrorKind, Verified, printable};

/// Which way a flow moves files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Local directory -> partner.
    Upload,
    /// Partner -> local directory.
    Download,
}

impl Direction {
    /// `upload` or `download`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Delivered by this run.
    Transferred,
    /// Already delivered (by an earlier run or another worker): not sent again.
    Duplicate,
    /// Not delivered, or delivered but a follow-up step (deleting the source) failed; the
    /// row's error says which.
    Failed,
    /// Another worker holds the claim on this file right now and will deliver it.
    LeftToOtherWorker,
    /// Not taken, on purpose (a symbolic link ferry does not follow); the row's error says
    /// why. It stays where it is and does not fail the run.
    Skipped,
}

impl Outcome {
    /// The word used in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Transferred => "transferred",
            Outcome::Duplicate => "duplicate",
            Outcome::Failed => "failed",
            Outcome::LeftToOtherWorker => "left-to-other-worker",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What kind of failure a report row has: a stable word to branch or alert on.
///
/// Serialised (and displayed) as the snake_case words of the FTPS error kinds
/// (`connection_refused`, `certificate_validation`, `local_file_changed`...) and the
/// engine's own (`store_unavailable`, `lease_lost`, `run_timeout`, `delete_source_failed`,
/// `not_found`, `local_io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileErrorKind {
    /// The partner's server, or the way to it: the FTPS error's kind.
    Partner(FtpsErrorKind),
    /// The idempotency store (Redis) did not answer: nothing was moved without it.
    StoreUnavailable,
    /// The file's claim expired or was taken over while it was being worked on.
    LeaseLost,
    /// The run reached its time limit before the file was done.
    RunTimeout,
    /// Delivered, but the source could not be deleted afterwards.
    DeleteSourceFailed,
    /// A file asked for by name is not among the flow's matching, stable files.
    NotFound,
    /// A local file could not be read or written.
    LocalIo,
    /// A symbolic link in the local folder that the flow does not follow.
    LinkNotFollowed,
}

impl FileErrorKind {
    /// The stable word.
    pub fn as_str(self) -> &'static str {
        match self {
            FileErrorKind::Partner(kind) => kind.as_str(),
            FileErrorKind::StoreUnavailable => "store_unavailable",
            FileErrorKind::LeaseLost => "lease_lost",
            FileErrorKind::RunTimeout => "run_timeout",
            FileErrorKind::DeleteSourceFailed => "delete_source_failed",
            FileErrorKind::NotFound => "not_found",
            FileErrorKind::LocalIo => "local_io",
            FileErrorKind::LinkNotFollowed => "link_not_followed",
        }
    }
}

impl fmt::Display for FileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FileErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for FileErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why a file failed: a stable kind to branch or alert on, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// What kind of failure this is.
    pub kind: FileErrorKind,
    /// What went wrong, without secrets, printable (no control or bidi characters).
    pub message: String,
    /// Whether running the flow again later may succeed without anyone changing anything
    /// (the partner back, the file stable, Redis reachable); false when it needs a person
    /// (wrong password, untrusted certificate, a source that cannot be deleted).
    pub transient: bool,
}

impl FileError {
    /// An error that a later run may not meet again.
    pub fn retryable(kind: FileErrorKind, message: impl Into<String>) -> Self {
        FileError {
            kind,
            message: printable(&message.into()).into_owned(),
            transient: true,
        }
    }

    /// An error that stays until someone fixes its cause.
    pub fn permanent(kind: FileErrorKind, message: impl Into<String>) -> Self {
        FileError {
            kind,
            message: printable(&message.into()).into_owned(),
            transient: false,
        }
    }
}

/// The earlier delivery a duplicate is a duplicate of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlierDelivery {
    /// The name it was delivered under.
    pub file_name: String,
    /// When.
    pub delivered_at: DateTime<Utc>,
    /// By which flow-run.
    pub flow_run_id: String,
}

/// How a file whose earlier attempt crashed between its rename and its record was
/// finished (see `idempotency/intent.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// The earlier attempt's complete temporary file was renamed into place: nothing was
    /// sent again.
    RenamedLeftover,
    /// The earlier attempt had renamed the file already: only the record was written.
    FoundInPlace,
    /// Neither was found (never put in place, or taken away by the partner since): sent
    /// again, so the partner may have seen it before.
    SentAgain,
}

/// Who holds a file this run left alone, and for how long unless renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimHolder {
    /// The other claim's owner token (`<host>-<pid>/<uuid>`).
    pub owner: String,
    /// Milliseconds until that claim expires unless its owner renews it.
    pub expires_in_ms: Option<u64>,
}

/// One row of the report: one file the run looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file's name (relative to the flow's local directory for uploads; the remote
    /// name for downloads).
    pub name: String,
    /// Size in bytes, as seen when the file was selected.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex, when it was computed.
    pub sha256: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// The file's path on the partner: where an upload is (or already was) delivered, where
    /// a download came from.
    pub remote_path: Option<String>,
    /// The file's local path: the source of an upload, where a download is (or already was)
    /// delivered.
    pub local_path: Option<String>,
    /// For a duplicate: the delivery it duplicates.
    pub earlier: Option<EarlierDelivery>,
    /// For a file left to another worker: who holds it.
    pub holder: Option<ClaimHolder>,
    /// How many transfer attempts this run made for the file.
    pub attempts: u32,
    /// Set when this run finished a crashed attempt's delivery of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// For an upload this run renamed into place: how the stored file was checked on the
    /// partner first (`sha256`, `size` or `none`; see `ftps/verify.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
    /// Why the file failed or was skipped; `None` unless `outcome` is `failed` or `skipped`.
    pub error: Option<FileError>,
    /// The idempotency key the file was claimed under (for the audit trail).
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    /// Set when this run deleted the file's source (the flow's `delete_after_*`).
    #[serde(skip)]
    pub source_deleted: bool,
    /// Where this run moved the file's source (`after_upload: archive`,
    /// `after_download: move`).
    #[serde(skip)]
    pub source_moved_to: Option<String>,
}

impl FileReport {
    /// A row for a local file not taken on purpose (a link not followed).
    pub fn skipped(name: impl Into<String>, local_path: String, reason: FileError) -> Self {
        FileReport {
            name: name.into(),
            size: 0,
            sha256: None,
            outcome: Outcome::Skipped,
            remote_path: None,
            local_path: Some(local_path),
            earlier: None,
            holder: None,
            attempts: 0,
            recovery: None,
            verified: None,
            error: Some(reason),
            idempotency_key: None,
            source_deleted: false,
            source_moved_to: None,
        }
    }

    /// A row for a file that failed before or during its transfer.
    pub fn failed(name: impl Into<String>, size: u64, error: FileError) -> Self {
        FileReport {
            name: name.into(),
            size,
            sha256: None,
            outcome: Outcome::Failed,
            remote_path: None,
            local_path: None,
            earlier: None,
            holder: None,
            attempts: 0,
            recovery: None,
            verified: None,
            error: Some(error),
            idempotency_key: None,
            source_deleted: false,
            source_moved_to: None,
        }
    }
}

/// A row being filled in while a file goes through its steps; each way out turns it into
/// the final [`FileReport`].
#[derive(Debug, Clone)]
pub(crate) struct RowDraft {
    pub name: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub attempts: u32,
    pub recovery: Option<Recovery>,
    verified: Option<Verified>,
    /// The idempotency key, once known.
    pub idempotency_key: Option<String>,
    /// Set once the source was deleted.
    pub source_deleted: bool,
    /// Set once the source was moved (archived, or to the partner's processed folder).
    pub source_moved_to: Option<String>,
    /// The source's path (local for an upload, remote for a download).
    source: String,
    /// Where the file is delivered, once it is.
    delivered_to: Option<String>,
    direction: Direction,
    earlier: Option<EarlierDelivery>,
    holder: Option<ClaimHolder>,
}

impl RowDraft {
    /// A draft for an upload of `name` (`size` bytes) from `local_path`.
    pub fn upload(name: &str, size: u64, local_path: String) -> Self {
        Self::new(name, size, local_path, Direction::Upload)
    }

    /// A draft for a download of `name` (`size` bytes) from `remote_path`.
    pub fn download(name: &str, size: u64, remote_path: String) -> Self {
        Self::new(name, size, remote_path, Direction::Download)
    }

    fn new(name: &str, size: u64, source: String, direction: Direction) -> Self {
        RowDraft {
            name: name.to_owned(),
            size,
            sha256: None,
            attempts: 0,
            recovery: None,
            verified: None,
            idempotency_key: None,
            source_deleted: false,
            source_moved_to: None,
            source,
            delivered_to: None,
            direction,
            earlier: None,
            holder: None,
        }
    }

    /// The file was delivered before, as `record` says.
    pub fn earlier(mut self, record: &crate::idempotency::DeliveryRecord) -> Self {
        self.earlier = Some(EarlierDelivery {
            file_name: record.file_name.clone(),
            delivered_at: record.delivered_at,
            flow_run_id: record.flow_run_id.clone(),
        });
        self
    }

    /// The file is (or already was) delivered to `path`: the partner's path for an upload,
    /// the local one for a download.
    pub fn delivered_to(mut self, path: impl Into<String>) -> Self {
        self.delivered_to = Some(path.into());
        self
    }

    /// How the partner's copy was checked before the rename (uploads).
    pub fn verified(mut self, verified: Verified) -> Self {
        self.verified = Some(verified);
        self
    }

    /// Whether this run deleted the file's source (for the audit trail).
    pub fn deleted_source(mut self, deleted: bool) -> Self {
        self.source_deleted = deleted;
        self
    }

    /// Notes where the source went, when it was moved rather than deleted.
    pub fn moved_source(mut self, to: Option<String>) -> Self {
        self.source_moved_to = to;
        self
    }

    fn finish(self, outcome: Outcome, error: Option<FileError>) -> FileReport {
        let (remote_path, local_path) = match self.direction {
            Direction::Upload => (self.delivered_to, Some(self.source)),
            Direction::Download => (Some(self.source), self.delivered_to),
        };
        FileReport {
            name: self.name,
            size: self.size,
            sha256: self.sha256,
            outcome,
            remote_path,
            local_path,
            earlier: self.earlier,
            holder: self.holder,
            attempts: self.attempts,
            recovery: self.recovery,
            verified: self.verified,
            error,
            idempotency_key: self.idempotency_key,
            source_deleted: self.source_deleted,
            source_moved_to: self.source_moved_to,
        }
    }

    /// Delivered by this run.
    pub fn transferred(self) -> FileReport {
        self.finish(Outcome::Transferred, None)
    }

    /// Already delivered.
    pub fn duplicate(self) -> FileReport {
        self.finish(Outcome::Duplicate, None)
    }

    /// Claimed by another worker, `owner`, for `expires_in` more unless renewed.
    pub fn left_to_other_worker(
        mut self,
        owner: String,
        expires_in: Option<std::time::Duration>,
    ) -> FileReport {
        self.holder = Some(ClaimHolder {
            owner,
            expires_in_ms: expires_in.map(|d| d.as_millis() as u64),
        });
        self.finish(Outcome::LeftToOtherWorker, None)
    }

    /// Not delivered (no destination is reported).
    pub fn failed(mut self, error: FileError) -> FileReport {
        self.delivered_to = None;
        self.finish(Outcome::Failed, Some(error))
    }

    /// Delivered (or already delivered), but a later step failed.
    pub fn failed_after_delivery(self, error: FileError) -> FileReport {
        self.finish(Outcome::Failed, Some(error))
    }
}

/// The counts a summary needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files delivered by this run.
    pub transferred: usize,
    /// Files skipped because they were already delivered.
    pub skipped_duplicates: usize,
    /// Files that failed.
    pub failed: usize,
    /// Files another worker was delivering.
    pub left_to_other_workers: usize,
    /// Files not taken on purpose (links not followed).
    pub skipped: usize,
    /// Bytes moved by this run (transferred files only).
    pub bytes: u64,
    /// Wall-clock time of the run.
    #[serde(rename = "duration_secs", serialize_with = "as_secs_f64")]
    pub duration: Duration,
}

/// Which run a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    /// The flow.
    pub flow_id: String,
    /// This run's id (also in every log line and delivery record of the run).
    pub run_id: String,
    /// Which way the files went.
    pub direction: Direction,
    /// When the run started.
    pub started_at: DateTime<Utc>,
}

/// Everything one flow-run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Which run this is.
    #[serde(flatten)]
    pub run: RunInfo,
    /// One row per file, in name order.
    pub files: Vec<FileReport>,
    /// Files that matched but were modified too recently to be safe to send (they may still
    /// be being written); the next run will pick them up.
    pub not_yet_stable: Vec<String>,
    /// Set when the run hit its time limit: files not started by then are `failed` with
    /// kind `run-timeout`.
    pub timed_out: bool,
    /// Files ready to go that the run did not take because of the flow's
    /// `max_files_per_run`: the next run takes them (see `transfer/limits.rs`). The run is
    /// still a success.
    pub left_for_next_run: usize,
    /// The counts.
    pub totals: Totals,
    /// Set when the run had nothing left to do: a newer run of the flow, started after this
    /// one was requested, took every file and settled each one (see
    /// `idempotency/coverage.rs`). Such a run has no rows and never touched the partner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<crate::idempotency::FullRun>,
}

impl RunReport {
    /// Builds the report from its rows, sorting them by name and computing the totals.
    pub fn new(
        run: RunInfo,
        duration: Duration,
        mut files: Vec<FileReport>,
        not_yet_stable: Vec<String>,
        timed_out: bool,
    ) -> Self {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut totals = Totals {
            duration,
            ..Totals::default()
        };
        for row in &files {
            match row.outcome {
                Outcome::Transferred => {
                    totals.transferred += 1;
                    totals.bytes += row.size;
                }
                Outcome::Duplicate => totals.skipped_duplicates += 1,
                Outcome::Failed => totals.failed += 1,
                Outcome::LeftToOtherWorker => totals.left_to_other_workers += 1,
                Outcome::Skipped => totals.skipped += 1,
            }
        }
        RunReport {
            run,
            files,
            not_yet_stable,
            timed_out,
            left_for_next_run: 0,
            totals,
            covered_by: None,
        }
    }

    /// True when no file failed (every file was transferred, skipped or left to the worker
    /// that holds it).
    pub fn is_success(&self) -> bool {
        self.totals.failed == 0
    }

    /// The report of a run that finished at once because `covering` had done its work.
    pub fn covered(
        run: RunInfo,
        duration: Duration,
        covering: crate::idempotency::FullRun,
    ) -> Self {
        let mut report = RunReport::new(run, duration, Vec::new(), Vec::new(), false);
        report.covered_by = Some(covering);
        report
    }

    /// True when a run without a `files` filter left nothing behind: every file settled
    /// (transferred, duplicate or skipped for good), none "not yet stable", no time-out. Such
    /// a run covers the runs requested before it started.
    pub fn settled_everything(&self) -> bool {
        self.all_settled()
            && self.not_yet_stable.is_empty()
            && !self.timed_out
            && self.left_for_next_run == 0
    }

    /// True when no file failed and none was left to another worker: every file the run
    /// took is settled (the CLI's exit code 0).
    pub fn all_settled(&self) -> bool {
        self.is_success() && self.totals.left_to_other_workers == 0
    }

    /// One line for logs and the terminal, e.g.
    /// `flow payroll-out run 3f2a...: 48 transferred, 2 duplicates skipped, 0 failed, 0 left
    /// to other workers, 1.2 MiB in 3.4s`.
    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        let mut line = format!(
            "flow {} run {} ({}): {} transferred, {} duplicates skipped, {} failed, \
             {} left to other workers, {} in {:.1}s",
            self.run.flow_id,
            self.run.run_id,
            self.run.direction.as_str(),
            t.transferred,
            t.skipped_duplicates,
            t.failed,
            t.left_to_other_workers,
            human_bytes(t.bytes),
            t.duration.as_secs_f64(),
        );
        if t.skipped > 0 {
            line.push_str(&format!("; {} skipped (links not followed)", t.skipped));
        }
        if !self.not_yet_stable.is_empty() {
            line.push_str(&format!(
                "; {} not yet stable (left for the next run)",
                self.not_yet_stable.len()
            ));
        }
        if self.left_for_next_run > 0 {
            line.push_str(&format!(
                "; {} left for the next run (max_files_per_run)",
                self.left_for_next_run
            ));
        }
        if self.timed_out {
            line.push_str("; stopped at the run's time limit");
        }
        if let Some(covering) = &self.covered_by {
            line.push_str(&format!(
                "; nothing left to do: run {} (started {}, after this run was requested) took \
                 every file and settled each one",
                covering.run_id,
                covering
                    .started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ));
        }
        line
    }
}

/// `1536` -> `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn as_secs_f64<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(direction: Direction) -> RunInfo {
        RunInfo {
            flow_id: "f".into(),
            run_id: "r1".into(),
            direction,
            started_at: Utc::now(),
        }
    }

    fn row(name: &str, size: u64, outcome: Outcome) -> FileReport {
        FileReport {
            name: name.into(),
            size,
            sha256: Some("ab".repeat(32)),
            outcome,
            remote_path: Some(format!("/in/{name}")),
            local_path: Some(format!("local/{name}")),
            earlier: None,
            holder: None,
            attempts: 1,
            recovery: None,
            verified: None,
            error: None,
            idempotency_key: None,
            source_deleted: false,
            source_moved_to: None,
        }
    }

    #[test]
    fn totals_count_each_outcome_and_only_transferred_bytes() {
        let files = vec![
            row("b", 2048, Outcome::Transferred),
            row("a", 1024, Outcome::Duplicate),
            FileReport::failed(
                "c",
                7,
                FileError::retryable(
                    FileErrorKind::Partner(FtpsErrorKind::ConnectionRefused),
                    "refused",
                ),
            ),
            row("d", 5, Outcome::LeftToOtherWorker),
        ];
        let r = RunReport::new(
            info(Direction::Upload),
            Duration::from_millis(1500),
            files,
            vec!["young.csv".into()],
            false,
        );
        assert_eq!(r.files[0].name, "a");
        assert_eq!(
            (
                r.totals.transferred,
                r.totals.skipped_duplicates,
                r.totals.failed
            ),
            (1, 1, 1)
        );
        assert_eq!(r.totals.left_to_other_workers, 1);
        assert_eq!(r.totals.bytes, 2048);
        assert!(!r.is_success());
        assert_eq!(
            r.summary_line(),
            "flow f run r1 (upload): 1 transferred, 1 duplicates skipped, 1 failed, \
             1 left to other workers, 2.0 KiB in 1.5s; 1 not yet stable (left for the next run)"
        );
    }

    #[test]
    fn json_uses_kebab_case_outcomes_and_seconds() {
        let r = RunReport::new(
            info(Direction::Download),
            Duration::from_millis(250),
            vec![row("x", 1, Outcome::LeftToOtherWorker)],
            vec![],
            false,
        );
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(v["direction"], "download");
        assert_eq!(v["files"][0]["outcome"], "left-to-other-worker");
        assert_eq!(v["totals"]["duration_secs"], 0.25);
        assert!(r.is_success());
    }
}
