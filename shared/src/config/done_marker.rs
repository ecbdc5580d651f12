//! `done_marker`: the partner convention of a marker file beside each data file, such as
//! `done_marker: "{name}.done"`.
//!
//! - Download: a file is fetched only once its marker is listed beside it (the partner
//!   writes the marker when the file is complete); the markers themselves are never
//!   fetched. When the flow deletes the partner's file (`after_download: delete`), its
//!   marker goes with it; when it moves the file, the marker is deleted too (the file's new
//!   folder is the flow's, not the partner's pickup folder).
//! - Upload: after the file is renamed into place, an empty marker is written beside it, and
//!   only then is the delivery recorded: a marker that could not be written is written by the
//!   next attempt (the file is found in place).
//!
//! The template holds `{name}` exactly once (the file's name) and no `/`: the marker lives in
//! the file's folder.

use super::yaml::{Cx, Map};

/// The flow keys read here (added to the flow's known keys).
pub(crate) const KEYS: &[&str] = &["done_marker"];

/// A marker-file naming rule: `prefix{name}suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneMarker {
    prefix: String,
    suffix: String,
}

impl DoneMarker {
    /// The rule of `template`, if it is one (`{name}` exactly once, something around it, no
    /// `/`); the reason otherwise.
    pub fn parse(template: &str) -> Result<DoneMarker, &'static str> {
        if template.contains('/') {
            return Err("a marker lives beside its file: no `/` in done_marker");
        }
        let Some((prefix, suffix)) = template.split_once("{name}") else {
            return Err("done_marker must contain {name}, e.g. \"{name}.done\"");
        };
        if suffix.contains("{name}") {
            return Err("done_marker must contain {name} once");
        }
        if prefix.is_empty() && suffix.is_empty() {
            return Err(
                "done_marker \"{name}\" would be the file itself; add a suffix such as \".done\"",
            );
        }
        Ok(DoneMarker {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The marker's name for the file `name` (a name within its folder).
    pub fn marker_for(&self, name: &str) -> String {
        format!("{}{name}{}", self.prefix, self.suffix)
    }

    /// Whether `name` is itself a marker (of some file).
    pub fn is_marker(&self, name: &str) -> bool {
        name.len() > self.prefix.len() + self.suffix.len()
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
    }
}

/// Reads `done_marker`.
pub(crate) fn read(cx: &mut Cx<'_>, map: &Map<'_>) -> Option<Option<DoneMarker>> {
    let Some(field) = map.get("done_marker") else {
        return Some(None);
    };
    let template = field.non_empty_str(cx)?;
    match DoneMarker::parse(&template) {
        Ok(marker) => Some(Some(marker)),
        Err(reason) => {
            field.error(cx, reason);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_named_and_recognised() {
        let m = DoneMarker::parse("{name}.done").unwrap();
        assert_eq!(m.marker_for("a.xml"), "a.xml.done");
        assert!(m.is_marker("a.xml.done"));
        assert!(!m.is_marker("a.xml"));
        assert!(!m.is_marker(".done"));
        let p = DoneMarker::parse("ok_{name}").unwrap();
        assert_eq!(p.marker_for("a.xml"), "ok_a.xml");
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(DoneMarker::parse("done").unwrap_err().contains("{name}"));
        assert!(DoneMarker::parse("{name}").unwrap_err().contains("suffix"));
        assert!(
            DoneMarker::parse("x/{name}.done")
                .unwrap_err()
                .contains('/')
        );
        assert!(
            DoneMarker::parse("{name}.{name}")
                .unwrap_err()
                .contains("once")
        );
    }
}
