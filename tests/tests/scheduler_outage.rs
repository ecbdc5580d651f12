//! The real `ferry-scheduler` never loses a tick it claimed (issue 9): with RabbitMQ down
//! across a tick, the publish gives up, and the tick is published once the broker is back,
//! exactly once, with one replica or two; a tick claimed by a scheduler that died before
//! publishing is published by another.
//!
//! What a user checks: the messages in the work queue (their `trigger.tick`) and the
//! schedulers' `flow-run published` lines. Needs `cargo build -p ferry-scheduler` first.

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use ferry_shared::idempotency::TickClaim;
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess, is_event, published, span_field};
use ferry_tests::rabbitmq::RabbitNode;

/// How long a process may take to connect and start ticking.
const START: Duration = Duration::from_secs(60);
/// How long a clean stop may take.
const STOP: Duration = Duration::from_secs(30);

/// Short give-up and stale times, so that a tick's publish gives up within the outage and
/// is retried within seconds (the defaults are 2 minutes and 30 s).
const FAST_RETRIES: &str = "scheduler:\n  publish_give_up: 2s\n  stale_tick_claim: 3s\n";

fn add_settings(fleet: &Fleet, text: &str) {
    let path = fleet.config_dir().join("ferry.yaml");
    let mut settings = std::fs::read_to_string(&path).expect("ferry.yaml");
    settings.push_str(text);
    std::fs::write(&path, settings).expect("ferry.yaml");
    fleet.config().expect("the configuration loads");
}

/// The scheduled ticks of `messages`.
fn ticks(messages: &[FlowRunMessage]) -> Vec<DateTime<Utc>> {
    messages
        .iter()
        .map(|m| match m.trigger {
            Trigger::Schedule { tick } => tick,
            ref other => panic!("not a scheduled run: {other}"),
        })
        .collect()
}

/// Waits until one of `processes` logged a line that `done` accepts.
async fn any_logged(
    processes: &mut [FleetProcess],
    what: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if processes.iter().any(|p| p.lines().iter().any(&done)) {
            return;
        }
        for process in processes.iter_mut() {
            assert!(
                process.is_running(),
                "{} exited; log:\n{}",
                process.name,
                process.tail(40)
            );
        }
        if Instant::now() > deadline {
            let tails: Vec<String> = processes
                .iter()
                .map(|p| format!("==> {} <==\n{}", p.name, p.tail(30)))
                .collect();
            panic!("no {what} within {timeout:?}\n{}", tails.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RabbitMQ goes down before a tick and comes back after its publish gave up: the tick's
/// flow-run is published once, by one of `replicas` schedulers.
async fn a_tick_during_a_broker_outage_is_published_once(replicas: usize) {
    let mut node = tokio::task::spawn_blocking(RabbitNode::start)
        .await
        .expect("join")
        .expect("private RabbitMQ node");
    // One tick a minute, about 25 s from now: the schedulers start and publish their
    // catch-up tick (a minute earlier) first, then the broker goes down before the tick.
    let tick_at = (Utc::now() + chrono::Duration::seconds(25))
        .with_nanosecond(0)
        .expect("whole second");
    let tick_second = tick_at.second();
    let fleet = Fleet::start(
        &format!("outage-{replicas}"),
        FleetOptions {
            schedule_cron: Some(format!("{tick_second} * * * * *")),
            broker_url: Some(node.url()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    add_settings(&fleet, FAST_RETRIES);
    let mut schedulers: Vec<FleetProcess> = (1..=replicas)
        .map(|n| {
            fleet
                .spawn_scheduler(&format!("scheduler-{n}"))
                .expect("scheduler")
        })
        .collect();
    for scheduler in &mut schedulers {
        scheduler
            .wait_for_event(LogEvent::SchedulerStarted, START)
            .await
            .unwrap();
    }
    any_logged(&mut schedulers, "catch-up publish", START, |l| {
        is_event(l, LogEvent::FlowRunPublished)
    })
    .await;
    let caught_up: Vec<String> = schedulers
        .iter()
        .flat_map(|s| published(&s.lines()).into_values().map(|(tick, _)| tick))
        .collect();

    node = tokio::task::spawn_blocking(move || {
        node.kill().expect("RabbitMQ stops");
        node
    })
    .await
    .expect("join");
    assert!(
        Utc::now() < tick_at,
        "the broker must be down before the tick {tick_at} (set-up too slow)"
    );
    // The tick fires with the broker down: its publish retries, then gives up.
    any_logged(
        &mut schedulers,
        "publish that gave up",
        Duration::from_secs(90),
        |l| is_event(l, LogEvent::FlowRunNotPublished),
    )
    .await;
    let lost_tick = schedulers
        .iter()
        .flat_map(|s| s.lines())
        .find(|l| is_event(l, LogEvent::FlowRunNotPublished))
        .and_then(|l| span_field(&l, "tick"))
        .expect("the tick of the failed publish");
    assert_eq!(
        lost_tick,
        tick_at.to_string(),
        "the tick fired during the outage"
    );
    assert!(
        !caught_up.contains(&lost_tick),
        "the catch-up was another tick"
    );

    node = tokio::task::spawn_blocking(move || {
        node.boot().expect("RabbitMQ starts again");
        node
    })
    .await
    .expect("join");
    any_logged(
        &mut schedulers,
        "publish of the pending tick",
        Duration::from_secs(90),
        |l| {
            is_event(l, LogEvent::FlowRunPublished)
                && span_field(l, "tick").as_ref() == Some(&lost_tick)
        },
    )
    .await;
    // A few more looks at the pending ticks: none may publish it again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for scheduler in &mut schedulers {
        scheduler.stop(STOP).await.expect("scheduler stops cleanly");
    }

    let messages = fleet.drain_work_queue().await;
    let of_lost: Vec<&FlowRunMessage> = messages
        .iter()
        .filter(
            |m| matches!(m.trigger, Trigger::Schedule { tick } if tick.to_string() == lost_tick),
        )
        .collect();
    assert_eq!(
        of_lost.len(),
        1,
        "the tick's flow-run is in the queue once: {:?}",
        ticks(&messages)
    );
    let logged: Vec<String> = schedulers
        .iter()
        .flat_map(|s| published(&s.lines()).into_iter())
        .filter(|(_, (tick, _))| *tick == lost_tick)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        logged,
        [of_lost[0].flow_run_id.to_string()],
        "one replica published it"
    );
    drop(node);
}

#[tokio::test]
async fn a_tick_during_a_broker_outage_is_published_once_it_is_back() {
    a_tick_during_a_broker_outage_is_published_once(1).await;
}

#[tokio::test]
async fn with_two_replicas_a_tick_during_a_broker_outage_is_published_once() {
    a_tick_during_a_broker_outage_is_published_once(2).await;
}

#[tokio::test]
async fn a_tick_claimed_by_a_scheduler_that_died_is_published_by_another() {
    let fleet = Fleet::start(
        "dead-claimant",
        FleetOptions {
            // A yearly flow, without catch-up: the only tick to publish is the dead one's.
            schedule_cron: Some("0 0 0 1 1 *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    add_settings(&fleet, &format!("{FAST_RETRIES}  catch_up: none\n"));
    // A scheduler claimed this tick and died before publishing it.
    let tick: DateTime<Utc> = "2026-11-24T08:00:00Z".parse().expect("time");
    let store = fleet.store().await.expect("redis");
    let TickClaim::Won(_dead) = store
        .ticks()
        .claim(
            "f",
            tick,
            "dead-scheduler",
            Duration::from_secs(3600),
            Duration::from_secs(3),
        )
        .await
        .expect("claim")
    else {
        panic!("a fresh tick is won");
    };
    let mut scheduler = fleet.spawn_scheduler("scheduler").expect("scheduler");
    scheduler
        .wait_for("the pending tick published", START, |lines| {
            lines
                .iter()
                .any(|l| is_event(l, LogEvent::FlowRunPublished))
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    scheduler.stop(STOP).await.expect("scheduler stops cleanly");
    assert!(
        scheduler
            .lines()
            .iter()
            .any(|l| is_event(l, LogEvent::TickTakenOver)),
        "{}",
        scheduler.tail(20)
    );
    let messages = fleet.drain_work_queue().await;
    assert_eq!(ticks(&messages), [tick], "published once");
    assert!(
        store
            .ticks()
            .pending("f")
            .await
            .expect("pending")
            .is_empty()
    );
}
