//! Publishing flow runs with confirms: a run the scheduler decided on must reach a queue
//! or be reported as not reaching it. A publish whose fate is unknown (connection lost,
//! no confirm in time, nack) is published again on a fresh connection, so a broker
//! restart costs a duplicate at worst, never a lost run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;
use tracing::{Instrument, debug, info_span, warn};

use super::amqp::{self, message_properties, publish_confirmed};
use super::{AmqpUrl, BrokerError, Headers, Topology};
use crate::backoff::Backoff;
use crate::message::FlowRunMessage;
use crate::telemetry::{self, LogEvent};

/// How a [`Publisher`] waits and retries.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// How long to wait for the broker's confirm of one publish.
    pub confirm_timeout: Duration,
    /// How long to keep retrying a publish that may be lost before giving up.
    pub retry_for: Duration,
    /// Backoff between retries (and reconnects).
    pub backoff: Backoff,
    /// Connection name shown in RabbitMQ's management UI.
    pub connection_name: String,
}

impl Default for PublisherOptions {
    /// 10 s per confirm, retry for up to 2 minutes, backoff 100 ms doubling to 5 s.
    fn default() -> Self {
        PublisherOptions {
            confirm_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(120),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            connection_name: "ferry-publisher".into(),
        }
    }
}

/// Publishes flow runs to the flow-runs exchange with the flow id as routing key.
/// Cheap to clone; clones share one connection, and concurrent publishes share it too.
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: AmqpUrl,
    topology: Arc<Topology>,
    options: PublisherOptions,
    link: Mutex<Option<Link>>,
    generations: AtomicU64,
}

/// One connection and its confirm-mode channel; `generation` tells links apart so that a
/// failure seen on an old link does not tear down a newer one.
#[derive(Debug)]
struct Link {
    connection: Connection,
    channel: Channel,
    generation: u64,
}

impl Publisher {
    pub(crate) fn new(url: AmqpUrl, topology: Arc<Topology>, options: PublisherOptions) -> Self {
        Publisher {
            inner: Arc::new(Inner {
                url,
                topology,
                options,
                link: Mutex::new(None),
                generations: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes `message` with `headers` and returns once the broker confirmed it. The
    /// `broker.publish` span (a producer span) continues the trace context in `headers` (or
    /// the current span's), and the message carries the publish span's own `traceparent`. Retries what may be lost until `retry_for` runs out; fails at once
    /// when no queue is bound for the flow or the message is invalid.
    pub async fn publish(
        &self,
        message: &FlowRunMessage,
        headers: &Headers,
    ) -> Result<(), BrokerError> {
        let span = info_span!(
            "broker.publish",
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.operation.name = "publish",
            messaging.operation.type = "send",
            messaging.destination.name = %self.inner.topology.exchange(),
            messaging.rabbitmq.destination.routing_key = %message.flow_id,
            messaging.message.id = %message.flow_run_id,
            server.address = %self.inner.url.host(),
            server.port = self.inner.url.port(),
            flow_id = %message.flow_id,
            flow_run_id = %message.flow_run_id,
            attempt = message.attempt,
        );
        // The span continues the caller's trace context (an upstream's, or the current span's,
        // which it is a child of anyway) and the message carries the publish span's own
        // context, so that the consumer's span is a child of this publish.
        telemetry::set_parent_from(&span, headers);
        async {
            let mut headers = headers.clone();
            headers.extend(telemetry::inject_current_context());
            let payload = message.encode()?;
            headers.insert(
                super::PUBLISHED_AT_HEADER.into(),
                amqp::unix_millis(std::time::SystemTime::now()).to_string(),
            );
            let properties = message_properties(message, &headers);
            self.publish_with_retries(&message.flow_id, &payload, properties)
                .await
        }
        .instrument(span)
        .await
    }

    /// Publishes bytes as they are, as a flow run for `routing_key`, with the same
    /// confirms and retries. For bridges that relay messages produced elsewhere (and for
    /// tests): nothing is checked, and a worker dead-letters what it cannot decode.
    pub async fn publish_bytes(
        &self,
        routing_key: &str,
        payload: &[u8],
        headers: &Headers,
    ) -> Result<(), BrokerError> {
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_type(amqp::MESSAGE_TYPE.into())
            .with_headers(amqp::to_field_table(headers));
        self.publish_with_retries(routing_key, payload, properties)
            .instrument(info_span!("broker.publish_bytes", routing_key))
            .await
    }

    /// Closes the connection, if one is open.
    pub async fn close(&self) -> Result<(), BrokerError> {
        if let Some(link) = self.inner.link.lock().await.take() {
            link.connection
                .close(200, "ferry publisher closing".into())
                .await
                .map_err(|e| BrokerError::amqp("connection.close", e))?;
        }
        Ok(())
    }

    async fn publish_with_retries(
        &self,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BrokerError> {
        let options = &self.inner.options;
        let exchange = self.inner.topology.exchange();
        let started = Instant::now();
        let mut backoff = options.backoff.clone();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match self.channel().await {
                Ok((channel, generation)) => publish_confirmed(
                    &channel,
                    &exchange,
                    routing_key,
                    payload,
                    properties.clone(),
                    options.confirm_timeout,
                )
                .await
                .inspect_err(|e| {
                    if e.is_retryable() {
                        self.forget(generation);
                    }
                }),
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(()) => {
                    debug!(attempts, "publish confirmed");
                    return Ok(());
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            if started.elapsed() + delay > options.retry_for {
                return Err(BrokerError::GaveUp {
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            warn!(
                error = %error,
                attempts,
                ?delay,
                event = LogEvent::PublishRetried.as_str(),
                "publish not confirmed; publishing again"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The current channel, connecting (and re-declaring the topology) if there is none.
    async fn channel(&self) -> Result<(Channel, u64), BrokerError> {
        let mut link = self.inner.link.lock().await;
        if let Some(current) = link.as_ref() {
            if current.channel.status().connected() {
                return Ok((current.channel.clone(), current.generation));
            }
            debug!("publisher channel closed; reconnecting");
        }
        let inner = &self.inner;
        let connection = amqp::connect(
            &inner.url,
            &inner.options.connection_name,
            inner.options.confirm_timeout.max(Duration::from_secs(5)),
        )
        .await?;
        let setup = connection
            .create_channel()
            .await
            .map_err(|e| BrokerError::amqp("channel.open", e))?;
        inner.topology.declare(&setup).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let channel = amqp::confirm_channel(&connection).await?;
        let generation = inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *link = Some(Link {
            connection,
            channel: channel.clone(),
            generation,
        });
        Ok((channel, generation))
    }

    /// Drops the link of `generation` (if it is still the current one) so the next
    /// publish reconnects.
    fn forget(&self, generation: u64) {
        if let Ok(mut link) = self.inner.link.try_lock()
            && link.as_ref().is_some_and(|l| l.generation == generation)
        {
            *link = None;
        }
    }
}
