//! [`AuditStore`]: a flow's audit trail in Redis, one stream per flow, appended by a script
//! that links each record to the last one atomically. On the embedded store the same trail
//! is rows of one table, appended by the script's twin in one transaction
//! (`idempotency/embedded/audit.rs`); everything below holds for both.
//!
//! **Keys** (all with the flow's hash tag, so one slot on a Cluster; built in
//! `idempotency/keys.rs`): `<prefix>:{flow:<flow>}:audit` (the stream: fields `record`,
//! `hash`, and `hmac` when keyed), `:audit-head` (`<seq> <hash>` of the last record) and
//! `:audit-first` (the stream id of the first record kept after a retention trim).
//!
//! **Why the chain never forks.** A writer reads the head, builds the next record (seq + 1,
//! `prev` = the head's hash), hashes it, and sends it to [`APPEND`], which adds it only if the
//! head is still the one the record links to, and moves the head in the same script. Two
//! workers racing for the same place: one wins, the other gets the new head back and builds
//! its record again on top of it. Redis runs a script alone, so no third state exists. The
//! hash cannot be computed inside the script (Redis' Lua has no SHA-256, and the HMAC key must
//! never be sent to Redis), which is why the link is checked there rather than made there.
//!
//! **Retention.** The same script trims the stream (`XTRIM MAXLEN` for `max_records`,
//! `XTRIM MINID` for `max_age`) and, when it removed anything, writes the id of the first
//! kept record to `:audit-first`. `verify` then starts from that record's own `prev`
//! without asking for its predecessor; a stream whose first record is neither seq 1 nor the
//! recorded first was cut at its start by something other than the retention.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::error::AuditError;
use crate::idempotency::embedded::audit::{self as embedded_audit, AuditRows, NewRecord};
use crate::idempotency::keys::FlowKeys;
use crate::idempotency::{Backend, Request, Store};

/// Append if the head is unchanged, then trim.
///
/// KEYS: stream, head, first. ARGV: expected head (`''` for an empty trail), new head,
/// record bytes, hash, hmac (`''` when unkeyed), max records (`0`: no limit), min id ms
/// (`0`: no limit). Reply: `{1, id}` appended, `{0, current head}` the head moved.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[1] then return {0, head} end
local id
if ARGV[5] ~= '' then
  id = redis.call('XADD', KEYS[1], '*', 'record', ARGV[3], 'hash', ARGV[4], 'hmac', ARGV[5])
else
  id = redis.call('XADD', KEYS[1], '*', 'record', ARGV[3], 'hash', ARGV[4])
end
redis.call('SET', KEYS[2], ARGV[2])
local trimmed = 0
if ARGV[6] ~= '0' then trimmed = trimmed + redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[6]) end
if ARGV[7] ~= '0' then trimmed = trimmed + redis.call('XTRIM', KEYS[1], 'MINID', ARGV[7]) end
if trimmed > 0 then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if first[1] then redis.call('SET', KEYS[3], first[1][1]) end
end
return {1, id}
",
    )
});

/// An `XRANGE` entry as Redis sends it: its id and its fields.
type RawEntry = (String, Vec<(String, Vec<u8>)>);

/// The head of a trail: the last record's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last record's seq (0 for an empty trail).
    pub seq: u64,
    /// The last record's hash ([`GENESIS`](super::chain::GENESIS) for an empty trail).
    pub hash: String,
}

impl Head {
    /// The head of a trail without records.
    pub fn empty() -> Self {
        Head {
            seq: 0,
            hash: super::chain::GENESIS.to_owned(),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Head::empty());
        }
        let (seq, hash) = text.split_once(' ')?;
        Some(Head {
            seq: seq.parse().ok()?,
            hash: hash.to_owned(),
        })
    }

    fn encode(&self) -> String {
        if self.seq == 0 {
            String::new()
        } else {
            format!("{} {}", self.seq, self.hash)
        }
    }
}

/// One stored entry of the stream, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The stream id (`<ms>-<n>`).
    pub id: String,
    /// The record's stored bytes.
    pub record: Vec<u8>,
    /// The stored hash.
    pub hash: String,
    /// The stored HMAC, when the record was written with a key.
    pub hmac: Option<String>,
}

/// What the append was asked to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many records.
    pub max_records: Option<u64>,
    /// Keep records no older than this.
    pub max_age: Option<Duration>,
}

/// What one append attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a moved head means the record was not written: build it again on the new head"]
pub enum Appended {
    /// Written under this stream id.
    Written(String),
    /// Someone else appended first: the trail's head is now this.
    HeadMoved(Head),
}

/// A flow's audit trail in Redis (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct AuditStore {
    backend: Backend,
    prefix: String,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl AuditStore {
    /// The trail beside `store`'s keys, over its connection.
    pub fn new(store: &Store) -> Self {
        AuditStore {
            backend: store.backend().clone(),
            prefix: store.key_prefix().to_owned(),
        }
    }

    fn keys(&self, flow: &str) -> FlowKeys {
        FlowKeys::new(&self.prefix, flow)
    }

    fn store_error(flow: &str) -> impl Fn(crate::idempotency::IdempotencyError) -> AuditError {
        let flow = flow.to_owned();
        move |source| AuditError::Store {
            flow: flow.clone(),
            source: Box::new(source),
        }
    }

    /// The trail's head (an empty trail's when it has none).
    pub async fn head(&self, flow: &str) -> Result<Head, AuditError> {
        let text = self
            .backend
            .get(&self.keys(flow).audit_head(), "audit_head")
            .await
            .map_err(Self::store_error(flow))?;
        Head::parse(text.as_deref().unwrap_or("")).ok_or_else(|| AuditError::Protocol {
            flow: flow.to_owned(),
            reason: "the audit head is not `<seq> <hash>`".to_owned(),
        })
    }

    /// The id of the first record kept by the last retention trim, if one trimmed.
    pub async fn first_kept(&self, flow: &str) -> Result<Option<String>, AuditError> {
        self.backend
            .get(&self.keys(flow).audit_first(), "audit_first")
            .await
            .map_err(Self::store_error(flow))
    }

    /// Appends `record` (its bytes and hash, `hmac` when keyed) at `seq` if the head is still
    /// `expected`; trims as `retention` says. Safe to repeat after a lost reply: a repeat
    /// finds the head moved (to this very record) and the caller sees it in
    /// [`Appended::HeadMoved`] with this record's hash.
    #[allow(clippy::too_many_arguments)]
    pub async fn append(
        &self,
        flow: &str,
        expected: &Head,
        seq: u64,
        record: &[u8],
        hash: &str,
        hmac: Option<&str>,
        retention: Retention,
    ) -> Result<Appended, AuditError> {
        let keys = self.keys(flow);
        let new_head = Head {
            seq,
            hash: hash.to_owned(),
        };
        let min_id = retention
            .max_age
            .map(|age| {
                let now = chrono::Utc::now().timestamp_millis();
                now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
                    .max(1)
            })
            .unwrap_or(0);
        if let Backend::Embedded(db) = &self.backend {
            let rows = AuditRows {
                stream: keys.audit(),
                head: keys.audit_head(),
                first: keys.audit_first(),
            };
            let new = NewRecord {
                expected_head: expected.encode(),
                new_head: new_head.encode(),
                record: record.to_vec(),
                hash: hash.to_owned(),
                hmac: hmac.map(str::to_owned),
                max_records: retention.max_records.unwrap_or(0),
                min_ms: min_id,
            };
            let reply = db
                .call("audit_append", move |tx| {
                    embedded_audit::append(tx, &rows, &new)
                })
                .await
                .map_err(Self::store_error(flow))?;
            return match reply {
                Ok(id) => Ok(Appended::Written(id)),
                Err(head) => Self::moved(flow, &head),
            };
        }
        let mut inv = APPEND.prepare_invoke();
        inv.key(keys.audit())
            .key(keys.audit_head())
            .key(keys.audit_first())
            .arg(expected.encode())
            .arg(new_head.encode())
            .arg(record)
            .arg(hash)
            .arg(hmac.unwrap_or(""))
            .arg(retention.max_records.unwrap_or(0))
            .arg(min_id);
        let reply: (i64, String) = self
            .redis("audit_append", &Request::Script(inv), flow)
            .await?;
        match reply {
            (1, id) => Ok(Appended::Written(id)),
            (_, head) => Self::moved(flow, &head),
        }
    }

    fn moved(flow: &str, head: &str) -> Result<Appended, AuditError> {
        Head::parse(head)
            .map(Appended::HeadMoved)
            .ok_or_else(|| AuditError::Protocol {
                flow: flow.to_owned(),
                reason: "the audit head is not `<seq> <hash>`".to_owned(),
            })
    }

    /// Sends `req` to Redis (the Redis branch of an operation).
    async fn redis<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        req: &Request<'_>,
        flow: &str,
    ) -> Result<T, AuditError> {
        match &self.backend {
            Backend::Redis(conn) => conn.run(op, req).await.map_err(Self::store_error(flow)),
            Backend::Embedded(_) => Err(AuditError::Protocol {
                flow: flow.to_owned(),
                reason: format!("{op} is a Redis command; this trail is in the embedded store"),
            }),
        }
    }

    /// Reads rows of the embedded trail (see `embedded/audit.rs`).
    async fn embedded_rows(
        &self,
        flow: &str,
        after: Option<&str>,
        count: usize,
        newest_first: bool,
    ) -> Result<Option<Vec<StoredEntry>>, AuditError> {
        let Backend::Embedded(db) = &self.backend else {
            return Ok(None);
        };
        let stream = self.keys(flow).audit();
        let after = after.map(str::to_owned);
        let rows = db
            .call("audit_read", move |tx| {
                embedded_audit::read(tx, &stream, after.as_deref(), count, newest_first)
            })
            .await
            .map_err(Self::store_error(flow))?;
        Ok(Some(
            rows.into_iter()
                .map(|(id, record, hash, hmac)| StoredEntry {
                    id,
                    record,
                    hash,
                    hmac,
                })
                .collect(),
        ))
    }

    /// The hashes of the trail's last `count` records, newest first.
    pub async fn recent_hashes(&self, flow: &str, count: usize) -> Result<Vec<String>, AuditError> {
        if let Some(rows) = self.embedded_rows(flow, None, count, true).await? {
            return Ok(rows.into_iter().map(|entry| entry.hash).collect());
        }
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.keys(flow).audit())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count);
        let value: Value = self.redis("audit_recent", &Request::Cmd(cmd), flow).await?;
        Ok(Self::entries(flow, value)?
            .into_iter()
            .map(|entry| entry.hash)
            .collect())
    }

    /// Up to `count` entries after stream id `after` (from the start when `None`), in order.
    pub async fn page(
        &self,
        flow: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<StoredEntry>, AuditError> {
        if let Some(rows) = self.embedded_rows(flow, after, count, false).await? {
            return Ok(rows);
        }
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.keys(flow).audit())
            .arg(after.map_or_else(|| "-".to_owned(), |id| format!("({id}")))
            .arg("+")
            .arg("COUNT")
            .arg(count);
        let value: Value = self.redis("audit_read", &Request::Cmd(cmd), flow).await?;
        Self::entries(flow, value)
    }

    fn entries(flow: &str, value: Value) -> Result<Vec<StoredEntry>, AuditError> {
        let entries: Vec<RawEntry> =
            redis::FromRedisValue::from_redis_value(value).map_err(|e| AuditError::Protocol {
                flow: flow.to_owned(),
                reason: format!("unexpected XRANGE reply: {e}"),
            })?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| {
                let mut entry = StoredEntry {
                    id,
                    record: Vec::new(),
                    hash: String::new(),
                    hmac: None,
                };
                for (name, value) in fields {
                    match name.as_str() {
                        "record" => entry.record = value,
                        "hash" => entry.hash = String::from_utf8_lossy(&value).into_owned(),
                        "hmac" => entry.hmac = Some(String::from_utf8_lossy(&value).into_owned()),
                        _ => {}
                    }
                }
                entry
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        assert_eq!(Head::parse(""), Some(Head::empty()));
        assert_eq!(Head::empty().encode(), "");
        let head = Head {
            seq: 7,
            hash: "ab".into(),
        };
        assert_eq!(Head::parse(&head.encode()), Some(head));
        assert_eq!(Head::parse("x"), None);
    }
}
