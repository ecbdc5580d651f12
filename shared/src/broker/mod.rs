//! ferry's RabbitMQ layer: the only module that speaks AMQP.
//!
//! What it promises the rest of ferry:
//! - the topology ([`Topology`]) is declared idempotently by whoever connects;
//! - a publish ([`Publisher::publish`]) returns `Ok` only once the broker confirmed a
//!   persistent, routed copy; a nack, a return (no queue bound for the flow) or a missing
//!   confirm is an error, and the publisher reconnects and retries what may be lost
//!   (at-least-once: consumers must be idempotent, which `idempotency` makes them);
//! - a [`Consumer`] keeps consuming across broker restarts and network cuts (its own
//!   supervisor rebuilds connection, channel and consumer with backoff; lapin's young
//!   auto-recovery is not used) and hands out [`Delivery`]s that are settled exactly one
//!   way: [`Delivery::ack`], [`Delivery::retry_later`] (through a delay queue, attempt+1),
//!   [`Delivery::dead_letter`] (with the reason in `x-ferry-death-reason`), or
//!   [`Delivery::requeue`]. A malformed message is handed out with its decode error, to
//!   be dead-lettered, never requeued; the broker's delivery limit dead-letters anything
//!   that keeps coming back.
//!
//! Headers are plain text maps ([`Headers`]): the telemetry module injects and extracts
//! W3C trace context through them without knowing about AMQP.

mod amqp;
mod consumer;
mod dead_letter;
mod publisher;
mod topology;
mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tracing::info;

pub use consumer::{Consumer, ConsumerOptions, DeadLetter, Delivery, Settled};
pub use dead_letter::DeadLetterReason;
pub use publisher::{Publisher, PublisherOptions};
pub use topology::Topology;
pub use url::AmqpUrl;

use crate::message::DecodeError;

/// Application headers of a message (W3C `traceparent`/`tracestate`, ferry's own
/// `x-ferry-*`). A `HashMap<String, String>` so that OpenTelemetry's propagators can
/// inject into and extract from it directly.
pub type Headers = HashMap<String, String>;

/// Header carrying why a message was dead-lettered.
pub const DEATH_REASON_HEADER: &str = "x-ferry-death-reason";
/// Header carrying the [`DecodeError::code`] of a message dead-lettered as undecodable.
pub const DEATH_CODE_HEADER: &str = "x-ferry-death-code";
/// Header carrying why the previous attempt failed, on a retried message.
pub const RETRY_REASON_HEADER: &str = "x-ferry-retry-reason";
/// Header carrying the [`DeadLetterReason`] of a dead-lettered message (its stable word).
pub const DEATH_KIND_HEADER: &str = "x-ferry-death-kind";
/// Header carrying when a flow-run message was published (or, for a retry, when its delay
/// ends), as Unix milliseconds: the start of the queue lag (`ferry_flow_run_queue_lag_seconds`).
pub const PUBLISHED_AT_HEADER: &str = "x-ferry-published-at";

/// How long [`Broker::connect`] waits for the broker to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to RabbitMQ, sorted by what the caller can do about it
/// ([`BrokerError::is_retryable`]).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The AMQP URL does not parse (the URL itself is never repeated: it holds a password).
    #[error("invalid AMQP URL: {reason}")]
    InvalidUrl {
        /// What is wrong.
        reason: String,
    },
    /// The topology's settings make no sense.
    #[error("invalid broker topology: {reason}")]
    InvalidTopology {
        /// What is wrong.
        reason: String,
    },
    /// The broker could not be reached, or refused us.
    #[error("cannot connect to RabbitMQ at {url}: {detail}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What happened.
        detail: String,
        /// False when the broker refused the credentials or the vhost.
        retryable: bool,
    },
    /// An object exists with other settings than ours (PRECONDITION_FAILED): an operator
    /// must delete it or ferry's settings must match it.
    #[error("{object} already exists with different settings: {detail}")]
    TopologyConflict {
        /// The exchange, queue or binding.
        object: String,
        /// The broker's words.
        detail: String,
    },
    /// An AMQP operation failed (connection or channel lost, most often).
    #[error("AMQP {operation} failed: {source}")]
    Amqp {
        /// The AMQP method.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The connection or the consumer went away (broker restart, network cut).
    #[error("lost the broker: {detail}")]
    Disconnected {
        /// What was noticed.
        detail: String,
    },
    /// A mandatory publish matched no queue: nothing is bound for this routing key.
    #[error("no queue is bound to {exchange} for routing key {routing_key:?} ({reply})")]
    Unroutable {
        /// Where it was published.
        exchange: String,
        /// The routing key (the flow id, for flow runs).
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The broker did not confirm a publish (nack, timeout, channel lost): the message
    /// may or may not be stored; publishing again is the safe move.
    #[error("publish to {exchange} with routing key {routing_key:?} not confirmed: {why}")]
    NotConfirmed {
        /// Where it was published.
        exchange: String,
        /// The routing key.
        routing_key: String,
        /// Why it is not confirmed.
        why: String,
    },
    /// The message fails the checks a worker applies (it would be dead-lettered).
    #[error("refusing to publish an invalid flow-run message: {0}")]
    InvalidMessage(#[from] DecodeError),
    /// The delivery's channel closed before it was settled; the broker redelivers it.
    #[error("the delivery's channel is closed; the broker will redeliver the message")]
    StaleDelivery,
    /// The publisher kept failing until its retry budget ran out.
    #[error("gave up publishing after {attempts} attempts over {elapsed:?}: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last failure.
        #[source]
        last: Box<BrokerError>,
    },
}

impl BrokerError {
    pub(crate) fn amqp(operation: &'static str, source: lapin::Error) -> Self {
        BrokerError::Amqp { operation, source }
    }

    /// Whether trying again later (after reconnecting) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BrokerError::Connect { retryable, .. } => *retryable,
            BrokerError::Amqp { .. }
            | BrokerError::Disconnected { .. }
            | BrokerError::NotConfirmed { .. } => true,
            BrokerError::InvalidUrl { .. }
            | BrokerError::InvalidTopology { .. }
            | BrokerError::TopologyConflict { .. }
            | BrokerError::Unroutable { .. }
            | BrokerError::InvalidMessage(_)
            | BrokerError::StaleDelivery
            | BrokerError::GaveUp { .. } => false,
        }
    }
}

/// A connection to RabbitMQ with the deployment's topology declared; the factory of
/// publishers and consumers.
pub struct Broker {
    url: AmqpUrl,
    topology: Arc<Topology>,
    connection: Connection,
    channel: Channel,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.url)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects and declares `topology` (idempotent; what `ferry-worker setup` runs).
    #[tracing::instrument(name = "broker.connect", skip_all, fields(url = %url, prefix = %topology.prefix))]
    pub async fn connect(url: &AmqpUrl, topology: &Topology) -> Result<Broker, BrokerError> {
        topology.validate()?;
        let connection = amqp::connect(url, "ferry", CONNECT_TIMEOUT).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| BrokerError::amqp("channel.open", e))?;
        topology.declare(&channel).await?;
        info!("connected to RabbitMQ");
        Ok(Broker {
            url: url.clone(),
            topology: Arc::new(topology.clone()),
            connection,
            channel,
        })
    }

    /// The topology this broker was set up with.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A publisher (with its own connection, so that broker flow control on publishers
    /// never stalls this process's consumers).
    pub fn publisher(&self, options: PublisherOptions) -> Publisher {
        Publisher::new(self.url.clone(), self.topology.clone(), options)
    }

    /// Starts consuming the work queue with `options.prefetch` unacknowledged deliveries
    /// at most, under a supervisor that reconnects on its own.
    pub fn consumer(&self, options: ConsumerOptions) -> Consumer {
        Consumer::start(self.url.clone(), self.topology.clone(), options)
    }

    /// Messages ready (not yet delivered) in the work queue: a backlog gauge.
    pub async fn work_queue_depth(&self) -> Result<u32, BrokerError> {
        self.queue_depth(&self.topology.work_queue()).await
    }

    /// Messages waiting in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<u32, BrokerError> {
        self.queue_depth(&self.topology.dead_letter_queue()).await
    }

    /// Takes (and removes) the oldest dead letter, for inspection or replay by an
    /// operator's tool; `None` when the queue is empty.
    pub async fn take_dead_letter(&self) -> Result<Option<DeadLetter>, BrokerError> {
        consumer::take_dead_letter(&self.channel, &self.topology).await
    }

    /// Closes the connection politely.
    pub async fn close(self) -> Result<(), BrokerError> {
        self.connection
            .close(200, "ferry closing".into())
            .await
            .map_err(|e| BrokerError::amqp("connection.close", e))
    }

    async fn queue_depth(&self, queue: &str) -> Result<u32, BrokerError> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = self
            .channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .map_err(|e| BrokerError::amqp("queue.declare(passive)", e))?;
        Ok(queue.message_count())
    }
}
