//! Reading the JSON log lines of ferry's processes (`--log-format json`): their message,
//! event, fields and span fields, trace ids and times, and what tests gather from them
//! (run summaries, settlements, publications, renames).

use std::collections::BTreeMap;

use ferry_shared::telemetry::LogEvent;
use serde_json::Value;

/// The line's message (`fields.message`), or "".
pub fn msg(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// Whether a log line marks `event` (its `event` field; see [`LogEvent`]).
pub fn is_event(line: &Value, event: LogEvent) -> bool {
    line["fields"]["event"].as_str() == Some(event.as_str())
}

/// A field of the event itself (`fields.<name>`), as text.
pub fn field(line: &Value, name: &str) -> Option<String> {
    text(&line["fields"][name])
}

/// A field of the innermost enclosing span that has it (`spans[*].<name>`), as text.
pub fn span_field(line: &Value, name: &str) -> Option<String> {
    line["spans"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|span| text(&span[name]))
}

/// The line's `trace_id`.
pub fn trace_id(line: &Value) -> Option<&str> {
    line["trace_id"].as_str()
}

/// The line's `target` (the Rust module that logged it).
pub fn target(line: &Value) -> &str {
    line["target"].as_str().unwrap_or("")
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The line's timestamp as microseconds since the Unix epoch.
pub fn timestamp_micros(line: &Value) -> Option<i64> {
    parse_rfc3339_micros(line["timestamp"].as_str()?)
}

/// Parses `2026-11-24T22:08:29.591219Z` (UTC, as tracing-subscriber writes it).
pub fn parse_rfc3339_micros(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    let digits: String = frac.chars().take(6).collect();
    let micros = format!("{digits:0<6}").parse::<i64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

/// A Rust `Duration` as `Debug` prints it (`1s`, `1.5s`, `250ms`), in milliseconds.
pub fn debug_duration_ms(text: &str) -> Option<f64> {
    let units = [
        ("ns", 1e-6),
        ("µs", 1e-3),
        ("us", 1e-3),
        ("ms", 1.0),
        ("s", 1000.0),
    ];
    units.iter().find_map(|(unit, factor)| {
        text.strip_suffix(unit)
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| n * factor)
    })
}

/// One flow-run's summary line (`flow f run <id> (upload): N transferred, ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The flow-run id.
    pub run_id: String,
    /// Files transferred.
    pub transferred: u64,
    /// Duplicates skipped.
    pub duplicates: u64,
    /// Files failed.
    pub failed: u64,
    /// Files left to other workers.
    pub left: u64,
}

/// Parses a run summary message; `None` for any other line.
pub fn parse_summary(message: &str) -> Option<RunSummary> {
    let rest = message.strip_prefix("flow ")?;
    let (_, rest) = rest.split_once(" run ")?;
    let (run_id, rest) = rest.split_once(' ')?;
    let (_, counts) = rest.split_once("): ")?;
    let number_before = |label: &str| -> Option<u64> {
        let at = counts.find(label)?;
        counts[..at]
            .rsplit([' ', ','])
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    Some(RunSummary {
        run_id: run_id.to_owned(),
        transferred: number_before(" transferred")?,
        duplicates: number_before(" duplicates skipped")?,
        failed: number_before(" failed")?,
        left: number_before(" left to other workers")?,
    })
}

/// The run summaries of one process's log, one per run. The engine logs the summary of every
/// run (`ferry_shared::transfer::engine`) and the worker's consume loop logs it again before
/// settling: when the engine's lines are there, they alone are counted, so that no run counts
/// twice.
pub fn run_summaries(lines: &[Value]) -> Vec<RunSummary> {
    let all: Vec<(&str, RunSummary)> = lines
        .iter()
        .filter_map(|l| parse_summary(msg(l)).map(|s| (target(l), s)))
        .collect();
    let from_engine = all
        .iter()
        .any(|(t, _)| *t == "ferry_shared::transfer::engine");
    all.into_iter()
        .filter(|(t, _)| !from_engine || *t == "ferry_shared::transfer::engine")
        .map(|(_, s)| s)
        .collect()
}

/// The worker's settlement lines (`flow-run message settled`): (flow-run id, how, trace id).
pub fn settlements(lines: &[Value]) -> Vec<(String, String, Option<String>)> {
    lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunSettled))
        .filter_map(|l| {
            Some((
                span_field(l, "flow_run_id")?,
                field(l, "settled").unwrap_or_default(),
                trace_id(l).map(str::to_owned),
            ))
        })
        .collect()
}

/// The scheduler's `flow-run published` lines: flow-run id -> (tick, trace id).
pub fn published(lines: &[Value]) -> BTreeMap<String, (String, Option<String>)> {
    lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunPublished))
        .filter_map(|l| {
            let id = field(l, "flow_run_id").or_else(|| span_field(l, "flow_run_id"))?;
            let tick = span_field(l, "tick").unwrap_or_default();
            Some((id, (tick, trace_id(l).map(str::to_owned))))
        })
        .collect()
}

/// Successful `RNTO <path>` per final file name, from vsftpd's protocol log: each command
/// line is paired with the next response of the same session (`[pid N]`).
pub fn rnto_counts(log: &str) -> BTreeMap<String, usize> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        let Some(pid) = line
            .split_once("[pid ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(pid, _)| pid.to_owned())
        else {
            continue;
        };
        if let Some((_, command)) = line.split_once("FTP command: ") {
            let quoted = command.rsplit_once(", \"").map(|(_, c)| c).unwrap_or("");
            let command = quoted.trim_end_matches('"');
            if let Some(path) = command.strip_prefix("RNTO ") {
                pending.insert(pid, path.to_owned());
            } else {
                pending.remove(&pid);
            }
        } else if let Some((_, response)) = line.split_once("FTP response: ")
            && let Some(path) = pending.remove(&pid)
        {
            let code = response.rsplit_once(", \"").map(|(_, c)| c).unwrap_or("");
            if code.starts_with("250") {
                let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
                *counts.entry(name).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_parse() {
        let s = parse_summary(
            "flow f run 1b2c (upload): 3 transferred, 17 duplicates skipped, 0 failed, \
             2 left to other workers, 1.0 MiB in 0.3s",
        )
        .expect("parses");
        assert_eq!(
            s,
            RunSummary {
                run_id: "1b2c".into(),
                transferred: 3,
                duplicates: 17,
                failed: 0,
                left: 2
            }
        );
        assert!(parse_summary("flow-run published").is_none());
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(
            parse_rfc3339_micros("1970-01-02T00:00:01.5Z"),
            Some(86_401_500_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2026-11-24T22:08:29.591219Z"),
            Some(1_795_558_109_591_219)
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(debug_duration_ms("1s"), Some(1000.0));
        assert_eq!(debug_duration_ms("1.5s"), Some(1500.0));
        assert_eq!(debug_duration_ms("250ms"), Some(250.0));
    }

    #[test]
    fn renames_are_counted_from_vsftpd_log() {
        let log = "Tue Nov 24 22:00:00 2026 [pid 7] [ferry-ftp] FTP command: Client \"127.0.0.1\", \"RNTO /in/a.xml\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 8] [ferry-ftp] FTP command: Client \"127.0.0.1\", \"RNTO /in/b.xml\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 7] [ferry-ftp] FTP response: Client \"127.0.0.1\", \"250 Rename successful.\"\n\
                   Tue Nov 24 22:00:00 2026 [pid 8] [ferry-ftp] FTP response: Client \"127.0.0.1\", \"550 Rename failed.\"\n";
        let counts = rnto_counts(log);
        assert_eq!(counts.get("a.xml"), Some(&1));
        assert_eq!(counts.get("b.xml"), None);
    }
}
