//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! The format is small and stable (`# HELP`, `# TYPE`, one sample per line), so ferry writes
//! it itself instead of depending on a second metrics library (see `metrics.rs` for why).
//! This file knows nothing of OpenTelemetry: it encodes [`Family`] values, which `scrape.rs`
//! builds from the SDK's collected data. What it guarantees:
//!
//! - names are valid Prometheus names (`[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes
//!   `_`), with the unit suffix (`_seconds`, `_bytes`) and the counter suffix (`_total`)
//!   appended when the name does not already end with them, as the OpenTelemetry to
//!   Prometheus compatibility rules say;
//! - label values are escaped (`\`, `"` and line feeds), so no value can forge a sample or
//!   a label; help texts are escaped (`\` and line feeds);
//! - histograms have cumulative `_bucket` samples ending with `le="+Inf"`, then `_sum` and
//!   `_count`;
//! - numbers are written as Prometheus parses them (`+Inf`, `-Inf`, `NaN`).

use std::fmt::Write as _;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (a monotonic sum): `_total` is appended to its name.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One label set's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's or gauge's value.
    Number(f64),
    /// A histogram's buckets: `bounds` are the upper bounds; `counts` has one more entry
    /// (the observations above the last bound), each count for its bucket alone.
    Histogram {
        /// Upper bounds, ascending.
        bounds: Vec<f64>,
        /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
        counts: Vec<u64>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One sample (or one histogram) of a family: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values, in any order (written sorted by name).
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: Value,
}

/// A metric family: name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The instrument's name (made valid and suffixed on output).
    pub name: String,
    /// The instrument's description.
    pub help: String,
    /// The instrument's unit, UCUM as in OpenTelemetry (`s`, `By`, `1`, `{file}`).
    pub unit: String,
    /// Its type.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// The families in the text format, in the order given.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        encode_family(&mut out, family);
    }
    out
}

fn encode_family(out: &mut String, family: &Family) {
    let name = exposed_name(&family.name, &family.unit, family.kind);
    let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
    let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
    for sample in &family.samples {
        let mut labels: Vec<(String, &str)> = sample
            .labels
            .iter()
            .map(|(k, v)| (label_name(k), v.as_str()))
            .collect();
        labels.sort();
        match &sample.value {
            Value::Number(value) => {
                let _ = writeln!(out, "{name}{} {}", label_set(&labels, None), number(*value));
            }
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            } => {
                let mut cumulative = 0;
                for (bound, bucket) in bounds.iter().zip(counts) {
                    cumulative += bucket;
                    let le = number(*bound);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        label_set(&labels, Some(&le))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {count}",
                    label_set(&labels, Some("+Inf"))
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    label_set(&labels, None),
                    number(*sum)
                );
                let _ = writeln!(out, "{name}_count{} {count}", label_set(&labels, None));
            }
        }
    }
}

/// The Prometheus name: valid characters, unit suffix, `_total` for counters.
pub fn exposed_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut name = sanitize(name, true);
    if let Some(suffix) = unit_suffix(unit)
        && !name.ends_with(&format!("_{suffix}"))
        && !(kind == Kind::Counter && name.ends_with(&format!("_{suffix}_total")))
    {
        name = format!("{name}_{suffix}");
    }
    if kind == Kind::Counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

/// The name suffix of a UCUM unit; `None` for annotations (`{file}`), `1` and unknown units.
fn unit_suffix(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "%" => "percent",
        _ => return None,
    })
}

/// A label name: OpenTelemetry keys may have dots (`service.name`), Prometheus's may not.
fn label_name(key: &str) -> String {
    sanitize(key, false)
}

fn sanitize(name: &str, colons: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn label_set(labels: &[(String, &str)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// `\` -> `\\`, `"` -> `\"`, line feed -> `\n`.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `\` -> `\\`, line feed -> `\n` (quotes stay as they are in help texts).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A number as Prometheus parses it; integers without a fraction.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(name: &str, unit: &str, kind: Kind, samples: Vec<Sample>) -> Family {
        Family {
            name: name.into(),
            help: "help".into(),
            unit: unit.into(),
            kind,
            samples,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        let text = encode(&[family(
            "ferry_flow_runs",
            "",
            Kind::Counter,
            vec![Sample {
                labels: labels(&[("flow", "a\"b\\c\nd} 1\nevil_total 9")]),
                value: Value::Number(1.0),
            }],
        )]);
        assert_eq!(
            text,
            "# HELP ferry_flow_runs_total help\n# TYPE ferry_flow_runs_total counter\n\
             ferry_flow_runs_total{flow=\"a\\\"b\\\\c\\nd} 1\\nevil_total 9\"} 1\n"
        );
        assert_eq!(text.lines().count(), 3, "one line per sample: {text}");
    }

    #[test]
    fn help_is_escaped_and_label_names_sorted_and_sanitized() {
        let mut f = family(
            "ferry.in-flight",
            "{run}",
            Kind::Gauge,
            vec![Sample {
                labels: labels(&[("z", "1"), ("service.name", "w")]),
                value: Value::Number(-2.0),
            }],
        );
        f.help = "back\\slash\nsecond line".into();
        let text = encode(&[f]);
        assert_eq!(
            text,
            "# HELP ferry_in_flight back\\\\slash\\nsecond line\n# TYPE ferry_in_flight gauge\n\
             ferry_in_flight{service_name=\"w\",z=\"1\"} -2\n"
        );
    }

    #[test]
    fn units_and_counter_suffixes_are_appended_once() {
        assert_eq!(
            exposed_name("ferry_transferred", "By", Kind::Counter),
            "ferry_transferred_bytes_total"
        );
        assert_eq!(
            exposed_name("ferry_transferred_bytes_total", "By", Kind::Counter),
            "ferry_transferred_bytes_total"
        );
        assert_eq!(
            exposed_name("ferry_file_transfer_duration", "s", Kind::Histogram),
            "ferry_file_transfer_duration_seconds"
        );
        assert_eq!(
            exposed_name("ferry_file_transfer_duration_seconds", "s", Kind::Histogram),
            "ferry_file_transfer_duration_seconds"
        );
        assert_eq!(
            exposed_name("ferry_files", "{file}", Kind::Counter),
            "ferry_files_total"
        );
        assert_eq!(exposed_name("9lives", "1", Kind::Gauge), "_9lives");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let text = encode(&[family(
            "ferry_file_transfer_duration_seconds",
            "s",
            Kind::Histogram,
            vec![Sample {
                labels: labels(&[("flow", "f")]),
                value: Value::Histogram {
                    bounds: vec![0.5, 1.0, 2.5],
                    counts: vec![1, 0, 2, 1],
                    sum: 7.25,
                    count: 4,
                },
            }],
        )]);
        let samples: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            samples,
            [
                "ferry_file_transfer_duration_seconds_bucket{flow=\"f\",le=\"0.5\"} 1",
                "ferry_file_transfer_duration_seconds_bucket{flow=\"f\",le=\"1\"} 1",
                "ferry_file_transfer_duration_seconds_bucket{flow=\"f\",le=\"2.5\"} 3",
                "ferry_file_transfer_duration_seconds_bucket{flow=\"f\",le=\"+Inf\"} 4",
                "ferry_file_transfer_duration_seconds_sum{flow=\"f\"} 7.25",
                "ferry_file_transfer_duration_seconds_count{flow=\"f\"} 4",
            ]
        );
    }

    #[test]
    fn special_numbers_are_written_the_prometheus_way() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1_733_300_000.25), "1733300000.25");
        assert_eq!(number(3.0), "3");
    }
}
