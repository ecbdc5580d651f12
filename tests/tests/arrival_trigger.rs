//! The file-arrival trigger (`trigger: { on_arrival: true }`): its configuration errors,
//! each with file, line and field. (The fleet tests with a real scheduler, worker and FTPS
//! server are still to come: see the branch's report.)

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
