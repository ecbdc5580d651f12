//! The tick loop: request one flow-run per scheduled flow and cron tick, through a
//! [`RunRequests`] (the broker's publisher in a fleet, the run queue on a single node;
//! "publish" below means that request, confirmed).
//!
//! Every replica runs the same loop over the same flows. Before publishing a tick, a
//! replica claims it in the store ([`Ticks::claim`](crate::idempotency::Ticks::claim), see `shared/src/idempotency/tick.rs`):
//! exactly one replica wins and publishes, the others skip it. So running two or three
//! schedulers buys availability without duplicate runs.
//!
//! No tick is lost once claimed. The claim has two states, claimed and published: the
//! winner renews its claim while the publisher retries (up to `scheduler.publish_give_up`),
//! and marks the tick published once the broker confirmed it. A publish that gives up (the
//! broker down for longer) abandons the claim; a replica that crashes leaves it to go stale
//! (`scheduler.stale_tick_claim`). Every replica looks at each flow's pending ticks every
//! third of `stale_tick_claim`, and on start: a stale claim is taken over and its tick
//! published, by whichever replica sees it first. Each publish runs in a task of its own,
//! so a broker that does not answer never holds the loop past the next tick.
//!
//! Missed ticks: on start, with `scheduler.catch_up: latest` (the default), each flow's most
//! recent tick at or before now is offered once more. If it was published before (by this
//! replica before a restart, or by another), its claim still exists and nothing happens;
//! if nobody published it (every scheduler was down), it is published now, once. While
//! running, a loop that wakes late (a paused process) fires only the latest due tick of a
//! flow, never a burst of stale ones.
//!
//! A tick's claim lives for twice the flow's period (at least an hour), so it outlives the
//! moment it could be offered again by a catch-up; a pending tick older than that is
//! dropped, not published.

use std::time::Duration;

use crate::config::{CatchUp, Config, Schedule};
use crate::idempotency::{Store, TickClaim, TickLease, TickPublished};
use crate::message::{FlowRunMessage, Trigger};
use crate::run_requests::RunRequests;
use crate::telemetry::metrics::schedule::{ScheduleMetrics, TickOffer};
use crate::telemetry::metrics::{Metrics, TickOutcome};
use crate::telemetry::{self, LogEvent};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

/// The shortest life of a tick's claim in the store.
const MIN_TICK_CLAIM: Duration = Duration::from_secs(3600);

/// How long the loop sleeps when no flow has a schedule (it then only waits for shutdown).
const IDLE: Duration = Duration::from_secs(3600);

/// One scheduled, enabled flow and its next fire time.
struct ScheduledFlow {
    flow_id: String,
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
}

/// What a publish task needs: cheap to clone.
struct Firing<R> {
    store: Store,
    requests: std::sync::Arc<R>,
    /// This replica, in tick claims (`<host>-<pid>`).
    owner: String,
    /// A claim not renewed for this long is taken over.
    stale: Duration,
}

impl<R> Clone for Firing<R> {
    fn clone(&self) -> Self {
        Firing {
            store: self.store.clone(),
            requests: self.requests.clone(),
            owner: self.owner.clone(),
            stale: self.stale,
        }
    }
}

/// Whether a tick is offered on time or found pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// Its cron time came.
    Due,
    /// The catch-up at start offers the latest tick once more.
    CatchUp,
    /// It was found in the flow's pending set.
    Pending,
}

/// Publishes flow-runs on their cron ticks, once per tick across replicas.
pub struct Ticker<R> {
    flows: Vec<ScheduledFlow>,
    firing: Firing<R>,
}

impl<R: RunRequests> Ticker<R> {
    /// A ticker over the enabled flows of `config` that have a `schedule_cron`, claiming
    /// ticks in `store` and requesting their runs from `requests`.
    pub fn new(config: &Config, store: Store, requests: R) -> Self {
        let flows = config
            .flows
            .values()
            .filter(|flow| flow.enabled)
            .filter_map(|flow| {
                let schedule = flow.schedule.clone()?;
                Some(ScheduledFlow {
                    flow_id: flow.id.clone(),
                    schedule,
                    next: None,
                })
            })
            .collect();
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| "scheduler".to_owned());
        Ticker {
            flows,
            firing: Firing {
                store,
                requests: std::sync::Arc::new(requests),
                owner: format!("{}-{}", host.trim(), std::process::id()),
                stale: config.settings.scheduler.stale_tick_claim,
            },
        }
    }

    /// How many flows this ticker schedules.
    pub fn scheduled_flows(&self) -> usize {
        self.flows.len()
    }

    /// Runs until `shutdown` completes. Publishes still under way then are dropped: their
    /// ticks stay claimed and go stale, and another replica (or this one, restarted)
    /// publishes them.
    pub async fn run(mut self, catch_up: CatchUp, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        let now = Utc::now();
        self.offer_pending(&mut tasks).await;
        if catch_up == CatchUp::Latest {
            for flow in &self.flows {
                if let Some(tick) = latest_at_or_before(&flow.schedule, now) {
                    self.offer(&mut tasks, flow, tick, Offer::CatchUp);
                }
            }
        }
        for flow in &mut self.flows {
            flow.next = flow.schedule.next_after(now);
            if let Some(next) = flow.next {
                ScheduleMetrics::global()
                    .record_period(&flow.flow_id, period(&flow.schedule, next));
            }
        }
        let sweep_every = (self.firing.stale / 3).max(Duration::from_millis(300));
        let mut next_sweep = Instant::now() + sweep_every;

        tokio::pin!(shutdown);
        loop {
            let earliest = self.flows.iter().filter_map(|f| f.next).min();
            let wait = earliest
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(IDLE)
                .min(next_sweep.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                _ = &mut shutdown => {
                    tracing::info!(publishing = tasks.len(), "scheduler stopping");
                    return;
                }
            }
            if Instant::now() >= next_sweep {
                self.offer_pending(&mut tasks).await;
                next_sweep = Instant::now() + sweep_every;
            }
            let now = Utc::now();
            for index in 0..self.flows.len() {
                let Some(due) = self.flows[index].next.filter(|next| *next <= now) else {
                    continue;
                };
                let tick = latest_due(&self.flows[index].schedule, due, now);
                self.offer(&mut tasks, &self.flows[index], tick, Offer::Due);
                let flow = &mut self.flows[index];
                flow.next = flow.schedule.next_after(tick);
                ScheduleMetrics::global()
                    .record_period(&flow.flow_id, period(&flow.schedule, tick));
            }
        }
    }

    /// Offers every flow's pending ticks again (claimed, never published).
    async fn offer_pending(&self, tasks: &mut JoinSet<()>) {
        for flow in &self.flows {
            match self.firing.store.ticks().pending(&flow.flow_id).await {
                Ok(ticks) => {
                    for tick in ticks {
                        self.offer(tasks, flow, tick, Offer::Pending);
                    }
                }
                Err(error) => {
                    tracing::warn!(flow_id = %flow.flow_id, %error, "cannot read the pending ticks; will look again");
                }
            }
        }
    }

    /// Claims and publishes `tick` of `flow` in a task of its own.
    fn offer(
        &self,
        tasks: &mut JoinSet<()>,
        flow: &ScheduledFlow,
        tick: DateTime<Utc>,
        offer: Offer,
    ) {
        let ttl = tick_claim_ttl(&flow.schedule, tick);
        let firing = self.firing.clone();
        let flow_id = flow.flow_id.clone();
        tasks.spawn(async move { firing.fire(&flow_id, tick, ttl, offer).await });
    }
}

impl<R: RunRequests> Firing<R> {
    /// Claims `tick` of `flow_id` and, when this replica won it (or took a stale claim
    /// over), publishes its flow-run.
    async fn fire(&self, flow_id: &str, tick: DateTime<Utc>, ttl: Duration, offer: Offer) {
        let span = tracing::info_span!(
            "scheduler.tick",
            flow_id = %flow_id,
            %tick,
            pending = offer == Offer::Pending,
            flow_run_id = tracing::field::Empty,
        );
        async {
            let claim = match offer {
                Offer::Due | Offer::CatchUp => {
                    self.store
                        .ticks().claim(flow_id, tick, &self.owner, ttl, self.stale)
                        .await
                }
                Offer::Pending => {
                    self.store
                        .ticks().retry(flow_id, tick, &self.owner, self.stale)
                        .await
                }
            };
            let count = |outcome| Metrics::global().record_tick(flow_id, outcome, offer.label());
            let lease = match claim {
                Ok(TickClaim::Won(lease)) => lease,
                Ok(TickClaim::TookOver {
                    lease,
                    previous_owner,
                    stale_for,
                }) => {
                    tracing::warn!(
                        %previous_owner,
                        ?stale_for,
                        event = LogEvent::TickTakenOver.as_str(),
                        "tick claimed but never published: taking it over"
                    );
                    lease
                }
                Ok(TickClaim::AlreadyPublished) => {
                    tracing::debug!("tick already published");
                    count(TickOutcome::Deduplicated);
                    return;
                }
                Ok(TickClaim::ClaimedByOtherReplica { owner, renewed_ago }) => {
                    tracing::debug!(%owner, ?renewed_ago, "tick being published by another replica");
                    count(TickOutcome::ClaimedElsewhere);
                    return;
                }
                Ok(TickClaim::Expired) => {
                    tracing::warn!("pending tick older than its claim's life: dropped, not published");
                    count(TickOutcome::Expired);
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot claim the tick in the store; it will be offered again");
                    count(TickOutcome::ClaimFailed);
                    return;
                }
            };
            self.publish(flow_id, tick, lease, offer).await;
        }
        .instrument(span)
        .await
    }

    /// Publishes the tick's flow-run while renewing the claim; marks the tick published,
    /// or abandons the claim when the publish gives up.
    async fn publish(&self, flow_id: &str, tick: DateTime<Utc>, lease: TickLease, offer: Offer) {
        let message = FlowRunMessage::new(flow_id.to_owned(), Trigger::Schedule { tick }, None);
        let flow_run_id = message.flow_run_id.to_string();
        tracing::Span::current().record("flow_run_id", flow_run_id.as_str());
        let headers = telemetry::inject_current_context();
        let publish = self.requests.request(&message, &headers);
        tokio::pin!(publish);
        let mut renew = tokio::time::interval((self.stale / 3).max(Duration::from_millis(100)));
        renew.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut publish => break result,
                _ = renew.tick() => match lease.renew().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("the tick's claim was taken over while publishing; stopping here");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "cannot renew the tick's claim; publishing on"),
                },
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    flow_run_id = %flow_run_id,
                    event = LogEvent::FlowRunPublished.as_str(),
                    "flow-run published"
                );
                Metrics::global().record_tick(flow_id, TickOutcome::Published, offer.label());
                match lease.published(&flow_run_id).await {
                    Ok(TickPublished::Marked) => {}
                    Ok(TickPublished::ClaimLost) => {
                        tracing::warn!(
                            "another replica took the tick over meanwhile: it may be published twice"
                        );
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot mark the tick published; another replica may publish it again");
                    }
                }
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    tick_left = "pending",
                    event = LogEvent::FlowRunNotPublished.as_str(),
                    "flow-run NOT published"
                );
                Metrics::global().record_tick(flow_id, TickOutcome::PublishFailed, offer.label());
                if let Err(error) = lease.abandon().await {
                    tracing::warn!(%error, "cannot abandon the tick's claim; it is retried once stale");
                }
            }
        }
    }
}

impl Offer {
    /// The `offer` label of the tick counter.
    fn label(self) -> TickOffer {
        match self {
            Offer::Due => TickOffer::OnTime,
            Offer::CatchUp => TickOffer::CatchUp,
            Offer::Pending => TickOffer::Pending,
        }
    }
}

/// The time from `tick` to the schedule's next tick (the flow's period there), at least a
/// second; [`MIN_TICK_CLAIM`] for a schedule with no further tick.
fn period(schedule: &Schedule, tick: DateTime<Utc>) -> Duration {
    schedule
        .next_after(tick)
        .and_then(|next| (next - tick).to_std().ok())
        .unwrap_or(MIN_TICK_CLAIM)
        .max(Duration::from_secs(1))
}

/// The most recent tick of `schedule` at or before `now`.
fn latest_at_or_before(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&schedule.timezone);
    schedule
        .cron
        .find_previous_occurrence(&local, true)
        .ok()
        .map(|tick| tick.with_timezone(&Utc))
}

/// The latest tick in `[due, now]`: after a late wake-up, stale ticks are skipped.
fn latest_due(schedule: &Schedule, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut tick = due;
    while let Some(next) = schedule.next_after(tick).filter(|next| *next <= now) {
        tick = next;
    }
    tick
}

/// How long the claim of `tick` must live: twice the flow's period around it, at least
/// [`MIN_TICK_CLAIM`], so a catch-up never offers a tick whose claim has expired.
fn tick_claim_ttl(schedule: &Schedule, tick: DateTime<Utc>) -> Duration {
    let period = schedule
        .next_after(tick)
        .and_then(|next| (next - tick).to_std().ok())
        .unwrap_or(MIN_TICK_CLAIM);
    (period * 2).max(MIN_TICK_CLAIM)
}
