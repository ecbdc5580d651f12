//! The HTTP trigger of a real `ferry-scheduler`: an upstream system's `POST
//! /v1/flows/{flow}/runs` becomes exactly one flow-run message on RabbitMQ, with the
//! caller's files, event id and trace; every bad request is refused with the documented 4xx
//! and queues nothing; and the endpoint keeps its OpenAPI contract
//! (`docs/openapi/http-trigger.yaml`) under schemathesis's generated requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_shared::message::Trigger;
use ferry_tests::fleet::{Fleet, FleetOptions, FleetProcess};
use ferry_tests::http_client::{HttpAnswer, request};
use ferry_tests::ports::free_port;
use ferry_tests::rabbitmq::RabbitNode;
use ferry_tests::tools::find_tool;

/// The token the tests configure (through a `file:` reference).
const TOKEN: &str = "trigger-token-5b1f0c";

/// A fleet whose scheduler serves the HTTP trigger with [`TOKEN`], and a disabled flow `off`.
struct TriggerFleet {
    fleet: Fleet,
    scheduler: FleetProcess,
    addr: SocketAddr,
    _token_dir: tempfile::TempDir,
}

async fn trigger_fleet(test: &str) -> TriggerFleet {
    trigger_fleet_with(test, FleetOptions::default(), "").await
}

/// [`trigger_fleet`] with `options` and more `ferry.yaml` (`settings`).
async fn trigger_fleet_with(test: &str, options: FleetOptions, settings: &str) -> TriggerFleet {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let fleet = Fleet::start(test, options).await.expect("fleet");
    fleet
        .append_settings(&format!(
            "http_trigger:\n  listen: {addr}\n  token: file:{}\n{settings}",
            token_file.display()
        ))
        .expect("trigger settings");
    std::fs::write(
        fleet.config_dir().join("flows/off.yaml"),
        "flows:\n  off:\n    enabled: false\n    direction: upload\n    target:\n      \
         partner: partner\n      path: /in\n    local:\n      path: ./local\n    files:\n      \
         - pattern: \"*.csv\"\n",
    )
    .unwrap();
    fleet.config().expect("the configuration with `off` loads");
    let mut scheduler = fleet.spawn_scheduler("scheduler").expect("scheduler");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while request(addr, "GET", "/v1/flows/f/runs", &[], b"").is_err() {
        assert!(scheduler.is_running(), "{}", scheduler.tail(30));
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            scheduler.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    TriggerFleet {
        fleet,
        scheduler,
        addr,
        _token_dir: token_dir,
    }
}

impl TriggerFleet {
    /// `POST path` with the right token, `extra` headers and `body`.
    fn post(&self, path: &str, extra: &[(&str, &str)], body: &str) -> HttpAnswer {
        let bearer = format!("Bearer {TOKEN}");
        let mut headers = vec![("Authorization", bearer.as_str())];
        headers.extend_from_slice(extra);
        request(self.addr, "POST", path, &headers, body.as_bytes()).expect("HTTP answer")
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The status and the problem document's `status`, checked to agree.
fn problem_status(answer: &HttpAnswer) -> u16 {
    assert_eq!(
        answer.headers.get("content-type").map(String::as_str),
        Some("application/problem+json"),
        "{answer:?}"
    );
    let problem = answer.json().expect("a problem document");
    assert_eq!(problem["status"], answer.status, "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    answer.status
}

#[tokio::test]
async fn a_post_queues_one_run_with_the_callers_files_event_and_trace_and_bad_requests_queue_nothing()
 {
    let mut bed = trigger_fleet("http-trigger").await;
    let addr = bed.addr;

    // Refusals, each with its documented status; none may queue a run.
    let no_token = request(addr, "POST", "/v1/flows/f/runs", &[], b"").unwrap();
    assert_eq!(problem_status(&no_token), 401);
    assert!(no_token.headers["www-authenticate"].starts_with("Bearer"));
    let wrong = request(
        addr,
        "POST",
        "/v1/flows/f/runs",
        &[("Authorization", "Bearer trigger-token-5b1f0")],
        b"",
    )
    .unwrap();
    assert_eq!(problem_status(&wrong), 401);
    assert!(wrong.headers["www-authenticate"].contains("invalid_token"));
    let unknown_without_token = request(addr, "POST", "/v1/flows/nope/runs", &[], b"").unwrap();
    assert_eq!(
        unknown_without_token.status, 401,
        "without the token nobody learns which flows exist"
    );
    // (path, headers, body, expected status)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16);
    let cases: [Case<'_>; 8] = [
        ("/v1/flows/nope/runs", &[], "", 404),
        ("/v1/flows/off/runs", &[], "", 409),
        ("/v1/flows/f/runs", &[JSON], "{\"file\": [\"a.xml\"]}", 400),
        (
            "/v1/flows/f/runs",
            &[JSON],
            "{\"files\": [\"../etc/passwd\"]}",
            400,
        ),
        ("/v1/flows/f/runs", &[JSON], "{\"files\": []}", 400),
        ("/v1/flows/f/runs", &[JSON], "{not json", 400),
        (
            "/v1/flows/f/runs",
            &[("Content-Type", "text/plain")],
            "{}",
            415,
        ),
        ("/v1/other", &[], "", 404),
    ];
    for (path, headers, body, expected) in cases {
        let answer = bed.post(path, headers, body);
        assert_eq!(
            problem_status(&answer),
            expected,
            "{path} {body}: {answer:?}"
        );
    }
    let huge = format!("{{\"upstream_id\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    assert_eq!(
        problem_status(&bed.post("/v1/flows/f/runs", &[JSON], &huge)),
        413
    );
    let get = request(addr, "GET", "/v1/flows/f/runs", &[], b"").unwrap();
    assert_eq!(problem_status(&get), 405);
    assert_eq!(get.headers["allow"], "POST");

    // Two good requests: an event run of two files under the caller's trace, and a bare one.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{caller_trace}-00f067aa0ba902b7-01");
    let event = bed.post(
        "/v1/flows/f/runs",
        &[JSON, ("traceparent", &traceparent)],
        r#"{"files": ["a.xml", "sub/b.xml"], "upstream_id": "erp-4711"}"#,
    );
    assert_eq!(event.status, 202, "{event:?}");
    let event = event.json().unwrap();
    assert_eq!(event["flow"], "f");
    assert_eq!(event["trigger"], "event");
    let bare = bed.post("/v1/flows/f/runs", &[], "");
    assert_eq!(bare.status, 202, "{bare:?}");
    let bare = bare.json().unwrap();
    assert_eq!(bare["trigger"], "manual");

    let queued = bed.fleet.drain_work_queue_with_headers().await;
    assert_eq!(queued.len(), 2, "exactly the two accepted runs: {queued:?}");
    let (first, headers) = &queued[0];
    assert_eq!(first.flow_run_id.to_string(), event["flow_run_id"]);
    assert_eq!(first.flow_id, "f");
    assert_eq!(
        first.trigger,
        Trigger::Event {
            upstream_id: "erp-4711".into()
        }
    );
    assert_eq!(
        first.files.as_deref(),
        Some(&["a.xml".to_owned(), "sub/b.xml".to_owned()][..])
    );
    let propagated = headers
        .get("traceparent")
        .expect("a traceparent on the message");
    assert!(
        propagated.contains(caller_trace) && !propagated.contains("00f067aa0ba902b7"),
        "the run continues the caller's trace under the trigger's own span: {propagated}"
    );
    let (second, _) = &queued[1];
    assert_eq!(second.flow_run_id.to_string(), bare["flow_run_id"]);
    assert_eq!(second.trigger, Trigger::Manual);
    assert_eq!(second.files, None);

    bed.scheduler
        .stop(Duration::from_secs(30))
        .await
        .expect("the scheduler stops");
}

/// RabbitMQ down: the trigger answers 503 with `Retry-After` (never 202 for a run it could
/// not queue, never a 500), and nothing of that request reaches the queue later. Back up, the
/// next request is queued exactly once.
#[tokio::test]
async fn with_rabbitmq_down_a_request_gets_503_and_is_never_queued_and_the_next_one_is() {
    let mut node = tokio::task::spawn_blocking(RabbitNode::start)
        .await
        .expect("join")
        .expect("private RabbitMQ node");
    let mut bed = trigger_fleet_with(
        "http-trigger-broker-down",
        FleetOptions {
            broker_url: Some(node.url()),
            ..FleetOptions::default()
        },
        "scheduler:\n  publish_give_up: 2s\n",
    )
    .await;
    node = tokio::task::spawn_blocking(move || node.kill().map(|()| node))
        .await
        .expect("join")
        .expect("RabbitMQ stopped");

    let refused = bed.post(
        "/v1/flows/f/runs",
        &[JSON],
        r#"{"upstream_id": "while-down"}"#,
    );
    assert_eq!(problem_status(&refused), 503, "{refused:?}");
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");

    node = tokio::task::spawn_blocking(move || node.boot().map(|()| node))
        .await
        .expect("join")
        .expect("RabbitMQ back");
    // The publisher reconnects on the next request; retry as a caller told 503 would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let answer = bed.post("/v1/flows/f/runs", &[JSON], r#"{"upstream_id": "after"}"#);
        if answer.status == 202 {
            break answer.json().unwrap();
        }
        assert_eq!(problem_status(&answer), 503, "{answer:?}");
        assert!(tokio::time::Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let queued = bed.fleet.drain_work_queue().await;
    assert_eq!(queued.len(), 1, "only the accepted run: {queued:?}");
    assert_eq!(queued[0].flow_run_id.to_string(), accepted["flow_run_id"]);
    assert_eq!(
        queued[0].trigger,
        Trigger::Event {
            upstream_id: "after".into()
        }
    );
    bed.scheduler
        .stop(Duration::from_secs(30))
        .await
        .expect("the scheduler stops");
    drop(node);
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn the_endpoint_keeps_its_openapi_contract_under_generated_requests() {
    let mut bed = trigger_fleet("http-trigger-contract").await;
    let schemathesis = find_tool("schemathesis", &["venv/bin"]).expect("schemathesis");
    let spec = repo().join("docs/openapi/http-trigger.yaml");
    let reports = tempfile::tempdir().unwrap();
    // Every generated request names the configured flow `f`, so that valid ones reach the
    // run logic (and must be accepted) rather than stopping at 404.
    let config = reports.path().join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\nflow = \"f\"\n").unwrap();
    let out = tokio::task::spawn_blocking({
        let addr = bed.addr;
        let reports = reports.path().to_owned();
        move || {
            Command::new(schemathesis)
                // Its example cache goes to the scratch folder, not into the repository.
                .current_dir(&reports)
                .arg("--config-file")
                .arg(&config)
                .arg("run")
                .arg(&spec)
                .args(["--url", &format!("http://{addr}")])
                .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
                .args(["--checks", "all"])
                .args(["--max-examples", "60", "--seed", "1"])
                .args(["--generation-deterministic", "--no-color"])
                .arg("--report-dir")
                .arg(&reports)
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
        }
    })
    .await
    .unwrap()
    .expect("schemathesis runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{said}");
    let generated = said
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|pair| pair[1] == "generated,")
        .and_then(|pair| pair[0].parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        generated >= 50,
        "schemathesis generated {generated} requests:\n{said}"
    );
    let queued = bed.fleet.drain_work_queue().await;
    assert!(
        !queued.is_empty() && queued.iter().all(|m| m.flow_id == "f"),
        "valid generated requests reached the queue (and only those for `f`): {}",
        queued.len()
    );
    bed.scheduler
        .stop(Duration::from_secs(30))
        .await
        .expect("the scheduler stops");
}
