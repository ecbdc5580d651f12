//! A flow-run's bound: the selected files put in the flow's `order` and cut at its
//! `max_files_per_run` (see `config/flow_limits.rs` for the why).
//!
//! The cut comes after the stability rule and the `files` filter of a run, so a run takes
//! the first `max_files_per_run` files that it could transfer now; the others stay where
//! they are and the report counts them as left for the next run. Duplicates (files already
//! delivered) do not count: the run goes on to the next files in batches until it has
//! worked on `max_files_per_run` files (see [`in_batches`]). Ties (same time, same size)
//! are broken by name, so two runs over the same folder choose the same files.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::report::{FileErrorKind, FileReport, Outcome};
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

/// Puts `files` in the flow's `order` (ties by name).
pub(crate) fn in_order<T: Candidate>(mut files: Vec<T>, order: FileOrder) -> Vec<T> {
    files.sort_by(|a, b| compare(a, b, order));
    files
}

/// Hands `files` (already in order) to `run_batch` until `max` of the rows it returns
/// `count` (files the run worked on: not the duplicates, already delivered, that cost no
/// transfer), or until a row `ends_run` (the run's time limit), or the files run out.
/// Without a `max`, one batch takes them all. Returns every row and how many files were
/// left for the next run.
///
/// Counting duplicates would stall a flow that keeps its sources: each run would select
/// the same first files, all already delivered, and never reach the rest.
pub(crate) async fn in_batches<T, R, Fut>(
    files: Vec<T>,
    limits: &FlowLimits,
    count: impl Fn(&R) -> bool,
    ends_run: impl Fn(&R) -> bool,
    mut run_batch: impl FnMut(Vec<T>) -> Fut,
) -> (Vec<R>, usize)
where
    Fut: Future<Output = Vec<R>>,
{
    let Some(max) = limits.max_files_per_run else {
        return (run_batch(files).await, 0);
    };
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    let mut counted = 0;
    let mut queue = files.into_iter();
    while counted < max {
        let batch: Vec<T> = queue.by_ref().take(max - counted).collect();
        if batch.is_empty() {
            break;
        }
        let batch_rows = run_batch(batch).await;
        counted += batch_rows.iter().filter(|r| count(r)).count();
        let ended = batch_rows.iter().any(&ends_run);
        rows.extend(batch_rows);
        if ended {
            break;
        }
    }
    (rows, queue.len())
}

/// Whether a row counts toward `max_files_per_run`: every file but a duplicate.
pub(crate) fn counts_toward_limit(row: &FileReport) -> bool {
    row.outcome != Outcome::Duplicate
}

/// Whether a row says the run reached its time limit (no further batch then).
pub(crate) fn hit_time_limit(row: &FileReport) -> bool {
    row.error
        .as_ref()
        .is_some_and(|e| e.kind == FileErrorKind::RunTimeout)
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

    fn files() -> Vec<RemoteEntry> {
        vec![
            entry("a", Some(5), Some(30)),
            entry("b", Some(1), None),
            entry("c", None, Some(10)),
            entry("d", Some(5), Some(20)),
        ]
    }

    #[test]
    fn orders_with_unknowns_last_and_names_breaking_ties() {
        assert_eq!(
            names(&in_order(files(), FileOrder::Name)),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            names(&in_order(files(), FileOrder::Oldest)),
            ["b", "a", "d", "c"]
        );
        assert_eq!(
            names(&in_order(files(), FileOrder::Newest)),
            ["a", "d", "b", "c"]
        );
        assert_eq!(
            names(&in_order(files(), FileOrder::Size)),
            ["c", "d", "a", "b"]
        );
    }

    /// Runs `in_batches` over ten numbered files where the even ones are "duplicates" and
    /// file `stop_at` ends the run; returns the files handed out and how many were left.
    async fn batches(max: Option<u32>, stop_at: Option<u32>) -> (Vec<u32>, usize) {
        let limits = FlowLimits {
            max_files_per_run: max,
            order: FileOrder::Name,
        };
        in_batches(
            (0..10).collect(),
            &limits,
            |n: &u32| n % 2 == 1,
            |n| Some(*n) == stop_at,
            std::future::ready,
        )
        .await
    }

    #[tokio::test]
    async fn batches_count_only_worked_files_and_stop_at_the_time_limit() {
        assert_eq!(batches(None, None).await, ((0..10).collect(), 0));
        // 0..3 holds two odd files; then 3..5 one more (3); then 5 makes three.
        assert_eq!(batches(Some(3), None).await, (vec![0, 1, 2, 3, 4, 5], 4));
        assert_eq!(batches(Some(20), None).await, ((0..10).collect(), 0));
        assert_eq!(batches(Some(3), Some(1)).await, (vec![0, 1, 2], 7));
    }
}
