//! Reading what a `/metrics` endpoint serves, as Prometheus would: an HTTP GET of the page and
//! a parser of the text exposition format (`# TYPE` lines and samples, label values
//! unescaped), so that tests assert on metric names, labels and values rather than on text.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

pub use crate::http_client::{HttpAnswer, get as http_get};

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The sample's name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed exposition: the `# TYPE` of each family and every sample.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name -> type (`counter`, `gauge`, `histogram`).
    pub types: BTreeMap<String, String>,
    /// The samples, in page order.
    pub samples: Vec<PromSample>,
}

impl Exposition {
    /// Parses the text format; errors name the line that is not valid.
    pub fn parse(text: &str) -> anyhow::Result<Exposition> {
        let mut exposition = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').context("TYPE without a type")?;
                exposition.types.insert(name.to_owned(), kind.to_owned());
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let sample =
                    parse_sample(line).with_context(|| format!("line {}: {line:?}", n + 1))?;
                exposition.samples.push(sample);
            }
        }
        Ok(exposition)
    }

    /// The value of the sample named `name` whose labels include all of `labels`, summed over
    /// the samples that match (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a PromSample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn parse_sample(line: &str) -> anyhow::Result<PromSample> {
    let (name, rest) = match line.find('{') {
        Some(open) => (&line[..open], &line[open..]),
        None => line.split_at(line.find(' ').context("no value")?),
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            let Some(&(start, c)) = chars.peek() else {
                bail!("unterminated label set");
            };
            if c == '}' {
                break start + 1;
            }
            if c == ',' {
                chars.next();
                continue;
            }
            let eq = inner[start..].find("=\"").context("label without =\"")? + start;
            let key = inner[start..eq].to_owned();
            while chars.peek().is_some_and(|&(i, _)| i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => bail!("escape at the end"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                }
            }
            labels.insert(key, value);
        };
        rest = &inner[end..];
    }
    let value = rest.trim();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().with_context(|| format!("value {other:?}"))?,
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        bail!("invalid metric name {name:?}");
    }
    Ok(PromSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels_parse() {
        let text = "# TYPE a_total counter\na_total{x=\"q\\\"}\\\\,\\n\",y=\"2\"} 3\nb 1.5\n";
        let exposition = Exposition::parse(text).unwrap();
        assert_eq!(exposition.types["a_total"], "counter");
        assert_eq!(exposition.samples[0].labels["x"], "q\"}\\,\n");
        assert_eq!(exposition.sum("a_total", &[("y", "2")]), 3.0);
        assert_eq!(exposition.sum("b", &[]), 1.5);
    }
}
