//! The run queue on its file: durability across reopening, due times, each way of settling,
//! and recovery of runs taken by a process that died.

use std::time::Duration;

use crate::broker::{DeadLetterReason, Headers, RETRY_REASON_HEADER, Settled, Topology};
use crate::idempotency::embedded::EmbeddedDb;
use crate::message::{FlowRunMessage, Trigger};

use super::RunQueue;

fn topology(delays_ms: &[u64], max_attempts: u32) -> Topology {
    Topology {
        retry_delays: delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        max_attempts,
        ..Topology::default()
    }
}

async fn queue_at(path: &std::path::Path, topology: Topology) -> RunQueue {
    RunQueue::new(EmbeddedDb::open(path).await.unwrap(), topology)
}

fn message(flow: &str) -> FlowRunMessage {
    FlowRunMessage::new(flow, Trigger::Manual, None)
}

/// `next` with a deadline, so that a test that finds nothing fails instead of hanging.
async fn next_within(queue: &RunQueue, within: Duration) -> Option<super::QueuedRun> {
    tokio::time::timeout(within, queue.next())
        .await
        .ok()
        .map(|run| run.unwrap())
}

#[tokio::test]
async fn a_queued_run_survives_reopening_the_file_and_comes_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let queue = queue_at(&path, Topology::default()).await;
    let sent = message("invoices-out");
    let mut headers = Headers::new();
    headers.insert("traceparent".into(), "00-abc-def-01".into());
    queue.enqueue(&sent, &headers).await.unwrap();
    drop(queue);

    let queue = queue_at(&path, Topology::default()).await;
    let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    assert_eq!(run.message().unwrap(), &sent);
    assert_eq!(run.headers().get("traceparent").unwrap(), "00-abc-def-01");
    assert_eq!(run.ack().await.unwrap(), Settled::Acked);
    assert_eq!(queue.depth().await.unwrap(), 0);
    assert!(
        next_within(&queue, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn runs_come_out_in_the_order_they_were_queued_and_a_taken_one_is_not_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_at(&dir.path().join("state.db"), Topology::default()).await;
    let (a, b) = (message("a"), message("b"));
    queue.enqueue(&a, &Headers::new()).await.unwrap();
    queue.enqueue(&b, &Headers::new()).await.unwrap();
    let first = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    let second = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.message().unwrap().flow_id, "a");
    assert_eq!(second.message().unwrap().flow_id, "b");
    assert!(
        next_within(&queue, Duration::from_millis(300))
            .await
            .is_none()
    );
    let _ = first.ack().await.unwrap();
    let _ = second.ack().await.unwrap();
}

#[tokio::test]
async fn a_retry_is_not_due_before_its_delay_and_carries_the_next_attempt_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_at(&dir.path().join("state.db"), topology(&[1500], 3)).await;
    queue.enqueue(&message("f"), &Headers::new()).await.unwrap();
    let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    let settled = run.retry_later("connection refused").await.unwrap();
    assert_eq!(
        settled,
        Settled::Retried {
            attempt: 2,
            delay: Duration::from_millis(1500)
        }
    );
    let started = std::time::Instant::now();
    let again = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "due after {waited:?}"
    );
    assert_eq!(again.message().unwrap().attempt, 2);
    assert_eq!(
        again.headers().get(RETRY_REASON_HEADER).unwrap(),
        "connection refused"
    );
    let _ = again.ack().await.unwrap();
}

#[tokio::test]
async fn the_last_attempt_allowed_goes_to_the_dead_letters_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let queue = queue_at(&path, topology(&[10, 20], 3)).await;
    let sent = message("f");
    queue.enqueue(&sent, &Headers::new()).await.unwrap();
    let mut settled = Vec::new();
    for _ in 0..3 {
        let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
        settled.push(run.retry_later("530 not now").await.unwrap());
    }
    assert_eq!(
        settled,
        vec![
            Settled::Retried {
                attempt: 2,
                delay: Duration::from_millis(10)
            },
            Settled::Retried {
                attempt: 3,
                delay: Duration::from_millis(20)
            },
            Settled::DeadLettered,
        ]
    );
    assert_eq!(queue.depth().await.unwrap(), 0);
    drop(queue);
    let queue = queue_at(&path, Topology::default()).await;
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].flow_run_id, sent.flow_run_id.to_string());
    assert_eq!(dead[0].kind, DeadLetterReason::RetriesExhausted);
    assert_eq!(dead[0].attempt, 3);
    assert_eq!(dead[0].reason, "gave up after 3 attempts: 530 not now");
    assert_eq!(dead[0].message["flow_id"], "f");
}

#[tokio::test]
async fn a_dead_letter_keeps_its_kind_and_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_at(&dir.path().join("state.db"), Topology::default()).await;
    queue
        .enqueue(&message("gone"), &Headers::new())
        .await
        .unwrap();
    let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    let settled = run
        .dead_letter(DeadLetterReason::UnknownFlow, "unknown flow `gone`")
        .await
        .unwrap();
    assert_eq!(settled, Settled::DeadLettered);
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead[0].kind, DeadLetterReason::UnknownFlow);
    assert_eq!(dead[0].reason, "unknown flow `gone`");
    let json = serde_json::to_value(&dead[0]).unwrap();
    assert_eq!(json["kind"], "unknown_flow");
}

#[tokio::test]
async fn a_run_taken_by_a_process_that_died_is_due_again_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let sent = message("f");
    {
        let queue = queue_at(&path, Topology::default()).await;
        queue.enqueue(&sent, &Headers::new()).await.unwrap();
        let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
        // The process dies mid-run: nothing settles it, nothing releases it.
        std::mem::forget(run);
    }
    let queue = queue_at(&path, Topology::default()).await;
    assert!(
        next_within(&queue, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert_eq!(queue.recover_taken().await.unwrap(), 1);
    let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    assert_eq!(run.message().unwrap().flow_run_id, sent.flow_run_id);
    assert!(run.redelivered(), "the run may be partly done: it says so");
    let _ = run.ack().await.unwrap();
}

#[tokio::test]
async fn a_run_dropped_unsettled_is_released_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_at(&dir.path().join("state.db"), Topology::default()).await;
    queue.enqueue(&message("f"), &Headers::new()).await.unwrap();
    drop(next_within(&queue, Duration::from_secs(5)).await.unwrap());
    let run = next_within(&queue, Duration::from_secs(5)).await.unwrap();
    let _ = run.ack().await.unwrap();
}
