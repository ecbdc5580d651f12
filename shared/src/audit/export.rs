//! Reading a flow's trail for people and for long-term storage: a file's history
//! (`ferry-worker audit`), and JSON Lines (`ferry-worker audit export`).
//!
//! Both stream the trail a page at a time and hand each record to the caller as it comes:
//! a trail of millions of records is never held in memory.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde::Serialize;

use super::error::AuditError;
use super::record::AuditRecord;
use super::store::AuditStore;

/// Entries read per round trip.
const PAGE: usize = 500;

/// Which records to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only records of this file.
    pub file: Option<String>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    fn keeps(&self, record: &AuditRecord) -> bool {
        self.file.as_ref().is_none_or(|f| *f == record.event.file)
            && self.since.is_none_or(|since| record.event.time >= since)
    }
}

/// One record as exported: where it is in the stream, its chain fields, and its content.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedRecord {
    /// The stream id.
    pub id: String,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
    /// Its SHA-256 link.
    pub hash: String,
    /// Its HMAC, when written with a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
}

impl ExportedRecord {
    /// One line for people: time, seq, outcome, file, size, hash, run, worker, error.
    pub fn human_line(&self) -> String {
        let (seq, r) = (self.record.seq, &self.record.event);
        let mut line = format!(
            "{}  #{}  {:<20}  {}  {} B",
            r.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            seq,
            r.outcome.as_str(),
            crate::ftps::printable(&r.file),
            r.size,
        );
        if let Some(sha) = &r.sha256 {
            line.push_str(&format!("  sha256 {sha}"));
        }
        line.push_str(&format!("  run {}  worker {}", r.run_id, r.worker));
        if let Some(trace) = &r.trace_id {
            line.push_str(&format!("  trace {trace}"));
        }
        if let Some(path) = r.remote_path.as_ref().or(r.local_path.as_ref()) {
            line.push_str(&format!("  at {}", crate::ftps::printable(path)));
        }
        if let Some(kind) = &r.error_kind {
            line.push_str(&format!("  error {kind}"));
        }
        if let Some(message) = &r.message {
            line.push_str(&format!(": {}", crate::ftps::printable(message)));
        }
        line
    }
}

/// Calls `each` with every record of `flow` that `filter` keeps, in chain order. Records
/// that cannot be parsed are skipped here (`verify` names them).
pub async fn read(
    store: &AuditStore,
    flow: &str,
    filter: &Filter,
    mut each: impl FnMut(ExportedRecord) -> Result<(), AuditError>,
) -> Result<u64, AuditError> {
    let mut after: Option<String> = None;
    let mut kept = 0;
    loop {
        let page = store.page(flow, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(kept);
        };
        after = Some(last.id.clone());
        for entry in page {
            let Ok(record) = AuditRecord::decode(&entry.record) else {
                continue;
            };
            if filter.keeps(&record) {
                kept += 1;
                each(ExportedRecord {
                    id: entry.id,
                    record,
                    hash: entry.hash,
                    hmac: entry.hmac,
                })?;
            }
        }
    }
}

/// `--since`: an RFC 3339 time (`2026-12-04T07:00:00Z`) or an age (`30m`, `2h`, `7d`: that long
/// before `now`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor an age such as `2h`"))?;
    let age = match unit {
        "s" => ChronoDuration::seconds(n),
        "m" => ChronoDuration::minutes(n),
        "h" => ChronoDuration::hours(n),
        "d" => ChronoDuration::days(n),
        _ => return Err(format!("`{text}`: the age's unit must be s, m, h or d")),
    };
    Ok(now - age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T08:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(
            parse_since("2h", now).ok(),
            DateTime::parse_from_rfc3339("2026-12-04T06:00:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        );
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now)
                .map(|t| t.timestamp())
                .ok(),
            Some(1_796_083_200)
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5y", now).is_err());
    }
}
