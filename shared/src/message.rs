//! The flow-run message: what the scheduler (or an operator, or an upstream system) puts on
//! the broker to ask a worker to run one flow once.
//!
//! It is the one contract between the binaries that may run different versions during a
//! rolling upgrade, so it is versioned ([`SCHEMA_VERSION`]) and decoded strictly: a worker
//! either gets a [`FlowRunMessage`] it fully understands or a [`DecodeError`] that says
//! exactly what is wrong (not JSON, a schema version it does not know, a missing or invalid
//! field). The error's text is meant to be the dead-letter reason an operator reads.
//! Any change to the fields means a new schema version; `schema/flow-run.v1.schema.json`
//! documents version 1 for the other languages that publish flow runs.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON Schema of version 1 of the message (draft 2020-12), for tools and docs.
pub const JSON_SCHEMA_V1: &str = include_str!("../schema/flow-run.v1.schema.json");

/// Largest payload [`FlowRunMessage::decode`] accepts; anything bigger is not a flow run.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Longest flow id: the flow id is the AMQP routing key (at most 255 bytes).
pub const MAX_FLOW_ID_LEN: usize = 128;

/// Most file names one message may list.
pub const MAX_FILES: usize = 10_000;

/// Longest file name (relative path) in [`FlowRunMessage::files`].
pub const MAX_FILE_NAME_LEN: usize = 1024;

/// One request to run one flow, as it travels through the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRunMessage {
    /// Always [`SCHEMA_VERSION`] for messages this build creates.
    pub schema_version: u32,
    /// Unique id of this run; stays the same across retries (the idempotency key's root).
    pub flow_run_id: Uuid,
    /// The flow to run; also the routing key, so a deployment can bind to some flows only.
    pub flow_id: String,
    /// What asked for the run.
    pub trigger: Trigger,
    /// Only these files (relative names in the flow's source); `None` means "select as the
    /// flow's rules say".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// When the run was requested (the scheduler's or the caller's clock).
    pub requested_at: DateTime<Utc>,
    /// Delivery attempt, starting at 1; the broker's retry path increments it.
    pub attempt: u32,
}

/// What asked for a flow run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "TriggerWire", into = "TriggerWire")]
pub enum Trigger {
    /// The scheduler's cron tick for this time.
    Schedule {
        /// The tick the run belongs to (not the time it was published).
        tick: DateTime<Utc>,
    },
    /// An operator (`ferry-scheduler trigger`).
    Manual,
    /// An upstream system's event.
    Event {
        /// The upstream's own id for the event, for correlation.
        upstream_id: String,
    },
}

/// The wire form of [`Trigger`]: serde ignores unknown fields of an internally tagged
/// unit variant, so `manual` is an empty struct variant here to be rejected strictly.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum TriggerWire {
    Schedule { tick: DateTime<Utc> },
    Manual {},
    Event { upstream_id: String },
}

impl From<TriggerWire> for Trigger {
    fn from(wire: TriggerWire) -> Self {
        match wire {
            TriggerWire::Schedule { tick } => Trigger::Schedule { tick },
            TriggerWire::Manual {} => Trigger::Manual,
            TriggerWire::Event { upstream_id } => Trigger::Event { upstream_id },
        }
    }
}

impl From<Trigger> for TriggerWire {
    fn from(trigger: Trigger) -> Self {
        match trigger {
            Trigger::Schedule { tick } => TriggerWire::Schedule { tick },
            Trigger::Manual => TriggerWire::Manual {},
            Trigger::Event { upstream_id } => TriggerWire::Event { upstream_id },
        }
    }
}

impl FlowRunMessage {
    /// A first attempt at running `flow_id`, with a fresh flow-run id, requested now.
    pub fn new(flow_id: impl Into<String>, trigger: Trigger, files: Option<Vec<String>>) -> Self {
        FlowRunMessage {
            schema_version: SCHEMA_VERSION,
            flow_run_id: Uuid::new_v4(),
            flow_id: flow_id.into(),
            trigger,
            files,
            requested_at: Utc::now(),
            attempt: 1,
        }
    }

    /// The same run, one attempt later (what the retry path publishes).
    pub fn next_attempt(&self) -> Self {
        FlowRunMessage {
            attempt: self.attempt.saturating_add(1),
            ..self.clone()
        }
    }

    /// The message as JSON bytes, after checking it against the rules [`Self::decode`]
    /// applies, so that nothing is published that a worker would dead-letter.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        self.validate()?;
        serde_json::to_vec(self).map_err(|e| DecodeError::InvalidField {
            field: "(message)".into(),
            detail: e.to_string(),
        })
    }

    /// Strictly decodes a message: valid UTF-8 JSON, a known schema version, every
    /// required field present and valid, no field the schema does not define.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed {
            detail: e.to_string(),
        })?;
        let Value::Object(mut object) = value else {
            return Err(DecodeError::Malformed {
                detail: format!("expected a JSON object, found {}", json_kind(&value)),
            });
        };

        // The version first: a future version may share no other field with this one.
        let version = object
            .get("schema_version")
            .ok_or(DecodeError::MissingField {
                field: "schema_version".into(),
            })?;
        let found = version.as_u64().ok_or_else(|| DecodeError::InvalidField {
            field: "schema_version".into(),
            detail: format!("expected a positive integer, found {}", json_kind(version)),
        })?;
        if found != u64::from(SCHEMA_VERSION) {
            return Err(DecodeError::UnsupportedVersion { found });
        }
        object.remove("schema_version");

        let flow_run_id = take_required(&mut object, "flow_run_id")?;
        let flow_id = take_required(&mut object, "flow_id")?;
        let trigger = take_required(&mut object, "trigger")?;
        let files = take_optional(&mut object, "files")?;
        let requested_at = take_required(&mut object, "requested_at")?;
        let attempt = take_required(&mut object, "attempt")?;
        if let Some(field) = object.keys().next() {
            return Err(DecodeError::UnknownField {
                field: field.clone(),
            });
        }

        let message = FlowRunMessage {
            schema_version: SCHEMA_VERSION,
            flow_run_id,
            flow_id,
            trigger,
            files,
            requested_at,
            attempt,
        };
        message.validate()?;
        Ok(message)
    }

    /// Checks the rules serde cannot express: the flow id is a usable routing key, file
    /// names are safe relative names, the attempt starts at 1.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let invalid = |field: &str, detail: String| DecodeError::InvalidField {
            field: field.to_string(),
            detail,
        };
        if self.schema_version != SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: u64::from(self.schema_version),
            });
        }
        check_flow_id(&self.flow_id).map_err(|d| invalid("flow_id", d))?;
        if let Trigger::Event { upstream_id } = &self.trigger
            && (upstream_id.is_empty() || upstream_id.len() > 1024)
        {
            return Err(invalid(
                "trigger.upstream_id",
                "must be 1 to 1024 characters".into(),
            ));
        }
        if let Some(files) = &self.files {
            if files.len() > MAX_FILES {
                return Err(invalid(
                    "files",
                    format!("lists {} names, more than {MAX_FILES}", files.len()),
                ));
            }
            for (i, name) in files.iter().enumerate() {
                check_file_name(name).map_err(|d| invalid(&format!("files[{i}]"), d))?;
            }
        }
        if self.attempt == 0 {
            return Err(invalid("attempt", "attempts are counted from 1".into()));
        }
        Ok(())
    }
}

/// Why a payload is not a flow-run message this build can run. The `Display` text is
/// the dead-letter reason; none of the kinds can be fixed by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all, or JSON that is not an object.
    #[error("malformed message: {detail}")]
    Malformed {
        /// What the parser saw, with line and column.
        detail: String,
    },
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A schema version this build does not read (a newer publisher, most likely).
    #[error("unsupported schema version {found} (this worker reads version {SCHEMA_VERSION})")]
    UnsupportedVersion {
        /// The version the message claims.
        found: u64,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field's name.
        field: String,
    },
    /// A field is present but its value is wrong.
    #[error("invalid field `{field}`: {detail}")]
    InvalidField {
        /// The field's path (`files[2]`, `trigger`).
        field: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A field the schema version does not define.
    #[error("unknown field `{field}` (schema version {SCHEMA_VERSION} does not define it)")]
    UnknownField {
        /// The field's name.
        field: String,
    },
}

impl DecodeError {
    /// A short stable code for the kind of error (metrics, the `x-ferry-death-code` header).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::UnsupportedVersion { .. } => "unsupported-version",
            DecodeError::MissingField { .. } => "missing-field",
            DecodeError::InvalidField { .. } => "invalid-field",
            DecodeError::UnknownField { .. } => "unknown-field",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Schedule { tick } => write!(f, "schedule@{}", tick.to_rfc3339()),
            Trigger::Manual => f.write_str("manual"),
            Trigger::Event { upstream_id } => write!(f, "event:{upstream_id}"),
        }
    }
}

/// Removes `field` from `object` and deserializes it, naming the field in any error.
fn take_required<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<T, DecodeError> {
    let value = object
        .remove(field)
        .ok_or_else(|| DecodeError::MissingField {
            field: field.to_string(),
        })?;
    serde_json::from_value(value).map_err(|e| DecodeError::InvalidField {
        field: field.to_string(),
        detail: e.to_string(),
    })
}

/// Like [`take_required`] for a field that may be absent (`null` counts as absent).
fn take_optional<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<T>, DecodeError> {
    match object.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            serde_json::from_value(value)
                .map(Some)
                .map_err(|e| DecodeError::InvalidField {
                    field: field.to_string(),
                    detail: e.to_string(),
                })
        }
    }
}

/// Whether `flow_id` is a plain routing-key word: `[A-Za-z0-9._-]`, starting with a letter
/// or digit, at most [`MAX_FLOW_ID_LEN`] characters. The configuration holds ids to the same
/// rule, so that every configured flow can be published.
pub fn is_valid_flow_id(flow_id: &str) -> bool {
    let starts_well = flow_id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let all_allowed = flow_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    starts_well && all_allowed && flow_id.len() <= MAX_FLOW_ID_LEN
}

/// [`is_valid_flow_id`], with the rule as the reason.
fn check_flow_id(flow_id: &str) -> Result<(), String> {
    if !is_valid_flow_id(flow_id) {
        return Err(format!(
            "must be 1 to {MAX_FLOW_ID_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-', \
             starting with a letter or digit"
        ));
    }
    Ok(())
}

/// A file name must be a relative path that stays inside the flow's folder.
fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_FILE_NAME_LEN {
        return Err(format!("must be 1 to {MAX_FILE_NAME_LEN} bytes"));
    }
    if name.contains('\0') {
        return Err("must not contain NUL".into());
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("must be relative to the flow's folder".into());
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err("must not contain a `..` component".into());
    }
    Ok(())
}

/// The JSON type of a value, for error messages that do not echo the value.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({
            "schema_version": 1,
            "flow_run_id": "0b7f3c9e-51d4-4c1a-9c39-2f8f0c6d1e01",
            "flow_id": "acme.invoices-out",
            "trigger": {"kind": "schedule", "tick": "2026-11-24T08:00:00Z"},
            "files": ["2026/11/inv-001.csv"],
            "requested_at": "2026-11-24T08:00:00.120Z",
            "attempt": 1
        })
    }

    fn decode(value: &Value) -> Result<FlowRunMessage, DecodeError> {
        FlowRunMessage::decode(value.to_string().as_bytes())
    }

    #[test]
    fn round_trips_every_trigger() {
        for trigger in [
            Trigger::Schedule { tick: Utc::now() },
            Trigger::Manual,
            Trigger::Event {
                upstream_id: "erp-42".into(),
            },
        ] {
            let message = FlowRunMessage::new("acme", trigger, None);
            let bytes = message.encode().expect("encodes");
            assert_eq!(FlowRunMessage::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn decodes_the_documented_example() {
        let message = decode(&example()).expect("valid example");
        assert_eq!(message.flow_id, "acme.invoices-out");
        assert_eq!(message.attempt, 1);
        assert_eq!(message.next_attempt().attempt, 2);
    }

    #[test]
    fn tells_malformed_json_apart() {
        let err = FlowRunMessage::decode(b"{\"schema_version\": 1,").unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert_eq!(
            FlowRunMessage::decode(b"[1]").unwrap_err().code(),
            "malformed"
        );
        assert_eq!(
            FlowRunMessage::decode(&[0xff, 0xfe]).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn tells_unknown_versions_apart_before_anything_else() {
        let err = decode(&json!({"schema_version": 2, "whatever": true})).unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedVersion { found: 2 });
        assert_eq!(
            err.to_string(),
            "unsupported schema version 2 (this worker reads version 1)"
        );
        let err = decode(&json!({"flow_id": "x"})).unwrap_err();
        assert_eq!(
            err,
            DecodeError::MissingField {
                field: "schema_version".into()
            }
        );
        let err = decode(&json!({"schema_version": "1"})).unwrap_err();
        assert_eq!(err.code(), "invalid-field");
    }

    #[test]
    fn names_missing_and_invalid_fields() {
        for field in [
            "flow_run_id",
            "flow_id",
            "trigger",
            "requested_at",
            "attempt",
        ] {
            let mut value = example();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                decode(&value).unwrap_err(),
                DecodeError::MissingField {
                    field: field.into()
                }
            );
        }
        let cases = [
            ("flow_run_id", json!("not-a-uuid"), "flow_run_id"),
            ("flow_id", json!(""), "flow_id"),
            ("flow_id", json!("acme/invoices"), "flow_id"),
            ("trigger", json!({"kind": "cron"}), "trigger"),
            ("trigger", json!({"kind": "schedule"}), "trigger"),
            ("trigger", json!({"kind": "manual", "extra": 1}), "trigger"),
            ("requested_at", json!("yesterday"), "requested_at"),
            ("attempt", json!(0), "attempt"),
            ("attempt", json!(-1), "attempt"),
            ("files", json!(["../etc/passwd"]), "files[0]"),
            ("files", json!(["ok.csv", "/abs"]), "files[1]"),
            ("files", json!("a.csv"), "files"),
        ];
        for (field, bad, path) in cases {
            let mut value = example();
            value[field] = bad.clone();
            match decode(&value) {
                Err(DecodeError::InvalidField { field, .. }) => assert_eq!(field, path, "{bad}"),
                other => panic!("{field}={bad}: {other:?}"),
            }
        }
        let mut value = example();
        value["priority"] = json!(5);
        assert_eq!(decode(&value).unwrap_err().code(), "unknown-field");
    }

    #[test]
    fn files_may_be_absent_or_null() {
        let mut value = example();
        value.as_object_mut().unwrap().remove("files");
        assert_eq!(decode(&value).unwrap().files, None);
        value["files"] = Value::Null;
        assert_eq!(decode(&value).unwrap().files, None);
    }

    #[test]
    fn refuses_to_encode_what_a_worker_would_reject() {
        let message = FlowRunMessage::new("bad key!", Trigger::Manual, None);
        assert_eq!(message.encode().unwrap_err().code(), "invalid-field");
    }

    #[test]
    fn rejects_oversized_payloads_without_parsing() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            FlowRunMessage::decode(&big).unwrap_err().code(),
            "too-large"
        );
    }

    /// A validator for the subset of JSON Schema 2020-12 the schema file uses (`pattern`
    /// aside: its cases are checked against the Rust side only), so the test needs no
    /// extra dependency. Returns the first violation.
    fn schema_check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{path}: {what}"));
        let Some(schema) = schema.as_object() else {
            return Ok(());
        };
        for keyword in schema.keys() {
            let known = [
                "$schema",
                "$id",
                "title",
                "description",
                "examples",
                "type",
                "const",
                "required",
                "properties",
                "additionalProperties",
                "oneOf",
                "items",
                "minLength",
                "maxLength",
                "minimum",
                "maximum",
                "maxItems",
                "format",
                "pattern",
            ];
            assert!(
                known.contains(&keyword.as_str()),
                "schema uses `{keyword}`: teach the test"
            );
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            return fail(&format!("expected {expected}"));
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let matches = |t: &str| match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "null" => value.is_null(),
                other => panic!("type {other} not handled"),
            };
            if !types.into_iter().any(matches) {
                return fail("wrong type");
            }
        }
        if let Some(s) = value.as_str() {
            let len = s.chars().count() as u64;
            if schema
                .get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                return fail("too short");
            }
            if schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                return fail("too long");
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("date-time") if DateTime::parse_from_rfc3339(s).is_err() => {
                    return fail("not a date-time");
                }
                Some("uuid") if Uuid::parse_str(s).is_err() => return fail("not a uuid"),
                _ => {}
            }
        }
        if value.is_number() {
            let n = value.as_f64().unwrap_or(f64::NAN);
            if schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n < m)
            {
                return fail("below minimum");
            }
            if schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
            {
                return fail("above maximum");
            }
        }
        if let Some(items) = value.as_array() {
            if schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                return fail("too many items");
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    schema_check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !object.contains_key(required.as_str().unwrap_or_default()) {
                    return fail(&format!("missing {required}"));
                }
            }
            for (key, field) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => schema_check(sub, field, &format!("{path}.{key}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return fail(&format!("unexpected {key}"));
                    }
                    None => {}
                }
            }
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            let passing = branches
                .iter()
                .filter(|b| schema_check(b, value, path).is_ok())
                .count();
            if passing != 1 {
                return fail(&format!("{passing} oneOf branches match"));
            }
        }
        Ok(())
    }

    fn schema() -> Value {
        serde_json::from_str(JSON_SCHEMA_V1).expect("the schema file is JSON")
    }

    #[test]
    fn schema_examples_decode_and_rust_messages_fit_the_schema() {
        let schema = schema();
        let examples = schema["examples"].as_array().expect("examples");
        assert!(examples.len() >= 3);
        for example in examples.iter().chain([&example()]) {
            schema_check(&schema, example, "$").expect("example fits the schema");
            decode(example).expect("example decodes");
        }
        for trigger in [
            Trigger::Schedule { tick: Utc::now() },
            Trigger::Manual,
            Trigger::Event {
                upstream_id: "u-1".into(),
            },
        ] {
            for files in [
                None,
                Some(vec!["a.csv".to_string(), "sub/b.csv".to_string()]),
            ] {
                let message = FlowRunMessage::new("acme", trigger.clone(), files);
                let value: Value = serde_json::from_slice(&message.encode().unwrap()).unwrap();
                schema_check(&schema, &value, "$").expect("Rust output fits the schema");
            }
        }
    }

    #[test]
    fn schema_and_rust_reject_the_same_mistakes() {
        let schema = schema();
        let mutations: Vec<(&str, Option<Value>)> = vec![
            ("schema_version", Some(json!(2))),
            ("schema_version", None),
            ("flow_run_id", Some(json!("nope"))),
            ("flow_run_id", None),
            ("flow_id", Some(json!(""))),
            ("flow_id", Some(json!("x".repeat(MAX_FLOW_ID_LEN + 1)))),
            ("flow_id", None),
            ("trigger", Some(json!({"kind": "cron"}))),
            ("trigger", Some(json!({"kind": "schedule"}))),
            ("trigger", Some(json!({"kind": "event", "upstream_id": ""}))),
            ("trigger", Some(json!({"kind": "manual", "by": "me"}))),
            ("trigger", Some(json!("manual"))),
            ("files", Some(json!([""]))),
            ("files", Some(json!("a.csv"))),
            ("files", Some(json!([1]))),
            ("requested_at", Some(json!("24/11/2026"))),
            ("requested_at", None),
            ("attempt", Some(json!(0))),
            ("attempt", Some(json!(1.5))),
            ("attempt", Some(json!("1"))),
            ("attempt", None),
            ("surprise", Some(json!(true))),
        ];
        for (field, replacement) in mutations {
            let mut value = example();
            match &replacement {
                Some(v) => value[field] = v.clone(),
                None => {
                    value.as_object_mut().unwrap().remove(field);
                }
            }
            let by_schema = schema_check(&schema, &value, "$");
            let by_rust = decode(&value);
            assert!(by_schema.is_err(), "schema accepts {field}={replacement:?}");
            assert!(by_rust.is_err(), "Rust accepts {field}={replacement:?}");
        }
        // `pattern` cases: the schema states them, the Rust side enforces them.
        assert_eq!(
            schema["properties"]["flow_id"]["pattern"],
            json!("^[A-Za-z0-9][A-Za-z0-9._-]*$")
        );
        for bad in ["-x", "a/b", "a b", "é"] {
            let mut value = example();
            value["flow_id"] = json!(bad);
            assert!(decode(&value).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_lists_exactly_the_rust_fields() {
        let schema = schema();
        let mut in_schema: Vec<&String> =
            schema["properties"].as_object().unwrap().keys().collect();
        let full = FlowRunMessage::new("a", Trigger::Manual, Some(vec![]));
        let rust = serde_json::to_value(&full).unwrap();
        let mut in_rust: Vec<&String> = rust.as_object().unwrap().keys().collect();
        in_schema.sort();
        in_rust.sort();
        assert_eq!(in_schema, in_rust);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!required.contains(&"files") && required.len() == in_rust.len() - 1);
    }
}
