//! A partner's connection options for servers that need them: a bandwidth cap shared by
//! the partner's sessions (`max_bytes_per_second`), `list_hidden` (`LIST -a`) and
//! `listing_encoding` (Latin-1 names), and `disable_epsv` / `disable_mlsd` for servers whose
//! `EPSV` or `MLSD` are listed but broken. The cap is checked as a lower bound on the time
//! (a capped transfer cannot be faster than its cap), never an upper one.

use std::time::Instant;

use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, all_names, download, files_in, options, run, upload, write_files};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions, Quirk};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_cap_of_10_mb_per_second_keeps_a_50_mib_upload_above_4_seconds() {
    let bed = Bed::start("cap-up", FtpServerKind::Vsftpd).await;
    let sent = write_files(&bed.local(), 1, 50 * MIB);
    let config = bed.config_with_connection(&upload(""), "    max_bytes_per_second: 10000000\n");
    let engine = bed.engine(config, options("w1")).await;

    let started = Instant::now();
    let report = run(&engine, "run-1").await;
    let took = started.elapsed();

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(bed.remote_files("in"), sent, "every byte arrived");
    assert!(
        took.as_secs_f64() > 4.0,
        "50 MiB at 10 MB/s took only {took:?}"
    );
}

#[tokio::test]
async fn the_cap_is_shared_by_the_partners_sessions_and_holds_downloads_too() {
    let bed = Bed::start("cap-down", FtpServerKind::Vsftpd).await;
    // Four files of 5 MiB over up to four sessions: 20 MiB at 5 MB/s together is >= 4 s;
    // four separate caps would take about a second.
    for i in 0..4 {
        let bytes: Vec<u8> = (0..5 * MIB).map(|_| rand::random::<u8>()).collect();
        bed.server
            .write_file(&format!("out/f{i}.xml"), &bytes)
            .expect("remote file");
    }
    let config = bed.config_with_connection(&download(""), "    max_bytes_per_second: 5000000\n");
    let engine = bed.engine(config, options("w1")).await;

    let started = Instant::now();
    let report = run(&engine, "run-1").await;
    let took = started.elapsed();

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(files_in(&bed.local()), bed.remote_files("out"));
    assert!(
        took.as_secs_f64() > 3.5,
        "20 MiB at 5 MB/s took only {took:?}"
    );
}

#[tokio::test]
async fn disable_epsv_sets_up_every_data_connection_with_pasv() {
    let bed = Bed::start_with("no-epsv", FtpServerOptions::new(FtpServerKind::Pyftpdlib)).await;
    let sent = write_files(&bed.local(), 2, 1_000);
    let config = bed.config_with_connection(&upload(""), "    disable_epsv: true\n");
    let engine = bed.engine(config, options("w1")).await;

    let report = run(&engine, "run-1").await;

    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(bed.remote_files("in"), sent);
    let commands = bed.server.received_commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("EPSV")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("PASV")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn disable_mlsd_lists_with_list_although_feat_offers_mlsd() {
    let bed = Bed::start_with("no-mlsd", FtpServerOptions::new(FtpServerKind::Pyftpdlib)).await;
    bed.server
        .write_file("out/a.xml", b"<a/>")
        .expect("remote file");
    let config = bed.config_with_connection(&download(""), "    disable_mlsd: true\n");
    let engine = bed.engine(config, options("w1")).await;

    let report = run(&engine, "run-1").await;

    assert_eq!(
        report.files[0].outcome,
        Outcome::Transferred,
        "{:#?}",
        report.files
    );
    let commands = bed.server.received_commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("MLSD")),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| c.starts_with("LIST")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn list_hidden_lets_a_download_take_files_whose_names_start_with_a_dot() {
    // vsftpd lists with LIST (it has no MLSD) and shows dot files only for `LIST -a`.
    let bed = Bed::start("list-hidden", FtpServerKind::Vsftpd).await;
    for name in ["a.xml", ".b.xml", ".c.xml.0123456789ab.ferry-part"] {
        bed.server
            .write_file(&format!("out/{name}"), name.as_bytes())
            .expect("remote file");
    }

    let plain = bed.engine_for(&download("")).await;
    let report = run(&plain, "run-1").await;
    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        all_names(&bed.local()),
        ["a.xml"],
        "plain LIST shows no dot file"
    );

    let config = bed.config_with_connection(&download(""), "    list_hidden: true\n");
    let hidden = bed.engine(config, options("w1")).await;
    let report = run(&hidden, "run-2").await;
    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        report
            .files
            .iter()
            .filter(|row| row.outcome == Outcome::Transferred)
            .map(|row| row.name.as_str())
            .collect::<Vec<_>>(),
        [".b.xml"],
        "with LIST -a the dot file is seen and taken"
    );
    assert_eq!(all_names(&bed.local()), [".b.xml", "a.xml"]);
    assert_eq!(
        std::fs::read(bed.local().join(".b.xml")).expect("downloaded"),
        b".b.xml"
    );
}

#[tokio::test]
async fn listing_encoding_latin1_moves_files_whose_names_are_latin1_bytes() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let bed = Bed::start_with(
        "latin1",
        FtpServerOptions::misbehaving(&[Quirk::Latin1Names]),
    )
    .await;
    // `café.xml` as an old server's Latin-1 disk holds it: `caf\xE9.xml`.
    let placeholder = bed
        .server
        .write_file("out/placeholder.xml", b"<menu/>")
        .expect("remote file");
    let latin1 = placeholder.with_file_name(OsStr::from_bytes(b"caf\xe9.xml"));
    std::fs::rename(&placeholder, &latin1).expect("the Latin-1 name");
    let delete = download("    delete_after_download: true\n");

    // UTF-8, the default: the name is skipped (never guessed) and the file stays.
    let utf8 = bed.engine_for(&delete).await;
    let report = run(&utf8, "run-1").await;
    assert!(report.is_success(), "{:#?}", report.files);
    assert!(report.files.is_empty(), "{:#?}", report.files);
    assert!(latin1.exists());

    // Latin-1: fetched under its UTF-8 name here, deleted there by its own bytes.
    let config = bed.config_with_connection(&delete, "    listing_encoding: latin1\n");
    let engine = bed.engine(config, options("w1")).await;
    let report = run(&engine, "run-2").await;
    assert!(report.is_success(), "{:#?}", report.files);
    assert_eq!(
        std::fs::read(bed.local().join("café.xml")).expect("downloaded"),
        b"<menu/>"
    );
    assert!(
        !latin1.exists(),
        "deleted on the partner by its Latin-1 name"
    );

    // Uploads write Latin-1 names; a character Latin-1 lacks fails that file, by name.
    // (The download above was flow `f` too: `café.xml` is already recorded.)
    std::fs::write(bed.local().join("né.xml"), b"<born/>").expect("local file");
    std::fs::write(bed.local().join("5€.xml"), b"<euro/>").expect("local file");
    let config = bed.config_with_connection(&upload(""), "    listing_encoding: latin1\n");
    let engine = bed.engine(config, options("w1")).await;
    let report = run(&engine, "run-3").await;
    let sent = bed.server.path("in").join(OsStr::from_bytes(b"n\xe9.xml"));
    assert_eq!(std::fs::read(&sent).expect("uploaded"), b"<born/>");
    let euro = report
        .files
        .iter()
        .find(|row| row.name == "5€.xml")
        .expect("a row for 5€.xml");
    assert_eq!(euro.outcome, Outcome::Failed, "{euro:#?}");
    let error = euro.error.as_ref().expect("its error");
    assert!(error.message.contains("U+20AC"), "{error:?}");
    assert!(bed.local().join("5€.xml").exists(), "kept");
}
