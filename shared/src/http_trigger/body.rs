//! The body of `POST /v1/flows/{flow}/runs` and the flow-run message it becomes.
//!
//! The body is optional; when present it is a JSON object with two optional fields:
//!
//! ```json
//! {"files": ["2026/12/invoice-1.csv"], "upstream_id": "erp-order-4711"}
//! ```
//!
//! - `files`: run only these files (relative names in the flow's source, the same rules as a
//!   message's `files`: no absolute path, no `..`); absent means every file that matches;
//! - `upstream_id`: the caller's own id for the event (for correlation in reports, logs and
//!   the audit trail); the run's trigger is then `event`, otherwise `manual`.
//!
//! Unknown fields are refused rather than ignored: a caller who misspells `files` would
//! otherwise start a run of every file of the flow.

use serde::Deserialize;

use crate::message::{FlowRunMessage, Trigger};

/// The largest body read; a flow-run message has the same limit.
pub const MAX_BODY_BYTES: usize = crate::message::MAX_MESSAGE_BYTES;

/// The most file names one request may list (the OpenAPI document says so too): a caller
/// with more asks for a run of every file, or sends several requests.
pub const MAX_FILES_PER_REQUEST: usize = 500;

/// The longest file name and `upstream_id` a request may give, in characters (a message
/// allows 1024 bytes; 255 characters of up to 4 bytes fit, and 500 such names fit the body).
pub const MAX_NAME_CHARS: usize = 255;

/// The JSON body of a run request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequestBody {
    files: Option<Vec<String>>,
    upstream_id: Option<String>,
}

/// Why a body is refused (answered `400`); the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(pub String);

/// The flow-run message that `body` (empty: no body) asks for, checked like a message from
/// the queue would be.
pub fn run_message(flow: &str, body: &[u8]) -> Result<FlowRunMessage, BadBody> {
    let request: RunRequestBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequestBody::default()
    } else {
        // Through `Value` first: serde would also build the struct from a JSON array
        // (`[null, null]`), and a caller's array must not become a run of every file.
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|error| BadBody(format!("the body: {error}")))?;
        if !value.is_object() {
            return Err(BadBody("the body: must be a JSON object".into()));
        }
        serde_json::from_value(value).map_err(|error| BadBody(format!("the body: {error}")))?
    };
    if request.files.as_ref().is_some_and(Vec::is_empty) {
        return Err(BadBody(
            "files: give at least one name, or leave `files` out to run every file".into(),
        ));
    }
    if let Some(files) = &request.files
        && files.len() > MAX_FILES_PER_REQUEST
    {
        return Err(BadBody(format!(
            "files: lists {} names, more than {MAX_FILES_PER_REQUEST} per request",
            files.len()
        )));
    }
    let too_long = |text: &str| text.chars().count() > MAX_NAME_CHARS;
    if let Some(i) = request
        .files
        .iter()
        .flatten()
        .position(|name| too_long(name))
    {
        return Err(BadBody(format!(
            "files[{i}]: longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if request.upstream_id.as_deref().is_some_and(too_long) {
        return Err(BadBody(format!(
            "upstream_id: longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let trigger = match request.upstream_id {
        Some(upstream_id) => Trigger::Event { upstream_id },
        None => Trigger::Manual,
    };
    let message = FlowRunMessage::new(flow, trigger, request.files);
    message
        .validate()
        .map_err(|error| BadBody(error.to_string()))?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_is_a_manual_run_of_every_file() {
        let message = run_message("f", b"").unwrap();
        assert_eq!(message.trigger, Trigger::Manual);
        assert_eq!(message.files, None);
        let message = run_message("f", b"{}").unwrap();
        assert_eq!(message.trigger, Trigger::Manual);
    }

    #[test]
    fn files_and_upstream_id_make_an_event_run_of_those_files() {
        let message = run_message(
            "f",
            br#"{"files": ["a.csv", "d/b.csv"], "upstream_id": "erp-1"}"#,
        )
        .unwrap();
        assert_eq!(
            message.trigger,
            Trigger::Event {
                upstream_id: "erp-1".into()
            }
        );
        assert_eq!(message.files.unwrap(), ["a.csv", "d/b.csv"]);
    }

    #[test]
    fn bad_bodies_are_refused_with_the_field_named() {
        for (body, expected) in [
            (&br#"{"file": ["a.csv"]}"#[..], "unknown field `file`"),
            (br#"{"files": []}"#, "files: give at least one"),
            (br#"{"files": ["../etc/passwd"]}"#, "files[0]"),
            (br#"{"files": "a.csv"}"#, "invalid type"),
            (br#"{"upstream_id": ""}"#, "upstream_id"),
            (b"not json", "the body"),
            (
                format!(r#"{{"upstream_id": "{}"}}"#, "é".repeat(256)).as_bytes(),
                "upstream_id: longer",
            ),
            (
                format!(r#"{{"files": ["a", "{}"]}}"#, "x".repeat(256)).as_bytes(),
                "files[1]: longer",
            ),
            (b"[1, 2]", "must be a JSON object"),
            (b"[null, null]", "must be a JSON object"),
        ] {
            let error = run_message("f", body).expect_err("refused");
            assert!(error.0.contains(expected), "{body:?}: {error}");
        }
    }
}
