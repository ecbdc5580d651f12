//! A flow-run's bound: the selected files put in the flow's `order` and cut at its
//! `max_files_per_run` (see `config/flow_limits.rs` for the why).
//!
//! The cut comes after the stability rule and the `files` filter of a run, so a run takes
//! the first `max_files_per_run` files that it could transfer now; the others stay where
//! they are and the report counts them as left for the next run. Ties (same time, same
//! size) are broken by name, so two runs over the same folder choose the same files.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::selection::LocalFile;
use crate::config::{FileOrder, FlowLimits};
use crate::ftps::RemoteEntry;

/// What the ordering needs to know of a selected file, local or remote.
pub(crate) trait Candidate {
    /// The name relative to the flow's directory.
    fn name(&self) -> &str;
    /// Last modification, when known.
    fn modified(&self) -> Option<DateTime<Utc>>;
    /// Size in bytes, when known.
    fn size(&self) -> Option<u64>;
}

impl Candidate for LocalFile {
    fn name(&self) -> &str {
        &self.name
    }
    fn modified(&self) -> Option<DateTime<Utc>> {
        Some(self.modified)
    }
    fn size(&self) -> Option<u64> {
        Some(self.size)
    }
}

impl Candidate for RemoteEntry {
    fn name(&self) -> &str {
        &self.name
    }
    fn modified(&self) -> Option<DateTime<Utc>> {
        self.modified
    }
    fn size(&self) -> Option<u64> {
        self.size
    }
}

/// The files of one run, in the flow's order and at most `max_files_per_run`.
#[derive(Debug)]
#[must_use]
pub(crate) struct Bounded<T> {
    /// The files this run takes, in order.
    pub(crate) taken: Vec<T>,
    /// How many selected files were left for the next run.
    pub(crate) left_for_next_run: usize,
}

/// Orders `files` as `limits.order` says and keeps the first `limits.max_files_per_run`.
pub(crate) fn bound<T: Candidate>(mut files: Vec<T>, limits: &FlowLimits) -> Bounded<T> {
    files.sort_by(|a, b| compare(a, b, limits.order));
    let keep = limits
        .max_files_per_run
        .map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX));
    let left_for_next_run = files.len().saturating_sub(keep);
    files.truncate(keep);
    Bounded {
        taken: files,
        left_for_next_run,
    }
}

fn compare<T: Candidate>(a: &T, b: &T, order: FileOrder) -> Ordering {
    let first = match order {
        FileOrder::Name => Ordering::Equal,
        FileOrder::Oldest => known_first(a.modified(), b.modified(), |x, y| x.cmp(&y)),
        FileOrder::Newest => known_first(a.modified(), b.modified(), |x, y| y.cmp(&x)),
        FileOrder::Size => known_first(a.size(), b.size(), |x, y| x.cmp(&y)),
    };
    first.then_with(|| a.name().cmp(b.name()))
}

/// Known values in `cmp` order, then unknown ones.
fn known_first<V>(a: Option<V>, b: Option<V>, cmp: impl Fn(V, V) -> Ordering) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => cmp(a, b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ftps::TimePrecision;

    fn entry(name: &str, minute: Option<u32>, size: Option<u64>) -> RemoteEntry {
        RemoteEntry {
            name: name.into(),
            size,
            modified: minute.map(|m| Utc.with_ymd_and_hms(2026, 1, 1, 0, m, 0).unwrap()),
            precision: if minute.is_some() {
                TimePrecision::Exact
            } else {
                TimePrecision::Unknown
            },
            is_file: true,
        }
    }

    fn names(files: &[RemoteEntry]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn orders_then_cuts_with_unknowns_last_and_names_breaking_ties() {
        let files = || {
            vec![
                entry("a", Some(5), Some(30)),
                entry("b", Some(1), None),
                entry("c", None, Some(10)),
                entry("d", Some(5), Some(20)),
            ]
        };
        let limits = |order, max| FlowLimits {
            max_files_per_run: max,
            order,
        };
        let all = bound(files(), &limits(FileOrder::Name, None));
        assert_eq!(names(&all.taken), ["a", "b", "c", "d"]);
        assert_eq!(all.left_for_next_run, 0);
        let oldest = bound(files(), &limits(FileOrder::Oldest, Some(3)));
        assert_eq!(names(&oldest.taken), ["b", "a", "d"]);
        assert_eq!(oldest.left_for_next_run, 1);
        let newest = bound(files(), &limits(FileOrder::Newest, Some(2)));
        assert_eq!(names(&newest.taken), ["a", "d"]);
        assert_eq!(newest.left_for_next_run, 2);
        let size = bound(files(), &limits(FileOrder::Size, Some(10)));
        assert_eq!(names(&size.taken), ["c", "d", "a", "b"]);
        assert_eq!(size.left_for_next_run, 0);
    }
}
