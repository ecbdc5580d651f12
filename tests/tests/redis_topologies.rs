//! ferry on a fleet's Redis deployments beyond one node: a real 3-master Redis Cluster and a
//! master found through a real Redis Sentinel (both private to the test, on loopback
//! ports), and `ferry.yaml`'s choice between them. The store's own claim, record, lock and
//! tick tests run on the cluster too (`tests/idempotency.rs`, module `cluster`).

use std::time::Duration;

use ferry_shared::config::{Config, RedisTopology};
use ferry_shared::idempotency::{
    ClaimOutcome, DeliveryKey, DeliveryRecord, DurabilityWarning, Recorded, Store, StoreConfig,
};
use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, names_with, run, upload, write_files};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::redis_cluster::{RedisCluster, RedisSentinel};

const LONG: Duration = Duration::from_secs(60);

fn record(name: &str) -> DeliveryRecord {
    serde_json::from_value(serde_json::json!({
        "file_name": name,
        "size": 3,
        "sha256": "ab".repeat(32),
        "remote_path": format!("/in/{name}"),
        "delivered_at": "2026-11-24T21:00:00Z",
        "flow_run_id": "run-1",
        "direction": "upload",
    }))
    .expect("a record")
}

/// ferry finds the master through the sentinel, claims and records there, and follows it
/// through a failover.
#[tokio::test]
async fn the_master_is_found_through_sentinel_and_followed_after_a_failover() {
    let sentinel = RedisSentinel::start().unwrap_or_else(|e| panic!("{e:#}"));
    let mut config = StoreConfig::new("redis://unused.invalid:1");
    config.topology = RedisTopology::Sentinel {
        master_name: RedisSentinel::MASTER_NAME.into(),
        nodes: vec![sentinel.sentinel_url()],
    };
    let store = Store::connect(&config).await.expect("connect via sentinel");
    let key = DeliveryKey::content("flow-s", &[9; 32]);
    let ClaimOutcome::Claimed(claim) = store.claim(&key, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable");
    };
    assert_eq!(
        store
            .record_delivery(&claim, &record("s.xml"), LONG)
            .await
            .unwrap(),
        Recorded::ClaimHeld
    );
    assert!(matches!(
        store.claim(&key, "w2", LONG).await.unwrap(),
        ClaimOutcome::AlreadyDelivered(_)
    ));
    // The record is on the master the sentinel named.
    let on_master = Store::connect(&StoreConfig::new(sentinel.master_url()))
        .await
        .expect("connect to the master");
    assert_eq!(
        on_master.delivery(&key).await.unwrap().map(|r| r.file_name),
        Some("s.xml".to_owned())
    );
    // The master has AOF on: nothing to warn about.
    assert_eq!(store.durability_warnings().await.unwrap(), []);

    // Failover: the old master now answers writes with READONLY; the store asks the
    // sentinel again and follows the new master, where the record is.
    let before = sentinel.master_port();
    sentinel.failover().unwrap_or_else(|e| panic!("{e:#}"));
    assert_ne!(sentinel.master_port(), before);
    assert!(matches!(
        store.claim(&key, "w3", LONG).await.unwrap(),
        ClaimOutcome::AlreadyDelivered(_)
    ));
    let other = DeliveryKey::content("flow-s", &[8; 32]);
    let ClaimOutcome::Claimed(_) = store.claim(&other, "w", LONG).await.unwrap() else {
        panic!("a fresh key must be claimable on the new master");
    };
    let on_new_master = Store::connect(&StoreConfig::new(sentinel.master_url()))
        .await
        .expect("connect to the new master");
    assert!(matches!(
        on_new_master.claim(&other, "w4", LONG).await.unwrap(),
        ClaimOutcome::ClaimedByOther { .. }
    ));

    // A sentinel that does not know the name: no store (fail closed), and the error says so.
    config.topology = RedisTopology::Sentinel {
        master_name: "no-such-master".into(),
        nodes: vec![sentinel.sentinel_url()],
    };
    config.connect_timeout = Duration::from_secs(2);
    assert!(Store::connect(&config).await.is_err());
}

/// A sentinel that accepts the connection and never answers (a hung host, a black-holed
/// port) must not hang the store: the lookup is bounded by the store's timeouts, and the
/// error says which topology failed (the redis crate bounds the sentinel exchange; this
/// keeps it so).
#[tokio::test]
async fn a_sentinel_that_never_answers_fails_the_connect_instead_of_hanging_it() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    // Accept and hold every connection, say nothing.
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            streams.push(stream);
        }
    });
    let mut config = StoreConfig::new("redis://unused.invalid:1");
    config.topology = RedisTopology::Sentinel {
        master_name: "main".into(),
        nodes: vec![format!("redis://{addr}")],
    };
    config.connect_timeout = Duration::from_secs(1);
    config.response_timeout = Duration::from_secs(1);
    let outcome = tokio::time::timeout(LONG, Store::connect(&config)).await;
    held.abort();
    let error = match outcome {
        Ok(Err(error)) => error.to_string(),
        Ok(Ok(_)) => panic!("no master behind a silent sentinel, yet the store connected"),
        Err(_) => panic!("Store::connect still waiting on a silent sentinel after {LONG:?}"),
    };
    assert!(
        error.contains("sentinel"),
        "the error names the sentinel lookup: {error}"
    );
}

/// The durability check reads every master of a cluster: one weak master is enough to warn.
#[tokio::test]
async fn durability_is_checked_on_every_master_of_a_cluster() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e:#}"));
    let mut config = StoreConfig::new("redis://unused.invalid:1");
    config.topology = RedisTopology::Cluster {
        nodes: cluster.urls(),
    };
    let store = Store::connect(&config)
        .await
        .expect("connect to the cluster");
    assert_eq!(store.durability_warnings().await.unwrap(), []);

    // Only the last master evicts.
    let last = cluster.urls().pop().expect("a node");
    let out = std::process::Command::new("redis-cli")
        .args([
            "-u",
            &last,
            "CONFIG",
            "SET",
            "maxmemory-policy",
            "allkeys-lru",
        ])
        .output()
        .expect("redis-cli");
    assert!(out.status.success());
    assert_eq!(
        store.durability_warnings().await.unwrap(),
        [DurabilityWarning::Eviction("allkeys-lru".into())]
    );
}

/// A whole upload run through the cluster: every file delivered once, recorded in the
/// cluster, and a second run sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_run_through_a_cluster_delivers_each_file_once() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e:#}"));
    let mut bed = Bed::start("cluster-upload", FtpServerKind::Vsftpd).await;
    bed.redis_topology = Some(format!(
        "  cluster_nodes: [{}]\n",
        cluster.urls().join(", ")
    ));
    let files = write_files(&bed.local(), 6, 2048);
    let engine = bed.engine_for(&upload("")).await;

    let report = run(&engine, "run-1").await;
    assert_eq!(
        names_with(&report, Outcome::Transferred).len(),
        6,
        "{report:#?}"
    );
    assert_eq!(bed.remote_files("in"), files);
    let records = cluster.keys(&format!("{}:{{flow:f}}:delivered:*", bed.prefix.0));
    assert_eq!(records.len(), 6, "{records:?}");
    assert!(
        cluster
            .keys(&format!("{}:*:claim:*", bed.prefix.0))
            .is_empty()
    );

    // The files are still there (no delete_after_upload): all duplicates now.
    let again = run(&engine, "run-2").await;
    assert_eq!(
        names_with(&again, Outcome::Duplicate).len(),
        6,
        "{again:#?}"
    );
    assert_eq!(bed.remote_files("in"), files);
}

/// `redis.url`, `redis.cluster_nodes` and `redis.sentinel`: exactly one, each checked, errors
/// at their line.
#[test]
fn the_redis_topology_is_one_of_three_and_checked_at_its_line() {
    let load = |yaml: &str| {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ferry.yaml"), yaml).expect("write");
        Config::load(dir.path()).map_err(|e| e.to_string())
    };
    let config = load("redis:\n  cluster_nodes: [redis://a:7000, redis://b:7001]\n").unwrap();
    assert_eq!(
        config.settings.redis.topology,
        RedisTopology::Cluster {
            nodes: vec!["redis://a:7000".into(), "redis://b:7001".into()]
        }
    );
    let config =
        load("redis:\n  sentinel:\n    master_name: main\n    nodes:\n      - redis://s1:26379\n")
            .unwrap();
    assert_eq!(
        config.settings.redis.topology,
        RedisTopology::Sentinel {
            master_name: "main".into(),
            nodes: vec!["redis://s1:26379".into()]
        }
    );
    assert_eq!(
        load("redis:\n  url: redis://x:1\n")
            .unwrap()
            .settings
            .redis
            .topology,
        RedisTopology::Single
    );

    let err = load("redis:\n  url: redis://x:1\n  cluster_nodes: [redis://a:1]\n").unwrap_err();
    assert!(
        err.contains("ferry.yaml:3") && err.contains("redis.cluster_nodes: write exactly one"),
        "{err}"
    );
    let err = load("redis:\n  cluster_nodes:\n    - redis://a:1\n    - http://b:2\n").unwrap_err();
    assert!(
        err.contains("ferry.yaml:4") && err.contains("redis.cluster_nodes[1]"),
        "{err}"
    );
    let err = load("redis:\n  cluster_nodes: []\n").unwrap_err();
    assert!(err.contains("at least one"), "{err}");
    let err = load("redis:\n  sentinel:\n    nodes: [redis://s:26379]\n").unwrap_err();
    assert!(
        err.contains("redis.sentinel") && err.contains("master_name"),
        "{err}"
    );
    let err =
        load("security:\n  hardened_mode: true\nredis:\n  cluster_nodes: [redis://:pw@a:1]\n")
            .unwrap_err();
    assert!(
        err.contains("hardened mode") && !err.contains("pw@"),
        "{err}"
    );
}
