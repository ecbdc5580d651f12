//! [`FlowTrigger`]: what, besides its cron schedule, makes a flow run, read from the flow's
//! `trigger:` section.
//!
//! `trigger: { on_arrival: true }` on an upload flow makes the scheduler watch the flow's
//! `local.path` and request a run once newly arrived files have passed the flow's stability
//! rule (`min_file_age`); see `arrival/` for the watcher. Two knobs tune it:
//!
//! - `settle` (default `1s`): a run is requested once no file has arrived for this long, so
//!   a burst of arrivals makes one run, not one per file. It is also the shortest time
//!   between two requests of a flow whose `min_file_age` is shorter.
//! - `rescan_every` (default `30s`): the folder is also listed this often, whatever the
//!   watch says, as a safety net for lost events and for file systems without inotify
//!   (NFS and other network mounts only notify changes made on this host).
//!
//! A download flow has no local arrivals to watch, so `on_arrival` there is an error, and so
//! are `settle` or `rescan_every` without `on_arrival: true` (they would do nothing).

use std::time::Duration;

use super::flow::Direction;
use super::yaml::{Cx, Map};

/// The flow-level key this module reads, listed in the flow's known keys (a test checks it).
#[cfg(test)]
const KEYS: [&str; 1] = ["trigger"];

/// The keys of the `trigger:` section.
const TRIGGER_KEYS: &[&str] = &["on_arrival", "settle", "rescan_every"];

/// Default `trigger.settle`.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

/// Default `trigger.rescan_every`.
pub const DEFAULT_RESCAN_EVERY: Duration = Duration::from_secs(30);

/// The longest `settle` accepted: a longer quiet period would hold runs back for no gain.
const MAX_SETTLE: Duration = Duration::from_secs(600);

/// The shortest `rescan_every` accepted: each rescan lists the whole folder.
const MIN_RESCAN_EVERY: Duration = Duration::from_secs(1);

/// A flow's event triggers (`trigger:`); the default is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTrigger {
    /// `on_arrival` (default false): request a run when files arrive in `local.path`.
    pub on_arrival: bool,
    /// `settle` (default 1 s): quiet time after the last arrival before a run is requested,
    /// and the shortest time between two requests.
    pub settle: Duration,
    /// `rescan_every` (default 30 s): the folder is listed this often even without events.
    pub rescan_every: Duration,
}

impl Default for FlowTrigger {
    fn default() -> Self {
        FlowTrigger {
            on_arrival: false,
            settle: DEFAULT_SETTLE,
            rescan_every: DEFAULT_RESCAN_EVERY,
        }
    }
}

/// Reads a flow's `trigger:` section (absent: no event trigger). `direction` is `None`
/// when the flow's own direction is invalid; the section is then checked on its own.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    flow: &Map<'_>,
    direction: Option<Direction>,
) -> Option<FlowTrigger> {
    let Some(field) = flow.get("trigger") else {
        return Some(FlowTrigger::default());
    };
    let map = field.map(cx, TRIGGER_KEYS)?;
    let on_arrival = match map.get("on_arrival") {
        None => Some(false),
        Some(f) => f.bool(cx).and_then(|on| {
            if on && direction == Some(Direction::Download) {
                f.error(
                    cx,
                    "on_arrival watches the local folder for new files to upload; a download \
                     flow has none arriving there (use schedule_cron or the HTTP trigger)",
                );
                return None;
            }
            Some(on)
        }),
    };
    let settle = map.get("settle").map_or(Some(DEFAULT_SETTLE), |f| {
        let settle = f.positive_duration(cx)?;
        if settle > MAX_SETTLE {
            f.error(cx, "must be at most 10m");
            return None;
        }
        Some(settle)
    });
    let rescan_every = map
        .get("rescan_every")
        .map_or(Some(DEFAULT_RESCAN_EVERY), |f| {
            let every = f.duration(cx)?;
            if every < MIN_RESCAN_EVERY {
                f.error(
                    cx,
                    "must be at least 1s (each rescan lists the whole folder)",
                );
                return None;
            }
            Some(every)
        });
    if on_arrival == Some(false) {
        for key in ["settle", "rescan_every"] {
            if let Some(f) = map.get(key) {
                f.error(
                    cx,
                    format!("`{key}` tunes the arrival watch; it needs `on_arrival: true`"),
                );
            }
        }
    }
    Some(FlowTrigger {
        on_arrival: on_arrival?,
        settle: settle?,
        rescan_every: rescan_every?,
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
