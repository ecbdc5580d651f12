//! [`Coalescer`]: turns a stream of "something changed" signals and folder listings into a
//! few run requests.
//!
//! The rules, for one flow:
//!
//! - **A burst first ends.** A run is requested only once the folder has been quiet (no
//!   change seen) for `settle`; a folder that never pauses still gets a request every
//!   [`MAX_WAIT_SETTLES`] settle periods, so a steady trickle is not starved.
//! - **Only new, stable files count.** A listing (the worker's own selection: the flow's
//!   patterns, links, `min_file_age`) gives the files ready now; those not already covered by
//!   an earlier request (by name, size and modification time) are *fresh*. Files not yet
//!   stable are looked at again later, and requested once they are.
//! - **At most one request per stability period**: `max(min_file_age, settle)` between
//!   two requests of the flow. Fresh files found meanwhile wait for the next one, and
//!   so do files that arrive while a run is under way: the run may not have seen them.
//!
//! A file that leaves the folder (delivered and deleted or moved) is forgotten, so a new
//! file under the same name is fresh again. The coalescer starts knowing nothing: after a
//! restart, the files already in the folder make one request (the worker skips what it
//! delivered before).
//!
//! Pure logic over the times it is given, so the rules are tested without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::transfer::{LocalFile, Selection};

/// A folder that keeps changing gets a request after this many `settle` periods anyway.
pub const MAX_WAIT_SETTLES: u32 = 10;

/// What the flow's watcher should do after a look at its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Request a run now; `fresh` new, stable files are waiting (names, in name order).
    Request {
        /// The fresh files' names.
        fresh: Vec<String>,
    },
    /// Look again at this time (a burst is still arriving, files are not yet stable, or
    /// the last request was too recent).
    LookAgainAt(Instant),
    /// Nothing to do until the next change or rescan.
    Idle,
}

/// One flow's coalescing state (see the module docs).
#[derive(Debug)]
pub struct Coalescer {
    settle: Duration,
    period: Duration,
    recheck: Duration,
    /// Files an earlier request covered: name -> (size, modified).
    covered: HashMap<String, (u64, DateTime<Utc>)>,
    /// The last change signal seen.
    last_change: Option<Instant>,
    /// The first change not yet followed by a request.
    changed_since: Option<Instant>,
    /// The last request made.
    last_request: Option<Instant>,
}

impl Coalescer {
    /// A coalescer for a flow with this `settle` and `min_file_age`.
    pub fn new(settle: Duration, min_file_age: Duration) -> Self {
        Coalescer {
            settle,
            period: settle.max(min_file_age),
            // Files not yet stable are looked at again this often: soon after they become
            // stable, without listing a large folder every `settle` for long.
            recheck: settle.max(min_file_age / 4),
            covered: HashMap::new(),
            last_change: None,
            changed_since: None,
            last_request: None,
        }
    }

    /// Records a change signal from the watch at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.last_change = Some(now);
        self.changed_since.get_or_insert(now);
    }

    /// When the next look is due for the changes seen so far (`None`: none pending).
    pub fn look_due(&self) -> Option<Instant> {
        let last = self.last_change?;
        let since = self.changed_since?;
        Some((last + self.settle).min(since + self.settle * MAX_WAIT_SETTLES))
    }

    /// Decides, from a listing of the folder taken at `now`.
    pub fn decide(&mut self, listing: &Selection<LocalFile>, now: Instant) -> Decision {
        self.forget_gone(listing);
        if let Some(due) = self.look_due()
            && due > now
        {
            return Decision::LookAgainAt(due);
        }
        let fresh: Vec<String> = listing
            .ready
            .iter()
            .filter(|file| self.covered.get(&file.name) != Some(&(file.size, file.modified)))
            .map(|file| file.name.clone())
            .collect();
        if fresh.is_empty() {
            self.changed_since = None;
            return if listing.not_yet_stable.is_empty() {
                Decision::Idle
            } else {
                Decision::LookAgainAt(now + self.recheck)
            };
        }
        if let Some(last) = self.last_request
            && last + self.period > now
        {
            return Decision::LookAgainAt(last + self.period);
        }
        Decision::Request { fresh }
    }

    /// Records that a request covering the listing's ready files was queued at `now`.
    pub fn requested(&mut self, listing: &Selection<LocalFile>, now: Instant) {
        for file in &listing.ready {
            self.covered
                .insert(file.name.clone(), (file.size, file.modified));
        }
        self.last_request = Some(now);
        self.last_change = None;
        self.changed_since = None;
    }

    /// After a request: when to look again for the files that were not yet stable.
    pub fn after_request(&self, listing: &Selection<LocalFile>, now: Instant) -> Decision {
        if listing.not_yet_stable.is_empty() {
            Decision::Idle
        } else {
            Decision::LookAgainAt(now + self.recheck.max(self.period))
        }
    }

    /// Forgets the covered files that are no longer in the folder.
    fn forget_gone(&mut self, listing: &Selection<LocalFile>) {
        if self.covered.is_empty() {
            return;
        }
        let present: std::collections::HashSet<&str> = listing
            .ready
            .iter()
            .map(|f| f.name.as_str())
            .chain(listing.not_yet_stable.iter().map(String::as_str))
            .collect();
        self.covered
            .retain(|name, _| present.contains(name.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn modified(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from(std::time::SystemTime::UNIX_EPOCH)
            + chrono::Duration::seconds(seconds)
    }

    fn listing(ready: &[(&str, u64)], unstable: &[&str]) -> Selection<LocalFile> {
        Selection {
            ready: ready
                .iter()
                .map(|(name, size)| LocalFile {
                    name: (*name).to_owned(),
                    path: PathBuf::from(name),
                    size: *size,
                    modified: modified(1),
                })
                .collect(),
            not_yet_stable: unstable.iter().map(|n| (*n).to_owned()).collect(),
            links: Vec::new(),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_is_one_request_once_the_folder_is_quiet() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(S, Duration::ZERO);
        for i in 0..5 {
            c.changed(t0 + Duration::from_millis(100 * i));
        }
        let l = listing(&[("a.xml", 1), ("b.xml", 1)], &[]);
        let quiet = t0 + Duration::from_millis(400) + S;
        assert_eq!(c.decide(&l, t0 + S), Decision::LookAgainAt(quiet));
        assert_eq!(
            c.decide(&l, quiet),
            Decision::Request {
                fresh: vec!["a.xml".into(), "b.xml".into()]
            }
        );
        c.requested(&l, quiet);
        assert_eq!(c.after_request(&l, quiet), Decision::Idle);
        // The same files again (a rescan): nothing new.
        assert_eq!(c.decide(&l, quiet + S * 30), Decision::Idle);
    }

    #[test]
    fn a_folder_that_never_pauses_still_gets_requests() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(S, Duration::ZERO);
        let l = listing(&[("a.xml", 1)], &[]);
        let mut now = t0;
        let mut requests = 0;
        // A change every half second for 30 s.
        while now < t0 + Duration::from_secs(30) {
            c.changed(now);
            if let Decision::Request { .. } = c.decide(&l, now) {
                c.requested(&l, now);
                requests += 1;
                // Something new arrives for the next request to find.
                c.covered.clear();
            }
            now += Duration::from_millis(500);
        }
        assert!((2..=3).contains(&requests), "{requests} requests");
    }

    #[test]
    fn files_not_yet_stable_are_looked_at_again_and_requested_once_stable() {
        let t0 = Instant::now();
        let min_age = Duration::from_secs(8);
        let mut c = Coalescer::new(S, min_age);
        let writing = listing(&[], &["big.xml"]);
        assert_eq!(c.decide(&writing, t0), Decision::LookAgainAt(t0 + S * 2));
        let done = listing(&[("big.xml", 100)], &[]);
        assert!(matches!(
            c.decide(&done, t0 + S * 9),
            Decision::Request { .. }
        ));
    }

    #[test]
    fn at_most_one_request_per_stability_period_and_later_arrivals_are_not_lost() {
        let t0 = Instant::now();
        let min_age = Duration::from_secs(30);
        let mut c = Coalescer::new(S, min_age);
        let first = listing(&[("a.xml", 1)], &["b.xml"]);
        assert!(matches!(c.decide(&first, t0), Decision::Request { .. }));
        c.requested(&first, t0);
        assert_eq!(
            c.after_request(&first, t0),
            Decision::LookAgainAt(t0 + min_age)
        );
        // b.xml becomes stable (arrived during the run): fresh, but the period holds it.
        let second = listing(&[("a.xml", 1), ("b.xml", 1)], &[]);
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(c.decide(&second, soon), Decision::LookAgainAt(t0 + min_age));
        assert_eq!(
            c.decide(&second, t0 + min_age),
            Decision::Request {
                fresh: vec!["b.xml".into()]
            }
        );
    }

    #[test]
    fn a_file_that_left_and_came_back_is_fresh_again() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(S, Duration::ZERO);
        let l = listing(&[("a.xml", 1)], &[]);
        assert!(matches!(c.decide(&l, t0), Decision::Request { .. }));
        c.requested(&l, t0);
        assert_eq!(c.decide(&listing(&[], &[]), t0 + S * 2), Decision::Idle);
        assert!(matches!(c.decide(&l, t0 + S * 4), Decision::Request { .. }));
        // A changed size is fresh too.
        c.requested(&l, t0 + S * 4);
        let grown = listing(&[("a.xml", 2)], &[]);
        assert!(matches!(
            c.decide(&grown, t0 + S * 6),
            Decision::Request { .. }
        ));
    }
}
