//! The `store:` section of `ferry.yaml`: which store keeps the claims, delivery records,
//! leases, flow locks, ticks and the audit trail. Its struct, known keys and reader live here
//! together.
//!
//! ```yaml
//! store:
//!   kind: embedded                  # default: redis (the `redis:` section says where)
//!   path: /var/lib/ferry/state.db   # required for embedded; relative to the config folder
//! ```
//!
//! `redis` is the default and never falls back to anything: a fleet worker whose Redis is down
//! fails closed. `embedded` is one SQLite file for a single node (`ferry-worker run`, `probe`,
//! `validate`, `audit`, the standalone node); the processes of a fleet must share one store, so
//! `ferry-worker consume` and `ferry-scheduler` refuse to start with it. A relative `path` is
//! resolved against the configuration directory (not the working directory), so the same
//! configuration names the same file wherever it is started from; the file's folder must exist.

use std::path::{Path, PathBuf};

use crate::config::yaml::{Cx, Map};

/// The keys of the `store:` section.
pub(crate) const KEYS: &[&str] = &["kind", "path"];

/// Which store a deployment uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// Redis, as the `redis:` section says (a fleet).
    #[default]
    Redis,
    /// One SQLite file on this machine (a single node).
    Embedded,
}

/// The `store:` section's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSettings {
    /// `store.kind` (default `redis`).
    pub kind: StoreKind,
    /// `store.path`: the embedded store's file (absolute once the configuration is loaded);
    /// `None` for Redis.
    pub path: Option<PathBuf>,
}

impl StoreSettings {
    /// The embedded store's file, when `kind` is `embedded`.
    pub fn embedded_path(&self) -> Option<&Path> {
        match self.kind {
            StoreKind::Embedded => self.path.as_deref(),
            StoreKind::Redis => None,
        }
    }

    /// Resolves a relative `path` against the configuration directory `dir`.
    pub(crate) fn resolve_against(&mut self, dir: &Path) {
        if let Some(path) = &self.path
            && path.is_relative()
        {
            self.path = Some(dir.join(path));
        }
    }
}

/// Reads the `store:` section (`None` when absent: Redis).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>) -> StoreSettings {
    let Some(section) = section else {
        return StoreSettings::default();
    };
    let kind = section
        .get("kind")
        .and_then(|f| {
            f.choice(
                cx,
                &[
                    ("redis", StoreKind::Redis),
                    ("embedded", StoreKind::Embedded),
                ],
            )
        })
        .unwrap_or_default();
    let path = section
        .get("path")
        .and_then(|f| f.non_empty_str(cx))
        .map(PathBuf::from);
    match kind {
        StoreKind::Embedded if path.is_none() && section.get("path").is_none() => {
            cx.error(
                section.loc(),
                "store.path",
                "`kind: embedded` needs `path`: the SQLite file of the store (e.g. /var/lib/ferry/state.db; a relative path is resolved against the configuration directory)",
            );
        }
        StoreKind::Redis if section.get("path").is_some() => {
            cx.error(
                section.loc(),
                "store.path",
                "`path` is only for `kind: embedded`; Redis is configured in the `redis:` section",
            );
        }
        _ => {}
    }
    StoreSettings { kind, path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;

    fn load(text: &str) -> (StoreSettings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let map = root
            .as_ref()
            .and_then(|node| Map::root(&mut cx, node, &["store"]));
        let section = map
            .as_ref()
            .and_then(|m| m.get("store"))
            .and_then(|f| f.map(&mut cx, KEYS));
        let settings = read(&mut cx, section.as_ref());
        (settings, errors)
    }

    #[test]
    fn redis_by_default_embedded_with_a_path() {
        let (s, errors) = load("store: {}\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.kind, StoreKind::Redis);
        assert_eq!(s.embedded_path(), None);

        let (mut s, errors) = load("store:\n  kind: embedded\n  path: state/ferry.db\n");
        assert!(errors.is_empty(), "{errors:?}");
        s.resolve_against(Path::new("/etc/ferry"));
        assert_eq!(
            s.embedded_path(),
            Some(Path::new("/etc/ferry/state/ferry.db"))
        );
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let (_, errors) = load("store:\n  kind: embedded\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(
            text.contains("ferry.yaml") && text.contains("store.path"),
            "{text}"
        );
        assert_eq!(errors[0].line, Some(1), "the `store:` line");

        let (_, errors) = load("store:\n  kind: sqlite\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "store.kind");
        assert!(
            errors[0].to_string().contains("`embedded`"),
            "{}",
            errors[0]
        );

        let (_, errors) = load("store:\n  kind: redis\n  path: x.db\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
