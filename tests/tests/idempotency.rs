//! The idempotency store against the real Redis at 127.0.0.1:6379 (or `FERRY_TEST_REDIS_URL`).
//!
//! These tests pin down what exactly-once delivery rests on: one claim per file, no claim
//! after a recorded delivery, leases that lapse and are only renewed or released by their
//! owner, flow locks, one scheduler tick per replica set, and a clear `Unavailable` error
//! when Redis is not there. Each test writes under its own key prefix and deletes it when
//! done, so the tests run in parallel and leave Redis as they found it.
//!
//! The claim, record, lease, lock and tick tests run three times (see
//! [`on_every_topology`]): on one node, on a private 3-master Redis Cluster, where every
//! flow's keys must share a slot for the store's scripts to run at all, and on the embedded
//! store (`store.kind: embedded`). The rest is about Redis itself and stays Redis-only: an
//! unreachable Redis, a rejected password, bad URLs, the key layout as `redis-cli` sees it,
//! `rediss://` with a private CA, Redis going away and coming back, and its durability
//! settings.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use ferry_shared::idempotency::keys::FlowKeys;
use ferry_shared::idempotency::{
    ClaimOutcome, DeliveryKey, DeliveryRecord, DurabilityWarning, ErrorKind, LockWait, Recorded,
    Store, StoreConfig, TickClaim, TickPublished, Unlocked,
};
use ferry_shared::secrets::Secret;
use ferry_tests::store_target::{Target, TestStore};

/// The Redis the tests use.
fn redis_url() -> String {
    std::env::var("FERRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `redis-cli` against the test Redis (to inspect or tamper with keys directly).
fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .output()
        .expect("running redis-cli (install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A timestamp from RFC 3339 text, typed by inference (this crate does not name chrono).
macro_rules! at {
    ($text:expr) => {
        serde_json::from_value(serde_json::Value::String($text.into())).expect("RFC 3339 time")
    };
}

fn content_key(flow: &str, n: u8) -> DeliveryKey {
    DeliveryKey::content(flow, &[n; 32])
}

fn record(name: &str) -> DeliveryRecord {
    DeliveryRecord {
        file_name: name.into(),
        size: 42,
        sha256: "ab".repeat(32),
        remote_path: format!("/in/{name}"),
        delivered_at: at!("2026-11-24T21:00:00Z"),
        flow_run_id: "run-1".into(),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        direction: "upload".into(),
    }
}

const LONG: Duration = Duration::from_secs(60);

async fn claim_duplicate_and_claimed_by_other(target: Target) {
    let prefix = TestStore::new(target, "claim");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let key = content_key("flow-a", 1);

    let ClaimOutcome::Claimed(claim) = a.claim(&key, "worker-a", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    assert!(claim.owner().starts_with("worker-a/"));
    assert_eq!(claim.key(), &key);

    // The same worker claiming again (e.g. a redelivered message) must not get it twice.
    match a.claim(&key, "worker-a", LONG).await.unwrap() {
        ClaimOutcome::ClaimedByOther { owner, .. } => assert_eq!(owner, claim.owner()),
        other => panic!("duplicate claim by the same worker: {other:?}"),
    }
    match b.claim(&key, "worker-b", LONG).await.unwrap() {
        ClaimOutcome::ClaimedByOther { owner, .. } => assert_eq!(owner, claim.owner()),
        other => panic!("claim by another worker: {other:?}"),
    }
    // Another key of the same flow is independent.
    assert!(matches!(
        b.claim(&content_key("flow-a", 2), "worker-b", LONG)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));

    // Released: the other worker may take it.
    assert!(a.release(claim).await.unwrap());
    assert!(matches!(
        b.claim(&key, "worker-b", LONG).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

async fn recorded_delivery_is_never_claimed_again(target: Target) {
    let prefix = TestStore::new(target, "record");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let key = DeliveryKey::name(
        "flow-r",
        "report 2026-11.csv",
        42,
        at!("2026-11-24T20:00:00Z"),
    );
    assert_eq!(a.delivery(&key).await.unwrap(), None);

    let ClaimOutcome::Claimed(claim) = a.claim(&key, "worker-a", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    let rec = record("report 2026-11.csv");
    let retention = Duration::from_secs(3600);
    assert_eq!(
        a.record_delivery(&claim, &rec, retention).await.unwrap(),
        Recorded::ClaimHeld
    );

    match b.claim(&key, "worker-b", LONG).await.unwrap() {
        ClaimOutcome::AlreadyDelivered(found) => assert_eq!(found, rec),
        other => panic!("claim after delivery: {other:?}"),
    }
    assert_eq!(b.delivery(&key).await.unwrap(), Some(rec));

    // The record carries the retention TTL; the claim key is gone.
    let keys = FlowKeys::new(&prefix.prefix, "flow-r");
    let ttl = prefix.ttl_ms(&keys.delivered(&key)).expect("a TTL");
    assert!(
        (3_500_000..=3_600_000).contains(&ttl),
        "record TTL {ttl} ms, expected about 1 h"
    );
    assert_eq!(prefix.get(&keys.claim(&key)), None);
    // Releasing after recording is harmless.
    assert!(!a.release(claim).await.unwrap());
}

async fn records_expire_after_retention_and_aliases_are_written(target: Target) {
    let prefix = TestStore::new(target, "retention");
    let store = prefix.store().await;
    let listing = DeliveryKey::download("flow-d", "INV_001.xml", 42, at!("2026-11-24T20:00:00Z"));
    let content = content_key("flow-d", 7);

    let ClaimOutcome::Claimed(claim) = store.claim(&listing, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    let rec = record("INV_001.xml");
    let also = std::slice::from_ref(&content);
    assert_eq!(
        store
            .record_delivery_also(&claim, also, &rec, Duration::from_secs(1))
            .await
            .unwrap(),
        Recorded::ClaimHeld
    );
    assert_eq!(store.delivery(&content).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.delivery(&listing).await.unwrap(), Some(rec));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(store.delivery(&listing).await.unwrap(), None);
    assert_eq!(store.delivery(&content).await.unwrap(), None);
    assert!(matches!(
        store.claim(&listing, "w", LONG).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));

    // A key of another flow cannot be recorded through this claim.
    let ClaimOutcome::Claimed(claim) = store.claim(&content, "w", LONG).await.unwrap() else {
        panic!("expired record must free the key");
    };
    let stray = content_key("another-flow", 7);
    let err = store
        .record_delivery_also(&claim, &[stray], &record("x"), LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

async fn expired_lease_lets_another_worker_claim_and_the_loser_cannot_interfere(target: Target) {
    let prefix = TestStore::new(target, "lease");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let key = content_key("flow-l", 3);

    let ClaimOutcome::Claimed(stale) = a
        .claim(&key, "worker-a", Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("a fresh key must be claimable");
    };
    assert!(stale.renew(Duration::from_secs(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let ClaimOutcome::Claimed(fresh) = b.claim(&key, "worker-b", LONG).await.unwrap() else {
        panic!("an expired claim must be claimable by another worker");
    };
    // The stale owner can neither renew nor release the new claim.
    assert!(!stale.renew(LONG).await.unwrap());
    assert!(!a.release(stale).await.unwrap());
    match a.claim(&key, "worker-c", LONG).await.unwrap() {
        ClaimOutcome::ClaimedByOther { owner, .. } => assert_eq!(owner, fresh.owner()),
        other => panic!("the fresh claim must survive the stale owner: {other:?}"),
    }
    assert!(fresh.renew(LONG).await.unwrap());
}

async fn record_after_lost_lease_still_records_but_reports_it(target: Target) {
    let prefix = TestStore::new(target, "late-record");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let key = content_key("flow-late", 4);
    let ClaimOutcome::Claimed(stale) = a
        .claim(&key, "worker-a", Duration::from_secs(1))
        .await
        .unwrap()
    else {
        panic!("a fresh key must be claimable");
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ClaimOutcome::Claimed(fresh) = b.claim(&key, "worker-b", LONG).await.unwrap() else {
        panic!("an expired claim must be claimable");
    };
    // a's transfer did complete: the record is written, but a is told it had lost the claim,
    // and b's claim is left alone.
    assert_eq!(
        a.record_delivery(&stale, &record("f"), LONG).await.unwrap(),
        Recorded::ClaimLost,
        "the stale claim is not ours any more"
    );
    let keys = FlowKeys::new(&prefix.prefix, "flow-late");
    assert_eq!(
        prefix.get(&keys.claim(&key)).as_deref(),
        Some(fresh.owner())
    );
    assert_eq!(
        b.record_delivery(&fresh, &record("f"), LONG).await.unwrap(),
        Recorded::ClaimHeld
    );
}

async fn hold_while_keeps_the_claim_and_stops_when_it_is_lost(target: Target) {
    let prefix = TestStore::new(target, "hold");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let lease = Duration::from_secs(1);
    let key = content_key("flow-h", 5);

    let ClaimOutcome::Claimed(claim) = a.claim(&key, "worker-a", lease).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    // Work three leases long: renewals keep the claim, another worker stays out.
    let other = b.clone();
    let out = claim
        .hold_while(async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            other.claim(&key, "worker-b", LONG).await.unwrap()
        })
        .await
        .unwrap();
    assert!(
        matches!(out, ClaimOutcome::ClaimedByOther { .. }),
        "{out:?}"
    );

    // Someone takes the key over: the work is stopped with LeaseLost.
    let keys = FlowKeys::new(&prefix.prefix, "flow-h");
    prefix.set(&keys.claim(&key), "intruder");
    let err = claim
        .hold_while(tokio::time::sleep(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost);
    assert!(err.is_transient());
    assert!(!a.release(claim).await.unwrap());
    assert_eq!(prefix.get(&keys.claim(&key)).as_deref(), Some("intruder"));
}

async fn concurrent_claimers_claim_each_key_exactly_once(target: Target) {
    let prefix = TestStore::new(target, "race");
    let keys: Vec<DeliveryKey> = (0..100u8).map(|n| content_key("flow-race", n)).collect();
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        // Each claimer has its own store, hence its own connection.
        let store = prefix.store().await;
        let mut keys = keys.clone();
        keys.rotate_left(worker * 13);
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for key in keys {
                if let ClaimOutcome::Claimed(claim) = store
                    .claim(&key, &format!("w{worker}"), LONG)
                    .await
                    .unwrap()
                {
                    won.push(claim);
                }
            }
            won
        }));
    }
    let mut winners: HashMap<DeliveryKey, usize> = HashMap::new();
    for task in tasks {
        for claim in task.await.unwrap() {
            *winners.entry(claim.key().clone()).or_default() += 1;
        }
    }
    assert_eq!(winners.len(), 100, "every key claimed");
    assert!(winners.values().all(|&n| n == 1), "{winners:?}");
}

async fn flow_lock_is_exclusive_and_waiters_get_it_or_give_up(target: Target) {
    let prefix = TestStore::new(target, "lock");
    let (a, b) = (prefix.store().await, prefix.store().await);

    let lock = a
        .flow_locks()
        .try_lock("flow-x", "worker-a", LONG)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(lock.flow_id(), "flow-x");
    assert!(
        b.flow_locks()
            .try_lock("flow-x", "worker-b", LONG)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        a.flow_locks()
            .try_lock("flow-x", "worker-a", LONG)
            .await
            .unwrap()
            .is_none()
    );
    // Another flow is not affected.
    let other = b
        .flow_locks()
        .try_lock("flow-y", "worker-b", LONG)
        .await
        .unwrap()
        .expect("other flow");
    assert_eq!(
        b.flow_locks().unlock(other).await.unwrap(),
        Unlocked::Released
    );

    match b
        .flow_locks()
        .wait("flow-x", "worker-b", LONG, Duration::from_millis(300))
        .await
        .unwrap()
    {
        LockWait::Busy { holder, .. } => assert_eq!(holder.as_deref(), Some(lock.owner())),
        LockWait::Acquired(l) => panic!("lock taken while held: {l:?}"),
    }

    assert!(lock.renew(LONG).await.unwrap());
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.flow_locks()
                .wait("flow-x", "worker-b", LONG, Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.flow_locks().unlock(lock).await.unwrap(),
        Unlocked::Released
    );
    let LockWait::Acquired(taken) = waiter.await.unwrap().unwrap() else {
        panic!("the waiter must get the lock once it is released");
    };
    assert!(taken.owner().starts_with("worker-b/"));
    assert_eq!(
        b.flow_locks().unlock(taken).await.unwrap(),
        Unlocked::Released
    );
}

async fn expired_flow_lock_cannot_be_released_by_its_old_owner(target: Target) {
    let prefix = TestStore::new(target, "lock-expiry");
    let (a, b) = (prefix.store().await, prefix.store().await);
    let stale = a
        .flow_locks()
        .try_lock("flow-e", "worker-a", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("free lock");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = b
        .flow_locks()
        .try_lock("flow-e", "worker-b", LONG)
        .await
        .unwrap()
        .expect("expired lock");
    assert!(!stale.renew(LONG).await.unwrap());
    assert_eq!(
        a.flow_locks().unlock(stale).await.unwrap(),
        Unlocked::AlreadyLost
    );
    assert!(
        b.flow_locks()
            .try_lock("flow-e", "worker-c", LONG)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        b.flow_locks().unlock(fresh).await.unwrap(),
        Unlocked::Released
    );
}

async fn each_scheduler_tick_is_claimed_by_exactly_one_replica(target: Target) {
    let prefix = TestStore::new(target, "tick");
    let replicas = [
        prefix.store().await,
        prefix.store().await,
        prefix.store().await,
    ];
    let ttl = Duration::from_secs(120);
    for tick in [
        "2026-11-24T08:00:00Z",
        "2026-11-24T08:05:00Z",
        "2026-11-24T08:10:00Z",
    ] {
        let t = at!(tick);
        let (a, b, c) = tokio::join!(
            replicas[0].ticks().claim("flow-t", t, "s1", ttl, ttl),
            replicas[1].ticks().claim("flow-t", t, "s2", ttl, ttl),
            replicas[2].ticks().claim("flow-t", t, "s3", ttl, ttl),
        );
        let mut won = Vec::new();
        for result in [a, b, c] {
            match result.unwrap() {
                TickClaim::Won(lease) => won.push(lease),
                TickClaim::ClaimedByOtherReplica { .. } => {}
                other => panic!("tick {tick}: {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "tick {tick}");
        let lease = won.pop().expect("one winner");
        assert_eq!(lease.published("run").await.unwrap(), TickPublished::Marked);
        // Later attempts (a replica catching up) find it published.
        assert!(matches!(
            replicas[0]
                .ticks()
                .claim("flow-t", t, "s1", ttl, ttl)
                .await
                .unwrap(),
            TickClaim::AlreadyPublished
        ));
    }
    // Ticks of another flow are independent.
    assert!(matches!(
        replicas[0]
            .ticks()
            .claim("flow-u", at!("2026-11-24T08:00:00Z"), "s1", ttl, ttl)
            .await
            .unwrap(),
        TickClaim::Won(_)
    ));
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_and_says_what_to_do() {
    let port = ferry_tests::ports::free_port();
    let mut config = StoreConfig::new(format!("redis://user:hunter2@127.0.0.1:{port}/0"));
    config.connect_timeout = Duration::from_secs(2);
    let err = Store::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("running and reachable"), "{text}");
    for shown in [text, format!("{err:?}"), format!("{config:?}")] {
        assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
    }
}

#[tokio::test]
async fn rejected_password_is_a_protocol_error_without_the_password() {
    // The test Redis has no password: sending one is refused, and neither the URL's
    // password nor the separate secret may appear in the error.
    let prefix = TestStore::new(Target::Redis, "auth");
    let mut config = prefix.config();
    config.password = Some(Secret::new("s3cr3t-from-vault"));
    let err = Store::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(!err.is_transient());
    for shown in [err.to_string(), format!("{err:?}"), format!("{config:?}")] {
        assert!(
            !shown.contains("s3cr3t-from-vault"),
            "secret leaked: {shown}"
        );
    }
}

#[tokio::test]
async fn bad_configuration_is_reported_as_such() {
    for (url, prefix) in [
        ("http://127.0.0.1:6379", "ferry"),
        ("redis://127.0.0.1:6379", "bad{prefix}"),
    ] {
        let mut config = StoreConfig::new(url);
        config.key_prefix = prefix.into();
        let err = Store::connect(&config).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url} {prefix}: {err}");
    }
}

#[tokio::test]
async fn ping_and_the_key_layout_in_redis() {
    let prefix = TestStore::new(Target::Redis, "layout");
    let store = prefix.store().await;
    store.ping().await.unwrap();

    let key = content_key("flow-k", 9);
    let ClaimOutcome::Claimed(claim) = store.claim(&key, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    let lock = store
        .flow_locks()
        .try_lock("flow-k", "w", LONG)
        .await
        .unwrap()
        .expect("free lock");
    let TickClaim::Won(tick) = store
        .ticks()
        .claim("flow-k", at!("2026-11-24T08:00:00Z"), "s", LONG, LONG)
        .await
        .unwrap()
    else {
        panic!("a fresh tick must be won");
    };
    let listed = redis_cli(&["KEYS", &format!("{}:*", prefix.prefix)]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    let hex = "09".repeat(32);
    let p = &prefix.prefix;
    assert_eq!(
        listed,
        [
            format!("{p}:{{flow:flow-k}}:claim:sha256:{hex}"),
            format!("{p}:{{flow:flow-k}}:lock"),
            format!("{p}:{{flow:flow-k}}:tick:1795507200"),
            format!("{p}:{{flow:flow-k}}:ticks-pending"),
        ]
    );
    // One hash tag for all keys of the flow, hence one cluster slot.
    for k in &listed {
        let tag = &k[k.find('{').unwrap() + 1..k.find('}').unwrap()];
        assert_eq!(tag, "flow:flow-k");
    }
    assert!(store.release(claim).await.unwrap());
    assert_eq!(
        store.flow_locks().unlock(lock).await.unwrap(),
        Unlocked::Released
    );
    assert_eq!(
        tick.published("run-1").await.unwrap(),
        TickPublished::Marked
    );
    // The release left a wake token for the next waiter, under the same hash tag.
    assert_eq!(
        redis_cli(&[
            "LRANGE",
            &format!("{p}:{{flow:flow-k}}:lock-wake"),
            "0",
            "-1"
        ]),
        "1"
    );
}

/// A private `redis-server` speaking only TLS on a free port, with a password.
struct TlsRedis {
    port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
    _server: ferry_tests::process::ServerProcess,
}

impl TlsRedis {
    const PASSWORD: &str = "tls-pa55word";

    fn start() -> TlsRedis {
        let redis_server = ferry_tests::tools::find_tool("redis-server", &[]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        let port = ferry_tests::ports::free_port();
        let mut command = std::process::Command::new(redis_server);
        command
            .current_dir(dir.path())
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert_file)
            .arg("--tls-key-file")
            .arg(&key_file)
            .args(["--tls-auth-clients", "no", "--requirepass", Self::PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]);
        let server = ferry_tests::process::ServerProcess::spawn(
            "redis-server (TLS)",
            command,
            &dir.path().join("redis.log"),
            port,
            Duration::from_secs(10),
        )
        .unwrap();
        TlsRedis {
            port,
            ca_pem: cert.cert.pem(),
            _dir: dir,
            _server: server,
        }
    }
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_password_from_a_secret() {
    let redis = TlsRedis::start();
    // The URL's password is wrong on purpose: the separate secret overrides it.
    let mut config = StoreConfig::new(format!("rediss://:wrong@127.0.0.1:{}", redis.port));
    config.ca_pem = Some(redis.ca_pem.clone().into_bytes());
    config.password = Some(Secret::new(TlsRedis::PASSWORD));
    let store = Store::connect(&config).await.unwrap();
    store.ping().await.unwrap();
    assert!(!format!("{store:?} {config:?}").contains("wrong"));
    let key = content_key("flow-tls", 1);
    let ClaimOutcome::Claimed(claim) = store.claim(&key, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    assert_eq!(
        store
            .record_delivery(&claim, &record("f"), LONG)
            .await
            .unwrap(),
        Recorded::ClaimHeld
    );
    assert!(matches!(
        store.claim(&key, "w", LONG).await.unwrap(),
        ClaimOutcome::AlreadyDelivered(_)
    ));

    // Without the secret, the URL's wrong password is refused, and not shown.
    config.password = None;
    let err = Store::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong@"), "{err:?}");

    // Without the private CA, the server's certificate is not trusted.
    config.password = Some(Secret::new(TlsRedis::PASSWORD));
    config.ca_pem = None;
    assert!(Store::connect(&config).await.is_err());
}

/// A private plain `redis-server` on `port`, to stop and restart under a connected store.
fn start_plain_redis(dir: &std::path::Path, port: u16) -> ferry_tests::process::ServerProcess {
    let redis_server = ferry_tests::tools::find_tool("redis-server", &[]).unwrap();
    let mut command = std::process::Command::new(redis_server);
    command
        .current_dir(dir)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"]);
    ferry_tests::process::ServerProcess::spawn(
        "redis-server",
        command,
        &dir.join("redis.log"),
        port,
        Duration::from_secs(10),
    )
    .unwrap()
}

#[tokio::test]
async fn redis_going_away_fails_closed_and_the_store_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let port = ferry_tests::ports::free_port();
    let server = start_plain_redis(dir.path(), port);
    let mut config = StoreConfig::new(format!("redis://127.0.0.1:{port}"));
    config.connect_timeout = Duration::from_secs(2);
    config.response_timeout = Duration::from_secs(2);
    let store = Store::connect(&config).await.unwrap();
    let key = content_key("flow-outage", 1);
    let ClaimOutcome::Claimed(_before) = store.claim(&key, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };

    drop(server);
    let err = store
        .claim(&content_key("flow-outage", 2), "w", LONG)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(store.ping().await.is_err());

    // Back up (empty: no persistence): the same store works again without being rebuilt.
    let _server = start_plain_redis(dir.path(), port);
    let mut result = store.ping().await;
    for _ in 0..20 {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        result = store.ping().await;
    }
    result.unwrap();
    assert!(matches!(
        store.claim(&key, "w", LONG).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

/// ferry says when Redis is not set up for its guarantees: no persistence, eviction.
#[tokio::test]
async fn redis_settings_that_weaken_the_guarantees_are_reported() {
    let redis = ferry_tests::redis::RedisServer::start().expect("private redis");
    let store = Store::connect(&StoreConfig::new(redis.url()))
        .await
        .expect("connect");

    // The test bed's Redis keeps nothing on disk.
    let warnings = store.durability_warnings().await.expect("check");
    assert_eq!(warnings, [DurabilityWarning::NoPersistence]);

    for args in [
        ["CONFIG", "SET", "appendonly", "yes"],
        ["CONFIG", "SET", "appendfsync", "no"],
        ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    ] {
        let out = std::process::Command::new("redis-cli")
            .arg("-u")
            .arg(redis.url())
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success());
    }
    let warnings = store.durability_warnings().await.expect("check");
    assert_eq!(
        warnings,
        [
            DurabilityWarning::AofNotSynced,
            DurabilityWarning::Eviction("allkeys-lru".into())
        ]
    );
}

/// Runs each store test on one node (`single_node::`), on a 3-master Redis Cluster
/// started for it (`cluster::`) and on the embedded store, in a file of its own
/// (`embedded::`): the same body, the same semantics.
macro_rules! on_every_topology {
    ($($name:ident),* $(,)?) => {
        mod single_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Target::Redis).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Target::cluster()).await
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Target::embedded()).await
                }
            )*
        }
    };
}

on_every_topology!(
    claim_duplicate_and_claimed_by_other,
    recorded_delivery_is_never_claimed_again,
    records_expire_after_retention_and_aliases_are_written,
    expired_lease_lets_another_worker_claim_and_the_loser_cannot_interfere,
    record_after_lost_lease_still_records_but_reports_it,
    hold_while_keeps_the_claim_and_stops_when_it_is_lost,
    concurrent_claimers_claim_each_key_exactly_once,
    flow_lock_is_exclusive_and_waiters_get_it_or_give_up,
    expired_flow_lock_cannot_be_released_by_its_old_owner,
    each_scheduler_tick_is_claimed_by_exactly_one_replica,
);
