//! Scheduler ticks in the real Redis: the two-state claim (claimed, then published) that lets
//! any replica publish a tick whose claimant crashed or gave up, and never publishes a tick
//! twice while its claimant is alive. Every test runs on Redis and on the embedded store
//! (`redis::` and `embedded::`, see `ferry_tests::on_both_stores!`).
//!
//! The scheduler itself, with RabbitMQ down across a tick, is in `scheduler_outage.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_shared::idempotency::{Store, TickClaim, TickPublished};
use ferry_tests::store_target::{Target, TestStore};

const LONG: Duration = Duration::from_secs(3600);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("RFC 3339 time")
}

fn tick_key(prefix: &TestStore, flow: &str, tick: DateTime<Utc>) -> String {
    format!(
        "{}:{{flow:{flow}}}:tick:{}",
        prefix.prefix,
        tick.timestamp()
    )
}

async fn pending(store: &Store, flow: &str) -> Vec<DateTime<Utc>> {
    store.ticks().pending(flow).await.expect("pending ticks")
}

async fn each_scheduler_tick_is_claimed_by_exactly_one_replica(target: Target) {
    let prefix = TestStore::new(target, "tick");
    let replicas = [
        prefix.store().await,
        prefix.store().await,
        prefix.store().await,
    ];
    for tick in [
        "2026-11-24T08:00:00Z",
        "2026-11-24T08:05:00Z",
        "2026-11-24T08:10:00Z",
    ] {
        let t = at(tick);
        let (a, b, c) = tokio::join!(
            replicas[0].ticks().claim("flow-t", t, "s1", LONG, LONG),
            replicas[1].ticks().claim("flow-t", t, "s2", LONG, LONG),
            replicas[2].ticks().claim("flow-t", t, "s3", LONG, LONG),
        );
        let mut results = [a.unwrap(), b.unwrap(), c.unwrap()];
        let winners = results
            .iter()
            .filter(|r| matches!(r, TickClaim::Won(_)))
            .count();
        assert_eq!(winners, 1, "tick {tick}: {results:?}");
        let others = results
            .iter()
            .filter(|r| matches!(r, TickClaim::ClaimedByOtherReplica { .. }))
            .count();
        assert_eq!(others, 2, "tick {tick}: {results:?}");
        let index = results
            .iter()
            .position(|r| matches!(r, TickClaim::Won(_)))
            .expect("a winner");
        let TickClaim::Won(lease) = std::mem::replace(&mut results[index], TickClaim::Expired)
        else {
            unreachable!()
        };
        assert_eq!(pending(&replicas[0], "flow-t").await, [t]);
        assert_eq!(lease.published("run").await.unwrap(), TickPublished::Marked);
        assert!(pending(&replicas[0], "flow-t").await.is_empty());
        // Later attempts (a replica catching up, a retry) find it published.
        for replica in &replicas {
            let again = replica.ticks().claim("flow-t", t, "s9", LONG, LONG).await;
            assert!(
                matches!(again, Ok(TickClaim::AlreadyPublished)),
                "{again:?}"
            );
            let retried = replica.ticks().retry("flow-t", t, "s9", LONG).await;
            assert!(
                matches!(retried, Ok(TickClaim::AlreadyPublished)),
                "{retried:?}"
            );
        }
    }
    // Ticks of another flow are independent.
    assert!(matches!(
        replicas[0]
            .ticks()
            .claim("flow-u", at("2026-11-24T08:00:00Z"), "s1", LONG, LONG)
            .await,
        Ok(TickClaim::Won(_))
    ));
}

async fn a_tick_whose_replica_died_before_publishing_is_taken_over_once_stale(target: Target) {
    let prefix = TestStore::new(target, "tick-stale");
    let (a, b, c) = (
        prefix.store().await,
        prefix.store().await,
        prefix.store().await,
    );
    let stale = Duration::from_millis(800);
    let t = at("2026-11-24T09:00:00Z");
    let TickClaim::Won(dead) = a
        .ticks()
        .claim("flow-s", t, "a", LONG, stale)
        .await
        .unwrap()
    else {
        panic!("a fresh tick is won");
    };
    // Replica a "crashes" here: it never publishes, never renews.
    assert_eq!(pending(&b, "flow-s").await, [t], "the claim is pending");
    match b.ticks().retry("flow-s", t, "b", stale).await.unwrap() {
        TickClaim::ClaimedByOtherReplica { owner, .. } => assert_eq!(owner, dead.owner()),
        other => panic!("a fresh claim is left to its replica: {other:?}"),
    }
    tokio::time::sleep(stale + Duration::from_millis(200)).await;
    let lease = match b.ticks().retry("flow-s", t, "b", stale).await.unwrap() {
        TickClaim::TookOver {
            lease,
            previous_owner,
            stale_for,
        } => {
            assert_eq!(previous_owner, dead.owner());
            assert!(stale_for >= stale, "{stale_for:?}");
            lease
        }
        other => panic!("a stale claim is taken over: {other:?}"),
    };
    // Exactly one replica takes it over: the new claim is fresh.
    assert!(matches!(
        c.ticks().retry("flow-s", t, "c", stale).await.unwrap(),
        TickClaim::ClaimedByOtherReplica { .. }
    ));
    assert_eq!(
        lease.published("run-b").await.unwrap(),
        TickPublished::Marked
    );
    assert!(pending(&c, "flow-s").await.is_empty());
    // The dead replica, come back to life, learns it lost the tick.
    assert_eq!(
        dead.published("run-a").await.unwrap(),
        TickPublished::ClaimLost
    );
    assert!(
        prefix
            .get(&tick_key(&prefix, "flow-s", t))
            .is_some_and(|state| state.contains("run-b")),
        "the record names the run that was published"
    );
}

async fn a_tick_whose_publish_gave_up_is_offered_again_at_once(target: Target) {
    let prefix = TestStore::new(target, "tick-abandon");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let t = at("2026-11-24T10:00:00Z");
    // A claim that would stay fresh for an hour...
    let TickClaim::Won(lease) = a.ticks().claim("flow-g", t, "a", LONG, LONG).await.unwrap() else {
        panic!("a fresh tick is won");
    };
    assert!(lease.renew().await.unwrap());
    assert!(matches!(
        b.ticks().retry("flow-g", t, "b", LONG).await.unwrap(),
        TickClaim::ClaimedByOtherReplica { .. }
    ));
    // ...is stale as soon as its publish gives up and abandons it.
    assert!(lease.abandon().await.unwrap());
    assert_eq!(pending(&b, "flow-g").await, [t], "still pending");
    let TickClaim::TookOver { lease, .. } = b.ticks().retry("flow-g", t, "b", LONG).await.unwrap()
    else {
        panic!("an abandoned claim is taken over at once");
    };
    assert_eq!(lease.published("run").await.unwrap(), TickPublished::Marked);
    assert!(pending(&a, "flow-g").await.is_empty());
}

async fn a_renewed_claim_is_never_taken_over(target: Target) {
    let prefix = TestStore::new(target, "tick-renew");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let stale = Duration::from_millis(900);
    let t = at("2026-11-24T11:00:00Z");
    let TickClaim::Won(lease) = a
        .ticks()
        .claim("flow-r", t, "a", LONG, stale)
        .await
        .unwrap()
    else {
        panic!("a fresh tick is won");
    };
    // Renewed every third of `stale` for three times `stale`: always fresh.
    for _ in 0..9 {
        tokio::time::sleep(stale / 3).await;
        assert!(lease.renew().await.unwrap());
        assert!(matches!(
            b.ticks().retry("flow-r", t, "b", stale).await.unwrap(),
            TickClaim::ClaimedByOtherReplica { .. }
        ));
    }
    assert_eq!(lease.published("run").await.unwrap(), TickPublished::Marked);
}

async fn a_pending_tick_whose_key_expired_is_dropped_not_published(target: Target) {
    let prefix = TestStore::new(target, "tick-expired");
    let store = prefix.store().await;
    let t = at("2026-11-24T12:00:00Z");
    let TickClaim::Won(_lease) = store
        .ticks()
        .claim("flow-x", t, "a", LONG, Duration::ZERO)
        .await
        .unwrap()
    else {
        panic!("a fresh tick is won");
    };
    // The key's TTL ran out (twice the flow's period at least an hour: simulated).
    prefix.del(&tick_key(&prefix, "flow-x", t));
    assert_eq!(pending(&store, "flow-x").await, [t]);
    assert!(matches!(
        store
            .ticks()
            .retry("flow-x", t, "b", Duration::ZERO)
            .await
            .unwrap(),
        TickClaim::Expired
    ));
    assert!(pending(&store, "flow-x").await.is_empty());
    // A fresh claim (the cron's own tick) still works.
    assert!(matches!(
        store
            .ticks()
            .claim("flow-x", t, "c", LONG, LONG)
            .await
            .unwrap(),
        TickClaim::Won(_)
    ));
}

async fn a_tick_claimed_by_an_older_ferry_counts_as_published(target: Target) {
    let prefix = TestStore::new(target, "tick-legacy");
    let store = prefix.store().await;
    let t = at("2026-11-24T13:00:00Z");
    prefix.set(
        &tick_key(&prefix, "flow-l", t),
        "2026-11-24T13:00:00.012+00:00",
    );
    assert!(matches!(
        store
            .ticks()
            .claim("flow-l", t, "a", LONG, Duration::ZERO)
            .await
            .unwrap(),
        TickClaim::AlreadyPublished
    ));
}

ferry_tests::on_both_stores!(
    each_scheduler_tick_is_claimed_by_exactly_one_replica,
    a_tick_whose_replica_died_before_publishing_is_taken_over_once_stale,
    a_tick_whose_publish_gave_up_is_offered_again_at_once,
    a_renewed_claim_is_never_taken_over,
    a_pending_tick_whose_key_expired_is_dropped_not_published,
    a_tick_claimed_by_an_older_ferry_counts_as_published,
);
