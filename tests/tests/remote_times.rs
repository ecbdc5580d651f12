//! A remote file's modification time, as a download's identity needs it: real servers that
//! list in their local time (vsftpd with `use_localtime=YES`), servers without `MLSD` whose
//! listings give the minute or the day, `MDTM` for the exact second, and hostile `MDTM`
//! replies.
//!
//! Each test compares what ferry reports with the file's real modification time on the
//! server's disk, which is what a replaced file changes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_shared::ftps::{FtpsErrorKind, ProbeStep, RemoteEntry, TimePrecision, probe};
use ferry_tests::ftp::{FtpServer, FtpServerKind, FtpServerOptions, Quirk};
use ferry_tests::ftps_client::{config, connect, server, start};

/// Kathmandu is 5:45 ahead of UTC all year (no daylight saving since 1986): a zone whose
/// offset is neither zero nor whole hours.
const ZONE: &str = "Asia/Kathmandu";
const ZONE_OFFSET: u64 = 5 * 3600 + 45 * 60;

/// Two files on `server`: `recent.csv` written ten minutes ago at 17 seconds past the
/// minute, `old.csv` written in July 2024 (listed with a year, no time). Returns their
/// modification times.
fn write_files(server: &FtpServer) -> (SystemTime, SystemTime) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let recent = UNIX_EPOCH + Duration::from_secs(now / 60 * 60 - 600 + 17);
    // 2024-07-15T22:30:05Z: already 16 July in Kathmandu.
    let old = UNIX_EPOCH + Duration::from_secs(1_721_082_605);
    server.write_file("in/recent.csv", b"a;b\n").unwrap();
    server.write_file("in/old.csv", b"c;d\n").unwrap();
    server.set_modified("in/recent.csv", recent).unwrap();
    server.set_modified("in/old.csv", old).unwrap();
    (recent, old)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn named<'a>(entries: &'a [RemoteEntry], name: &str) -> &'a RemoteEntry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {entries:?}"))
}

fn listed_secs(entry: &RemoteEntry) -> u64 {
    secs(SystemTime::from(entry.modified.expect("a listed time")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_listing_local_time_is_read_in_the_partners_listing_timezone() {
    let server = start(FtpServerOptions {
        local_timezone: Some(ZONE.to_string()),
        ..FtpServerOptions::new(FtpServerKind::Vsftpd)
    })
    .await;
    let (recent, old) = write_files(&server);

    // Without the setting, the server's wall-clock is taken for UTC: 5:45 off.
    let mut utc = connect(&server, &config(&server)).await;
    let entries = utc.list("/in").await.unwrap();
    let wrong = named(&entries, "recent.csv");
    assert_eq!(listed_secs(wrong), secs(recent) / 60 * 60 + ZONE_OFFSET);
    utc.quit().await;

    let mut cfg = config(&server);
    cfg.listing_timezone = ZONE.parse().unwrap();
    cfg.mdtm_timezone = ZONE.parse().unwrap();
    let mut s = connect(&server, &cfg).await;
    let mut entries = s.list("/in").await.unwrap();

    // LIST: the minute of the real time, and the local day of the older file.
    let r = named(&entries, "recent.csv");
    assert_eq!(r.precision, TimePrecision::Minute);
    assert_eq!(listed_secs(r), secs(recent) / 60 * 60, "{r:?}");
    let o = named(&entries, "old.csv");
    assert_eq!(o.precision, TimePrecision::Day);
    let local_midnight = (secs(old) + ZONE_OFFSET) / 86_400 * 86_400 - ZONE_OFFSET;
    assert_eq!(listed_secs(o), local_midnight, "{o:?}");

    // MDTM: the exact second, for one path and for every listed entry.
    assert!(s.offers_mdtm());
    let exact = s.modified_time("/in/recent.csv").await.unwrap();
    assert_eq!(exact.map(SystemTime::from), Some(recent));
    for entry in &mut entries {
        s.refine_modified("/in", entry).await.unwrap();
    }
    for (name, real) in [("recent.csv", recent), ("old.csv", old)] {
        let e = named(&entries, name);
        assert_eq!(e.precision, TimePrecision::Exact, "{e:?}");
        assert_eq!(e.modified.map(SystemTime::from), Some(real), "{e:?}");
    }
    s.quit().await;

    // The probe shows one file's exact time beside the listing, to check the zones with.
    let mut steps: Vec<ProbeStep> = Vec::new();
    probe(&cfg, Some("/in"), &mut |step| steps.push(step))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    let mdtm = steps
        .iter()
        .find(|s| s.name == "mdtm")
        .expect("an mdtm step");
    assert!(mdtm.detail.contains(ZONE), "{mdtm:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_mlsd_lists_minutes_and_days_and_mdtm_gives_the_second() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::MlsdRefused])).await;
    let (recent, old) = write_files(&server);
    let mut s = connect(&server, &config(&server)).await;

    let mut entries = s.list("/in").await.unwrap();

    assert!(!s.uses_mlsd());
    let r = named(&entries, "recent.csv");
    assert_eq!(r.precision, TimePrecision::Minute);
    assert_eq!(listed_secs(r), secs(recent) / 60 * 60);
    let o = named(&entries, "old.csv");
    assert_eq!(o.precision, TimePrecision::Day);
    assert_eq!(listed_secs(o), secs(old) / 86_400 * 86_400);
    for entry in &mut entries {
        s.refine_modified("/in", entry).await.unwrap();
    }
    assert_eq!(
        named(&entries, "recent.csv").modified.map(SystemTime::from),
        Some(recent)
    );
    assert_eq!(
        named(&entries, "old.csv").modified.map(SystemTime::from),
        Some(old)
    );
}

/// With `MLSD` the listed time is already exact: refining costs no command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlsd_times_are_exact_and_need_no_mdtm() {
    for kind in [
        FtpServerKind::Proftpd,
        FtpServerKind::PureFtpd,
        FtpServerKind::Pyftpdlib,
    ] {
        let server = server(kind).await;
        let (recent, old) = write_files(&server);
        server.create_dir("in/sub").unwrap();
        let mut s = connect(&server, &config(&server)).await;

        let mut entries = s.list("/in").await.unwrap();

        assert!(s.uses_mlsd(), "{kind:?}");
        for (name, real) in [("recent.csv", recent), ("old.csv", old)] {
            let e = named(&entries, name);
            assert_eq!(e.precision, TimePrecision::Exact, "{kind:?}: {e:?}");
            assert_eq!(e.modified.map(SystemTime::from), Some(real), "{kind:?}");
        }
        for entry in &mut entries {
            s.refine_modified("/in", entry).await.unwrap();
        }
        if kind == FtpServerKind::Pyftpdlib {
            let commands = server.received_commands();
            assert!(
                !commands.iter().any(|c| c.starts_with("MDTM")),
                "{commands:#?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mdtm_replies_are_errors_and_the_session_goes_on() {
    let server = start(FtpServerOptions::misbehaving(&[Quirk::MdtmEchoesName])).await;
    server.write_file("in/a.csv", b"a;b\n").unwrap();
    let mut s = connect(&server, &config(&server)).await;

    // The quirk answers `213 NAME`: each name is the reply under test.
    for reply in [
        "garbage",
        "99991231235959",
        "00000101000000",
        "00000000000000",
        "19000101000000",
        "191261204031017",
        "20261304031017",
        "2026120403101",
        "20261204031017 trailing",
    ] {
        let e = s
            .modified_time(&format!("/in/{reply}"))
            .await
            .expect_err(reply);
        assert_eq!(e.kind(), FtpsErrorKind::Protocol, "{reply}: {e}");
        assert!(!e.is_transient(), "{reply}: {e}");
        assert!(e.to_string().contains(reply), "{reply}: {e}");
    }
    // A well-formed reply is read, and the session is still in step for a listing.
    let t = s.modified_time("/in/20261204031017.250").await.unwrap();
    assert_eq!(
        t.map(|t| secs(SystemTime::from(t))),
        Some(1_796_353_817),
        "2026-12-04T03:10:17Z"
    );
    let entries = s.list("/in").await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");

    // A relative path of digits and a space is never sent: vsftpd would read it as a
    // request to set the time of another file.
    let none = s.modified_time("20261204031017 a.csv").await.unwrap();
    assert_eq!(none, None);
    let commands = server.received_commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("MDTM 2026")),
        "{commands:#?}"
    );
}
