//! `max_files_per_run` and `order` on a flow, against real FTPS servers from the test bed
//! and the real Redis: a backlog is worked in bounded runs, each run a success that says how
//! many files it left for the next one, and `order` decides which files go first, in both
//! directions. The tests look at what a user would: the files on the partner's disk or in
//! the local folder, the run report's rows and counts, the JSON report and exit code of
//! `ferry-worker run`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ferry_shared::transfer::{Outcome, RunReport};
use ferry_tests::bed::{
    Bed, all_names, download, files_in, names_with, options, parse_run, run, upload,
};
use ferry_tests::ftp::FtpServerKind;

const BACKLOG: usize = 1000;
const PER_RUN: usize = 100;

/// Six files whose name, age and size orders all differ: name -> (hours old, size).
const FILES: [(&str, u64, usize); 6] = [
    ("a.xml", 3, 600),
    ("b.xml", 6, 100),
    ("c.xml", 1, 500),
    ("d.xml", 5, 300),
    ("e.xml", 2, 200),
    ("f.xml", 4, 400),
];

/// With a limit of 2, the files each `order` takes first.
const FIRST_TWO: [(&str, [&str; 2]); 4] = [
    ("name", ["a.xml", "b.xml"]),
    ("oldest", ["b.xml", "d.xml"]),
    ("newest", ["c.xml", "e.xml"]),
    ("size", ["b.xml", "e.xml"]),
];

#[tokio::test]
async fn upload_backlog_goes_in_runs_of_max_files_per_run() {
    let bed = Bed::start("limits-up", FtpServerKind::Vsftpd).await;
    let engine = bed
        .engine_for(&upload(
            "    max_files_per_run: 100\n    delete_after_upload: true\n",
        ))
        .await;
    write_backlog(&bed.local(), BACKLOG);

    let partner_names = || files_in(&bed.server.path("in")).into_keys().collect();
    check_bounded_runs_from(&engine, partner_names, 0).await;
    assert!(all_names(&bed.local()).is_empty(), "every file was sent");

    // The CLI on an empty folder: nothing left, exit code 0.
    let output = bed.worker_run().output().await.expect("run");
    let (code, json) = parse_run(&output);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["left_for_next_run"], 0, "{json}");
}

#[tokio::test]
async fn download_backlog_goes_in_runs_of_max_files_per_run_and_the_cli_reports_the_rest() {
    let bed = Bed::start("limits-down", FtpServerKind::Proftpd).await;
    let engine = bed
        .engine_for(&download(
            "    max_files_per_run: 100\n    delete_after_download: true\n",
        ))
        .await;
    for i in 0..BACKLOG {
        bed.server
            .write_file(
                &format!("out/{}", backlog_name(i)),
                i.to_string().as_bytes(),
            )
            .expect("remote file");
    }

    // The first run through `ferry-worker run --json`: a success (exit code 0) that says
    // how many files wait for the next run.
    let output = bed.worker_run().output().await.expect("run");
    let (code, json) = parse_run(&output);
    let totals = &json["totals"];
    assert_eq!(code, Some(0), "a bounded run is a success: {totals}");
    assert_eq!(totals["transferred"], PER_RUN, "{totals}");
    assert_eq!(json["left_for_next_run"], BACKLOG - PER_RUN, "{totals}");
    let local = || all_names(&bed.local()).into_iter().collect();
    let first: BTreeSet<String> = local();
    let expected: BTreeSet<String> = (0..PER_RUN).map(backlog_name).collect();
    assert_eq!(first, expected, "the first run takes the first names");

    // The remaining 900 take 9 more runs, then one with nothing to do.
    check_bounded_runs_from(&engine, local, 1).await;
    assert!(
        files_in(&bed.server.path("out")).is_empty(),
        "every file was fetched and deleted"
    );
}

#[tokio::test]
async fn kept_sources_do_not_stall_bounded_runs() {
    let bed = Bed::start("limits-keep", FtpServerKind::Vsftpd).await;
    let engine = bed
        .engine_for(&upload("    max_files_per_run: 100\n"))
        .await;
    write_backlog(&bed.local(), 250);

    // Each run skips what earlier runs delivered (still in the folder) and sends the next
    // hundred; the duplicates do not count toward the limit.
    let runs = [
        // (transferred, duplicates, left for the next run, files on the partner)
        (100, 0, 150, 100),
        (100, 100, 50, 200),
        (50, 200, 0, 250),
        (0, 250, 0, 250),
    ];
    for (i, (sent, duplicates, left, on_partner)) in runs.into_iter().enumerate() {
        let report = run(&engine, &format!("run-{i}")).await;
        let line = report.summary_line();
        assert!(report.is_success(), "{line}");
        assert_eq!(report.totals.transferred, sent, "run {i}: {line}");
        assert_eq!(
            report.totals.skipped_duplicates, duplicates,
            "run {i}: {line}"
        );
        assert_eq!(report.left_for_next_run, left, "run {i}: {line}");
        assert_eq!(
            files_in(&bed.server.path("in")).len(),
            on_partner,
            "run {i}"
        );
    }
}

#[tokio::test]
async fn order_picks_the_first_files_of_an_upload() {
    let bed = Bed::start("limits-order-up", FtpServerKind::Vsftpd).await;
    for (order, expected) in FIRST_TWO {
        write_ordered_files(&bed.local());
        let extra =
            format!("    max_files_per_run: 2\n    order: {order}\n    idempotency_mode: none\n");
        let engine = bed
            .engine(bed.config(&upload(&extra), None), options("w1"))
            .await;

        let report = run(&engine, &format!("run-{order}")).await;
        assert_eq!(
            names_with(&report, Outcome::Transferred),
            expected,
            "order: {order}"
        );
        assert_eq!(report.left_for_next_run, FILES.len() - 2, "order: {order}");
        let on_partner: Vec<String> = files_in(&bed.server.path("in")).into_keys().collect();
        assert_eq!(on_partner, expected, "order: {order}");
        for name in on_partner {
            std::fs::remove_file(bed.server.path("in").join(name)).expect("clear partner");
        }
        engine.close().await;
    }
}

#[tokio::test]
async fn order_picks_the_first_files_of_a_download() {
    let bed = Bed::start("limits-order-down", FtpServerKind::Vsftpd).await;
    let now = SystemTime::now();
    for (name, hours, size) in FILES {
        let path = bed
            .server
            .write_file(&format!("out/{name}"), &vec![b'x'; size])
            .expect("remote file");
        set_mtime(&path, now - Duration::from_secs(hours * 3600));
    }
    for (order, expected) in FIRST_TWO {
        let extra =
            format!("    max_files_per_run: 2\n    order: {order}\n    idempotency_mode: none\n");
        let engine = bed
            .engine(bed.config(&download(&extra), None), options("w1"))
            .await;

        let report = run(&engine, &format!("run-{order}")).await;
        assert_eq!(
            names_with(&report, Outcome::Transferred),
            expected,
            "order: {order}"
        );
        assert_eq!(report.left_for_next_run, FILES.len() - 2, "order: {order}");
        assert_eq!(all_names(&bed.local()), expected, "order: {order}");
        for name in expected {
            std::fs::remove_file(bed.local().join(name)).expect("clear local");
        }
        engine.close().await;
    }
}

/// Runs the flow until the backlog is done, `PER_RUN` files a run, starting at run number
/// `done` (runs already made), and checks that `arrived` (the names at the destination)
/// grows by exactly the next `PER_RUN` names each time; the last run finds nothing.
async fn check_bounded_runs_from(
    engine: &ferry_shared::transfer::Engine,
    arrived: impl Fn() -> BTreeSet<String>,
    done: usize,
) {
    let runs = BACKLOG / PER_RUN;
    for i in done..runs {
        let report: RunReport = run(engine, &format!("run-{i}")).await;
        assert!(report.is_success(), "{}", report.summary_line());
        assert_eq!(
            report.totals.transferred,
            PER_RUN,
            "{}",
            report.summary_line()
        );
        let left = BACKLOG - PER_RUN * (i + 1);
        assert_eq!(report.left_for_next_run, left, "{}", report.summary_line());
        if left > 0 {
            assert!(
                report
                    .summary_line()
                    .contains(&format!("{left} left for the next run")),
                "{}",
                report.summary_line()
            );
            assert!(!report.settled_everything(), "files wait for the next run");
        }
        let expected: BTreeSet<String> = (0..PER_RUN * (i + 1)).map(backlog_name).collect();
        assert_eq!(arrived(), expected, "run {i} took the next names in order");
    }
    let last = run(engine, "run-last").await;
    assert!(last.files.is_empty(), "{}", last.summary_line());
    assert_eq!(last.left_for_next_run, 0);
    assert!(last.is_success());
}

fn backlog_name(i: usize) -> String {
    format!("f{i:04}.xml")
}

fn write_backlog(dir: &Path, count: usize) {
    for i in 0..count {
        std::fs::write(dir.join(backlog_name(i)), i.to_string()).expect("write file");
    }
}

/// Writes [`FILES`] into `dir` with their sizes and ages.
fn write_ordered_files(dir: &Path) {
    let now = SystemTime::now();
    for (name, hours, size) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, vec![b'x'; size]).expect("write file");
        set_mtime(&path, now - Duration::from_secs(hours * 3600));
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("mtime of {}: {e}", path.display()));
}
