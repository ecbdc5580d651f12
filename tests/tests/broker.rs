//! The broker layer against a real RabbitMQ: topology, confirms, the retry and
//! dead-letter paths, prefetch, and surviving a broker restart.
//!
//! Each test works in a virtual host of its own on the machine's broker (created with
//! `rabbitmqctl`, deleted when the test ends, panics included), so tests run in parallel
//! and leave nothing behind. The restart test runs a private node instead: the machine's
//! broker is never stopped.

use std::collections::HashSet;
use std::time::Duration;

use ferry_shared::broker::{
    AmqpUrl, Broker, BrokerError, ConsumerOptions, DEATH_CODE_HEADER, DeadLetter, Delivery,
    Headers, PublisherOptions, RETRY_REASON_HEADER, Settled, Topology,
};
use ferry_shared::message::{FlowRunMessage, Trigger};
use ferry_tests::rabbitmq::{RabbitNode, Vhost, rabbitmqctl};

/// A topology with delays short enough for a test: 1 s, then 2 s; three attempts.
fn quick_topology() -> Topology {
    Topology {
        retry_delays: vec![Duration::from_secs(1), Duration::from_secs(2)],
        max_attempts: 3,
        ..Topology::with_prefix("t")
    }
}

fn traced_headers() -> Headers {
    let mut headers = Headers::new();
    headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    headers
}

/// Waits for the next delivery, failing the test (not hanging it) if none comes.
async fn next(consumer: &mut ferry_shared::broker::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("a delivery within 30 s")
        .expect("consumer still running")
}

/// Waits until the work queue holds `ready` messages (the broker's counters settle
/// asynchronously); fails the test after 30 s.
async fn wait_for_depth(broker: &Broker, ready: u32) {
    for _ in 0..300 {
        if broker.work_queue_depth().await.expect("depth") == ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the work queue never held {ready} ready messages");
}

/// Takes the next letter from the DLQ, waiting up to 30 s for one to arrive.
async fn wait_for_dead_letter(broker: &Broker) -> DeadLetter {
    for _ in 0..300 {
        if let Some(letter) = broker.take_dead_letter().await.expect("basic.get") {
            return letter;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing arrived in the DLQ within 30 s");
}

#[tokio::test]
async fn topology_declared_twice_is_fine_and_conflicts_are_named() {
    let vhost = Vhost::create("declare").expect("a vhost of its own");
    let topology = quick_topology();
    let first = Broker::connect(&vhost.amqp_url(), &topology)
        .await
        .expect("first");
    let second = Broker::connect(&vhost.amqp_url(), &topology)
        .await
        .expect("second");
    assert_eq!(second.work_queue_depth().await.expect("depth"), 0);
    first.close().await.expect("close");
    second.close().await.expect("close");

    let changed = Topology {
        delivery_limit: topology.delivery_limit + 1,
        ..topology
    };
    match Broker::connect(&vhost.amqp_url(), &changed).await {
        Err(error @ BrokerError::TopologyConflict { .. }) => {
            assert!(!error.is_retryable());
            assert!(error.to_string().contains("t.flow-runs.work"), "{error}");
        }
        other => panic!("expected a topology conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    let url = AmqpUrl::parse("amqp://guest:not-the-password@127.0.0.1:5672/%2f").unwrap();
    let error = Broker::connect(&url, &quick_topology()).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(text.contains("***"), "{text}");
}

#[tokio::test]
async fn publish_and_consume_round_trip_with_headers() {
    let vhost = Vhost::create("roundtrip").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let message = FlowRunMessage::new(
        "acme.invoices",
        Trigger::Event {
            upstream_id: "erp-1".into(),
        },
        Some(vec!["a.csv".into()]),
    );
    publisher
        .publish(&message, &traced_headers())
        .await
        .expect("confirmed");

    let mut consumer = broker.consumer(ConsumerOptions::default());
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.message(), Ok(&message));
    assert_eq!(
        delivery.headers().get("traceparent"),
        traced_headers().get("traceparent")
    );
    assert_eq!(delivery.routing_key(), "acme.invoices");
    assert!(!delivery.redelivered());
    assert_eq!(delivery.ack().await.expect("ack"), Settled::Acked);
    consumer.shutdown().await;
    assert_eq!(broker.work_queue_depth().await.unwrap(), 0);
    publisher.close().await.unwrap();
}

#[tokio::test]
async fn a_publish_nobody_is_bound_for_fails() {
    let vhost = Vhost::create("unroutable").expect("a vhost of its own");
    let topology = Topology {
        bindings: vec!["only-this-flow".into()],
        ..quick_topology()
    };
    let broker = Broker::connect(&vhost.amqp_url(), &topology).await.unwrap();
    let publisher = broker.publisher(PublisherOptions::default());

    let lost = FlowRunMessage::new("another-flow", Trigger::Manual, None);
    match publisher.publish(&lost, &Headers::new()).await {
        Err(error @ BrokerError::Unroutable { .. }) => assert!(!error.is_retryable()),
        other => panic!("expected Unroutable, got {other:?}"),
    }
    let routed = FlowRunMessage::new("only-this-flow", Trigger::Manual, None);
    publisher
        .publish(&routed, &Headers::new())
        .await
        .expect("bound flow");
    wait_for_depth(&broker, 1).await;
}

#[tokio::test]
async fn invalid_messages_are_refused_before_publishing() {
    let vhost = Vhost::create("invalid").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let bad = FlowRunMessage::new("no spaces allowed", Trigger::Manual, None);
    assert!(matches!(
        publisher.publish(&bad, &Headers::new()).await,
        Err(BrokerError::InvalidMessage(_))
    ));
}

#[tokio::test]
async fn malformed_and_unknown_versions_are_dead_lettered_with_a_reason() {
    let vhost = Vhost::create("malformed").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    publisher
        .publish_bytes("acme", b"{\"schema_version\": 1,", &traced_headers())
        .await
        .unwrap();
    publisher
        .publish_bytes(
            "acme",
            br#"{"schema_version": 2, "flow": "acme"}"#,
            &Headers::new(),
        )
        .await
        .unwrap();

    let mut consumer = broker.consumer(ConsumerOptions::default());
    for _ in 0..2 {
        let delivery = next(&mut consumer).await;
        let reason = delivery.message().expect_err("undecodable").to_string();
        assert_eq!(
            delivery
                .dead_letter(ferry_shared::broker::DeadLetterReason::Malformed, &reason)
                .await
                .unwrap(),
            Settled::DeadLettered
        );
    }
    consumer.shutdown().await;

    let letters = [
        wait_for_dead_letter(&broker).await,
        wait_for_dead_letter(&broker).await,
    ];
    let malformed = letters
        .iter()
        .find(|l| l.headers.get(DEATH_CODE_HEADER).map(String::as_str) == Some("malformed"))
        .expect("the malformed one");
    assert!(
        malformed
            .reason
            .as_deref()
            .unwrap()
            .starts_with("malformed message")
    );
    assert_eq!(malformed.payload, b"{\"schema_version\": 1,");
    assert!(malformed.headers.contains_key("traceparent"));
    assert_eq!(malformed.routing_key, "acme");
    let newer = letters
        .iter()
        .find(|l| {
            l.headers.get(DEATH_CODE_HEADER).map(String::as_str) == Some("unsupported-version")
        })
        .expect("the version-2 one");
    assert_eq!(
        newer.reason.as_deref(),
        Some("unsupported schema version 2 (this worker reads version 1)")
    );
    assert_eq!(broker.work_queue_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn retries_come_back_with_the_next_attempt_then_dead_letter() {
    let vhost = Vhost::create("retry").expect("a vhost of its own");
    let topology = quick_topology();
    let broker = Broker::connect(&vhost.amqp_url(), &topology).await.unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let message = FlowRunMessage::new("acme", Trigger::Manual, None);
    publisher
        .publish(&message, &traced_headers())
        .await
        .unwrap();

    let mut consumer = broker.consumer(ConsumerOptions::default());
    let first = next(&mut consumer).await;
    assert_eq!(first.message().unwrap().attempt, 1);
    assert_eq!(
        first.retry_later("partner down").await.unwrap(),
        Settled::Retried {
            attempt: 2,
            delay: Duration::from_secs(1)
        }
    );

    let second = next(&mut consumer).await;
    let retried = second.message().unwrap().clone();
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.flow_run_id, message.flow_run_id);
    assert_eq!(second.routing_key(), topology.work_queue());
    assert_eq!(
        second
            .headers()
            .get(RETRY_REASON_HEADER)
            .map(String::as_str),
        Some("partner down")
    );
    assert!(second.headers().contains_key("traceparent"));
    assert_eq!(
        second.retry_later("still down").await.unwrap(),
        Settled::Retried {
            attempt: 3,
            delay: Duration::from_secs(2)
        }
    );

    let third = next(&mut consumer).await;
    assert_eq!(third.message().unwrap().attempt, 3);
    assert_eq!(
        third.retry_later("down for good").await.unwrap(),
        Settled::DeadLettered
    );
    consumer.shutdown().await;

    let letter = wait_for_dead_letter(&broker).await;
    assert_eq!(
        letter.reason.as_deref(),
        Some("gave up after 3 attempts: down for good")
    );
    let dead = FlowRunMessage::decode(&letter.payload).unwrap();
    assert_eq!((dead.flow_run_id, dead.attempt), (message.flow_run_id, 3));
}

#[tokio::test]
async fn prefetch_bounds_unacknowledged_deliveries() {
    let vhost = Vhost::create("prefetch").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    for _ in 0..5 {
        let message = FlowRunMessage::new("acme", Trigger::Manual, None);
        publisher.publish(&message, &Headers::new()).await.unwrap();
    }
    let options = ConsumerOptions {
        prefetch: 2,
        ..ConsumerOptions::default()
    };
    let mut consumer = broker.consumer(options);
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    // Without the limit the broker would push all five at once: none would stay ready.
    wait_for_depth(&broker, 3).await;
    for _ in 0..10 {
        assert_eq!(broker.work_queue_depth().await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.ack().await.unwrap();
    let c = next(&mut consumer).await;
    wait_for_depth(&broker, 2).await;
    for delivery in [b, c] {
        delivery.ack().await.unwrap();
    }
    for _ in 0..2 {
        next(&mut consumer).await.ack().await.unwrap();
    }
    consumer.shutdown().await;
}

#[tokio::test]
async fn a_dropped_delivery_goes_back_to_the_queue() {
    let vhost = Vhost::create("dropped").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let message = FlowRunMessage::new("acme", Trigger::Manual, None);
    publisher.publish(&message, &Headers::new()).await.unwrap();

    let mut consumer = broker.consumer(ConsumerOptions::default());
    drop(next(&mut consumer).await);
    let again = next(&mut consumer).await;
    assert!(again.redelivered());
    assert_eq!(again.message().unwrap().flow_run_id, message.flow_run_id);
    again.ack().await.unwrap();
    consumer.shutdown().await;
}

#[tokio::test]
async fn consumer_and_publisher_reconnect_after_the_broker_closes_their_connections() {
    let vhost = Vhost::create("cut").expect("a vhost of its own");
    let broker = Broker::connect(&vhost.amqp_url(), &quick_topology())
        .await
        .unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let mut consumer = broker.consumer(ConsumerOptions::default());
    let before = FlowRunMessage::new("acme", Trigger::Manual, None);
    publisher.publish(&before, &Headers::new()).await.unwrap();
    next(&mut consumer).await.ack().await.unwrap();

    // The broker closes every connection of this vhost (as an operator or a
    // load balancer would); nothing else on the broker is touched.
    let vhost_name = vhost.name().to_owned();
    tokio::task::spawn_blocking(move || {
        rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &vhost_name,
            "ferry test: connection cut",
        ])
        .expect("rabbitmqctl close_all_connections")
    })
    .await
    .unwrap();

    let after = FlowRunMessage::new("acme", Trigger::Manual, None);
    publisher
        .publish(&after, &Headers::new())
        .await
        .expect("republished on a new connection");
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.message().unwrap().flow_run_id, after.flow_run_id);
    delivery.ack().await.unwrap();
    assert!(consumer.is_consuming());
    consumer.shutdown().await;
}

#[tokio::test]
async fn a_message_that_keeps_coming_back_is_dead_lettered_by_the_broker() {
    let vhost = Vhost::create("poison").expect("a vhost of its own");
    let topology = Topology {
        delivery_limit: 2,
        ..quick_topology()
    };
    let broker = Broker::connect(&vhost.amqp_url(), &topology).await.unwrap();
    let publisher = broker.publisher(PublisherOptions::default());
    let message = FlowRunMessage::new("acme", Trigger::Manual, None);
    publisher.publish(&message, &Headers::new()).await.unwrap();

    let mut consumer = broker.consumer(ConsumerOptions::default());
    // A worker that dies while handling it, again and again: the message is returned.
    for round in 0..3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.redelivered(), round > 0);
        assert_eq!(delivery.requeue().await.unwrap(), Settled::Requeued);
    }
    let letter = wait_for_dead_letter(&broker).await;
    assert_eq!(letter.reason.as_deref(), Some("delivery_limit"));
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_publisher_survive_a_broker_restart() {
    let mut node = RabbitNode::start().expect("private RabbitMQ node");
    let url = AmqpUrl::parse(&node.url()).unwrap();
    let topology = quick_topology();
    let broker = Broker::connect(&url, &topology).await.expect("connect");
    let publisher = broker.publisher(PublisherOptions {
        confirm_timeout: Duration::from_secs(5),
        retry_for: Duration::from_secs(90),
        ..PublisherOptions::default()
    });
    let mut consumer = broker.consumer(ConsumerOptions::default());
    consumer.wait_until_consuming().await;

    // Publish continuously while the node is killed and restarted.
    let total = 60;
    let publishing = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for _ in 0..total {
                let message = FlowRunMessage::new("acme", Trigger::Manual, None);
                publisher.publish(&message, &Headers::new()).await?;
                sent.push(message.flow_run_id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, BrokerError>(sent)
        })
    };

    let mut received = HashSet::new();
    let mut redelivered = 0;
    let mut restarted = false;
    let mut in_hand_at_restart = None;
    while received.len() < total {
        let delivery = tokio::time::timeout(Duration::from_secs(120), consumer.next())
            .await
            .expect("deliveries keep coming")
            .expect("consumer running");
        if delivery.redelivered() {
            redelivered += 1;
        }
        let id = delivery.message().expect("decodes").flow_run_id;
        if received.len() == 10 && !restarted {
            // Crash the broker while this run is in hand: its ack cannot reach the
            // broker any more, and the broker must hand it out again.
            restarted = true;
            in_hand_at_restart = Some(id);
            let node = &mut node;
            tokio::task::block_in_place(|| node.restart()).expect("restart");
            match delivery.ack().await {
                Err(BrokerError::StaleDelivery | BrokerError::Amqp { .. }) => {}
                other => panic!("acking on a dead connection: {other:?}"),
            }
            continue;
        }
        match delivery.ack().await {
            Ok(_) => {
                received.insert(id);
            }
            // Acked on a connection that died: the broker redelivers it.
            Err(BrokerError::StaleDelivery | BrokerError::Amqp { .. }) => {}
            Err(other) => panic!("ack failed: {other}"),
        }
    }
    let sent = publishing.await.unwrap().expect("every publish confirmed");
    assert_eq!(sent.len(), total);
    let missing: Vec<_> = sent.iter().filter(|id| !received.contains(id)).collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    let in_hand = in_hand_at_restart.expect("the broker was restarted");
    assert!(received.contains(&in_hand));
    assert!(
        redelivered >= 1,
        "the run in hand came back flagged as redelivered"
    );
    eprintln!("restart test: {total} runs, {redelivered} redeliveries");
    consumer.shutdown().await;
}
