//! ferry's FTPS client against servers that misbehave the way partners' servers do: refused
//! renames, a refusal on the control connection while the data connection is set up, MLSD
//! advertised but refused, listings that trickle or never end, downloads cut without TLS
//! `close_notify`, and PASV replies that name another host.
//!
//! The misbehaving server is pyftpdlib with `--quirk`s (`infra/dev-servers/pyftpdlib_server.py`):
//! a real FTPS server on loopback, bent in one place per test. Each test asserts what the
//! partner or the operator would see: the partner's file byte for byte, the commands the
//! server received, the error kind and text, what is left under a final name.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ferry_shared::ftps::{FtpsErrorKind, ListingLimits, UploadOptions};
use ferry_shared::transfer::{FileErrorKind, Outcome, TransferErrorKind, run_flow};
use ferry_tests::bed::{Bed, FlowSpec, files_in, options};
use ferry_tests::ftp::{FtpServerOptions, Quirk};
use ferry_tests::ftps_client::{config, connect, hash_file, leftovers, make_file, start};

/// The partner's own file, already at `/in/a.xml` when ferry uploads a new `a.xml`.
const PARTNERS_FILE: &[u8] = b"<claims>the partner's own, already processed</claims>";

/// Commands the server received that start with `verb ` (pyftpdlib logs each line).
fn received(commands: &[String], verb: &str) -> Vec<String> {
    let prefix = format!("{verb} ");
    commands
        .iter()
        .filter(|c| c.starts_with(&prefix) || c.as_str() == verb)
        .cloned()
        .collect()
}

// ---- the rename protocol -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rnfr_never_deletes_the_partners_file() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::RnfrRefused])).await;
    server.write_file("in/a.xml", PARTNERS_FILE).unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.xml");
    let sha = make_file(&local, 5000, 3).await;
    let mut s = connect(&server, &config(&server)).await;

    let e = s
        .upload(&local, "/in", "a.xml", Some(sha))
        .await
        .unwrap_err();

    assert_eq!(e.kind(), FtpsErrorKind::TemporaryFileVanished, "{e}");
    assert!(!e.is_transient(), "{e}");
    assert_eq!(
        std::fs::read(server.path("in/a.xml")).unwrap(),
        PARTNERS_FILE
    );
    let commands = server.received_commands();
    assert_eq!(
        received(&commands, "DELE"),
        Vec::<String>::new(),
        "{commands:#?}"
    );
    assert_eq!(
        received(&commands, "RNTO"),
        Vec::<String>::new(),
        "{commands:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rnto_keeps_the_partners_file_byte_for_byte() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::RntoRefused])).await;
    server.write_file("in/a.xml", PARTNERS_FILE).unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.xml");
    let sha = make_file(&local, 5000, 4).await;
    let mut s = connect(&server, &config(&server)).await;

    let e = s
        .upload(&local, "/in", "a.xml", Some(sha))
        .await
        .unwrap_err();

    assert_eq!(e.reply().map(|r| r.code), Some(553), "{e}");
    assert_eq!(
        std::fs::read(server.path("in/a.xml")).unwrap(),
        PARTNERS_FILE
    );
    assert_eq!(
        received(&server.received_commands(), "DELE /in/a.xml"),
        Vec::<String>::new()
    );
    assert!(
        leftovers(&server.path("in")).is_empty(),
        "{:?}",
        std::fs::read_dir(server.path("in"))
            .unwrap()
            .collect::<Vec<_>>()
    );
    let names: Vec<String> = std::fs::read_dir(server.path("in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["a.xml"],
        "the moved-aside file is back, nothing else stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_will_not_rename_over_a_file_gets_it_replaced_without_a_gap() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::RntoNoOverwrite])).await;
    server.write_file("in/a.xml", PARTNERS_FILE).unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.xml");
    let sha = make_file(&local, 5000, 5).await;
    let mut s = connect(&server, &config(&server)).await;

    // overwrite: false -> the partner's file stays and the error says why.
    let keep = UploadOptions {
        expected_sha256: Some(sha),
        replace_existing: false,
        preserve_mtime: false,
        resume: false,
        part_key: None,
    };
    let e = s
        .upload_with(&local, "/in", "a.xml", &keep)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), FtpsErrorKind::TargetExists, "{e}");
    assert_eq!(
        std::fs::read(server.path("in/a.xml")).unwrap(),
        PARTNERS_FILE
    );

    // overwrite: true (the default) -> replaced; the old file was never deleted first.
    s.upload(&local, "/in", "a.xml", Some(sha)).await.unwrap();
    assert_eq!(hash_file(&server.path("in/a.xml")), sha);
    let commands = server.received_commands();
    let rnto: Vec<String> = received(&commands, "RNTO");
    assert!(
        rnto.iter().any(|c| c.ends_with(".ferry-old")),
        "the old file was moved aside first: {commands:#?}"
    );
    assert!(leftovers(&server.path("in")).is_empty());
    let names: Vec<String> = std::fs::read_dir(server.path("in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.xml"]);
}

// ---- data connections --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_on_the_control_connection_during_the_data_handshake_ends_the_wait() {
    let server = start(FtpServerOptions::misbehaving(&[
        Quirk::ReplyDuringDataHandshake,
    ]))
    .await;
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("a.xml");
    make_file(&local, 1000, 6).await;
    // The default timeouts (60 s for data) would be the wait without the race.
    let mut s = connect(&server, &config(&server)).await;

    let started = Instant::now();
    let e = s.list("/").await.unwrap_err();
    let listing_took = started.elapsed();
    let started = Instant::now();
    let u = s.upload(&local, "/", "a.xml", None).await.unwrap_err();
    let upload_took = started.elapsed();

    for (e, took) in [(&e, listing_took), (&u, upload_took)] {
        assert!(took < Duration::from_secs(2), "took {took:?}: {e}");
        assert_eq!(e.reply().map(|r| r.code), Some(425), "{e}");
        assert!(
            e.to_string()
                .contains("TLS negotiation on the data connection failed"),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
    }
    assert!(!server.path("a.xml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_without_close_notify_fails_and_leaves_nothing() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::CutDownloads])).await;
    server
        .write_file("out/big.xml", &vec![b'x'; 200_000])
        .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let mut s = connect(&server, &config(&server)).await;

    let e = s
        .download("/out", "big.xml", dest.path())
        .await
        .unwrap_err();

    assert_eq!(e.kind(), FtpsErrorKind::Truncated, "{e}");
    assert!(e.to_string().contains("100000"), "{e}");
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

/// Listeners on every port of the server's passive range at `ip`: a connection that
/// arrives there is one ferry should never have made.
fn decoys(ip: &str, ports: (u16, u16)) -> Vec<TcpListener> {
    (ports.0..=ports.1)
        .map(|port| {
            let l = TcpListener::bind(SocketAddr::new(ip.parse().unwrap(), port)).unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect()
}

fn connections_at(decoys: &[TcpListener]) -> usize {
    decoys.iter().filter(|l| l.accept().is_ok()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasv_address_other_than_the_peer_is_refused_not_dialled() {
    let mut opts = FtpServerOptions::new(ferry_tests::ftp::FtpServerKind::Pyftpdlib);
    opts.masquerade_address = Some("127.0.0.2".into());
    let server = start(opts).await;
    let watch = decoys("127.0.0.2", server.passive_ports);
    let mut cfg = config(&server);
    cfg.nat_workaround = false;
    cfg.prefer_epsv = false;
    let mut s = connect(&server, &cfg).await;

    let e = s.list("/").await.unwrap_err();

    assert_eq!(e.kind(), FtpsErrorKind::PassiveMode, "{e}");
    assert!(e.to_string().contains("127.0.0.2:"), "{e}");
    assert!(!e.is_transient(), "{e}");
    assert_eq!(
        connections_at(&watch),
        0,
        "ferry dialled the foreign address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epsv_goes_to_the_control_peer_whatever_pasv_would_say() {
    let mut opts = FtpServerOptions::new(ferry_tests::ftp::FtpServerKind::Pyftpdlib);
    opts.masquerade_address = Some("127.0.0.2".into());
    let server = start(opts).await;
    server.write_file("x.xml", b"<x/>").unwrap();
    let watch = decoys("127.0.0.2", server.passive_ports);
    let mut cfg = config(&server);
    cfg.nat_workaround = false;
    let mut s = connect(&server, &cfg).await;

    let entries = s.list("/").await.unwrap();

    assert!(s.uses_epsv());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(connections_at(&watch), 0);
}

// ---- listings ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlsd_advertised_but_refused_falls_back_to_list_for_the_session() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::MlsdRefused])).await;
    server.write_file("in/a.xml", b"<a/>").unwrap();
    server.write_file("in/b.xml", b"<bb/>").unwrap();
    let mut s = connect(&server, &config(&server)).await;

    let first = s.list("/in").await.unwrap();
    let second = s.list("/in").await.unwrap();

    for entries in [&first, &second] {
        let mut names: Vec<(&str, Option<u64>)> =
            entries.iter().map(|e| (e.name.as_str(), e.size)).collect();
        names.sort();
        assert_eq!(names, [("a.xml", Some(4)), ("b.xml", Some(5))]);
    }
    assert!(!s.uses_mlsd());
    let commands = server.received_commands();
    assert_eq!(received(&commands, "MLSD").len(), 1, "{commands:#?}");
    assert_eq!(received(&commands, "LIST").len(), 2, "{commands:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_over_the_cap_is_refused_with_a_clear_error() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::ListEndless])).await;
    let mut cfg = config(&server);
    cfg.listing_limits = ListingLimits {
        max_bytes: 64 * 1024 * 1024,
        max_entries: 20_000,
    };
    let mut s = connect(&server, &cfg).await;

    let e = s.list("/").await.unwrap_err();
    assert_eq!(e.kind(), FtpsErrorKind::ListingTooLarge, "{e}");
    assert!(e.to_string().contains("20000 entries"), "{e}");
    assert!(!e.is_transient());

    // The byte cap stops it too, and the session is still usable after either.
    cfg.listing_limits = ListingLimits {
        max_bytes: 256 * 1024,
        max_entries: 1_000_000,
    };
    let mut s = connect(&server, &cfg).await;
    let e = s.list("/").await.unwrap_err();
    assert_eq!(e.kind(), FtpsErrorKind::ListingTooLarge, "{e}");
    assert!(e.to_string().contains("262144 bytes"), "{e}");
    let e = s.list("/").await.unwrap_err();
    assert_eq!(e.kind(), FtpsErrorKind::ListingTooLarge, "{e}");
}

// ---- through the flow engine -------------------------------------------------------------

fn download_flow(extra: &str) -> FlowSpec<'_> {
    FlowSpec {
        direction: "download",
        remote: "/out",
        extra,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_trickles_ends_at_the_run_deadline_and_frees_the_flow() {
    let mut opts = FtpServerOptions::misbehaving(&[Quirk::ListTrickle]);
    opts.trickle = Duration::from_secs(100);
    let bed = Bed::start_with("trickle", opts).await;
    bed.server.write_file("out/a.xml", b"<a/>").unwrap();
    bed.server.write_file("out/b.xml", b"<b/>").unwrap();
    let flow = download_flow("    run_timeout: 3s\n");
    let mut opts = options("w1");
    opts.flow_lock_wait = Duration::from_millis(200);
    let engine = bed.engine(bed.config(&flow, None), opts).await;

    let e = run_flow(&engine, "f", None, "run-1", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), TransferErrorKind::Partner, "{e}");
    assert!(e.to_string().contains("time limit"), "{e}");

    // The flow lock went with the run: the next run is not "busy" (it meets the same
    // trickle and the same deadline).
    let again = run_flow(&engine, "f", None, "run-2", None)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), TransferErrorKind::Partner, "{again}");
    assert!(files_in(&bed.local()).is_empty());
}

/// A download that ends with `close_notify` and brings the listed size needs no `SIZE`;
/// a listing that shows wrong sizes costs a `SIZE` per file, never a wrong file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_with_wrong_sizes_costs_a_size_command_never_a_wrong_file() {
    for (quirks, sizes_asked) in [(&[][..], 0), (&[Quirk::ListedSizesOff][..], 2)] {
        let bed = Bed::start_with("sizes", FtpServerOptions::misbehaving(quirks)).await;
        let (a, b) = (vec![b'a'; 50_000], vec![b'b'; 3]);
        bed.server.write_file("out/a.xml", &a).unwrap();
        bed.server.write_file("out/b.xml", &b).unwrap();
        let engine = bed.engine_for(&download_flow("")).await;

        let report = run_flow(&engine, "f", None, "run-1", None).await;
        let report = report.unwrap_or_else(|e| panic!("{e}\n{}", bed.server.log_text()));

        assert!(report.is_success(), "{quirks:?}: {}", report.summary_line());
        assert_eq!(std::fs::read(bed.local().join("a.xml")).unwrap(), a);
        assert_eq!(std::fs::read(bed.local().join("b.xml")).unwrap(), b);
        let commands = bed.server.received_commands();
        assert_eq!(received(&commands, "RETR").len(), 2, "{commands:?}");
        assert_eq!(
            received(&commands, "SIZE").len(),
            sizes_asked,
            "{quirks:?}: {commands:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_is_a_failed_row_and_nothing_under_its_final_name() {
    let bed = Bed::start_with("cut", FtpServerOptions::misbehaving(&[Quirk::CutDownloads])).await;
    bed.server
        .write_file("out/a.xml", &vec![b'a'; 50_000])
        .unwrap();
    let flow = download_flow("    delete_after_download: true\n    max_attempts: 1\n");
    let engine = bed.engine_for(&flow).await;

    let report = run_flow(&engine, "f", None, "run-1", None).await.unwrap();

    assert_eq!(report.files.len(), 1, "{report:#?}");
    let row = &report.files[0];
    assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
    let error = row.error.as_ref().unwrap();
    assert_eq!(error.kind, FileErrorKind::Partner(FtpsErrorKind::Truncated));
    assert_eq!(row.remote_path.as_deref(), Some("/out/a.xml"));
    assert_eq!(row.local_path, None, "nothing was delivered locally");
    // No final name; what was received is kept only as the hidden part a later attempt
    // continues (`ftps/download_resume.rs`).
    let left: Vec<String> = std::fs::read_dir(bed.local())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter()
            .all(|name| name.starts_with(".a.xml.") && name.ends_with("k.ferry-part")),
        "no final file, at most the kept part: {left:?}"
    );
    assert!(
        bed.server.path("out/a.xml").exists(),
        "the partner's file is not deleted"
    );
}
