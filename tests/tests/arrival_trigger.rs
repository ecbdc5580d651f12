//! The file-arrival trigger (`trigger: { on_arrival: true }`): its configuration errors,
//! each with file, line and field; and a real fleet (scheduler watching, worker consuming,
//! vsftpd as the partner): files dropped one by one, a burst of 1000, a file still being
//! written.

use std::path::Path;

use ferry_shared::config::{Config, ConfigErrors};

/// A configuration with one partner and flow `f`, its YAML body given.
fn load_flow(dir: &Path, flow_body: &str) -> Result<Config, ConfigErrors> {
    for sub in ["partners", "flows", "local"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.join("partners/p.yaml"),
        "id: p\nprotocol: ftps\nftps:\n  connection:\n    host: h\n    passive: true\n  auth:\n    username: u\n",
    )
    .expect("partner");
    std::fs::write(
        dir.join("flows/f.yaml"),
        format!("flows:\n  f:\n{flow_body}"),
    )
    .expect("flow");
    Config::load_with_env(dir, &|_| None)
}

const UPLOAD: &str = "    direction: upload\n    target: {partner: p, path: /in}\n    local: {path: ./local}\n    files: [{pattern: \"*.xml\"}]\n";
const DOWNLOAD: &str = "    direction: download\n    source: {partner: p, path: /out}\n    local: {path: ./local}\n    files: [{pattern: \"*.xml\"}]\n";

fn errors(body: &str) -> Vec<(String, Option<u32>, String, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = load_flow(dir.path(), body).expect_err("should not load");
    errors
        .errors()
        .iter()
        .map(|e| {
            (
                e.file.display().to_string(),
                e.line,
                e.field.clone(),
                e.message.clone(),
            )
        })
        .collect()
}

#[test]
fn on_arrival_is_read_with_its_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!("{UPLOAD}    trigger: {{on_arrival: true}}\n");
    let config = load_flow(dir.path(), &body).expect("loads");
    let trigger = config.flows["f"].trigger;
    assert!(trigger.on_arrival);
    assert_eq!(trigger.settle, ferry_shared::config::DEFAULT_SETTLE);
    assert_eq!(
        trigger.rescan_every,
        ferry_shared::config::DEFAULT_RESCAN_EVERY
    );
}

#[test]
fn on_arrival_on_a_download_flow_is_an_error_with_file_line_and_field() {
    let found = errors(&format!("{DOWNLOAD}    trigger:\n      on_arrival: true\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    let (file, line, field, message) = &found[0];
    assert_eq!(file, "flows/f.yaml");
    assert_eq!(*line, Some(8));
    assert_eq!(field, "flows.f.trigger.on_arrival");
    assert!(message.contains("download"), "{message}");
}

#[test]
fn unknown_trigger_keys_and_knobs_without_on_arrival_are_errors() {
    let found = errors(&format!("{UPLOAD}    trigger:\n      on_arival: true\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "flows.f.trigger.on_arival");
    let found = errors(&format!("{UPLOAD}    trigger:\n      settle: 2s\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, "flows.f.trigger.settle");
    assert!(found[0].3.contains("on_arrival: true"), "{:?}", found[0]);
}

/// A fleet whose flow `f` runs on arrival, with a consuming worker and the scheduler
/// watching (its `arrival_watching` event seen).
async fn arrival_fleet(
    test: &str,
    min_file_age: &str,
) -> anyhow::Result<(
    ferry_tests::fleet::Fleet,
    ferry_tests::fleet::FleetProcess,
    ferry_tests::fleet::FleetProcess,
)> {
    use ferry_shared::telemetry::LogEvent;
    let fleet = ferry_tests::fleet::Fleet::start(test, Default::default()).await?;
    let flow = fleet.config_dir().join("flows/f.yaml");
    let mut text = std::fs::read_to_string(&flow)?
        .replace("min_file_age: 0s", &format!("min_file_age: {min_file_age}"));
    text.push_str("    trigger: {on_arrival: true, settle: 1s}\n");
    std::fs::write(&flow, text)?;
    let worker = fleet
        .spawn_consuming_worker("worker", std::time::Duration::from_secs(30))
        .await?;
    let mut scheduler = fleet.spawn_scheduler("scheduler")?;
    scheduler
        .wait_for_event(
            LogEvent::ArrivalWatching,
            std::time::Duration::from_secs(30),
        )
        .await?;
    Ok((fleet, worker, scheduler))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_1000_files_is_delivered_once_each_in_a_handful_of_runs() {
    use ferry_shared::telemetry::LogEvent;
    use std::time::{Duration, Instant};
    let (fleet, _worker, scheduler) = arrival_fleet("arrival_burst", "0s").await.expect("fleet");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..1000 {
        let name = format!("burst-{i:04}.xml");
        let hash = fleet
            .write_local(&name, format!("file {i}").as_bytes())
            .expect("write");
        expected.insert(name, hash);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while fleet.remote_names().len() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(fleet.remote_files(), expected, "every file arrived, intact");
    assert!(fleet.renames_onto().values().all(|n| *n == 1), "each once");
    let requests = scheduler
        .lines()
        .iter()
        .filter(|l| ferry_tests::fleet::is_event(l, LogEvent::ArrivalRunRequested))
        .count();
    assert!((1..=10).contains(&requests), "{requests} runs requested");
}

/// Waits (up to 60 s) until the partner has `count` visible files.
async fn wait_for_remote(fleet: &ferry_tests::fleet::Fleet, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while fleet.remote_names().len() < count && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_dropped_one_by_one_are_each_delivered_once() {
    use std::time::Duration;
    let (fleet, _worker, _scheduler) = arrival_fleet("arrival_one_by_one", "0s")
        .await
        .expect("fleet");
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..4 {
        let name = format!("one-{i}.xml");
        let hash = fleet.write_local(&name, name.as_bytes()).expect("write");
        expected.insert(name, hash);
        wait_for_remote(&fleet, i + 1).await;
        assert_eq!(fleet.remote_names().len(), i + 1, "file {i} delivered");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(fleet.remote_files(), expected);
    assert!(fleet.renames_onto().values().all(|n| *n == 1), "each once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_still_being_written_is_sent_only_once_stable() {
    use std::io::Write;
    use std::time::Duration;
    let (fleet, _worker, _scheduler) = arrival_fleet("arrival_unstable", "3s")
        .await
        .expect("fleet");
    let path = fleet.local().join("slow.xml");
    let mut file = std::fs::File::create(&path).expect("create");
    let mut content = Vec::new();
    for i in 0..8 {
        let chunk = format!("part {i}\n");
        file.write_all(chunk.as_bytes()).expect("write");
        file.flush().expect("flush");
        content.extend_from_slice(chunk.as_bytes());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(fleet.remote_names().is_empty(), "not sent while written");
    }
    drop(file);
    wait_for_remote(&fleet, 1).await;
    let remote = fleet.remote_files();
    assert_eq!(
        remote.get("slow.xml"),
        Some(&ferry_tests::fleet::sha256_hex(&content)),
        "the whole file, once stable"
    );
}
