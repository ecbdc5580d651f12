//! A small typed reader over YAML that reports every problem and keeps going.
//!
//! serde's derived `Deserialize` stops at the first unknown field or wrong type, but an
//! operator wants every error of every file at once, each with its line. So a file is parsed
//! (by serde-saphyr) into a tree of [`Node`]s that carry their source location, and the
//! configuration modules walk that tree with [`Map`] and [`Field`]: each accessor records
//! a [`ConfigError`] in the file's [`Cx`] and returns `None` instead of failing, so the walk
//! continues and the caller simply skips what could not be read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Location, MessageFormatter, Spanned, UserMessageFormatter};

use super::error::ConfigError;
use crate::secrets::SecretRef;

/// A 1-based line and column in a YAML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

impl Loc {
    /// The start of a file: where whole-document problems are reported.
    pub(crate) const START: Loc = Loc { line: 1, column: 1 };
}

impl From<Location> for Loc {
    fn from(at: Location) -> Loc {
        Loc {
            line: u32::try_from(at.line()).unwrap_or(u32::MAX),
            column: u32::try_from(at.column()).unwrap_or(u32::MAX),
        }
    }
}

/// A YAML node with the place it was written.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) loc: Loc,
}

/// A YAML value; plain scalars are already typed by the YAML 1.2 core schema.
#[derive(Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How the value reads in a "found ..." message: its kind, never its content.
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "true/false",
            Value::Int(_) => "a number",
            Value::Float(_) => "a decimal number",
            Value::Str(_) => "text",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            loc: Loc::from(spanned.referenced),
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Value::Map(entries))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags (`!name`) are not used in ferry's configuration; remove the tag",
        ))
    }
}

/// Where errors of one file are collected.
pub(crate) struct Cx<'e> {
    file: PathBuf,
    errors: &'e mut Vec<ConfigError>,
}

impl<'e> Cx<'e> {
    /// A collector for `file` (relative to the configuration directory).
    pub(crate) fn new(file: &Path, errors: &'e mut Vec<ConfigError>) -> Self {
        Cx {
            file: file.to_path_buf(),
            errors,
        }
    }

    /// The file, relative to the configuration directory.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// How many errors have been recorded so far (in every file).
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Records an error at `loc` about `field`.
    pub(crate) fn error(&mut self, loc: Loc, field: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: Some(loc.line).filter(|line| *line > 0),
            column: Some(loc.column).filter(|column| *column > 0 && loc.line > 0),
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// Parses YAML text into a node tree; `None` for an empty document. A syntax error is
/// recorded (with its line) and yields `None`.
pub(crate) fn parse(cx: &mut Cx<'_>, text: &str) -> Option<Node> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(node) => node.filter(|node| !matches!(node.value, Value::Null)),
        Err(err) => {
            let err = err.without_snippet();
            let loc = err.location().map(Loc::from).unwrap_or_default();
            let text: String = UserMessageFormatter
                .format_message(err)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            cx.error(loc, "", format!("invalid YAML: {text}"));
            None
        }
    }
}

/// Joins a field path and a key: `ftps` + `tls` = `ftps.tls`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A field of a mapping (or an item of a list): its node, path and the place to report.
#[derive(Clone, Copy)]
pub(crate) struct Field<'n> {
    pub(crate) node: &'n Node,
    /// The key's location for a mapping field, the item's for a list item.
    pub(crate) loc: Loc,
    path: &'n str,
}

/// A field path owned by the reader while the tree is walked.
pub(crate) struct FieldOwned<'n> {
    node: &'n Node,
    loc: Loc,
    path: String,
}

impl<'n> FieldOwned<'n> {
    /// Borrows the field for reading.
    pub(crate) fn get(&self) -> Field<'_> {
        Field {
            node: self.node,
            loc: self.loc,
            path: &self.path,
        }
    }
}

/// A mapping whose keys have been checked against the known ones.
pub(crate) struct Map<'n> {
    entries: Vec<(String, FieldOwned<'n>)>,
    path: String,
    loc: Loc,
}

impl<'n> Map<'n> {
    /// Reads the document root as a mapping with the `known` keys.
    pub(crate) fn root(cx: &mut Cx<'_>, node: &'n Node, known: &[&str]) -> Option<Map<'n>> {
        Map::read(cx, node, Loc::START, "", known)
    }

    /// Reads `node` as a mapping, reporting a non-mapping, duplicate keys and unknown keys
    /// (with a "did you mean" when one of `known` is close). An empty `known` accepts any
    /// key (a map of ids).
    fn read(
        cx: &mut Cx<'_>,
        node: &'n Node,
        loc: Loc,
        path: &str,
        known: &[&str],
    ) -> Option<Map<'n>> {
        let Value::Map(pairs) = &node.value else {
            let what = if path.is_empty() {
                "the file"
            } else {
                "this field"
            };
            cx.error(
                loc,
                path,
                format!(
                    "{what} must be a mapping of `key: value` lines, found {}",
                    node.value.kind()
                ),
            );
            return None;
        };
        let mut entries: Vec<(String, FieldOwned<'n>)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let name = match &key.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => {
                    cx.error(
                        key.loc,
                        path,
                        format!("a key must be text, found {}", other.kind()),
                    );
                    continue;
                }
            };
            let field_path = join(path, &name);
            if let Some((_, first)) = entries.iter().find(|(k, _)| *k == name) {
                cx.error(
                    key.loc,
                    &field_path,
                    format!(
                        "`{name}` is written twice (first on line {})",
                        first.loc.line
                    ),
                );
                continue;
            }
            if !known.is_empty() && !known.contains(&name.as_str()) {
                cx.error(key.loc, &field_path, unknown_field_message(&name, known));
                continue;
            }
            entries.push((
                name,
                FieldOwned {
                    node: value,
                    loc: key.loc,
                    path: field_path,
                },
            ));
        }
        Some(Map {
            entries,
            path: path.to_string(),
            loc,
        })
    }

    /// The field `key`, or `None` when absent or written with no value.
    pub(crate) fn get(&self, key: &str) -> Option<Field<'_>> {
        self.entries
            .iter()
            .find(|(k, f)| k == key && !matches!(f.node.value, Value::Null))
            .map(|(_, f)| f.get())
    }

    /// The field `key`, reporting it as missing when absent.
    pub(crate) fn required(&self, cx: &mut Cx<'_>, key: &str) -> Option<Field<'_>> {
        let field = self.get(key);
        if field.is_none() {
            cx.error(
                self.loc,
                &join(&self.path, key),
                format!("missing required field `{key}`"),
            );
        }
        field
    }

    /// All fields in written order (for maps of ids).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Field<'_>)> {
        self.entries.iter().map(|(k, f)| (k.as_str(), f.get()))
    }

    /// The mapping's field path (`flows.claims-upload`).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Where the mapping is referenced from (its key, or the file start for the root).
    pub(crate) fn loc(&self) -> Loc {
        self.loc
    }
}

/// "unknown field `pasive`; did you mean `passive`?" or the list of known fields.
fn unknown_field_message(name: &str, known: &[&str]) -> String {
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((score, k)) if score >= 0.8 => format!("unknown field `{name}`; did you mean `{k}`?"),
        _ => format!(
            "unknown field `{name}`; the fields allowed here are: {}",
            known.join(", ")
        ),
    }
}

impl<'n> Field<'n> {
    /// The field path (`ftps.connection.port`).
    #[cfg(test)]
    pub(crate) fn path(&self) -> &'n str {
        self.path
    }

    /// Records an error about this field.
    pub(crate) fn error(&self, cx: &mut Cx<'_>, message: impl Into<String>) {
        cx.error(self.loc, self.path, message);
    }

    fn wrong_type(&self, cx: &mut Cx<'_>, expected: &str) {
        self.error(
            cx,
            format!("expected {expected}, found {}", self.node.value.kind()),
        );
    }

    /// Reads a mapping with the `known` keys (any key when `known` is empty).
    pub(crate) fn map(&self, cx: &mut Cx<'_>, known: &[&str]) -> Option<Map<'n>> {
        Map::read(cx, self.node, self.loc, self.path, known)
    }

    /// Reads a list; each item is reported at its own line as `path[i]`.
    pub(crate) fn seq(&self, cx: &mut Cx<'_>) -> Option<Vec<FieldOwned<'n>>> {
        let Value::Seq(items) = &self.node.value else {
            self.wrong_type(cx, "a list");
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, node)| FieldOwned {
                    node,
                    loc: node.loc,
                    path: format!("{}[{i}]", self.path),
                })
                .collect(),
        )
    }

    /// Reads text; numbers are taken as written (`username: 1234`).
    pub(crate) fn str(&self, cx: &mut Cx<'_>) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(x) => Some(x.to_string()),
            _ => {
                self.wrong_type(cx, "text");
                None
            }
        }
    }

    /// Reads non-empty text.
    pub(crate) fn non_empty_str(&self, cx: &mut Cx<'_>) -> Option<String> {
        let text = self.str(cx)?;
        if text.trim().is_empty() {
            self.error(cx, "must not be empty");
            return None;
        }
        Some(text)
    }

    /// Reads a listen address (`IP:PORT`).
    pub(crate) fn listen_addr(&self, cx: &mut Cx<'_>) -> Option<std::net::SocketAddr> {
        let text = self.str(cx)?;
        let addr = text.parse().ok();
        if addr.is_none() {
            self.error(
                cx,
                format!("`{text}` is not a listen address; write IP:PORT, such as `0.0.0.0:8080`"),
            );
        }
        addr
    }

    /// Reads `true` or `false`.
    pub(crate) fn bool(&self, cx: &mut Cx<'_>) -> Option<bool> {
        match &self.node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(cx, "true or false");
                None
            }
        }
    }

    /// Reads a whole number in `min..=max`.
    pub(crate) fn int<T: TryFrom<i128> + fmt::Display + Copy + Into<i128>>(
        &self,
        cx: &mut Cx<'_>,
        min: T,
        max: T,
    ) -> Option<T> {
        let Value::Int(i) = &self.node.value else {
            self.wrong_type(cx, "a whole number");
            return None;
        };
        match T::try_from(*i) {
            Ok(v) if (min.into()..=max.into()).contains(i) => Some(v),
            _ => {
                self.error(cx, format!("must be between {min} and {max}"));
                None
            }
        }
    }

    /// Reads a duration written like `30s`, `5m`, `1h30m` or `90d`.
    pub(crate) fn duration(&self, cx: &mut Cx<'_>) -> Option<Duration> {
        let Value::Str(text) = &self.node.value else {
            self.wrong_type(cx, "a duration such as `30s`, `5m`, `2h` or `90d`");
            return None;
        };
        match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                self.error(
                    cx,
                    format!(
                        "`{text}` is not a duration; write a number and a unit (ms, s, m, h, d), such as `30s`, `5m`, `1h30m` or `90d`"
                    ),
                );
                None
            }
        }
    }

    /// Reads a duration that must not be zero.
    pub(crate) fn positive_duration(&self, cx: &mut Cx<'_>) -> Option<Duration> {
        let d = self.duration(cx)?;
        if d.is_zero() {
            self.error(cx, "must be longer than zero");
            return None;
        }
        Some(d)
    }

    /// Reads an IANA time zone name such as `Europe/Paris` or `UTC`.
    pub(crate) fn timezone(&self, cx: &mut Cx<'_>) -> Option<chrono_tz::Tz> {
        let name = self.str(cx)?;
        match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.error(
                    cx,
                    format!("`{name}` is not a known time zone; use an IANA name such as `Europe/Paris` or `UTC`"),
                );
                None
            }
        }
    }

    /// Reads a secret reference; in hardened mode a literal is an error.
    pub(crate) fn secret(&self, cx: &mut Cx<'_>, hardened: bool) -> Option<SecretRef> {
        // The value is never echoed: it may be the secret itself.
        let Value::Str(text) = &self.node.value else {
            self.wrong_type(cx, "a secret reference such as `env:NAME`");
            return None;
        };
        match SecretRef::parse(text) {
            Ok(reference) if hardened && reference.is_literal() => {
                self.error(
                    cx,
                    "hardened mode forbids a secret written in the configuration; use a reference: `env:NAME`, `file:/path`, `vault:MOUNT/PATH#FIELD` or `aws-sm:ID#FIELD`",
                );
                None
            }
            Ok(reference) => Some(reference),
            Err(err) => {
                self.error(cx, err.to_string());
                None
            }
        }
    }

    /// Reads one of the `choices` (a keyword such as `upload`).
    pub(crate) fn choice<T: Copy>(&self, cx: &mut Cx<'_>, choices: &[(&str, T)]) -> Option<T> {
        let text = self.str(cx)?;
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Some(*value),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
                self.error(
                    cx,
                    format!(
                        "`{text}` is not allowed here; use one of {}",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

/// Parses `30s`, `5m`, `2h`, `90d`, `500ms` or a sum such as `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(number).ok()?)?)?;
    }
    Some(total)
}

/// Writes a duration the way it is configured: `90d`, `1h30m`, `30s`, `500ms`.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if d.subsec_millis() > 0 {
        out.push_str(&format!("{}ms", d.subsec_millis()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str, known: &[&str]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("x.yaml"), &mut errors);
        if let Some(node) = parse(&mut cx, text) {
            let _ = Map::root(&mut cx, &node, known);
        }
        errors
    }

    #[test]
    fn nodes_carry_lines_and_columns() {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("x.yaml"), &mut errors);
        let node = parse(&mut cx, "a:\n  b: 1\n  c: [x, y]\n").unwrap();
        let root = Map::root(&mut cx, &node, &["a"]).unwrap();
        let a = root.get("a").unwrap().map(&mut cx, &["b", "c"]).unwrap();
        let b = a.get("b").unwrap();
        assert_eq!((b.loc.line, b.loc.column), (2, 3));
        assert_eq!(b.path(), "a.b");
        let c = a.get("c").unwrap().seq(&mut cx).unwrap();
        assert_eq!(c[1].get().path(), "a.c[1]");
        assert_eq!(c[1].get().loc.line, 3);
        assert!(errors.is_empty());
    }

    #[test]
    fn unknown_and_duplicate_keys_are_reported_and_reading_goes_on() {
        let errors = errors_of(
            "pasive: true\nport: 1\nport: 2\nzzz: 1\n",
            &["passive", "port"],
        );
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "x.yaml:1:1: pasive: unknown field `pasive`; did you mean `passive`?",
                "x.yaml:3:1: port: `port` is written twice (first on line 2)",
                "x.yaml:4:1: zzz: unknown field `zzz`; the fields allowed here are: passive, port",
            ]
        );
    }

    #[test]
    fn yaml_syntax_errors_name_the_line() {
        let errors = errors_of("a: 1\nb: [1, 2\n", &[]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].line.is_some(), "{errors:?}");
        assert!(errors[0].message.starts_with("invalid YAML"));
    }

    #[test]
    fn booleans_follow_yaml_1_2() {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("x.yaml"), &mut errors);
        let node = parse(&mut cx, "a: yes\nb: true\n").unwrap();
        let root = Map::root(&mut cx, &node, &["a", "b"]).unwrap();
        assert_eq!(root.get("a").unwrap().bool(&mut cx), None);
        assert_eq!(root.get("b").unwrap().bool(&mut cx), Some(true));
        assert_eq!(errors[0].message, "expected true or false, found text");
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("90d"),
            Some(Duration::from_secs(90 * 86_400))
        );
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5 minutes"), None);
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90 * 86_400)), "90d");
    }
}
