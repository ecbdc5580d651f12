//! The fleet end to end (issue 5): the real `ferry-scheduler` and `ferry-worker` binaries as
//! child processes, a real FTPS partner (vsftpd), the real Redis and RabbitMQ (a virtual host
//! of the machine's broker, or a private node for the restart test).
//!
//! What it proves, as an operator would check it (files and hashes on the partner's disk,
//! renames in the partner's protocol log, delivery records in Redis, messages in queues, the
//! processes' JSON log lines):
//! - a scheduled flow on two workers delivers every file exactly once, and the scheduler's
//!   trace id follows the run into the workers' logs and the delivery records;
//! - three scheduler replicas publish each tick once;
//! - a worker killed with SIGKILL mid-run: the other worker takes the run over, every file
//!   arrives exactly once;
//! - a RabbitMQ restart mid-stream: workers reconnect, no published tick is lost;
//! - malformed JSON, an unknown flow, an unknown schema version: dead-lettered with their
//!   reason, and the worker keeps serving;
//! - an unreachable partner: retried with growing delays, then dead-lettered with the error;
//! - health endpoints and a clean exit on SIGTERM.
//!
//! Needs `cargo build -p ferry-worker -p ferry-scheduler` first (the binaries next to the test).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ferry_shared::broker::{Broker, DEATH_CODE_HEADER, Headers, PublisherOptions};
use ferry_shared::idempotency::{DeliveryKey, Store};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{
    Fleet, FleetOptions, FleetProcess, debug_duration_ms, field, is_event, noise, published,
    run_summaries, settlements, span_field,
};
use ferry_tests::ports::free_port;
use ferry_tests::rabbitmq::RabbitNode;

/// How long a process may take to connect and start consuming or ticking.
const START: Duration = Duration::from_secs(60);
/// How long a clean stop may take.
const STOP: Duration = Duration::from_secs(30);

/// Polls `done` every 200 ms; panics with `context()` after `timeout`.
async fn eventually(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last lines of every process's log, for failure messages.
fn logs(processes: &[&FleetProcess]) -> String {
    processes
        .iter()
        .map(|p| format!("==> {} <==\n{}\n", p.name, p.tail(25)))
        .collect()
}

/// Files transferred according to the workers' run summaries (one per run).
fn transferred(workers: &[FleetProcess]) -> u64 {
    workers
        .iter()
        .flat_map(|w| run_summaries(&w.lines()))
        .map(|s| s.transferred)
        .sum()
}

/// Writes `count` files `<stem>NNN.xml` of a few KiB (distinct content); name -> SHA-256.
fn write_batch(fleet: &Fleet, stem: &str, from: usize, count: usize) -> BTreeMap<String, String> {
    (from..from + count)
        .map(|n| {
            let name = format!("{stem}{n:03}.xml");
            let bytes = noise(16 * 1024 + n, rand::random());
            let sha = fleet.write_local(&name, &bytes).expect("write local file");
            (name, sha)
        })
        .collect()
}

/// Every file in `sent` has a delivery record (name and content key) that points at `/in/<name>`;
/// returns name -> (flow-run id, trace id) of the records.
async fn delivery_records(
    store: &Store,
    sent: &BTreeMap<String, String>,
) -> BTreeMap<String, (String, Option<String>)> {
    let mut records = BTreeMap::new();
    for (name, sha) in sent {
        let digest: [u8; 32] = hex::decode(sha).expect("hex").try_into().expect("32 bytes");
        let record = store
            .delivery(&DeliveryKey::named_content("f", name, &digest))
            .await
            .expect("redis")
            .unwrap_or_else(|| panic!("no delivery record in Redis for {name}"));
        assert_eq!(record.remote_path, format!("/in/{name}"));
        assert_eq!(&record.sha256, sha);
        records.insert(name.clone(), (record.flow_run_id, record.trace_id));
    }
    records
}

/// Each name was renamed into place exactly once on the partner (vsftpd's protocol log).
fn assert_each_arrived_once(fleet: &Fleet, sent: &BTreeMap<String, String>) {
    let renames = fleet.renames_onto();
    for name in sent.keys() {
        assert_eq!(
            renames.get(name),
            Some(&1),
            "{name} must be renamed into place exactly once; renames seen: {renames:?}"
        );
    }
    assert_eq!(
        renames.len(),
        sent.len(),
        "renames onto names nobody sent: {renames:?}"
    );
}

#[tokio::test]
async fn scheduled_runs_on_two_workers_deliver_each_file_once_under_the_ticks_trace() {
    let fleet = Fleet::start(
        "e2e",
        FleetOptions {
            schedule_cron: Some("* * * * * *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let mut workers = two_consuming_workers(&fleet).await;
    let mut scheduler = fleet.spawn_scheduler("scheduler").expect("scheduler");
    scheduler
        .wait_for_event(LogEvent::SchedulerStarted, START)
        .await
        .unwrap();

    // 20 files appear over about 6 s, so several ticks find new ones.
    let mut sent = BTreeMap::new();
    for batch in 0..5 {
        sent.extend(write_batch(&fleet, "f", batch * 4, 4));
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    eventually(
        "20 files on the partner and 20 transfers in the run summaries",
        Duration::from_secs(90),
        || fleet.remote_files() == sent && transferred(&workers) == 20,
        || {
            format!(
                "remote: {:?}\ntransferred: {}\n{}",
                fleet.remote_names(),
                transferred(&workers),
                logs(&[&workers[0], &workers[1], &scheduler])
            )
        },
    )
    .await;
    // Three more ticks find nothing new.
    let runs =
        |w: &[FleetProcess]| -> usize { w.iter().map(|w| run_summaries(&w.lines()).len()).sum() };
    let before = runs(&workers);
    eventually(
        "three more runs",
        Duration::from_secs(30),
        || runs(&workers) >= before + 3,
        || logs(&[&workers[0], &workers[1], &scheduler]),
    )
    .await;

    scheduler.stop(STOP).await.expect("scheduler stops cleanly");
    let ticks = published(&scheduler.lines());
    assert!(ticks.len() >= 8, "ticks published: {ticks:?}");
    // Every published tick is run and acked once, by one of the workers.
    let acked = |workers: &[FleetProcess]| -> Vec<String> {
        workers
            .iter()
            .flat_map(|w| settlements(&w.lines()))
            .filter(|(_, how, _)| how == "Acked")
            .map(|(id, _, _)| id)
            .collect()
    };
    eventually(
        "every published tick acked",
        Duration::from_secs(60),
        || {
            let acked: BTreeSet<String> = acked(&workers).into_iter().collect();
            ticks.keys().all(|id| acked.contains(id))
        },
        || logs(&[&workers[0], &workers[1]]),
    )
    .await;
    for worker in &mut workers {
        worker.stop(STOP).await.expect("worker stops cleanly");
    }

    // The partner has each file once, intact; the run summaries count 20 transfers.
    assert_eq!(fleet.remote_files(), sent);
    assert_each_arrived_once(&fleet, &sent);
    assert_eq!(transferred(&workers), 20, "no file transferred twice");
    let mut acked_ids = acked(&workers);
    acked_ids.sort();
    let unique: BTreeSet<&String> = acked_ids.iter().collect();
    assert_eq!(
        unique.len(),
        acked_ids.len(),
        "a tick acked twice: {acked_ids:?}"
    );
    for worker in &workers {
        assert!(
            !settlements(&worker.lines()).is_empty(),
            "{} ran no flow-run: the two workers share the ticks",
            worker.name
        );
    }

    // The tick's trace: the worker's lines of a run carry the trace id the scheduler logged
    // when it published that run, and so do the delivery records in Redis.
    for worker in &workers {
        for (id, _, trace) in settlements(&worker.lines()) {
            let (tick, published_trace) = ticks
                .get(&id)
                .unwrap_or_else(|| panic!("{} settled {id}, which no tick published", worker.name));
            assert!(
                published_trace.is_some(),
                "tick {tick} logged without trace_id"
            );
            assert_eq!(
                &trace, published_trace,
                "{} settled run {id} (tick {tick}) under another trace",
                worker.name
            );
        }
    }
    let store = fleet.store().await.expect("redis");
    let records = delivery_records(&store, &sent).await;
    for (name, (run, trace)) in &records {
        let (_, published_trace) = ticks
            .get(run)
            .unwrap_or_else(|| panic!("{name} delivered by run {run}, which no tick published"));
        assert_eq!(trace, published_trace, "{name}'s delivery record trace");
    }
}

/// Starts `worker-a` and `worker-b` and waits until both consume.
async fn two_consuming_workers(fleet: &Fleet) -> [FleetProcess; 2] {
    let mut workers = [
        fleet.spawn_worker("worker-a").expect("worker a"),
        fleet.spawn_worker("worker-b").expect("worker b"),
    ];
    for worker in &mut workers {
        worker
            .wait_for_event(LogEvent::Consuming, START)
            .await
            .unwrap();
    }
    workers
}

/// A flow file with a yearly flow (its latest tick is 1 January, long missed) and a
/// disabled flow that would fire every second.
const YEARLY_AND_DISABLED: &str = "flows:
  yearly:
    direction: upload
    target: { partner: partner, path: /in }
    local: { path: ./local }
    files: [{ pattern: \"*.xml\" }]
    schedule_cron: \"0 0 0 1 1 *\"
  off:
    enabled: false
    direction: upload
    target: { partner: partner, path: /in }
    local: { path: ./local }
    files: [{ pattern: \"*.xml\" }]
    schedule_cron: \"* * * * * *\"
";

/// Runs one scheduler process for `seconds` after it started, then stops it.
async fn run_scheduler_for(fleet: &Fleet, name: &str, seconds: u64) {
    let mut scheduler = fleet.spawn_scheduler(name).expect("scheduler");
    scheduler
        .wait_for_event(LogEvent::SchedulerStarted, START)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    scheduler.stop(STOP).await.expect("scheduler stops cleanly");
}

#[tokio::test]
async fn a_missed_tick_is_caught_up_once_and_disabled_flows_never_fire() {
    let fleet = Fleet::start("catch-up", FleetOptions::default())
        .await
        .expect("fleet");
    std::fs::write(
        fleet.config_dir().join("flows/extra.yaml"),
        YEARLY_AND_DISABLED,
    )
    .expect("flows");
    fleet.config().expect("the configuration loads");
    // A scheduler, then its restart: the missed tick is published by the first only.
    run_scheduler_for(&fleet, "first", 2).await;
    run_scheduler_for(&fleet, "restarted", 2).await;
    let messages = fleet.drain_work_queue().await;
    assert_eq!(
        messages.len(),
        1,
        "one catch-up run, nothing else: {messages:?}"
    );
    assert_eq!(
        messages[0].flow_id, "yearly",
        "the disabled flow never fired"
    );
    match &messages[0].trigger {
        Trigger::Schedule { tick } => assert!(
            tick.to_rfc3339().contains("-01-01T00:00:00"),
            "the latest missed tick, 1 January: {tick}"
        ),
        other => panic!("not a scheduled run: {other}"),
    }
}

#[tokio::test]
async fn with_catch_up_none_missed_ticks_are_skipped() {
    let fleet = Fleet::start("catch-up-none", FleetOptions::default())
        .await
        .expect("fleet");
    std::fs::write(
        fleet.config_dir().join("flows/extra.yaml"),
        YEARLY_AND_DISABLED,
    )
    .expect("flows");
    let settings = fleet.config_dir().join("ferry.yaml");
    let mut text = std::fs::read_to_string(&settings).expect("ferry.yaml");
    text.push_str("scheduler:\n  catch_up: none\n");
    std::fs::write(&settings, text).expect("ferry.yaml");
    fleet.config().expect("the configuration loads");
    run_scheduler_for(&fleet, "scheduler", 2).await;
    let messages = fleet.drain_work_queue().await;
    assert!(messages.is_empty(), "nothing published: {messages:?}");
}

#[tokio::test]
async fn three_scheduler_replicas_publish_each_tick_once() {
    let fleet = Fleet::start(
        "replicas",
        FleetOptions {
            schedule_cron: Some("* * * * * *".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let started = Instant::now();
    let mut schedulers: Vec<FleetProcess> = (1..=3)
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
    tokio::time::sleep(Duration::from_secs(10)).await;
    for scheduler in &mut schedulers {
        scheduler.stop(STOP).await.expect("scheduler stops cleanly");
    }
    let ran_for = started.elapsed().as_secs() as usize;
    let mut logged = BTreeMap::new();
    for scheduler in &schedulers {
        for (id, tick) in published(&scheduler.lines()) {
            assert!(logged.insert(id, tick).is_none(), "one run id logged twice");
        }
    }

    let mut ticks = Vec::new();
    for message in fleet.drain_work_queue().await {
        assert_eq!(message.flow_id, "f");
        assert!(
            logged.contains_key(&message.flow_run_id.to_string()),
            "a message no scheduler logged: {message:?}"
        );
        match message.trigger {
            Trigger::Schedule { tick } => ticks.push(tick.timestamp()),
            other => panic!("not a scheduled run: {other}"),
        }
    }

    ticks.sort_unstable();
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick was published twice: {ticks:?}"
    );
    assert_eq!(ticks.len(), logged.len(), "messages = published log lines");
    assert!(
        (9..=ran_for + 2).contains(&ticks.len()),
        "about one tick a second for the {ran_for} s the schedulers ran, got {}: {ticks:?}",
        ticks.len()
    );
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    assert_eq!(
        (last - first + 1) as usize,
        ticks.len(),
        "one run per second, none missing: {ticks:?}"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_run_hands_the_run_to_the_other_and_files_arrive_once() {
    let fleet = Fleet::start(
        "kill",
        FleetOptions {
            claim_lease: "3s".into(),
            // The dead worker's flow lock (its lease is the engine's fixed 20 s, not
            // `worker.claim_lease`) may outlive a few attempts of the survivor.
            max_attempts: 10,
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let mut sent = write_batch(&fleet, "small", 0, 8);
    let big = noise(200 * 1024 * 1024, rand::random());
    sent.insert(
        "big.xml".into(),
        fleet.write_local("big.xml", &big).expect("big file"),
    );
    drop(big);
    let mut workers = Vec::from(two_consuming_workers(&fleet).await);
    let broker = fleet.broker().await.expect("broker");
    let publisher = broker.publisher(PublisherOptions::default());
    let message = FlowRunMessage::new("f", Trigger::Manual, None);
    let id = message.flow_run_id.to_string();
    publisher
        .publish(&message, &Headers::new())
        .await
        .expect("publish");

    // Mid-run: the partner holds a growing temporary file of the big one, and every small
    // file is recorded. The kill lands mid-stream, not in the instant between a file's
    // rename on the partner and its record in Redis: a crash there sends that file again
    // once its claim expires (the at-least-once window described in
    // shared/src/transfer/mod.rs), which this test would report as a second arrival.
    let store = fleet.store().await.expect("redis");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let big_in_flight = fleet
            .remote_temporaries()
            .iter()
            .any(|(_, size)| *size > 1 << 20);
        let mut smalls_recorded = true;
        for (name, sha) in sent.iter().filter(|(name, _)| name.starts_with("small")) {
            let digest: [u8; 32] = hex::decode(sha).expect("hex").try_into().expect("32");
            let key = DeliveryKey::named_content("f", name, &digest);
            let record = store.delivery(&key).await;
            if record.expect("redis").is_none() {
                smalls_recorded = false;
                break;
            }
        }
        if big_in_flight && smalls_recorded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no mid-run moment (big file streaming, small files recorded):\n{}",
            logs(&[&workers[0], &workers[1]])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs_it = |w: &FleetProcess| {
        w.lines()
            .iter()
            .any(|l| span_field(l, "flow_run_id").as_deref() == Some(id.as_str()))
    };
    let victim = workers
        .iter()
        .position(runs_it)
        .expect("a worker logs the run");
    let mut dead = workers.remove(victim);
    let in_flight = fleet.remote_temporaries();
    dead.kill9().expect("SIGKILL");
    let survivor = &mut workers[0];
    let killed_at = Instant::now();

    eventually(
        "every file on the partner after the takeover",
        Duration::from_secs(180),
        || fleet.remote_files() == sent,
        || {
            format!(
                "remote: {:?}\n{}",
                fleet.remote_names(),
                logs(&[&*survivor])
            )
        },
    )
    .await;
    let taken_over_in = killed_at.elapsed();
    survivor
        .wait_for(
            "the run acked by the survivor",
            Duration::from_secs(30),
            |lines| {
                settlements(lines)
                    .iter()
                    .any(|(run, how, _)| *run == id && how == "Acked")
            },
        )
        .await
        .unwrap();
    survivor.stop(STOP).await.expect("survivor stops cleanly");

    assert_each_arrived_once(&fleet, &sent);
    let lines = survivor.lines();
    assert!(
        lines.iter().any(|l| {
            span_field(l, "flow_run_id").as_deref() == Some(id.as_str())
                && (span_field(l, "redelivered").as_deref() == Some("true")
                    || span_field(l, "attempt").is_some_and(|a| a != "1"))
        }),
        "the survivor ran the dead worker's message again (redelivered or retried)"
    );
    let records = delivery_records(&store, &sent).await;
    assert_eq!(
        records["big.xml"].0, id,
        "the big file delivered by that run"
    );
    eprintln!(
        "killed {} while uploading {in_flight:?}; the survivor finished {taken_over_in:?} later",
        dead.name,
    );
    assert!(
        fleet.remote_temporaries().is_empty(),
        "the dead worker's partial upload was replaced by the retry, not left behind: {:?}",
        fleet.remote_temporaries()
    );
    let _ = broker.close().await;
}

#[tokio::test]
async fn a_rabbitmq_restart_loses_no_tick_and_workers_carry_on() {
    let mut node = tokio::task::spawn_blocking(RabbitNode::start)
        .await
        .expect("join")
        .expect("private RabbitMQ node");
    let fleet = Fleet::start(
        "restart",
        FleetOptions {
            schedule_cron: Some("* * * * * *".into()),
            broker_url: Some(node.url()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let mut workers = two_consuming_workers(&fleet).await;
    let mut scheduler = fleet.spawn_scheduler("scheduler").expect("scheduler");
    let mut sent = write_batch(&fleet, "before", 0, 6);
    eventually(
        "the first files on the partner",
        Duration::from_secs(60),
        || fleet.remote_files() == sent,
        || logs(&[&workers[0], &workers[1], &scheduler]),
    )
    .await;

    node = tokio::task::spawn_blocking(move || {
        node.restart().expect("RabbitMQ restarts");
        node
    })
    .await
    .expect("join");
    let acked_before: usize = workers.iter().map(|w| settlements(&w.lines()).len()).sum();

    // Both workers attach again (their supervisors retry with backoff).
    for worker in &mut workers {
        worker
            .wait_for(
                "a new consumer after the restart",
                Duration::from_secs(90),
                |lines| {
                    lines
                        .iter()
                        .filter(|l| is_event(l, LogEvent::Consuming))
                        .count()
                        >= 2
                },
            )
            .await
            .unwrap();
    }
    sent.extend(write_batch(&fleet, "after", 0, 6));
    eventually(
        "the files written after the restart on the partner, and three more runs",
        Duration::from_secs(120),
        || {
            let settled: usize = workers.iter().map(|w| settlements(&w.lines()).len()).sum();
            fleet.remote_files() == sent && settled >= acked_before + 3
        },
        || logs(&[&workers[0], &workers[1], &scheduler]),
    )
    .await;

    scheduler.stop(STOP).await.expect("scheduler stops cleanly");
    let ticks = published(&scheduler.lines());
    let acked = |workers: &[FleetProcess]| -> BTreeSet<String> {
        workers
            .iter()
            .flat_map(|w| settlements(&w.lines()))
            .filter(|(_, how, _)| how == "Acked")
            .map(|(id, _, _)| id)
            .collect()
    };
    eventually(
        "every tick the scheduler published (before, during, after the restart) acked",
        Duration::from_secs(90),
        || {
            let acked = acked(&workers);
            ticks.keys().all(|id| acked.contains(id))
        },
        || {
            let acked = acked(&workers);
            let missing: Vec<_> = ticks
                .iter()
                .filter(|(id, _)| !acked.contains(*id))
                .collect();
            format!(
                "not acked: {missing:?}\n{}",
                logs(&[&workers[0], &workers[1]])
            )
        },
    )
    .await;
    for worker in &mut workers {
        worker.stop(STOP).await.expect("worker stops cleanly");
    }
    assert_eq!(fleet.remote_files(), sent);
    assert_each_arrived_once(&fleet, &sent);
    assert_eq!(transferred(&workers), 12, "no file transferred twice");
    let republished = scheduler
        .lines()
        .iter()
        .filter(|l| is_event(l, LogEvent::PublishRetried))
        .count();
    eprintln!(
        "{} ticks published and all acked; the scheduler published again {republished} time(s)",
        ticks.len()
    );
    drop(fleet);
    drop(node);
}

#[tokio::test]
async fn undecodable_and_unknown_messages_are_dead_lettered_and_the_worker_carries_on() {
    let fleet = Fleet::start("dead", FleetOptions::default())
        .await
        .expect("fleet");
    let sent = write_batch(&fleet, "ok", 0, 3);
    let mut worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    let broker = fleet.broker().await.expect("broker");
    let publisher = broker.publisher(PublisherOptions::default());
    let none = Headers::new();

    publisher
        .publish_bytes("f", b"{\"schema_version\": 1, \"flow_id\": ", &none)
        .await
        .expect("publish malformed");
    let unknown = FlowRunMessage::new("no-such-flow", Trigger::Manual, None);
    publisher
        .publish(&unknown, &none)
        .await
        .expect("publish unknown flow");
    let mut future =
        serde_json::to_value(FlowRunMessage::new("f", Trigger::Manual, None)).expect("json");
    future["schema_version"] = 2.into();
    publisher
        .publish_bytes("f", future.to_string().as_bytes(), &none)
        .await
        .expect("publish version 2");
    // Then a valid run: the worker still serves.
    publisher
        .publish(&FlowRunMessage::new("f", Trigger::Manual, None), &none)
        .await
        .expect("publish valid");

    eventually(
        "the valid run's files on the partner",
        Duration::from_secs(60),
        || fleet.remote_files() == sent,
        || logs(&[&worker]),
    )
    .await;
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while letters.len() < 3 && Instant::now() < deadline {
        match broker.take_dead_letter().await.expect("basic.get") {
            Some(letter) => letters.push(letter),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(letters.len(), 3, "three dead letters: {letters:?}");
    assert!(
        broker
            .take_dead_letter()
            .await
            .expect("basic.get")
            .is_none(),
        "nothing else dead-lettered"
    );
    let find = |needle: &str| {
        letters
            .iter()
            .find(|l| l.reason.as_deref().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("no dead letter whose reason says {needle:?}: {letters:#?}"))
    };
    let malformed = find("malformed message");
    assert_eq!(
        malformed.headers.get(DEATH_CODE_HEADER).map(String::as_str),
        Some("malformed")
    );
    let unknown_letter = find("unknown flow `no-such-flow`");
    assert_eq!(unknown_letter.routing_key, "no-such-flow");
    let version = find("unsupported schema version 2");
    assert_eq!(
        version.headers.get(DEATH_CODE_HEADER).map(String::as_str),
        Some("unsupported-version")
    );
    assert_eq!(
        version.payload,
        future.to_string().into_bytes(),
        "payload kept as sent"
    );

    assert!(worker.is_running(), "the worker survived the bad messages");
    let dead_lettered = worker
        .lines()
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunDeadLettered))
        .count();
    assert_eq!(dead_lettered, 3, "the worker logs each dead letter");
    worker.stop(STOP).await.expect("worker stops cleanly");
    assert_each_arrived_once(&fleet, &sent);
    let _ = broker.close().await;
}

/// Writes one file, starts one worker and publishes a manual run of flow `f` once the
/// worker consumes: the opening of the tests that watch one run's fate.
async fn one_file_and_a_manual_run(fleet: &Fleet) -> (FleetProcess, Broker, FlowRunMessage) {
    write_batch(fleet, "x", 0, 1);
    let worker = fleet
        .spawn_consuming_worker("worker", START)
        .await
        .expect("a consuming worker");
    let message = fleet.publish_manual_run().await.expect("publish");
    let broker = fleet.broker().await.expect("broker");
    (worker, broker, message)
}

#[tokio::test]
async fn an_unreachable_partner_is_retried_with_growing_delays_then_dead_lettered() {
    let fleet = Fleet::start(
        "retry",
        FleetOptions {
            partner_port: Some(free_port()),
            retry_delays: vec!["1s".into(), "2s".into()],
            max_attempts: 3,
            file_attempts: 1,
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let (mut worker, broker, message) = one_file_and_a_manual_run(&fleet).await;

    worker
        .wait_for_event(LogEvent::FlowRunDeadLettered, Duration::from_secs(60))
        .await
        .unwrap();
    let lines = worker.lines();
    let retries: Vec<(String, f64)> = lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunRetryScheduled))
        .map(|l| {
            let attempt = field(l, "attempt").expect("attempt");
            let delay = field(l, "delay").expect("delay");
            (attempt, debug_duration_ms(&delay).expect("a duration"))
        })
        .collect();
    assert_eq!(
        retries,
        vec![("2".to_owned(), 1000.0), ("3".to_owned(), 2000.0)],
        "attempts 2 and 3 after growing delays"
    );
    let reason = lines
        .iter()
        .find(|l| is_event(l, LogEvent::FlowRunDeadLettered))
        .and_then(|l| field(l, "reason"))
        .expect("a reason");
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("connection_refused"),
        "the reason names the attempts and the last error: {reason}"
    );

    let letter = broker
        .take_dead_letter()
        .await
        .expect("basic.get")
        .expect("the run is in the dead-letter queue");
    assert_eq!(letter.reason.as_deref(), Some(reason.as_str()));
    let dead = FlowRunMessage::decode(&letter.payload).expect("a flow-run message");
    assert_eq!(dead.flow_run_id, message.flow_run_id);
    assert_eq!(dead.attempt, 3);
    assert!(
        fleet.remote_names().is_empty(),
        "nothing reached the partner"
    );
    worker.stop(STOP).await.expect("worker stops cleanly");
    let _ = broker.close().await;
}

#[tokio::test]
async fn a_partner_refusing_the_login_is_dead_lettered_at_once() {
    let fleet = Fleet::start(
        "auth",
        FleetOptions {
            partner_password: Some("not-the-partner-password".into()),
            retry_delays: vec!["1s".into()],
            max_attempts: 5,
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let (mut worker, broker, message) = one_file_and_a_manual_run(&fleet).await;

    worker
        .wait_for_event(LogEvent::FlowRunDeadLettered, Duration::from_secs(60))
        .await
        .unwrap();
    let lines = worker.lines();
    assert!(
        !lines
            .iter()
            .any(|l| is_event(l, LogEvent::FlowRunRetryScheduled)),
        "no retry for a wrong password"
    );
    let letter = broker
        .take_dead_letter()
        .await
        .expect("basic.get")
        .expect("the run is in the dead-letter queue");
    let reason = letter.reason.unwrap_or_default();
    assert!(
        reason.contains("authentication_failed") && reason.contains("no retry can help"),
        "the reason names the error and says a retry cannot help: {reason}"
    );
    assert!(
        !reason.contains("not-the-partner-password"),
        "no password in the reason"
    );
    let dead = FlowRunMessage::decode(&letter.payload).expect("a flow-run message");
    assert_eq!(dead.flow_run_id, message.flow_run_id);
    assert_eq!(dead.attempt, 1, "dead-lettered on the first attempt");
    assert!(
        fleet.remote_names().is_empty(),
        "nothing reached the partner"
    );
    let left = std::fs::read_dir(fleet.local()).expect("local dir").count();
    assert_eq!(left, 1, "the file stays in place");
    worker.stop(STOP).await.expect("worker stops cleanly");
    let _ = broker.close().await;
}

#[tokio::test]
async fn worker_health_endpoints_answer_and_sigterm_exits_zero() {
    let fleet = Fleet::start("health", FleetOptions::default())
        .await
        .expect("fleet");
    let mut worker = fleet.spawn_worker("worker").expect("worker");
    eventually(
        "/healthz 200 once listening",
        START,
        || worker.http_get("/healthz").ok() == Some(200),
        || worker.tail(20),
    )
    .await;
    eventually(
        "/readyz 200 once consuming",
        START,
        || worker.http_get("/readyz").ok() == Some(200),
        || worker.tail(20),
    )
    .await;
    assert_eq!(worker.http_get("/nope").expect("GET /nope"), 404);
    worker.stop(STOP).await.expect("SIGTERM: exit 0");
    assert!(
        worker
            .lines()
            .iter()
            .any(|l| is_event(l, LogEvent::WorkerStopped)),
        "the worker says it stopped"
    );
}
