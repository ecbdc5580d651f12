//! The tick loop: publish one flow-run message per scheduled flow and cron tick.
//!
//! Every replica runs the same loop over the same flows. Before publishing a tick, a
//! replica claims it in Redis (`SET NX` on a key per flow and tick, see
//! [`Store::claim_tick`]): exactly one replica wins and publishes, the others skip it. So
//! running two or three schedulers buys availability without duplicate runs.
//!
//! Missed ticks: on start, with `scheduler.catch_up: latest` (the default), each flow's most
//! recent tick at or before now is offered once more. If it was published before (by this
//! replica before a restart, or by another), its claim still exists and nothing happens;
//! if nobody published it (every scheduler was down), it is published now, once. While
//! running, a loop that wakes late (a paused process) fires only the latest due tick of a
//! flow, never a burst of stale ones.
//!
//! A tick's claim lives for twice the flow's period (at least an hour), so it outlives the
//! moment it could be offered again by a catch-up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_shared::broker::Publisher;
use ferry_shared::config::{CatchUp, Config, Schedule};
use ferry_shared::idempotency::Store;
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry;
use ferry_shared::telemetry::metrics::{Metrics, TickOutcome};
use tracing::Instrument;

/// The shortest life of a tick's claim in Redis.
const MIN_TICK_CLAIM: Duration = Duration::from_secs(3600);

/// How long the loop sleeps when no flow has a schedule (it then only waits for shutdown).
const IDLE: Duration = Duration::from_secs(3600);

/// One scheduled, enabled flow and its next fire time.
struct ScheduledFlow {
    flow_id: String,
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
}

/// Publishes flow-runs on their cron ticks, once per tick across replicas.
pub struct Ticker {
    flows: Vec<ScheduledFlow>,
    store: Store,
    publisher: Publisher,
}

impl Ticker {
    /// A ticker over the enabled flows of `config` that have a `schedule_cron`.
    pub fn new(config: &Config, store: Store, publisher: Publisher) -> Self {
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
        Ticker {
            flows,
            store,
            publisher,
        }
    }

    /// How many flows this ticker schedules.
    pub fn scheduled_flows(&self) -> usize {
        self.flows.len()
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, catch_up: CatchUp, shutdown: impl Future<Output = ()>) {
        let now = Utc::now();
        if catch_up == CatchUp::Latest {
            for flow in &self.flows {
                if let Some(tick) = latest_at_or_before(&flow.schedule, now) {
                    self.fire(flow, tick).await;
                }
            }
        }
        for flow in &mut self.flows {
            flow.next = flow.schedule.next_after(now);
        }

        tokio::pin!(shutdown);
        loop {
            let earliest = self.flows.iter().filter_map(|f| f.next).min();
            let wait = earliest
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(IDLE);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => {
                    tracing::info!("scheduler stopping");
                    return;
                }
            }
            let now = Utc::now();
            for index in 0..self.flows.len() {
                let Some(due) = self.flows[index].next.filter(|next| *next <= now) else {
                    continue;
                };
                let tick = latest_due(&self.flows[index].schedule, due, now);
                self.fire(&self.flows[index], tick).await;
                self.flows[index].next = self.flows[index].schedule.next_after(tick);
            }
        }
    }

    /// Claims `tick` of `flow` and, when this replica won it, publishes its flow-run.
    async fn fire(&self, flow: &ScheduledFlow, tick: DateTime<Utc>) {
        let span = tracing::info_span!(
            "scheduler.tick",
            flow_id = %flow.flow_id,
            %tick,
            flow_run_id = tracing::field::Empty,
        );
        async {
            let ttl = tick_claim_ttl(&flow.schedule, tick);
            let metrics = Metrics::global();
            match self.store.claim_tick(&flow.flow_id, tick, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("tick already published by another replica");
                    metrics.record_tick(&flow.flow_id, TickOutcome::ClaimedElsewhere);
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot claim the tick in Redis; tick skipped");
                    metrics.record_tick(&flow.flow_id, TickOutcome::ClaimFailed);
                    return;
                }
            }
            let message =
                FlowRunMessage::new(flow.flow_id.clone(), Trigger::Schedule { tick }, None);
            tracing::Span::current()
                .record("flow_run_id", tracing::field::display(message.flow_run_id));
            let headers = telemetry::inject_current_context();
            match self.publisher.publish(&message, &headers).await {
                Ok(()) => {
                    tracing::info!(flow_run_id = %message.flow_run_id, "flow-run published");
                    metrics.record_tick(&flow.flow_id, TickOutcome::Published);
                }
                Err(error) => {
                    tracing::error!(%error, "flow-run NOT published");
                    metrics.record_tick(&flow.flow_id, TickOutcome::PublishFailed);
                }
            }
        }
        .instrument(span)
        .await
    }
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
