//! The few AMQP primitives the publisher and the consumer share: connecting, publishing
//! with a confirm that is checked (ack, not returned, in time), and turning headers and
//! properties to and from lapin's types. Kept in one place so that "a publish" means the
//! same thing everywhere.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use tracing::debug;

use super::{AmqpUrl, BrokerError, Headers};
use crate::message::FlowRunMessage;

/// AMQP `delivery-mode` of a message written to disk.
const PERSISTENT: u8 = 2;

/// The `type` property of flow-run messages.
pub(crate) const MESSAGE_TYPE: &str = "ferry.flow-run.v1";

/// Longest text we put into one header value (a reason, mostly).
const MAX_HEADER_VALUE: usize = 4096;

/// Opens a connection within `timeout`; the error shows the redacted URL only.
pub(crate) async fn connect(
    url: &AmqpUrl,
    name: &str,
    timeout: Duration,
) -> Result<Connection, BrokerError> {
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_string()));
    let connecting = Connection::connect_uri(url.uri(), properties);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => {
            debug!(url = %url, name, "connected to RabbitMQ");
            Ok(connection)
        }
        Ok(Err(source)) => Err(BrokerError::Connect {
            url: url.to_string(),
            detail: source.to_string(),
            retryable: !is_access_refused(&source),
        }),
        Err(_) => Err(BrokerError::Connect {
            url: url.to_string(),
            detail: format!("no answer within {timeout:?}"),
            retryable: true,
        }),
    }
}

/// A channel in confirm mode, for publishing.
pub(crate) async fn confirm_channel(connection: &Connection) -> Result<Channel, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| BrokerError::amqp("channel.open", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| BrokerError::amqp("confirm.select", e))?;
    Ok(channel)
}

/// Publishes one persistent, mandatory message and waits for its confirm: `Ok` only
/// when the broker took responsibility for it (acked and routed to a queue).
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), BrokerError> {
    let not_confirmed = |why: String| BrokerError::NotConfirmed {
        exchange: exchange.to_string(),
        routing_key: routing_key.to_string(),
        why,
    };
    let confirm = channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(routing_key),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            payload,
            properties.with_delivery_mode(PERSISTENT),
        )
        .await
        .map_err(|e| BrokerError::amqp("basic.publish", e))?;
    let confirmation = tokio::time::timeout(timeout, confirm)
        .await
        .map_err(|_| not_confirmed(format!("no confirm within {timeout:?}")))?
        .map_err(|e| not_confirmed(format!("channel failed before the confirm: {e}")))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(BrokerError::Unroutable {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
                reply: returned.reply_text.to_string(),
            })
        }
        Confirmation::Nack(None) => Err(not_confirmed("the broker nacked it".into())),
        Confirmation::NotRequested => Err(not_confirmed(
            "the channel is not in confirm mode (a bug in ferry)".into(),
        )),
    }
}

/// The properties of a flow-run message: JSON, persistent, identified by its run id.
pub(crate) fn message_properties(message: &FlowRunMessage, headers: &Headers) -> BasicProperties {
    let timestamp = u64::try_from(message.requested_at.timestamp()).unwrap_or(0);
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(message.flow_run_id.to_string().into())
        .with_type(MESSAGE_TYPE.into())
        .with_app_id("ferry".into())
        .with_timestamp(timestamp)
        .with_headers(to_field_table(headers))
}

/// `at` as Unix milliseconds (0 before the epoch).
pub(crate) fn unix_millis(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Application headers as an AMQP table (every value a long string).
pub(crate) fn to_field_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        if key.len() <= 255 {
            table.insert(
                ShortString::from(key.as_str()),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
    }
    table
}

/// An AMQP table as text headers: strings, numbers and booleans are kept; nested tables
/// and arrays (the broker's `x-death` history) are left out.
pub(crate) fn from_field_table(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    let Some(table) = table else {
        return headers;
    };
    for (key, value) in table.inner() {
        let text = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.to_string(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::ShortShortInt(n) => n.to_string(),
            AMQPValue::ShortShortUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::ShortUInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::Timestamp(n) => n.to_string(),
            _ => continue,
        };
        headers.insert(key.to_string(), text);
    }
    headers
}

/// Drops the headers the broker owns (`x-death`, `x-delivery-count`, ...) before a
/// message is published again: RabbitMQ sets them itself and refuses some from clients.
pub(crate) fn without_broker_headers(headers: &Headers) -> Headers {
    headers
        .iter()
        .filter(|(k, _)| {
            !(k.starts_with("x-death")
                || k.starts_with("x-first-death")
                || k.starts_with("x-last-death")
                || k.as_str() == "x-delivery-count")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `text` cut to a size that fits a header, on a character boundary.
pub(crate) fn header_text(text: &str) -> String {
    if text.len() <= MAX_HEADER_VALUE {
        return text.to_string();
    }
    let mut end = MAX_HEADER_VALUE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Maps a failed declaration: a conflict with an existing object (PRECONDITION_FAILED)
/// is an operator's problem, anything else a broker or network one.
pub(crate) fn map_declare_error(object: String, error: lapin::Error) -> BrokerError {
    if let ErrorKind::ProtocolError(amqp) = error.kind()
        && amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    {
        return BrokerError::TopologyConflict {
            object,
            detail: amqp.get_message().to_string(),
        };
    }
    BrokerError::amqp("declare", error)
}

/// Whether the broker refused the credentials or the vhost (retrying cannot help).
fn is_access_refused(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_broker_headers_are_dropped() {
        let mut headers = Headers::new();
        headers.insert("traceparent".into(), "00-abc-def-01".into());
        headers.insert("x-delivery-count".into(), "3".into());
        let table = to_field_table(&headers);
        assert_eq!(from_field_table(Some(&table)), headers);
        let clean = without_broker_headers(&headers);
        assert_eq!(clean.len(), 1);
        assert!(clean.contains_key("traceparent"));
    }

    #[test]
    fn long_header_text_is_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_HEADER_VALUE);
        let cut = header_text(&text);
        assert!(cut.len() <= MAX_HEADER_VALUE + 3);
        assert!(cut.ends_with("..."));
    }
}
