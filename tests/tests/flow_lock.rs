//! Waiting for a flow lock in the real Redis: the release wakes a waiter (no polling), the
//! wait never blocks the store's shared connection, a dead holder is still replaced by the
//! slow safety-net poll; and a queued run that a newer complete run covered finishes at once
//! without touching the partner.
//!
//! The lock and coverage tests run on Redis and on the embedded store (`redis::` and
//! `embedded::`, see `ferry_tests::on_both_stores!`), where the wake-up is in-process; the two
//! engine tests run on Redis.

use std::time::Duration;

use chrono::Utc;
use ferry_shared::idempotency::{CLOCK_MARGIN, FullRun, LockWait, Store, Unlocked};
use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, names_with, upload, write_files};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::store_target::{Target, TestStore};

const LEASE: Duration = Duration::from_secs(60);
/// The safety-net poll of the waiters in the wake-up tests.
const SLOW_POLL: Duration = Duration::from_secs(600);
/// How long a waiter of the wake-up tests may wait for the lock (beyond [`SLOW_POLL`], so
/// that the wait itself never ends a waiter's sleep).
const MAX_WAIT: Duration = Duration::from_secs(1200);
/// How long the wake-up tests give a waiter once the lock is released: a tenth of its
/// safety-net poll. Woken, it takes milliseconds; unwoken, it would sleep out its poll.
const WOKEN_WITHIN: Duration = Duration::from_secs(60);

async fn store_polling_every(prefix: &TestStore, poll: Duration) -> Store {
    let mut config = prefix.config();
    config.flow_lock_poll = poll;
    TestStore::connect(&config).await
}

async fn a_waiter_is_woken_by_the_release_and_the_shared_connection_stays_free(target: Target) {
    let prefix = TestStore::new(target, "lock-wake");
    let holder = prefix.store().await;
    let waiter_store = store_polling_every(&prefix, SLOW_POLL).await;
    let lock = holder
        .flow_locks()
        .try_lock("flow-w", "holder", LEASE)
        .await
        .unwrap()
        .expect("free lock");
    let waiter = {
        let store = waiter_store.clone();
        tokio::spawn(async move {
            store
                .flow_locks()
                .wait("flow-w", "waiter", LEASE, MAX_WAIT)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the waiter blocks on its wake list, the same store (the same shared connection)
    // answers at once: the blocking command runs on a connection of its own.
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(3), waiter_store.ping())
            .await
            .expect("the shared connection is not blocked by the waiter")
            .unwrap();
    }
    assert!(
        !waiter.is_finished(),
        "the waiter waits while the lock is held"
    );
    assert_eq!(
        holder.flow_locks().unlock(lock).await.unwrap(),
        Unlocked::Released
    );
    // Only the release's wake-up can hand it the lock before its safety-net poll.
    let woken = tokio::time::timeout(WOKEN_WITHIN, waiter)
        .await
        .expect("the release wakes the waiter (it would sleep out its 10-minute poll)");
    let LockWait::Acquired(taken) = woken.unwrap().unwrap() else {
        panic!("the waiter must get the lock once it is released");
    };
    assert!(taken.owner().starts_with("waiter/"));
    assert_eq!(
        waiter_store.flow_locks().unlock(taken).await.unwrap(),
        Unlocked::Released
    );
}

async fn each_release_hands_the_lock_to_the_next_of_several_waiters(target: Target) {
    let prefix = TestStore::new(target, "lock-queue");
    let holder = prefix.store().await;
    let lock = holder
        .flow_locks()
        .try_lock("flow-q", "holder", LEASE)
        .await
        .unwrap()
        .expect("free lock");
    let mut waiters = Vec::new();
    for n in 0..4 {
        let store = store_polling_every(&prefix, SLOW_POLL).await;
        waiters.push(tokio::spawn(async move {
            let wait = store
                .flow_locks()
                .wait("flow-q", &format!("waiter-{n}"), LEASE, MAX_WAIT)
                .await
                .unwrap();
            let LockWait::Acquired(lock) = wait else {
                panic!("waiter {n} never got the lock: {wait:?}");
            };
            // Hold it a moment, then hand it on with a release (which wakes the next).
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                store.flow_locks().unlock(lock).await.unwrap(),
                Unlocked::Released
            );
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        holder.flow_locks().unlock(lock).await.unwrap(),
        Unlocked::Released
    );
    let mut served = Vec::new();
    for waiter in waiters {
        let woken = tokio::time::timeout(WOKEN_WITHIN, waiter)
            .await
            .expect("each release wakes the next waiter (it would sleep out its poll)");
        served.push(woken.expect("waiter"));
    }
    served.sort_unstable();
    assert_eq!(served, [0, 1, 2, 3], "every waiter got the lock in turn");
}

async fn a_holder_that_dies_without_releasing_is_replaced_by_the_safety_net_poll(target: Target) {
    let prefix = TestStore::new(target, "lock-dead");
    let holder = prefix.store().await;
    let waiter = store_polling_every(&prefix, Duration::from_millis(200)).await;
    // Taken with a short lease and never released (no wake-up will come).
    let dead = holder
        .flow_locks()
        .try_lock("flow-d", "holder", Duration::from_millis(600))
        .await
        .unwrap()
        .expect("free lock");
    let wait = waiter
        .flow_locks()
        .wait("flow-d", "waiter", LEASE, Duration::from_secs(30))
        .await
        .unwrap();
    let LockWait::Acquired(taken) = wait else {
        panic!("the lock expired: the waiter must get it: {wait:?}");
    };
    assert_eq!(
        holder.flow_locks().unlock(dead).await.unwrap(),
        Unlocked::AlreadyLost,
        "no longer ours"
    );
    assert_eq!(
        waiter.flow_locks().unlock(taken).await.unwrap(),
        Unlocked::Released
    );
}

async fn only_a_run_that_started_after_the_request_covers_it(target: Target) {
    let prefix = TestStore::new(target, "coverage");
    let store = prefix.store().await;
    let started = Utc::now();
    let margin = chrono::Duration::from_std(CLOCK_MARGIN).unwrap();
    let second = chrono::Duration::seconds(1);
    assert!(
        store
            .full_runs()
            .covering("flow-c", started)
            .await
            .unwrap()
            .is_none()
    );
    let full = FullRun {
        run_id: "full-1".into(),
        started_at: started,
        finished_at: started + second,
    };
    store.full_runs().record("flow-c", &full).await.unwrap();
    // Requested before the start (beyond the clock margin): covered.
    let covering = store
        .full_runs()
        .covering("flow-c", started - margin - second)
        .await
        .unwrap();
    assert_eq!(covering.as_ref(), Some(&full));
    // Requested within the margin, or after the start: not covered.
    for requested in [started - margin, started, started + second] {
        assert!(
            store
                .full_runs()
                .covering("flow-c", requested)
                .await
                .unwrap()
                .is_none(),
            "requested at {requested}"
        );
    }
    // An older run recorded late never replaces a newer one.
    let older = FullRun {
        run_id: "older".into(),
        started_at: started - second * 10,
        finished_at: started + second * 2,
    };
    store.full_runs().record("flow-c", &older).await.unwrap();
    let covering = store
        .full_runs()
        .covering("flow-c", started - margin - second)
        .await
        .unwrap();
    assert_eq!(covering.map(|r| r.run_id), Some("full-1".to_owned()));
    // Other flows are not covered by it.
    assert!(
        store
            .full_runs()
            .covering("flow-other", started - margin * 10)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_queued_run_covered_by_a_newer_full_run_finishes_at_once_without_the_partner() {
    let bed = Bed::start("covered", FtpServerKind::Vsftpd).await;
    let engine = bed.engine_for(&upload("")).await;
    let sent = write_files(&bed.local(), 3, 64);
    // Two runs are requested (queued behind the flow lock, say): one of every file, one of
    // a single file.
    let requested = Utc::now();
    let one_file = ["f001.xml".to_owned()];
    tokio::time::sleep(CLOCK_MARGIN + Duration::from_millis(200)).await;
    // A newer run of every file starts after both were requested, and settles each file.
    let newer = engine
        .run_flow_requested("f", None, "newer", Some(Utc::now()), None)
        .await
        .unwrap();
    assert_eq!(names_with(&newer, Outcome::Transferred).len(), 3);
    assert!(newer.covered_by.is_none());
    assert_eq!(bed.remote_files("in"), sent);
    let log_before = bed.server.log_text();

    for (run_id, files) in [("queued-all", None), ("queued-one", Some(&one_file[..]))] {
        let report = engine
            .run_flow_requested("f", files, run_id, Some(requested), None)
            .await
            .unwrap();
        let covering = report
            .covered_by
            .as_ref()
            .unwrap_or_else(|| panic!("{run_id} is covered: {report:?}"));
        assert_eq!(covering.run_id, "newer");
        assert!(report.files.is_empty(), "{run_id}: no rows: {report:?}");
        assert!(report.all_settled());
        assert!(
            report
                .summary_line()
                .contains("nothing left to do: run newer"),
            "{}",
            report.summary_line()
        );
    }
    assert_eq!(
        bed.server.log_text(),
        log_before,
        "a covered run never talks to the partner"
    );

    // A run requested after the newer run started is not covered: it runs (duplicates).
    let later = engine
        .run_flow_requested("f", None, "later", Some(Utc::now()), None)
        .await
        .unwrap();
    assert!(later.covered_by.is_none());
    assert_eq!(names_with(&later, Outcome::Duplicate).len(), 3);
}

#[tokio::test]
async fn a_run_of_named_files_never_covers_another_run() {
    let bed = Bed::start("covered-partial", FtpServerKind::Vsftpd).await;
    let engine = bed.engine_for(&upload("")).await;
    write_files(&bed.local(), 2, 64);
    let requested = Utc::now();
    tokio::time::sleep(CLOCK_MARGIN + Duration::from_millis(200)).await;
    // A newer run, but only of one named file: it saw one file, not every one.
    let partial = engine
        .run_flow_requested(
            "f",
            Some(&["f000.xml".to_owned()]),
            "partial",
            Some(Utc::now()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(names_with(&partial, Outcome::Transferred), ["f000.xml"]);
    let queued = engine
        .run_flow_requested("f", None, "queued", Some(requested), None)
        .await
        .unwrap();
    assert!(queued.covered_by.is_none(), "{queued:?}");
    assert_eq!(names_with(&queued, Outcome::Transferred), ["f001.xml"]);
    assert_eq!(names_with(&queued, Outcome::Duplicate), ["f000.xml"]);
}

ferry_tests::on_both_stores!(
    a_waiter_is_woken_by_the_release_and_the_shared_connection_stays_free,
    each_release_hands_the_lock_to_the_next_of_several_waiters,
    a_holder_that_dies_without_releasing_is_replaced_by_the_safety_net_poll,
    only_a_run_that_started_after_the_request_covers_it,
);
