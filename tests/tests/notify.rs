//! `notify.webhooks`: a flow's runs told to a local HTTP receiver
//! (`ferry_tests::webhook_receiver`).
//!
//! - a run with a failed file sends `failure` (from `ferry-worker run`, before it exits) to
//!   the URL of an `env:` reference with the flow, run id, outcome, files, trace id and the
//!   header resolved from a `file:` reference, which never shows in the logs;
//! - `success` goes only to a webhook that asks for it;
//! - a receiver answering 500 twice gets the notification on the third request, the same
//!   delivery each time;
//! - a receiver that never answers does not delay the run: the report is printed at once
//!   and the process exits after its short grace, exit code 0;
//! - a standalone node's run that keeps failing sends a `failure` per attempt, then one
//!   `dead_letter` (`retries_exhausted`);
//! - a fleet worker (`consume`) dead-letters a run whose login is refused at once, and sends
//!   `failure` and `dead_letter` (`permanent_failure`); both count their notifications in
//!   `ferry_webhook_deliveries_total`;
//! - `ferry-worker validate` names the file, line and field of a bad webhook.

use std::time::Duration;

use ferry_shared::telemetry::LogEvent;
use ferry_tests::bed::{Bed, parse_run, run, upload, write_files};
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess, is_event};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::ports::free_port;
use ferry_tests::prometheus::Exposition;
use ferry_tests::standalone::{Node, NodeFlow, NodeOptions};
use ferry_tests::webhook_receiver::{Answer, Hook, WebhookReceiver};

/// Long enough for a debug build's run and a notification on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

/// `notify:` lines (four-space flow indentation) with one webhook per `(url, extra)`;
/// `extra` are more webhook keys, indented by eight spaces.
fn notify(hooks: &[(String, &str)]) -> String {
    let mut yaml = String::from("    notify:\n      webhooks:\n");
    for (url, extra) in hooks {
        yaml.push_str(&format!("        - url: \"literal:{url}\"\n{extra}"));
    }
    yaml
}

/// Waits until `process`'s `/metrics` counts `count` notifications of `event` that ended as
/// `result` (the count follows the receiver's answer).
async fn wait_counted(process: &FleetProcess, event: &str, result: &str, count: f64) {
    let addr = process.health.expect("ops address");
    let labels = [("flow", "f"), ("event", event), ("result", result)];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = ferry_tests::http_client::get(addr, "/metrics").expect("metrics");
        let exposition = Exposition::parse(&page.body).expect("exposition");
        let counted = exposition.sum("ferry_webhook_deliveries_total", &labels);
        if counted == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ferry_webhook_deliveries_total{labels:?} = {counted}, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each request's event and attempt, sorted: notifications are independent, so a
/// `dead_letter` may arrive before the last attempt's `failure`.
fn events_of(hooks: &[Hook]) -> Vec<(&str, u64)> {
    let mut events: Vec<(&str, u64)> = hooks
        .iter()
        .map(|h| (h.event(), h.body["attempt"].as_u64().unwrap_or_default()))
        .collect();
    events.sort();
    events
}

/// The one `dead_letter` request.
fn dead_letter_of(hooks: &[Hook]) -> &Hook {
    hooks
        .iter()
        .find(|h| h.event() == "dead_letter")
        .expect("a dead_letter request")
}

#[tokio::test]
async fn a_failed_run_sends_failure_with_the_run_its_files_and_the_secret_header() {
    let receiver = WebhookReceiver::start().await;
    let bed = Bed::start("notify-failure", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 2, 100);
    let names: Vec<&String> = sent.keys().collect();
    // The partner already has the first name, and the flow does not overwrite: it fails.
    bed.server
        .write_file(&format!("in/{}", names[0]), b"older")
        .unwrap();
    let token = bed.dir.path().join("hook-token");
    std::fs::write(&token, "Bearer s3cret-hook-token").unwrap();
    // The URL from the worker's environment, the header from a file: both references.
    let extra = format!(
        "    overwrite: false\n    notify:\n      webhooks:\n        - url: env:FERRY_TEST_HOOK_URL\n          \
         headers:\n            Authorization: \"file:{}\"\n",
        token.display()
    );
    bed.config(&upload(&extra), None);

    let output = bed
        .worker_run()
        .env("FERRY_TEST_HOOK_URL", receiver.url("/hook"))
        .output()
        .await
        .expect("run");
    let (code, report) = parse_run(&output);

    assert_eq!(code, Some(1), "{report}");
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "sent before the process exited: {hooks:#?}");
    let hook = &hooks[0];
    assert_eq!(hook.path, "/hook");
    assert_eq!(
        hook.header("authorization"),
        Some("Bearer s3cret-hook-token")
    );
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(hook.header("x-ferry-event"), Some("failure"));
    let body = &hook.body;
    assert_eq!(body["event"], "failure");
    assert_eq!(body["flow_id"], "f");
    assert_eq!(body["partner"], "partner");
    assert_eq!(body["run_id"], report["run_id"]);
    assert_eq!(body["outcome"], "failed");
    assert_eq!(body["attempt"], serde_json::Value::Null);
    assert_eq!(body["totals"]["failed"], 1);
    assert_eq!(body["totals"]["transferred"], 1);
    assert_eq!(body["files"][0]["name"], names[0].as_str(), "failed first");
    assert_eq!(body["files"][0]["outcome"], "failed");
    assert_eq!(body["files"][0]["error_kind"], "target_exists");
    assert_eq!(body["files"][1]["name"], names[1].as_str());
    assert_eq!(body["files"][1]["outcome"], "transferred");
    let trace_id = body["trace_id"].as_str().expect("a trace id");
    assert!(
        trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{trace_id}"
    );
    assert_eq!(
        body["delivery_id"].as_str(),
        hook.header("x-ferry-delivery")
    );
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!logs.contains("s3cret"), "the header value never logged");
    let delivered = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| is_event(line, LogEvent::WebhookDelivered))
        .count();
    assert_eq!(delivered, 1, "one webhook_delivered event:\n{logs}");
}

#[tokio::test]
async fn success_goes_only_to_a_webhook_that_asks_for_it() {
    let receiver = WebhookReceiver::start().await;
    let bed = Bed::start("notify-success", FtpServerKind::Vsftpd).await;
    write_files(&bed.local(), 1, 100);
    let hooks = notify(&[
        (receiver.url("/default"), ""),
        (
            receiver.url("/all"),
            "          on: [failure, dead_letter, success]\n",
        ),
    ]);
    let engine = bed.engine_for(&upload(&hooks)).await;

    let report = run(&engine, "run-ok").await;

    assert!(report.is_success(), "{:#?}", report.files);
    receiver.wait_for(1, WAIT).await;
    // The default webhook (`[failure, dead_letter]`) had the same time to hear of it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0].path, "/all");
    assert_eq!(hooks[0].event(), "success");
    assert_eq!(hooks[0].body["run_id"], "run-ok");
    assert_eq!(hooks[0].body["outcome"], "ok");
    assert_eq!(hooks[0].body["totals"]["transferred"], 1);
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_it_on_the_third_try() {
    let receiver = WebhookReceiver::scripted(vec![Answer::Status(500), Answer::Status(503)]).await;
    let bed = Bed::start("notify-retry", FtpServerKind::Vsftpd).await;
    write_files(&bed.local(), 1, 100);
    let hooks = notify(&[(receiver.url("/hook"), "          on: [success]\n")]);
    let engine = bed.engine_for(&upload(&hooks)).await;

    let report = run(&engine, "run-retry").await;

    assert!(report.is_success(), "{:#?}", report.files);
    let hooks = receiver.wait_for(3, WAIT).await;
    assert!(
        hooks[2].at - hooks[0].at >= Duration::from_millis(1_000),
        "backoff between the attempts (at least 0.5 s + 1 s)"
    );
    let delivery = hooks[0].header("x-ferry-delivery").expect("delivery id");
    for hook in &hooks {
        assert_eq!(
            hook.header("x-ferry-delivery"),
            Some(delivery),
            "one delivery"
        );
        assert_eq!(hook.body, hooks[0].body, "the same body each time");
    }
    // Answered 200 the third time: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.hooks().len(), 3);
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_delay_the_run() {
    let receiver = WebhookReceiver::scripted(vec![Answer::Never; 10]).await;
    let bed = Bed::start("notify-hang", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 1, 100);
    // Hanging for 30 s per request, 5 requests: minutes, if anything waited for it.
    let hooks = notify(&[(
        receiver.url("/hook"),
        "          on: [success]\n          timeout: 30s\n",
    )]);
    bed.config(&upload(&hooks), None);

    let started = tokio::time::Instant::now();
    let output = bed.worker_run().output().await.expect("run");
    let took = started.elapsed();
    let (code, report) = parse_run(&output);

    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["totals"]["transferred"], 1);
    assert_eq!(bed.remote_files("in"), sent);
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "the receiver got the request and sat on it");
    assert!(
        took < Duration::from_secs(20),
        "the process exits after the 5 s grace, not the webhook's 30 s: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_run_that_keeps_failing_sends_failures_then_one_dead_letter() {
    let receiver = WebhookReceiver::start().await;
    let mut flow = NodeFlow::triggered("f");
    flow.extra = notify(&[(receiver.url("/hook"), "")]);
    let options = NodeOptions {
        flows: vec![flow],
        // Nothing listens there: every attempt fails (transient), then the run is given up.
        partner_port: Some(free_port()),
        retry_delays: vec!["1s".into()],
        max_attempts: 2,
        ..NodeOptions::default()
    };
    let node = Node::start(options).await.expect("node");
    node.write_local("f", "stuck.xml", b"<stuck/>")
        .expect("write");
    let mut process = node.spawn("node", &[]).expect("spawn standalone");
    node.wait_for_trigger(&mut process, Duration::from_secs(60))
        .await
        .expect("trigger listening");

    let answer = node.trigger_run("f").expect("trigger");
    assert_eq!(answer.status, 202);
    let run_id = answer.json().expect("json")["flow_run_id"]
        .as_str()
        .expect("id")
        .to_owned();
    receiver.wait_for(3, Duration::from_secs(90)).await;
    wait_counted(&process, "failure", "delivered", 2.0).await;
    wait_counted(&process, "dead_letter", "delivered", 1.0).await;
    process
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");

    let hooks = receiver.hooks();
    assert_eq!(
        events_of(&hooks),
        [("dead_letter", 2), ("failure", 1), ("failure", 2)],
        "{hooks:#?}"
    );
    for hook in &hooks {
        assert_eq!(hook.body["run_id"], run_id.as_str());
        assert_eq!(hook.body["flow_id"], "f");
        assert_ne!(hook.body["outcome"], "ok");
    }
    let dead = &dead_letter_of(&hooks).body["dead_letter"];
    assert_eq!(dead["reason"], "retries_exhausted", "{dead}");
    assert!(
        !dead["message"].as_str().unwrap_or_default().is_empty(),
        "{dead}"
    );
    assert_eq!(node.dead_letters().await.expect("dead letters").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_worker_sends_failure_and_dead_letter_for_a_refused_login() {
    let receiver = WebhookReceiver::start().await;
    let fleet = Fleet::start(
        "notify-auth",
        FleetOptions {
            partner_password: Some("not-the-partner-password".into()),
            ..FleetOptions::default()
        },
    )
    .await
    .expect("fleet");
    let flow_file = fleet.config_dir().join("flows/f.yaml");
    let mut yaml = std::fs::read_to_string(&flow_file).unwrap();
    yaml.push_str(&notify(&[(receiver.url("/hook"), "")]));
    std::fs::write(&flow_file, yaml).unwrap();
    fleet.write_local("a.xml", b"<a/>").expect("write");
    let mut worker = fleet
        .spawn_consuming_worker("worker", Duration::from_secs(60))
        .await
        .expect("worker");

    let message = fleet.publish_manual_run().await.expect("publish");
    receiver.wait_for(2, Duration::from_secs(60)).await;
    wait_counted(&worker, "failure", "delivered", 1.0).await;
    wait_counted(&worker, "dead_letter", "delivered", 1.0).await;

    let hooks = receiver.hooks();
    assert_eq!(
        events_of(&hooks),
        [("dead_letter", 1), ("failure", 1)],
        "{hooks:#?}"
    );
    let run_id = message.flow_run_id.to_string();
    for hook in &hooks {
        assert_eq!(hook.body["run_id"], run_id.as_str());
        assert_ne!(hook.body["outcome"], "ok");
    }
    let dead_letter = dead_letter_of(&hooks);
    let dead = &dead_letter.body["dead_letter"];
    assert_eq!(dead["reason"], "permanent_failure", "{dead}");
    let text = dead_letter.body.to_string();
    assert!(text.contains("authentication_failed"), "{text}");
    assert!(!text.contains("not-the-partner-password"), "{text}");
    worker
        .stop(Duration::from_secs(30))
        .await
        .expect("clean stop");
}

#[tokio::test]
async fn validate_names_the_file_line_and_field_of_a_bad_webhook() {
    let bed = Bed::start("notify-config", FtpServerKind::Vsftpd).await;
    bed.config(&upload(""), None);
    let flow_file = bed.dir.path().join("flows/f.yaml");
    let mut yaml = std::fs::read_to_string(&flow_file).unwrap();
    let first_line = yaml.lines().count() + 1;
    yaml.push_str(
        "    notify:\n      webhooks:\n        - url: \"http://hooks.example/x?token=s3cret\"\n          \
         on: [failure, finished]\n          retries: 3\n",
    );
    std::fs::write(&flow_file, yaml).unwrap();
    let binary = ferry_tests::tools::workspace_binary("ferry-worker").unwrap();

    let output = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(bed.dir.path())
        .arg("validate")
        .output()
        .await
        .expect("validate");

    assert_eq!(output.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let url_line = first_line + 2;
    let expected = [
        format!(
            "flows/f.yaml:{url_line}:11: flows.f.notify.webhooks[0].url: the webhook URL must be an https:// URL"
        ),
        format!(
            "flows/f.yaml:{}:25: flows.f.notify.webhooks[0].on[1]: `finished` is not allowed here",
            url_line + 1
        ),
        format!(
            "flows/f.yaml:{}:11: flows.f.notify.webhooks[0].retries: unknown field `retries`",
            url_line + 2
        ),
    ];
    for line in &expected {
        assert!(text.contains(line.as_str()), "no {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("s3cret"),
        "the URL is never printed:\n{text}"
    );
}
