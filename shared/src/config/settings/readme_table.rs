//! The README's `ferry.yaml` table documents exactly the keys the reader knows: every
//! section, every key of a section and every key of a nested map (`redis.sentinel`,
//! `vault.auth`, `audit.retention`). A key added to a section's `KEYS` without a table row
//! fails here, and so does a row for a key that was removed or misspelt.
//!
//! The table's first column names fields in backticks; a row may group several, the later
//! ones relative to the first one's parent: `` `retry.max_attempts` / `base_delay` `` is
//! `retry.max_attempts` and `retry.base_delay`.

use std::collections::BTreeSet;
use std::path::Path;

use super::{ROOT_KEYS, SECTIONS, audit, redis_topology, vault};

/// The nested maps of sections, with their known keys.
const NESTED: &[(&str, &[&str])] = &[
    ("redis.sentinel", redis_topology::SENTINEL_KEYS),
    ("vault.auth", vault::AUTH_KEYS),
    ("audit.retention", audit::RETENTION_KEYS),
];

/// The field paths the first column of README's `ferry.yaml` table names.
fn documented_fields(readme: &str) -> Vec<String> {
    let table = readme
        .split("### `ferry.yaml`")
        .nth(1)
        .expect("README has a `### `ferry.yaml`` section");
    let rows = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2); // the header and the `|---|` line
    let mut fields = Vec::new();
    for row in rows {
        let first_cell = row.split('|').nth(1).expect("a table row has cells");
        let mut parent = String::new();
        for (i, name) in first_cell.split('`').skip(1).step_by(2).enumerate() {
            let path = if name.contains('.') {
                name.to_string()
            } else {
                assert!(i > 0, "`{name}` in row {row:?} needs its section");
                format!("{parent}.{name}")
            };
            if i == 0 {
                parent = path.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap();
            }
            fields.push(path);
        }
    }
    fields
}

/// The keys documented directly under `prefix` (`""` for the root).
fn documented_under(fields: &[String], prefix: &str) -> BTreeSet<String> {
    fields
        .iter()
        .filter_map(|field| match prefix {
            "" => Some(field.as_str()),
            _ => field.strip_prefix(prefix)?.strip_prefix('.'),
        })
        .map(|rest| rest.split('.').next().unwrap_or_default().to_string())
        .collect()
}

fn assert_same(what: &str, documented: BTreeSet<String>, known: &[&str]) {
    let known: BTreeSet<String> = known.iter().map(ToString::to_string).collect();
    let undocumented: Vec<&String> = known.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&known).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "README's `ferry.yaml` table and {what} differ: read but not documented {undocumented:?}, \
         documented but not read {unknown:?}"
    );
}

#[test]
fn the_readme_table_documents_every_key_and_no_other() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md beside the workspace");
    let fields = documented_fields(&readme);
    assert_same("ROOT_KEYS", documented_under(&fields, ""), &ROOT_KEYS);
    for (name, keys) in SECTIONS.iter().chain(NESTED) {
        assert_same(name, documented_under(&fields, name), keys);
    }
    // No row names a deeper key than the readers know.
    for field in &fields {
        let depth = field.split('.').count();
        let nested = NESTED
            .iter()
            .any(|(map, _)| field.starts_with(&format!("{map}.")));
        assert!(
            depth == 2 || (depth == 3 && nested),
            "README documents `{field}`, which no section reads"
        );
    }
}

#[test]
fn grouped_rows_are_relative_to_their_first_field() {
    let readme = "### `ferry.yaml`\n\n| field | default |\n|---|---|\n\
        | `retry.max_attempts` / `base_delay` | `3` |\n\
        | `redis.sentinel.master_name` / `redis.sentinel.nodes` | — |\n\n| other | table |\n";
    assert_eq!(
        documented_fields(readme),
        [
            "retry.max_attempts",
            "retry.base_delay",
            "redis.sentinel.master_name",
            "redis.sentinel.nodes"
        ]
    );
}
