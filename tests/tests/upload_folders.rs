//! Upload patterns with `**` create the partner's missing folders (`MKD`), on vsftpd and
//! ProFTPD from the test bed, with the real Redis: three levels of folders appear, each
//! file lands under its folder with its bytes intact, a folder that already exists (made by
//! "another worker") does not fail the run, and two flows creating the same folders at the
//! same time both succeed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ferry_shared::config::Config;
use ferry_shared::transfer::{Outcome, run_flow};
use ferry_tests::bed::{Bed, names_with, options, sha256_hex, upload};
use ferry_tests::ftp::FtpServerKind;

#[tokio::test]
async fn vsftpd_gets_three_levels_of_folders() {
    creates_three_levels(FtpServerKind::Vsftpd).await;
}

#[tokio::test]
async fn proftpd_gets_three_levels_of_folders() {
    creates_three_levels(FtpServerKind::Proftpd).await;
}

#[tokio::test]
async fn two_flows_creating_the_same_folders_at_once_both_succeed() {
    let bed = Bed::start("folders-race", FtpServerKind::Vsftpd).await;
    let mut sent = BTreeMap::new();
    for flow in ["f", "g"] {
        for i in 0..12 {
            let name = format!("p/q/r/{flow}{i:02}.xml");
            sent.insert(name.clone(), write(&bed.dir.path().join(flow), &name));
        }
    }
    let config = load(&bed, &[("f", "./f"), ("g", "./g")]);
    let engine = bed.engine(config, options("w1")).await;

    let (f, g) = tokio::join!(
        run_flow(&engine, "f", None, "run-f", None),
        run_flow(&engine, "g", None, "run-g", None)
    );
    for report in [f.expect("run f"), g.expect("run g")] {
        assert!(report.is_success(), "{:#?}", report.files);
        assert_eq!(report.totals.transferred, 12, "{}", report.summary_line());
    }
    assert_eq!(on_partner(&bed), sent);
}

/// Uploads files one, two and three folders deep (and one at the top) into a remote folder
/// where only the first level exists already.
async fn creates_three_levels(kind: FtpServerKind) {
    let bed = Bed::start(&format!("folders-{kind:?}"), kind).await;
    let mut sent = BTreeMap::new();
    for name in [
        "top.xml",
        "x/c.xml",
        "x/y/b.xml",
        "x/y/z/a.xml",
        "x/y/z/d.xml",
    ] {
        sent.insert(name.to_owned(), write(&bed.local(), name));
    }
    // "Another worker" made the first level already: its MKD is refused, which is fine.
    bed.server.create_dir("in/x").expect("in/x");
    let engine = bed
        .engine(load(&bed, &[("f", "./local")]), options("w1"))
        .await;

    let report = run_flow(&engine, "f", None, "run-1", None)
        .await
        .expect("run");
    assert!(report.is_success(), "{:#?}", report.files);
    let mut transferred = names_with(&report, Outcome::Transferred);
    transferred.sort_unstable();
    assert_eq!(
        transferred,
        sent.keys().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(bed.server.path("in/x/y/z").is_dir(), "three levels made");
    assert_eq!(on_partner(&bed), sent, "each file under its folder, intact");
}

/// Writes `relative` under `dir` (creating folders) with content of its own; its hash.
fn write(dir: &Path, relative: &str) -> String {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("local folders");
    let bytes = format!("{relative} {}", rand::random::<u64>()).into_bytes();
    std::fs::write(&path, &bytes).expect("write");
    sha256_hex(&bytes)
}

/// Writes the bed's configuration with upload flows (id, local folder) into `/in` taking
/// `**/*.xml`, and loads it.
fn load(bed: &Bed, flows: &[(&str, &str)]) -> Arc<Config> {
    bed.config(&upload(""), None);
    let mut yaml = String::from("flows:\n");
    for (id, local) in flows {
        yaml.push_str(&format!(
            "  {id}:\n    direction: upload\n    target:\n      partner: partner\n      \
             path: /in\n    local:\n      path: {local}\n    files:\n      - pattern: \
             \"**/*.xml\"\n    min_file_age: 0s\n"
        ));
    }
    std::fs::write(bed.dir.path().join("flows/f.yaml"), yaml).expect("flows");
    Arc::new(Config::load(bed.dir.path()).unwrap_or_else(|e| panic!("config: {e}")))
}

/// Relative path -> SHA-256 of every regular file under the partner's `in/`.
fn on_partner(bed: &Bed) -> BTreeMap<String, String> {
    let root = bed.server.path("in");
    let mut files = BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy();
            if path.is_dir() {
                pending.push(path);
            } else if !name.starts_with('.') {
                let relative = path.strip_prefix(&root).expect("under in/");
                let bytes = std::fs::read(&path).expect("read");
                files.insert(relative.to_string_lossy().into_owned(), sha256_hex(&bytes));
            }
        }
    }
    files
}
