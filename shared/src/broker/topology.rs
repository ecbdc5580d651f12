//! The RabbitMQ objects a ferry deployment needs, their names, and their idempotent
//! declaration (both binaries declare at start; `ferry-worker setup` does it alone).
//!
//! ```text
//!  publish (routing key = flow id)
//!        |
//!  {p}.flow-runs  (topic) --binding keys--> {p}.flow-runs.work  (quorum) --> workers
//!                                             ^            |  broker-side dead letters
//!   {p}.flow-runs.delay.5s   (quorum, TTL)    |            |  (delivery limit reached)
//!   {p}.flow-runs.delay.30s  ...  --expired---+            v
//!                                        {p}.flow-runs.dlx (fanout) --> {p}.flow-runs.dead
//! ```
//!
//! A failed attempt is re-published into the delay queue for its attempt number; when
//! the queue's TTL expires, the broker dead-letters it straight back into *this*
//! deployment's work queue (default exchange, routing key = work queue), not through the
//! topic exchange: another deployment bound to the same flows must not get a copy.
//! Every queue is a quorum queue with at-least-once dead-lettering, so a message moving
//! from a delay queue back to work (or to the DLQ) is not lost if a node fails meanwhile.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use tracing::{debug, info};

use super::BrokerError;
use super::amqp::map_declare_error;

/// Names and retry policy of a deployment's broker objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Prefix of every name (`ferry` gives `ferry.flow-runs`, `ferry.flow-runs.work`...).
    pub prefix: String,
    /// Binding keys from the flow-runs exchange to the work queue: `#` for every flow, or
    /// flow ids (topic patterns) to serve some flows only.
    pub bindings: Vec<String>,
    /// Wait before attempt n+1, indexed by n-1; the last one repeats.
    pub retry_delays: Vec<Duration>,
    /// After this many attempts a failing run is dead-lettered instead of retried.
    pub max_attempts: u32,
    /// Deliveries of one message (redeliveries after a crash or a requeue included) after
    /// which the broker itself dead-letters it: the guard against a message that kills
    /// the worker handling it.
    pub delivery_limit: u32,
}

impl Default for Topology {
    /// Prefix `ferry`, every flow, retries after 5 s, 30 s, 2 min, 10 min, 30 min, then
    /// dead letter; the broker gives up after 10 deliveries.
    fn default() -> Self {
        Topology {
            prefix: "ferry".into(),
            bindings: vec!["#".into()],
            retry_delays: [5, 30, 120, 600, 1800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_attempts: 6,
            delivery_limit: 10,
        }
    }
}

impl Topology {
    /// The default topology under another name prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
            ..Topology::default()
        }
    }

    /// The durable topic exchange flow runs are published to.
    pub fn exchange(&self) -> String {
        format!("{}.flow-runs", self.prefix)
    }

    /// The quorum queue workers consume.
    pub fn work_queue(&self) -> String {
        format!("{}.flow-runs.work", self.prefix)
    }

    /// The fanout exchange in front of the dead-letter queue (bind more queues to it to
    /// be alerted).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.flow-runs.dlx", self.prefix)
    }

    /// The queue where runs that cannot or will not succeed wait for an operator.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.flow-runs.dead", self.prefix)
    }

    /// The delay queue that holds a message for `delay` (`ferry.flow-runs.delay.30s`).
    pub fn delay_queue(&self, delay: Duration) -> String {
        let ms = delay.as_millis();
        let label = if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        };
        format!("{}.flow-runs.delay.{label}", self.prefix)
    }

    /// How long to wait before the attempt after `attempt`, or `None` when `attempt`
    /// was the last one allowed.
    pub fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
    }

    /// Checks that the names and the policy make sense before anything is declared.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let invalid = |reason: String| Err(BrokerError::InvalidTopology { reason });
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 200
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !name_ok(&self.prefix) {
            return invalid(format!(
                "prefix {:?} must be 1 to 200 characters of A-Z, a-z, 0-9, '.', '_', '-'",
                self.prefix
            ));
        }
        if self.bindings.is_empty() {
            return invalid("at least one binding key is needed (`#` for every flow)".into());
        }
        if let Some(key) = self.bindings.iter().find(|k| k.is_empty() || k.len() > 255) {
            return invalid(format!("binding key {key:?} must be 1 to 255 bytes"));
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1".into());
        }
        if self.max_attempts > 1 && self.retry_delays.is_empty() {
            return invalid("retries need at least one retry delay".into());
        }
        if let Some(d) = self
            .retry_delays
            .iter()
            .find(|d| d.is_zero() || d.as_millis() > u128::from(u32::MAX))
        {
            return invalid(format!(
                "retry delay {d:?} must be between 1 ms and about 49 days"
            ));
        }
        if self.delivery_limit == 0 {
            return invalid("delivery_limit must be at least 1".into());
        }
        Ok(())
    }

    /// Declares every object; declaring again with the same settings changes nothing,
    /// with different settings fails with [`BrokerError::TopologyConflict`].
    #[tracing::instrument(name = "broker.declare_topology", skip_all, fields(prefix = %self.prefix))]
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), BrokerError> {
        self.validate()?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let exchange = self.exchange();
        let dlx = self.dead_letter_exchange();
        let work = self.work_queue();
        let dead = self.dead_letter_queue();

        for (name, kind) in [
            (&exchange, ExchangeKind::Topic),
            (&dlx, ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
                .await
                .map_err(|e| map_declare_error(format!("exchange {name}"), e))?;
        }

        declare_queue(channel, &dead, quorum_arguments()).await?;
        bind(channel, &dead, &dlx, "").await?;

        let mut work_args = quorum_arguments();
        dead_letter_to(&mut work_args, &dlx, None);
        work_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        declare_queue(channel, &work, work_args).await?;
        for key in &self.bindings {
            bind(channel, &work, &exchange, key).await?;
        }

        let mut delays = self.retry_delays.clone();
        delays.sort();
        delays.dedup();
        for delay in delays {
            let mut args = quorum_arguments();
            dead_letter_to(&mut args, "", Some(&work));
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            declare_queue(channel, &self.delay_queue(delay), args).await?;
        }
        info!(exchange = %exchange, work_queue = %work, dead_letter_queue = %dead, "broker topology declared");
        Ok(())
    }
}

/// Arguments of a durable quorum queue that never drops a message on overflow.
fn quorum_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    // At-least-once dead-lettering needs reject-publish overflow.
    args.insert("x-overflow".into(), long_string("reject-publish"));
    args
}

/// Makes the queue dead-letter (at least once) to `exchange`, optionally re-keyed.
fn dead_letter_to(args: &mut FieldTable, exchange: &str, routing_key: Option<&str>) {
    args.insert("x-dead-letter-exchange".into(), long_string(exchange));
    if let Some(key) = routing_key {
        args.insert("x-dead-letter-routing-key".into(), long_string(key));
    }
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), BrokerError> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
        .map_err(|e| map_declare_error(format!("queue {name}"), e))?;
    debug!(queue = name, "queue declared");
    Ok(())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), BrokerError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| map_declare_error(format!("binding {exchange} -> {queue} ({key})"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::with_prefix("acme");
        assert_eq!(t.exchange(), "acme.flow-runs");
        assert_eq!(t.work_queue(), "acme.flow-runs.work");
        assert_eq!(t.dead_letter_queue(), "acme.flow-runs.dead");
        assert_eq!(
            t.delay_queue(Duration::from_secs(30)),
            "acme.flow-runs.delay.30s"
        );
        assert_eq!(
            t.delay_queue(Duration::from_millis(1500)),
            "acme.flow-runs.delay.1500ms"
        );
    }

    #[test]
    fn retry_delays_grow_then_stop_at_max_attempts() {
        let t = Topology::default();
        assert_eq!(t.retry_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(t.retry_delay(2), Some(Duration::from_secs(30)));
        assert_eq!(t.retry_delay(5), Some(Duration::from_secs(1800)));
        assert_eq!(t.retry_delay(6), None);
        let long = Topology {
            max_attempts: 20,
            ..Topology::default()
        };
        assert_eq!(long.retry_delay(15), Some(Duration::from_secs(1800)));
    }

    #[test]
    fn validation_catches_nonsense() {
        assert!(Topology::default().validate().is_ok());
        assert!(Topology::with_prefix("bad prefix").validate().is_err());
        let no_bindings = Topology {
            bindings: vec![],
            ..Topology::default()
        };
        assert!(no_bindings.validate().is_err());
        let no_delays = Topology {
            retry_delays: vec![],
            ..Topology::default()
        };
        assert!(no_delays.validate().is_err());
    }
}
