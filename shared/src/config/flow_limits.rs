//! [`FlowLimits`]: how many files one flow-run takes (`max_files_per_run`) and which first
//! (`order`), read from a flow's YAML.
//!
//! A folder of 100 000 files should not become one run that holds the flow lock, a worker
//! slot and the partner's sessions for hours (and hits `run_timeout` half-way, failing the
//! rest). With `max_files_per_run`, a run takes that many files in `order` and leaves the
//! others for the next run; the report counts them (`left_for_next_run`) and the run is a
//! success. `order` also matters without a limit: the files are started in that order.
//!
//! The limit counts the files a run works on, not the duplicates (already delivered): a
//! flow that keeps its source files (no `delete_after_*`) selects its first files again at
//! every run; were they counted, it would never get past them. The run checks them (a
//! duplicate costs a claim, and in `hash` mode a read) and goes on to the next files.

use super::yaml::{Cx, Map};

/// The keys this module reads, listed in the flow's known keys (a test checks it).
#[cfg(test)]
const KEYS: [&str; 2] = ["max_files_per_run", "order"];

/// The largest `max_files_per_run` accepted.
const MAX_FILES_PER_RUN: u32 = 10_000_000;

/// Which files a flow-run takes first, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowLimits {
    /// `max_files_per_run`: the most files one run selects; `None` (the default) takes all.
    pub max_files_per_run: Option<u32>,
    /// `order` (default `name`): which files come first.
    pub order: FileOrder,
}

/// The order a run takes its files in (`order:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileOrder {
    /// By relative name, byte order (default).
    #[default]
    Name,
    /// Oldest modification time first (first in, first out). Files whose time is unknown
    /// (a partner listing without times) come last, by name.
    Oldest,
    /// Newest modification time first. Files whose time is unknown come last, by name.
    Newest,
    /// Smallest first, so that many small files are not held back by one huge file. Files
    /// whose size is unknown come last, by name.
    Size,
}

impl std::fmt::Display for FileOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileOrder::Name => "name",
            FileOrder::Oldest => "oldest",
            FileOrder::Newest => "newest",
            FileOrder::Size => "size",
        })
    }
}

/// Reads `max_files_per_run` (1 to 10 000 000) and `order` from a flow's map.
pub(crate) fn read(cx: &mut Cx<'_>, map: &Map<'_>) -> Option<FlowLimits> {
    let max_files_per_run = match map.get("max_files_per_run") {
        None => Some(None),
        Some(f) => f.int(cx, 1u32, MAX_FILES_PER_RUN).map(Some),
    };
    let order = map.get("order").map_or(Some(FileOrder::Name), |f| {
        f.choice(
            cx,
            &[
                ("name", FileOrder::Name),
                ("oldest", FileOrder::Oldest),
                ("newest", FileOrder::Newest),
                ("size", FileOrder::Size),
            ],
        )
    });
    Some(FlowLimits {
        max_files_per_run: max_files_per_run?,
        order: order?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_knows_these_keys() {
        for key in KEYS {
            assert!(super::super::flow::FLOW_KEYS.contains(&key), "{key}");
        }
    }
}
