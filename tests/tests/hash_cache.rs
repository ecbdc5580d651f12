//! An upload flow that keeps its files reuses each file's hash while the file is unchanged
//! (`transfer/hash_cache.rs`), and never mistakes a changed file for a delivered one: a
//! file rewritten in place, with its size and modification time put back, is sent again.

use std::time::Duration;

use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, names_with, run, sha256_hex, upload};
use ferry_tests::ftp::FtpServerKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_with_its_size_and_time_put_back_is_sent_again() {
    let bed = Bed::start("hash-cache", FtpServerKind::Vsftpd).await;
    let changed = bed.local().join("a.xml");
    std::fs::write(&changed, b"<a>first</a>").expect("local");
    std::fs::write(bed.local().join("b.xml"), b"<b/>").expect("local");
    // Past the cache's settling margin, so that the first run caches both hashes.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let engine = bed.engine_for(&upload("")).await;

    let first = run(&engine, "run-1").await;
    assert_eq!(names_with(&first, Outcome::Transferred), ["a.xml", "b.xml"]);
    let second = run(&engine, "run-2").await;
    assert_eq!(names_with(&second, Outcome::Duplicate), ["a.xml", "b.xml"]);

    // Same size, same modification time, other bytes.
    let modified = std::fs::metadata(&changed)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&changed, b"<a>FIRST</a>").expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(&changed)
        .and_then(|f| f.set_modified(modified))
        .expect("put the time back");

    let third = run(&engine, "run-3").await;
    assert_eq!(names_with(&third, Outcome::Transferred), ["a.xml"]);
    assert_eq!(names_with(&third, Outcome::Duplicate), ["b.xml"]);
    assert_eq!(
        bed.remote_files("in").get("a.xml"),
        Some(&sha256_hex(b"<a>FIRST</a>")),
        "the partner holds the new bytes"
    );
}
