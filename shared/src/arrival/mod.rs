//! The file-arrival trigger: upload flows with `trigger: { on_arrival: true }` run when new
//! files arrive in their local folder, instead of (or besides) waiting for a cron tick.
//!
//! One task per flow ([`ArrivalTrigger::spawn`]):
//!
//! - `watch.rs` watches `local.path` (inotify, never following links, recursive only when a
//!   pattern says `**`) and signals "something changed";
//! - every `trigger.rescan_every` the folder is looked at anyway (lost events, file systems
//!   without notifications), and a watch that failed (folder missing, inotify limit) is
//!   tried again then; until it works, the rescan alone finds new files;
//! - each look lists the folder with the worker's own selection (patterns, links,
//!   `min_file_age`), and `coalesce.rs` decides whether to request a run now, later or not;
//! - a request is a flow-run message for the whole flow (`files` absent: the worker selects
//!   what is there and stable when the run starts, skipping what it already delivered), sent
//!   through any [`RunRequests`]: the broker's `Publisher` in a fleet, the local run queue of a
//!   single node.
//!
//! **Trigger kind.** The message says `Trigger::Event { upstream_id: "arrival" }`: an
//! arrival is an event from the folder's producer. A new trigger kind would change the
//! message's schema (version 1 lists the kinds), and workers of the previous release would
//! dead-letter those runs during a rolling upgrade; the upstream id tells the runs apart in
//! logs and traces all the same.
//!
//! **Bounded runs.** A flow with `max_files_per_run: N` gets one request per N fresh files
//! (the runs queue behind one another on the flow lock), so that no arrival is left for a
//! run that nobody requests.

mod coalesce;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

pub use coalesce::{Coalescer, Decision, MAX_WAIT_SETTLES};
pub use watch::{FolderWatch, Signal, WatchError, WatchErrorKind};

use crate::config::{Config, Direction, Flow};
use crate::message::{FlowRunMessage, Trigger};
use crate::run_requests::RunRequests;
use crate::telemetry::{self, LogEvent, metrics::arrival::ArrivalMetrics};
use crate::transfer::{LocalFile, Selection, Walk, select_local};

/// The `upstream_id` of the event trigger in the messages of arrival-triggered runs.
pub const ARRIVAL_UPSTREAM_ID: &str = "arrival";

/// Most requests made at once for one flow with `max_files_per_run` (the rest wait for the
/// next look).
const MAX_REQUESTS_AT_ONCE: usize = 100;

/// The arrival watchers of a configuration's `on_arrival` flows.
pub struct ArrivalTrigger<R> {
    flows: Vec<Arc<Flow>>,
    runs: Arc<R>,
}

/// The running watchers; dropping this stops them.
#[derive(Debug)]
pub struct ArrivalTasks {
    _tasks: JoinSet<()>,
}

impl<R: RunRequests> ArrivalTrigger<R> {
    /// The watchers of `config`'s enabled upload flows with `trigger.on_arrival`, requesting
    /// their runs from `runs`.
    pub fn new(config: &Config, runs: R) -> Self {
        let flows = config
            .flows
            .values()
            .filter(|f| f.enabled && f.direction == Direction::Upload && f.trigger.on_arrival)
            .map(|f| Arc::new(f.clone()))
            .collect();
        ArrivalTrigger {
            flows,
            runs: Arc::new(runs),
        }
    }

    /// How many flows are watched.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Starts one task per flow.
    pub fn spawn(self) -> ArrivalTasks {
        let mut tasks = JoinSet::new();
        for flow in self.flows {
            let runs = Arc::clone(&self.runs);
            let span = tracing::info_span!("arrival.watch", flow_id = %flow.id);
            tasks.spawn(watch_flow(flow, runs).instrument(span));
        }
        ArrivalTasks { _tasks: tasks }
    }
}

/// Whether the flow's walk descends into subdirectories (as `FlowPlan::is_recursive`).
fn is_recursive(flow: &Flow) -> bool {
    flow.files.iter().any(|s| s.pattern.contains("**"))
}

/// One flow's loop: signals and rescans in, requests out (see the module docs).
async fn watch_flow<R: RunRequests>(flow: Arc<Flow>, runs: Arc<R>) {
    let (signals, mut received) = mpsc::channel(256);
    let mut watch = Watching::new(Arc::clone(&flow), signals);
    watch.ensure();
    let mut coalescer = Coalescer::new(flow.trigger.settle, flow.min_file_age);
    let mut rescan = tokio::time::interval(flow.trigger.rescan_every);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut look_at: Option<Instant> = None;
    loop {
        let due = [look_at, coalescer.look_due().map(Instant::from_std)]
            .into_iter()
            .flatten()
            .min();
        let look = tokio::select! {
            signal = received.recv() => {
                match signal {
                    Some(Signal::Changed) => coalescer.changed(std::time::Instant::now()),
                    Some(Signal::Failed(error)) => watch.failed(error),
                    None => return,
                }
                false
            }
            _ = rescan.tick() => {
                watch.ensure();
                true
            }
            () = sleep_until(due), if due.is_some() => true,
        };
        if !look {
            continue;
        }
        look_at = match list(&flow).await {
            Ok(listing) => act(&flow, runs.as_ref(), &mut coalescer, &listing).await,
            Err(error) => {
                watch.unreadable(&error);
                None
            }
        };
    }
}

/// Sleeps until `at` (never called with `None`: the select's guard says so).
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Lists the flow's folder as a run would select it now.
async fn list(flow: &Arc<Flow>) -> std::io::Result<Selection<LocalFile>> {
    let walk = Walk {
        recursive: is_recursive(flow),
        min_age: flow.min_file_age,
        now: std::time::SystemTime::now(),
        follow_links: flow.follow_links,
    };
    let selector = Arc::clone(flow);
    select_local(&flow.local_path, walk, move |name| selector.selects(name)).await
}

/// Decides on a listing and requests the run(s); returns when to look again.
async fn act<R: RunRequests>(
    flow: &Flow,
    runs: &R,
    coalescer: &mut Coalescer,
    listing: &Selection<LocalFile>,
) -> Option<Instant> {
    let now = std::time::Instant::now();
    match coalescer.decide(listing, now) {
        Decision::Idle => None,
        Decision::LookAgainAt(at) => Some(Instant::from_std(at)),
        Decision::Request { fresh } => {
            let wanted = match flow.limits.max_files_per_run {
                Some(max) => fresh
                    .len()
                    .div_ceil(usize::try_from(max).unwrap_or(usize::MAX))
                    .clamp(1, MAX_REQUESTS_AT_ONCE),
                None => 1,
            };
            for _ in 0..wanted {
                if request(flow, runs, fresh.len()).await == Requested::NotQueued {
                    // Not covered: the same files are fresh at the next look.
                    return Some(Instant::now() + flow.trigger.settle.max(Duration::from_secs(1)));
                }
            }
            coalescer.requested(listing, now);
            match coalescer.after_request(listing, now) {
                Decision::LookAgainAt(at) => Some(Instant::from_std(at)),
                _ => None,
            }
        }
    }
}

/// Whether a request was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
enum Requested {
    Queued,
    NotQueued,
}

/// Queues one run of `flow`, under its own trace; logs and counts it.
async fn request<R: RunRequests>(flow: &Flow, runs: &R, fresh: usize) -> Requested {
    let trigger = Trigger::Event {
        upstream_id: ARRIVAL_UPSTREAM_ID.to_owned(),
    };
    let message = FlowRunMessage::new(&flow.id, trigger, None);
    let span = tracing::info_span!(
        parent: None,
        "arrival.request",
        flow_id = %flow.id,
        flow_run_id = %message.flow_run_id,
    );
    async {
        let headers = telemetry::inject_current_context();
        match runs.request(&message, &headers).await {
            Ok(()) => {
                ArrivalMetrics::global().record_requested(&flow.id, 1);
                tracing::info!(
                    event = LogEvent::ArrivalRunRequested.as_str(),
                    flow_run_id = %message.flow_run_id,
                    fresh_files = fresh,
                    "new files arrived: flow-run requested"
                );
                Requested::Queued
            }
            Err(error) => {
                tracing::warn!(
                    event = LogEvent::ArrivalRunNotRequested.as_str(),
                    %error,
                    fresh_files = fresh,
                    "new files arrived but the run could not be queued; trying again"
                );
                Requested::NotQueued
            }
        }
    }
    .instrument(span)
    .await
}

/// The folder's watch, if any, and what was last said about it (so that a rescan that
/// fails the same way every 30 s does not log every time).
struct Watching {
    flow: Arc<Flow>,
    signals: mpsc::Sender<Signal>,
    watch: Option<FolderWatch>,
    last_failure: Option<WatchErrorKind>,
}

impl Watching {
    fn new(flow: Arc<Flow>, signals: mpsc::Sender<Signal>) -> Self {
        Watching {
            flow,
            signals,
            watch: None,
            last_failure: None,
        }
    }

    /// Starts the watch when there is none.
    fn ensure(&mut self) {
        if self.watch.is_some() {
            return;
        }
        let selector = Arc::clone(&self.flow);
        match FolderWatch::start(
            &self.flow.local_path,
            is_recursive(&self.flow),
            move |name| selector.selects(name),
            self.signals.clone(),
        ) {
            Ok(watch) => {
                self.watch = Some(watch);
                self.last_failure = None;
                tracing::info!(
                    event = LogEvent::ArrivalWatching.as_str(),
                    folder = %self.flow.local_path.display(),
                    rescan_every = ?self.flow.trigger.rescan_every,
                    "watching the flow's folder for new files"
                );
            }
            Err(error) => self.failed(error),
        }
    }

    /// The watch failed: rescans only, until [`Watching::ensure`] succeeds again.
    fn failed(&mut self, error: WatchError) {
        self.watch = None;
        if self.last_failure == Some(error.kind) {
            return;
        }
        self.last_failure = Some(error.kind);
        tracing::warn!(
            event = LogEvent::ArrivalWatchFailed.as_str(),
            kind = error.kind.as_str(),
            folder = %error.folder.display(),
            error = %error.detail,
            rescan_every = ?self.flow.trigger.rescan_every,
            "cannot watch the flow's folder; looking for new files at each rescan only"
        );
    }

    /// A listing failed: the folder is gone or unreadable, so the watch is too.
    fn unreadable(&mut self, error: &std::io::Error) {
        let kind = if error.kind() == std::io::ErrorKind::NotFound {
            WatchErrorKind::FolderMissing
        } else {
            WatchErrorKind::Other
        };
        self.failed(WatchError {
            kind,
            folder: self.flow.local_path.clone(),
            detail: error.to_string(),
        });
    }
}
