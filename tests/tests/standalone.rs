//! `ferry-worker standalone`: the whole of ferry in one process over the embedded store,
//! with real FTPS partners and no RabbitMQ or Redis (the node's broker URL points at a
//! closed port; there is no Redis section).
//!
//! - killed with `SIGKILL` mid-transfer and restarted, the node delivers every file once
//!   (bytes and names on the partner, one rename onto each name, one `transferred` audit
//!   record each, the delivery records making a later run skip them all);
//! - three flows on schedules every few seconds for 20 s: every file delivered once;
//! - a queued run (waiting for its retry) survives a restart and runs after it;
//! - a run that keeps failing is retried with the configured delays, then lands in the
//!   dead letters with its reason (`ferry-worker dead-letters`);
//! - the HTTP trigger answers 202 with the run's id, and the run happens;
//! - without the embedded store, `standalone` refuses to start and says why.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use ferry_shared::crash_point::CrashPoint;
use ferry_shared::telemetry::LogEvent;
use ferry_tests::fleet::{FleetProcess, field, is_event, noise, timestamp_micros};
use ferry_tests::ports::free_port;
use ferry_tests::standalone::{Node, NodeFlow, NodeOptions};

/// How long a node may take to start (a debug build on a busy machine).
const START: Duration = Duration::from_secs(60);

/// Starts a node and waits until its trigger listens.
async fn start_node(node: &Node, name: &str, env: &[(&str, &str)]) -> FleetProcess {
    let mut process = node.spawn(name, env).expect("spawn standalone");
    node.wait_for_trigger(&mut process, START)
        .await
        .expect("trigger listening");
    process
}

/// Waits until the partner's `/<flow>` holds exactly `expected` (name -> SHA-256).
async fn wait_delivered(
    node: &Node,
    process: &mut FleetProcess,
    flow: &str,
    expected: &BTreeMap<String, String>,
    timeout: Duration,
) {
    let flow_owned = flow.to_owned();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = node.remote_files(&flow_owned);
        if &found == expected {
            return;
        }
        assert!(
            process.is_running(),
            "{} exited; found {found:?}\n{}",
            process.name,
            process.tail(40)
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered within {timeout:?}: found {found:?}, expected {expected:?}\n{}",
            process.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every file of `expected` was renamed onto its final name in `/<flow>` exactly once.
fn renamed_once(node: &Node, flow: &str, expected: &BTreeMap<String, String>) {
    let renames = node.renames_onto();
    for name in expected.keys() {
        let count: usize = renames
            .iter()
            .filter(|(path, _)| {
                path.as_str() == name.as_str() || path.ends_with(&format!("{flow}/{name}"))
            })
            .map(|(_, n)| *n)
            .sum();
        assert_eq!(count, 1, "{flow}/{name} renamed {count} times: {renames:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_transfer_and_restarted_delivers_each_file_once() {
    let node = Node::start(NodeOptions::default()).await.expect("node");
    let mut expected = BTreeMap::new();
    for i in 0..3u64 {
        let name = format!("big-{i}.xml");
        let sha = node
            .write_local("f", &name, &noise(400 * 1024, i))
            .expect("write");
        expected.insert(name, sha);
    }
    let crash = format!("{}#2", CrashPoint::MidStream.as_str());
    let mut first = start_node(&node, "node-1", &[("FERRY_CRASH_AT", &crash)]).await;
    let answer = node.trigger_run("f").expect("trigger");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let status = first
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the node crashed mid-transfer");
    assert_eq!(status.signal(), Some(9), "{}", first.tail(30));
    assert_ne!(
        node.remote_files("f"),
        expected,
        "the crash left work to do"
    );

    let mut second = start_node(&node, "node-2", &[]).await;
    wait_delivered(&node, &mut second, "f", &expected, Duration::from_secs(60)).await;
    second
        .wait_for(
            "the recovered run settled",
            Duration::from_secs(30),
            |lines| {
                lines.iter().any(|l| {
                    is_event(l, LogEvent::FlowRunSettled)
                        && field(l, "settled").is_some_and(|s| s.contains("Acked"))
                })
            },
        )
        .await
        .expect("settled");
    second
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
    renamed_once(&node, "f", &expected);

    let (code, history) = node
        .command(&["audit", "--flow", "f", "--json"])
        .await
        .expect("audit");
    assert_eq!(code, Some(0), "{history}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&history).expect("audit JSON");
    for name in expected.keys() {
        let transferred = rows
            .iter()
            .filter(|r| r["file"] == name.as_str() && r["outcome"] == "transferred")
            .count();
        assert_eq!(transferred, 1, "{name}: {history}");
    }
    let (code, verify) = node
        .command(&["audit", "verify", "--flow", "f"])
        .await
        .expect("verify");
    assert_eq!(code, Some(0), "{verify}");

    // The delivery records: a run now finds every file delivered.
    let (code, report) = node
        .command(&["run", "--flow", "f", "--json"])
        .await
        .expect("run");
    assert_eq!(code, Some(0), "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).expect("report JSON");
    let outcomes: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["duplicate"; 3], "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_scheduled_flows_for_twenty_seconds_deliver_every_file_once() {
    let flows = ["every2", "every3", "every5"];
    let options = NodeOptions {
        flows: vec![
            NodeFlow::scheduled("every2", "*/2 * * * * *"),
            NodeFlow::scheduled("every3", "*/3 * * * * *"),
            NodeFlow::scheduled("every5", "*/5 * * * * *"),
        ],
        ..NodeOptions::default()
    };
    let node = Node::start(options).await.expect("node");
    let mut process = start_node(&node, "node", &[]).await;
    let mut expected: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    let started = tokio::time::Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        for flow in flows {
            let name = format!("{flow}-{i:03}.xml");
            let sha = node
                .write_local(flow, &name, &noise(2048, i))
                .expect("write");
            expected.entry(flow).or_default().insert(name, sha);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    for flow in flows {
        wait_delivered(
            &node,
            &mut process,
            flow,
            &expected[flow],
            Duration::from_secs(30),
        )
        .await;
    }
    process
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
    for flow in flows {
        renamed_once(&node, flow, &expected[flow]);
    }
    let runs = process
        .lines()
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunPublished))
        .count();
    assert!(runs >= 15, "only {runs} scheduled runs in 20 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_run_survives_a_restart() {
    let closed = free_port();
    let options = NodeOptions {
        partner_port: Some(closed),
        retry_delays: vec!["4s".into()],
        max_attempts: 5,
        ..NodeOptions::default()
    };
    let node = Node::start(options).await.expect("node");
    let sha = node
        .write_local("f", "late.xml", b"<late/>")
        .expect("write");
    let mut first = start_node(&node, "node-1", &[]).await;
    assert_eq!(node.trigger_run("f").expect("trigger").status, 202);
    first
        .wait_for_event(LogEvent::FlowRunRetryScheduled, Duration::from_secs(60))
        .await
        .expect("the run waits for its retry");
    first
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");

    // The partner is back (its real port); a new process runs the queued run.
    node.write_partner(node.server.port).expect("partner");
    let mut second = start_node(&node, "node-2", &[]).await;
    let expected = BTreeMap::from([("late.xml".to_owned(), sha)]);
    wait_delivered(&node, &mut second, "f", &expected, Duration::from_secs(60)).await;
    second
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
    renamed_once(&node, "f", &expected);
    let triggered_again = second
        .lines()
        .iter()
        .any(|l| is_event(l, LogEvent::FlowRunPublished));
    assert!(!triggered_again, "nothing but the queued run ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_keeps_failing_is_retried_with_the_delays_then_dead_lettered() {
    let options = NodeOptions {
        partner_port: Some(free_port()),
        retry_delays: vec!["1s".into(), "2s".into()],
        max_attempts: 3,
        ..NodeOptions::default()
    };
    let node = Node::start(options).await.expect("node");
    node.write_local("f", "stuck.xml", b"<stuck/>")
        .expect("write");
    let mut process = start_node(&node, "node", &[]).await;
    let answer = node.trigger_run("f").expect("trigger");
    assert_eq!(answer.status, 202);
    let run_id = answer.json().expect("json")["flow_run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    process
        .wait_for_event(LogEvent::FlowRunDeadLettered, Duration::from_secs(90))
        .await
        .expect("dead-lettered");
    let lines = process.lines();
    let retries: Vec<_> = lines
        .iter()
        .filter(|l| is_event(l, LogEvent::FlowRunRetryScheduled))
        .collect();
    let delays: Vec<String> = retries.iter().filter_map(|l| field(l, "delay")).collect();
    assert_eq!(delays, ["1s", "2s"], "the broker's delays, in order");
    let first_retry = timestamp_micros(retries[0]).expect("time");
    let dead = lines
        .iter()
        .find(|l| is_event(l, LogEvent::FlowRunDeadLettered))
        .expect("dead letter line");
    let waited = timestamp_micros(dead).expect("time") - first_retry;
    assert!(
        waited >= 3_000_000,
        "dead-lettered {waited} µs after the first retry"
    );
    process
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");

    let dead = node.dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["flow_run_id"], run_id.as_str());
    assert_eq!(dead[0]["flow_id"], "f");
    assert_eq!(dead[0]["kind"], "retries_exhausted");
    assert_eq!(dead[0]["attempt"], 3);
    let reason = dead[0]["reason"].as_str().expect("reason");
    assert!(reason.starts_with("gave up after 3 attempts:"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_trigger_answers_202_and_the_run_happens() {
    let node = Node::start(NodeOptions::default()).await.expect("node");
    let sha = node.write_local("f", "now.xml", b"<now/>").expect("write");
    let mut process = start_node(&node, "node", &[]).await;
    let answer = node.trigger_run("f").expect("trigger");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let body = answer.json().expect("json");
    assert_eq!(body["flow"], "f");
    assert!(body["flow_run_id"].is_string(), "{body}");
    let expected = BTreeMap::from([("now.xml".to_owned(), sha)]);
    wait_delivered(&node, &mut process, "f", &expected, Duration::from_secs(60)).await;
    assert_eq!(node.trigger_run("nope").expect("trigger").status, 404);
    assert_eq!(process.http_get("/healthz").expect("healthz"), 200);
    assert_eq!(process.http_get("/readyz").expect("readyz"), 200);
    let metrics = ferry_tests::http_client::get(process.health.expect("ops address"), "/metrics")
        .expect("metrics");
    assert!(
        metrics.body.contains("ferry_dead_letters_total"),
        "the fleet's metrics: {}",
        metrics.body
    );
    process
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
    assert!(
        process
            .lines()
            .iter()
            .any(|l| is_event(l, LogEvent::WorkerStopped)),
        "{}",
        process.tail(20)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_embedded_store_standalone_refuses_to_start() {
    let node = Node::start(NodeOptions::default()).await.expect("node");
    let settings = node.config_dir().join("ferry.yaml");
    let yaml = std::fs::read_to_string(&settings).expect("ferry.yaml");
    let yaml = yaml.replace("  kind: embedded\n  path: state.db\n", "  kind: redis\n");
    std::fs::write(&settings, yaml).expect("write");
    let mut process = node.spawn("refused", &[]).expect("spawn");
    let status = process
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("it exits");
    assert_eq!(status.code(), Some(2), "a configuration error");
    let text = process.log_text();
    assert!(text.contains("store: { kind: embedded"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_arriving_in_an_on_arrival_flows_folder_are_delivered_once() {
    let node = Node::start(NodeOptions {
        flows: vec![NodeFlow::on_arrival("f")],
        ..NodeOptions::default()
    })
    .await
    .expect("node");
    let mut process = start_node(&node, "node", &[]).await;
    let mut expected = BTreeMap::new();
    for i in 0..5 {
        let name = format!("drop{i}.xml");
        let sha = node
            .write_local("f", &name, format!("<drop n=\"{i}\"/>").as_bytes())
            .expect("write");
        expected.insert(name, sha);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_delivered(&node, &mut process, "f", &expected, Duration::from_secs(60)).await;
    assert!(
        node.renames_onto().values().all(|&renames| renames == 1),
        "each file renamed into place once: {:?}",
        node.renames_onto()
    );
    process
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
}
