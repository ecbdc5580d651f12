//! Consuming flow runs: a supervisor task that keeps a consumer attached to the work
//! queue whatever happens to the connection, and [`Delivery`], the handle a worker
//! settles once it knows the outcome of a run.
//!
//! The supervisor owns its connection. When the broker restarts or the network cuts, the
//! consumer's stream ends with an error; the supervisor waits (exponential backoff with
//! jitter), reconnects, re-declares the topology, sets the prefetch again and resumes.
//! Deliveries handed out before the cut can no longer be settled (their channel is gone):
//! the broker redelivers them, flagged `redelivered`, and settling the stale handle
//! reports [`BrokerError::StaleDelivery`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, BasicProperties, Channel};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use super::amqp::{self, from_field_table, header_text, publish_confirmed, without_broker_headers};
use super::{
    AmqpUrl, BrokerError, DEATH_CODE_HEADER, DEATH_KIND_HEADER, DEATH_REASON_HEADER,
    DeadLetterReason, Headers, PUBLISHED_AT_HEADER, RETRY_REASON_HEADER, Topology,
};
use crate::backoff::Backoff;
use crate::message::{DecodeError, FlowRunMessage};
use crate::telemetry::LogEvent;
use crate::telemetry::metrics::runs::RunMetrics;

/// How often the supervisor checks that its connection is still alive, in case the
/// consumer stream misses the end of the connection.
const LIVENESS_CHECK: Duration = Duration::from_secs(5);

/// How a [`Consumer`] consumes.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Unacknowledged deliveries at most (AMQP prefetch): the worker's concurrency.
    pub prefetch: u16,
    /// How long to wait for the confirm of a retry or dead-letter publish.
    pub confirm_timeout: Duration,
    /// Backoff between reconnects.
    pub backoff: Backoff,
    /// Connection name shown in RabbitMQ's management UI.
    pub connection_name: String,
}

impl Default for ConsumerOptions {
    /// Prefetch 4, 10 s confirms, reconnect backoff 100 ms doubling to 30 s.
    fn default() -> Self {
        ConsumerOptions {
            prefetch: 4,
            confirm_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            connection_name: "ferry-consumer".into(),
        }
    }
}

/// How a delivery was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Done; removed from the queue.
    Acked,
    /// Published to the delay queue as `attempt`, back in the work queue after `delay`.
    Retried {
        /// The attempt number of the retry.
        attempt: u32,
        /// How long it waits.
        delay: Duration,
    },
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// Handed back to the work queue at once.
    Requeued,
}

impl Settled {
    /// [`Settled::Retried`], logged as `flow_run_retry_scheduled` (by either queue).
    pub(crate) fn retried(attempt: u32, delay: Duration, reason: &str) -> Settled {
        info!(
            attempt,
            ?delay,
            reason,
            event = LogEvent::FlowRunRetryScheduled.as_str(),
            "flow run scheduled for retry"
        );
        Settled::Retried { attempt, delay }
    }
}

/// A stream of [`Delivery`]s from the work queue that survives broker restarts.
/// Dropping it stops the supervisor; deliveries already handed out stay settleable.
#[derive(Debug)]
pub struct Consumer {
    deliveries: mpsc::Receiver<Delivery>,
    stop: watch::Sender<bool>,
    consuming: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl Consumer {
    pub(crate) fn start(url: AmqpUrl, topology: Arc<Topology>, options: ConsumerOptions) -> Self {
        let (deliveries_tx, deliveries) = mpsc::channel(1);
        let (stop, stop_rx) = watch::channel(false);
        let (consuming_tx, consuming) = watch::channel(false);
        let supervisor = Supervisor {
            url,
            topology,
            options,
            deliveries: deliveries_tx,
            stop: stop_rx,
            consuming: consuming_tx,
        };
        let span = info_span!("broker.consumer", queue = %supervisor.topology.work_queue());
        let task = tokio::spawn(supervisor.run().instrument(span));
        Consumer {
            deliveries,
            stop,
            consuming,
            task: Some(task),
        }
    }

    /// The next delivery; `None` once the consumer is shut down. Deliveries whose channel
    /// died while they waited in the buffer are skipped (the broker redelivers them).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let delivery = self.deliveries.recv().await?;
            if delivery.acker.usable() {
                return Some(delivery);
            }
            debug!("skipping a delivery from a closed channel; the broker redelivers it");
        }
    }

    /// Whether a consumer is attached to the queue right now (for health endpoints).
    pub fn is_consuming(&self) -> bool {
        *self.consuming.borrow()
    }

    /// Waits until a consumer is attached to the queue (after start or a reconnect).
    pub async fn wait_until_consuming(&mut self) {
        // An error means the supervisor is gone: nothing more to wait for.
        let _ = self.consuming.wait_for(|consuming| *consuming).await;
    }

    /// Stops consuming: cancels the broker-side consumer, hands the buffered deliveries
    /// back to the queue and waits for the supervisor to end. Deliveries already taken
    /// with [`Consumer::next`] can still be settled afterwards.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        self.deliveries.close();
        while let Some(delivery) = self.deliveries.recv().await {
            drop(delivery.requeue().await);
        }
        if let Some(task) = self.task.take() {
            drop(task.await);
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What keeps the consumer attached: one session per connection, rebuilt after failures.
struct Supervisor {
    url: AmqpUrl,
    topology: Arc<Topology>,
    options: ConsumerOptions,
    deliveries: mpsc::Sender<Delivery>,
    stop: watch::Receiver<bool>,
    consuming: watch::Sender<bool>,
}

impl Supervisor {
    async fn run(mut self) {
        let mut backoff = self.options.backoff.clone();
        let mut failures: u32 = 0;
        while !*self.stop.borrow() {
            let outcome = self.session(&mut backoff, &mut failures).await;
            self.consuming.send_replace(false);
            match outcome {
                Ok(()) => break,
                Err(error) => {
                    failures += 1;
                    let delay = backoff.next_delay();
                    warn!(error = %error, failures, ?delay, "consumer lost its connection; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
        info!("consumer stopped");
    }

    /// One connection's life: `Ok` when asked to stop, `Err` when the connection failed.
    async fn session(
        &mut self,
        backoff: &mut Backoff,
        failures: &mut u32,
    ) -> Result<(), BrokerError> {
        let options = &self.options;
        let connection = amqp::connect(
            &self.url,
            &options.connection_name,
            options.confirm_timeout.max(Duration::from_secs(5)),
        )
        .await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| BrokerError::amqp("channel.open", e))?;
        self.topology.declare(&channel).await?;
        channel
            .basic_qos(options.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| BrokerError::amqp("basic.qos", e))?;
        let publish = amqp::confirm_channel(&connection).await?;
        let queue = self.topology.work_queue();
        let mut stream = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::amqp("basic.consume", e))?;
        let link = Arc::new(SessionLink {
            topology: self.topology.clone(),
            publish,
            _consume: channel.clone(),
            confirm_timeout: options.confirm_timeout,
        });
        info!(
            prefetch = options.prefetch,
            after_failures = *failures,
            event = LogEvent::Consuming.as_str(),
            "consuming"
        );
        backoff.reset();
        *failures = 0;
        self.consuming.send_replace(true);

        let mut liveness = tokio::time::interval(LIVENESS_CHECK);
        loop {
            let next = tokio::select! {
                biased;
                _ = self.stop.changed() => {
                    let _ = channel.basic_cancel(stream.tag(), BasicCancelOptions::default()).await;
                    return Ok(());
                }
                _ = liveness.tick() => {
                    if !connection.status().connected() || !channel.status().connected() {
                        return Err(BrokerError::Disconnected {
                            detail: "the consumer's connection closed".into(),
                        });
                    }
                    continue;
                }
                next = stream.next() => next,
            };
            let raw = match next {
                Some(Ok(raw)) => raw,
                Some(Err(error)) => return Err(BrokerError::amqp("basic.consume", error)),
                None => {
                    return Err(BrokerError::Disconnected {
                        detail: "the broker cancelled the consumer (queue deleted?)".into(),
                    });
                }
            };
            let delivery = Delivery::new(raw, link.clone());
            if let Err(error) = &delivery.message {
                warn!(%error, code = error.code(), routing_key = %delivery.routing_key,
                    "received an undecodable flow-run message");
            }
            // Wait for room in the buffer (the worker is busy) but keep listening for stop.
            let permit = tokio::select! {
                biased;
                _ = self.stop.changed() => None,
                permit = self.deliveries.reserve() => permit.ok(),
            };
            match permit {
                Some(permit) => permit.send(delivery),
                None => {
                    drop(delivery.requeue().await);
                    let _ = channel
                        .basic_cancel(stream.tag(), BasicCancelOptions::default())
                        .await;
                    return Ok(());
                }
            }
        }
    }
}

/// What a delivery needs to settle itself: the channels of the session it came from.
#[derive(Debug)]
struct SessionLink {
    topology: Arc<Topology>,
    publish: Channel,
    /// Held so the consuming channel stays open while its deliveries are being handled.
    _consume: Channel,
    confirm_timeout: Duration,
}

/// One message from the work queue, decoded (or not), waiting to be settled.
/// Dropping it unsettled hands it back to the queue (as [`Delivery::requeue`] does).
#[derive(Debug)]
pub struct Delivery {
    message: Result<FlowRunMessage, DecodeError>,
    headers: Headers,
    properties: BasicProperties,
    payload: Vec<u8>,
    routing_key: String,
    redelivered: bool,
    acker: Acker,
    settled: bool,
    link: Arc<SessionLink>,
}

impl Delivery {
    fn new(raw: lapin::message::Delivery, link: Arc<SessionLink>) -> Self {
        let message = FlowRunMessage::decode(&raw.data);
        let headers = from_field_table(raw.properties.headers().as_ref());
        Delivery {
            message,
            headers,
            properties: raw.properties,
            payload: raw.data,
            routing_key: raw.routing_key.to_string(),
            redelivered: raw.redelivered,
            acker: raw.acker,
            settled: false,
            link,
        }
    }

    /// The decoded message, or why it could not be decoded (then dead-letter it).
    pub fn message(&self) -> Result<&FlowRunMessage, &DecodeError> {
        self.message.as_ref()
    }

    /// The message's headers (trace context, retry reason, the broker's delivery count).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Whether the broker delivered it before (to a worker that died or lost its link):
    /// the run may be partly done.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The routing key it arrived with: the flow id, or the work queue's name for a
    /// message that came back from a delay queue.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The raw payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// When the message was published, or when its retry delay ended: ferry's
    /// `x-ferry-published-at` header (milliseconds), else the AMQP `timestamp` property
    /// that other publishers set (seconds); `None` when neither is there.
    pub fn published_at(&self) -> Option<std::time::SystemTime> {
        let millis = self
            .headers
            .get(PUBLISHED_AT_HEADER)
            .and_then(|text| text.parse::<u64>().ok())
            .or_else(|| {
                self.properties
                    .timestamp()
                    .and_then(|seconds| seconds.checked_mul(1000))
            })?;
        std::time::SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    }

    /// Done: removes the message from the queue.
    pub async fn ack(mut self) -> Result<Settled, BrokerError> {
        self.settle_ack().await?;
        debug!("delivery acked");
        Ok(Settled::Acked)
    }

    /// The attempt failed in a way that may pass later: publishes the next attempt to the
    /// delay queue (confirmed), then acks this one. When this was the last attempt
    /// allowed, or the message could not be decoded, dead-letters it instead.
    pub async fn retry_later(mut self, reason: &str) -> Result<Settled, BrokerError> {
        let message = match &self.message {
            Ok(message) => message.clone(),
            Err(error) => {
                let reason = format!("{error} (retry asked: {reason})");
                return self.dead_letter(DeadLetterReason::Malformed, &reason).await;
            }
        };
        let topology = self.link.topology.clone();
        let Some(delay) = topology.retry_delay(message.attempt) else {
            let reason = format!("gave up after {} attempts: {reason}", message.attempt);
            return self
                .dead_letter(DeadLetterReason::RetriesExhausted, &reason)
                .await;
        };
        self.ensure_usable()?;
        let next = message.next_attempt();
        let payload = next.encode()?;
        let mut headers = without_broker_headers(&self.headers);
        headers.insert(RETRY_REASON_HEADER.into(), header_text(reason));
        // The lag of the next attempt counts from the end of its delay, not from now.
        headers.insert(
            PUBLISHED_AT_HEADER.into(),
            amqp::unix_millis(std::time::SystemTime::now() + delay).to_string(),
        );
        let queue = topology.delay_queue(delay);
        publish_confirmed(
            &self.link.publish,
            "",
            &queue,
            &payload,
            amqp::message_properties(&next, &headers),
            self.link.confirm_timeout,
        )
        .await?;
        self.settle_ack().await?;
        Ok(Settled::retried(next.attempt, delay, reason))
    }

    /// The message can never succeed: publishes it unchanged to the dead-letter exchange
    /// with `kind` in `x-ferry-death-kind` and the operator's sentence `reason` in
    /// `x-ferry-death-reason` (confirmed), then acks it and counts it in
    /// `ferry_dead_letters_total{reason=kind}`.
    pub async fn dead_letter(
        mut self,
        kind: DeadLetterReason,
        reason: &str,
    ) -> Result<Settled, BrokerError> {
        self.ensure_usable()?;
        let mut headers = without_broker_headers(&self.headers);
        headers.insert(DEATH_REASON_HEADER.into(), header_text(reason));
        headers.insert(DEATH_KIND_HEADER.into(), kind.as_str().into());
        if let Err(error) = &self.message {
            headers.insert(DEATH_CODE_HEADER.into(), error.code().into());
        }
        let properties = self
            .properties
            .clone()
            .with_headers(amqp::to_field_table(&headers));
        let exchange = self.link.topology.dead_letter_exchange();
        // Keep the flow id as routing key (a retried message arrives keyed by the queue).
        let routing_key = match &self.message {
            Ok(message) => message.flow_id.clone(),
            Err(_) => self.routing_key.clone(),
        };
        publish_confirmed(
            &self.link.publish,
            &exchange,
            &routing_key,
            &self.payload,
            properties,
            self.link.confirm_timeout,
        )
        .await?;
        self.settle_ack().await?;
        RunMetrics::global().record_dead_letter(kind.as_str());
        warn!(
            routing_key,
            reason,
            kind = kind.as_str(),
            event = LogEvent::FlowRunDeadLettered.as_str(),
            "flow run dead-lettered"
        );
        Ok(Settled::DeadLettered)
    }

    /// Hands the message back to the work queue at once (graceful shutdown, or work this
    /// worker cannot take now). Counts toward the queue's delivery limit.
    pub async fn requeue(mut self) -> Result<Settled, BrokerError> {
        self.settled = true;
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        match self.acker.nack(options).await {
            Ok(true) => Ok(Settled::Requeued),
            Ok(false) => Err(BrokerError::StaleDelivery),
            Err(e) => Err(BrokerError::amqp("basic.nack", e)),
        }
    }

    fn ensure_usable(&self) -> Result<(), BrokerError> {
        if self.acker.usable() {
            Ok(())
        } else {
            Err(BrokerError::StaleDelivery)
        }
    }

    async fn settle_ack(&mut self) -> Result<(), BrokerError> {
        self.settled = true;
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BrokerError::StaleDelivery),
            Err(e) => Err(BrokerError::amqp("basic.ack", e)),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.settled || !self.acker.usable() {
            return;
        }
        // Unsettled (a failed retry or dead-letter publish, or a forgotten delivery):
        // give it back now rather than when the channel closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let acker = self.acker.clone();
            runtime.spawn(async move {
                let options = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                if let Err(error) = acker.nack(options).await {
                    debug!(%error, "could not requeue a dropped delivery; the broker will on channel close");
                }
            });
        }
    }
}

/// A message from the dead-letter queue, for operators' tools.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The payload as it was published.
    pub payload: Vec<u8>,
    /// Its headers, ferry's `x-ferry-death-*` included.
    pub headers: Headers,
    /// Its original routing key (the flow id).
    pub routing_key: String,
    /// Why it was dead-lettered (`x-ferry-death-reason`, or the broker's reason such as
    /// `delivery_limit` when the broker dead-lettered it itself).
    pub reason: Option<String>,
}

/// Takes the oldest message of the dead-letter queue (get, then ack).
pub(crate) async fn take_dead_letter(
    channel: &Channel,
    topology: &Topology,
) -> Result<Option<DeadLetter>, BrokerError> {
    let queue = topology.dead_letter_queue();
    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(|e| BrokerError::amqp("basic.get", e))?;
    let Some(got) = got else {
        return Ok(None);
    };
    let delivery = got.delivery;
    let headers = from_field_table(delivery.properties.headers().as_ref());
    let reason = headers
        .get(DEATH_REASON_HEADER)
        .or_else(|| headers.get("x-first-death-reason"))
        .cloned();
    let letter = DeadLetter {
        payload: delivery.data.clone(),
        headers,
        routing_key: delivery.routing_key.to_string(),
        reason,
    };
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map_err(|e| BrokerError::amqp("basic.ack", e))?;
    Ok(Some(letter))
}
