//! [`Store`]: the connection to Redis, and the claims, delivery records and flow locks
//! (waiting for a flow lock is in `flow_lock.rs`, scheduler ticks in `tick.rs`, covered runs
//! in `coverage.rs`).
//!
//! One shared connection per store (`connection.rs`: one node, a Cluster or a Sentinel-
//! watched master, see `link.rs`); each operation is one command or one Lua script, retried
//! after a connection error. Every operation that changes two keys is a script whose keys
//! all carry one flow's hash tag (so it is valid on a Cluster), so a crash between two
//! steps cannot leave a claim without its record or the other way round.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{FromRedisValue, Script};
use tracing::{Instrument, debug, info_span, warn};

use super::config::StoreConfig;
use super::connection::{Connection, Request, millis};
use super::coverage::FullRuns;
use super::error::IdempotencyError;
use super::flow_lock::FlowLocks;
use super::intent::{CommitIntent, CommitStart};
use super::keys::{self, DeliveryKey, FlowKeys};
use super::lease::{Claim, Lease};
use super::liveness;
use super::record::DeliveryRecord;
use super::tick::Ticks;

/// Claim a delivery key: check the record, `SET claim owner NX PX lease`, and report the
/// owner when someone else holds it. One script, so the check and the claim are atomic:
/// no worker can record the delivery between them (which makes the "re-check after a
/// successful claim" of a multi-command design unnecessary). A claim already held with
/// this very token (our own earlier attempt whose reply was lost) counts as claimed. A
/// claim taken returns the commit intent an earlier holder left (see `intent.rs`).
///
/// With `recheck` set, a delivered key is claimed all the same (status `recheck`): the
/// caller fetches the file again to compare it with the record before deleting it.
///
/// KEYS: delivered, claim, intent[, legacy delivered]. ARGV: token, lease ms, recheck
/// (`0`/`1`)[, file name the legacy record must carry]. Reply: {status, value[, intent |
/// the other owner's claim: ms left]}.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local record = redis.call('GET', KEYS[1])
if not record and KEYS[4] then
  local legacy = redis.call('GET', KEYS[4])
  if legacy then
    local ok, decoded = pcall(cjson.decode, legacy)
    if ok and decoded['file_name'] == ARGV[4] then record = legacy end
  end
end
if record and ARGV[3] ~= '1' then return {'delivered', record} end
local status = 'claimed'
local value = ARGV[1]
if record then
  status = 'recheck'
  value = record
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {status, value, redis.call('GET', KEYS[3]) or ''}
end
local owner = redis.call('GET', KEYS[2])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {status, value, redis.call('GET', KEYS[3]) or ''}
end
return {'other', owner or '', tostring(redis.call('PTTL', KEYS[2]))}
",
    )
});

/// Begin a commit: if the claim still holds our token, renew it for a whole lease (the
/// rename that follows starts a fresh lease clock), write the intent (for the retention)
/// and answer 1; else answer 0 and write nothing.
///
/// KEYS: claim, intent. ARGV: token, intent JSON, retention ms, lease ms.
static BEGIN_COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// Write the delivery record(s) with the retention TTL, remove the commit intent, then
/// delete the claim if it is still ours. Returns 1 when the claim was ours (or when this is
/// a retry of our own write), 0 when the lease had been lost meanwhile.
///
/// KEYS: claim, intent, delivered... ARGV: token, record JSON, retention ms.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local prior = redis.call('GET', KEYS[3])
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[2])
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if not owner and prior == ARGV[2] then return 1 end
return 0
",
    )
});

/// Give a commit up: delete the intent if the claim still holds our token (1, also when
/// there was no intent left to delete), else leave it for the claim's new holder (0).
///
/// KEYS: claim, intent. ARGV: token.
static ABANDON_COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// What recording a delivery found of the claim it was made under.
#[must_use = "a lost claim means another worker may have sent the file too: report it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The claim was still this worker's: recorded, and the claim released.
    ClaimHeld,
    /// The claim had expired or been taken over during the transfer: recorded anyway (the
    /// delivery happened), but another worker may have sent the same file.
    ClaimLost,
}

/// What [`Store::claim`] found for a delivery key.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The key is ours for the lease: transfer, then [`Store::record_delivery`] or
    /// [`Store::release`].
    Claimed(Claim),
    /// The key is ours for the lease, and an earlier holder crashed between its commit
    /// intent and its delivery record: look at the destination (see `intent.rs`) before
    /// sending anything, then record or send as it shows.
    Unfinished {
        /// The claim.
        claim: Claim,
        /// What the earlier holder was about to rename.
        intent: CommitIntent,
    },
    /// The file was delivered already (within the retention period): skip it.
    AlreadyDelivered(DeliveryRecord),
    /// Only from [`Store::claim_to_recheck`]: the key was delivered already, and is now
    /// claimed so that the file can be fetched again and compared with its record.
    Recheck {
        /// The claim.
        claim: Claim,
        /// The earlier delivery.
        earlier: DeliveryRecord,
    },
    /// Another worker is transferring it right now: leave it to them.
    ClaimedByOther {
        /// The other claim's owner token (`<owner>/<uuid>`).
        owner: String,
        /// How long that claim lasts unless renewed (`None` when Redis did not say).
        expires_in: Option<Duration>,
    },
}

/// The idempotency store: claims, delivery records, flow locks and scheduler ticks in
/// Redis. Cheap to clone (one shared, self-healing connection).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    /// The flow-lock waiters' safety-net poll (see `flow_lock.rs`).
    flow_lock_poll: Duration,
    /// The URL with its password redacted: safe for messages and spans.
    url: String,
    prefix: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to Redis and checks the connection.
    ///
    /// Fails with [`ErrorKind::Unavailable`](super::ErrorKind::Unavailable) when Redis
    /// cannot be reached (the caller decides whether to wait or stop), with
    /// [`ErrorKind::Config`](super::ErrorKind::Config) for an unusable URL or prefix.
    pub async fn connect(config: &StoreConfig) -> Result<Store, IdempotencyError> {
        let url = config.describe();
        keys::check_prefix(&config.key_prefix)?;
        let span = info_span!("idempotency.connect", redis.url = %url);
        async {
            let conn = Connection::open(config, &url).await?;
            let store = Store {
                inner: Arc::new(Inner {
                    conn,
                    flow_lock_poll: config.flow_lock_poll,
                    url,
                    prefix: config.key_prefix.clone(),
                }),
            };
            store.ping().await?;
            debug!("connected to the idempotency store");
            Ok(store)
        }
        .instrument(span)
        .await
    }

    /// The embedded store's database file, when this store is embedded (`store.kind:
    /// embedded`); `None` for Redis. (The embedded backend arrives with branch `e`.)
    pub fn embedded(&self) -> Option<&super::embedded::EmbeddedDb> {
        None
    }

    /// Checks that Redis answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), IdempotencyError> {
        let reply: String = self.run("ping", &Request::Cmd(redis::cmd("PING"))).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(self.unexpected("ping", format!("PING answered {reply:?}")))
        }
    }

    /// The server settings that weaken ferry's guarantees (see `durability.rs`).
    pub async fn durability_warnings(
        &self,
    ) -> Result<Vec<super::DurabilityWarning>, IdempotencyError> {
        super::durability::check(&self.inner.conn).await
    }

    /// The key prefix this store writes under.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The shared connection, for the audit trail's stream (`audit/store.rs`), which lives
    /// beside the flow's other keys.
    pub(crate) fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// Tries to claim `key` for `lease` on behalf of `owner` (a worker id; a unique
    /// token is appended, so two claims by the same worker never mistake each other).
    ///
    /// Checks the delivery record first: a delivered file is never claimed again. A claim
    /// whose holder is a process of this host that is known dead (see `liveness.rs`) is
    /// taken over at once rather than after its lease.
    pub async fn claim(
        &self,
        key: &DeliveryKey,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        self.claim_as(key, owner, lease, false).await
    }

    /// Like [`Store::claim`], but a delivered key is claimed too
    /// ([`ClaimOutcome::Recheck`]): for a download that must fetch a remote file again and
    /// compare it with its record before deleting it.
    pub async fn claim_to_recheck(
        &self,
        key: &DeliveryKey,
        owner: &str,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        self.claim_as(key, owner, lease, true).await
    }

    #[tracing::instrument(
        name = "idempotency.claim",
        skip_all,
        fields(otel.kind = "client", db.system.name = "redis", flow = key.flow_id(), key = key.as_str(), lease_ms = millis(lease), recheck, outcome)
    )]
    async fn claim_as(
        &self,
        key: &DeliveryKey,
        owner: &str,
        lease: Duration,
        recheck: bool,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        let flow = self.flow_keys(key.flow_id());
        let claim_key = flow.claim(key);
        let delivered_key = flow.delivered(key);
        let token = token(owner);
        let mut took_over = false;
        let reply = loop {
            let mut inv = CLAIM.prepare_invoke();
            inv.key(&delivered_key)
                .key(&claim_key)
                .key(flow.intent(key))
                .arg(&token)
                .arg(millis(lease))
                .arg(if recheck { "1" } else { "0" });
            if let Some(legacy) = key.legacy() {
                inv.key(flow.delivered_id(&legacy.id))
                    .arg(&legacy.file_name);
            }
            let reply: Vec<String> = self.run("claim", &Request::Script(inv)).await?;
            let holder = match reply.as_slice() {
                [status, holder, ..] if status == "other" && !took_over => holder.clone(),
                _ => break reply,
            };
            took_over = true;
            if !self
                .remove_dead_holder(&claim_key, &holder, "claim")
                .await?
            {
                break reply;
            }
        };
        let [status, value, rest @ ..] = reply.as_slice() else {
            return Err(self.unexpected("claim", format!("claim script answered {reply:?}")));
        };
        let claim = || {
            Claim::new(
                Lease::new(self.inner.conn.clone(), claim_key.clone(), token.clone()),
                key.clone(),
                lease,
            )
        };
        let intent = match rest.first().map(String::as_str) {
            Some(json) if !json.is_empty() && status != "other" => {
                // An intent this version cannot read (written by a newer one, or damaged)
                // must not block the file: without it the file is sent again, the worst
                // case being the duplicate the intent would have avoided.
                match decode_json::<CommitIntent>(&flow.intent(key), json) {
                    Ok(intent) => Some(intent),
                    Err(err) => {
                        warn!(error = %err, "an unreadable commit intent is ignored; the file is sent again");
                        None
                    }
                }
            }
            _ => None,
        };
        let outcome = match (status.as_str(), intent) {
            ("claimed", None) => ClaimOutcome::Claimed(claim()),
            ("claimed", Some(intent)) => ClaimOutcome::Unfinished {
                claim: claim(),
                intent,
            },
            ("recheck", _) => ClaimOutcome::Recheck {
                claim: claim(),
                earlier: decode(&delivered_key, value)?,
            },
            ("delivered", _) => ClaimOutcome::AlreadyDelivered(decode(&delivered_key, value)?),
            ("other", _) => ClaimOutcome::ClaimedByOther {
                owner: value.clone(),
                // PTTL: -1 no expiry, -2 gone since; either way no time left to report.
                expires_in: rest
                    .first()
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(Duration::from_millis),
            },
            (other, _) => {
                return Err(self.unexpected("claim", format!("claim script answered {other:?}")));
            }
        };
        let span = tracing::Span::current();
        span.record("recheck", recheck);
        span.record("outcome", status.as_str());
        debug!(outcome = status.as_str(), "claim checked");
        Ok(outcome)
    }

    /// Writes `intent` under `claim`'s key if the claim is still ours, in one step: the
    /// last check before a file is renamed into place (see `intent.rs`).
    #[tracing::instrument(
        name = "idempotency.begin_commit",
        skip_all,
        fields(otel.kind = "client", db.system.name = "redis", flow = claim.key().flow_id(), key = claim.key().as_str(), held)
    )]
    pub async fn begin_commit(
        &self,
        claim: &Claim,
        intent: &CommitIntent,
        retention: Duration,
    ) -> Result<CommitStart, IdempotencyError> {
        let intent_key = self.flow_keys(claim.key().flow_id()).intent(claim.key());
        let json =
            serde_json::to_string(intent).map_err(|source| IdempotencyError::Serialization {
                key: intent_key.clone(),
                action: "encoded",
                source,
            })?;
        let mut inv = BEGIN_COMMIT.prepare_invoke();
        inv.key(claim.lease().key())
            .key(&intent_key)
            .arg(claim.lease().token())
            .arg(&json)
            .arg(millis(retention))
            .arg(millis(claim.duration()));
        let held: i64 = self.run("begin_commit", &Request::Script(inv)).await?;
        tracing::Span::current().record("held", held == 1);
        Ok(if held == 1 {
            CommitStart::ClaimHeld
        } else {
            warn!("the claim was lost before the rename: not renaming");
            CommitStart::ClaimLost
        })
    }

    /// Removes `claim`'s commit intent if the claim is still ours (the rename was refused
    /// and the temporary file is about to be removed). Returns whether it was.
    #[tracing::instrument(
        name = "idempotency.abandon_commit",
        skip_all,
        fields(otel.kind = "client", db.system.name = "redis", flow = claim.key().flow_id(), key = claim.key().as_str())
    )]
    pub async fn abandon_commit(&self, claim: &Claim) -> Result<bool, IdempotencyError> {
        let intent_key = self.flow_keys(claim.key().flow_id()).intent(claim.key());
        let mut inv = ABANDON_COMMIT.prepare_invoke();
        inv.key(claim.lease().key())
            .key(&intent_key)
            .arg(claim.lease().token());
        let held: i64 = self.run("abandon_commit", &Request::Script(inv)).await?;
        Ok(held == 1)
    }

    /// Records that `claim`'s file was delivered: writes `record` under the claim's
    /// delivery key for `retention`, and deletes the claim if it is still ours, in one step.
    ///
    /// Says whether the claim was still held. [`Recorded::ClaimLost`] means the lease ran
    /// out during the transfer (another worker may have started the same file): the record
    /// is written anyway, because the delivery did happen, but the file must be reported
    /// `lease_lost` and its source kept.
    pub async fn record_delivery(
        &self,
        claim: &Claim,
        record: &DeliveryRecord,
        retention: Duration,
    ) -> Result<Recorded, IdempotencyError> {
        self.record_delivery_also(claim, &[], record, retention)
            .await
    }

    /// Like [`Store::record_delivery`], also writing the record under `also` (keys of the
    /// same flow): a download claimed by [`DeliveryKey::download`] records its
    /// [`DeliveryKey::content`] key too, so the same bytes are not fetched again under
    /// another name.
    #[tracing::instrument(
        name = "idempotency.record_delivery",
        skip_all,
        fields(
            otel.kind = "client", db.system.name = "redis", flow = claim.key().flow_id(),
            key = claim.key().as_str(),
            retention_s = retention.as_secs(),
            still_held
        )
    )]
    pub async fn record_delivery_also(
        &self,
        claim: &Claim,
        also: &[DeliveryKey],
        record: &DeliveryRecord,
        retention: Duration,
    ) -> Result<Recorded, IdempotencyError> {
        let flow_id = claim.key().flow_id();
        if let Some(stray) = also.iter().find(|k| k.flow_id() != flow_id) {
            return Err(IdempotencyError::Config {
                reason: format!(
                    "record_delivery_also: key {stray} belongs to another flow than {flow_id}; \
                     a record may only name keys of the claim's flow"
                ),
            });
        }
        let flow = self.flow_keys(flow_id);
        let main_key = flow.delivered(claim.key());
        let json =
            serde_json::to_string(record).map_err(|source| IdempotencyError::Serialization {
                key: main_key.clone(),
                action: "encoded",
                source,
            })?;
        let mut inv = RECORD.prepare_invoke();
        inv.key(claim.lease().key())
            .key(flow.intent(claim.key()))
            .key(&main_key);
        for k in also {
            inv.key(flow.delivered(k));
        }
        inv.arg(claim.lease().token())
            .arg(&json)
            .arg(millis(retention));
        let held: i64 = self.run("record_delivery", &Request::Script(inv)).await?;
        let held = held == 1;
        tracing::Span::current().record("still_held", held);
        if held {
            debug!("delivery recorded, claim released");
            Ok(Recorded::ClaimHeld)
        } else {
            warn!("delivery recorded, but the claim's lease had been lost during the transfer");
            Ok(Recorded::ClaimLost)
        }
    }

    /// Gives `claim` up (after a failed transfer) so another attempt can take the file at
    /// once. Deletes the claim only if it is still ours; returns whether it was.
    #[tracing::instrument(
        name = "idempotency.release",
        skip_all,
        fields(otel.kind = "client", db.system.name = "redis", flow = claim.key().flow_id(), key = claim.key().as_str())
    )]
    pub async fn release(&self, claim: Claim) -> Result<bool, IdempotencyError> {
        claim.lease().release().await
    }

    /// The delivery record stored under `key`, if the file was delivered within retention.
    pub async fn delivery(
        &self,
        key: &DeliveryKey,
    ) -> Result<Option<DeliveryRecord>, IdempotencyError> {
        let redis_key = self.flow_keys(key.flow_id()).delivered(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&redis_key);
        let json: Option<String> = self.run("delivery", &Request::Cmd(cmd)).await?;
        json.map(|j| decode(&redis_key, &j)).transpose()
    }

    /// The scheduler's tick claims (`tick.rs`).
    pub fn ticks(&self) -> Ticks<'_> {
        Ticks::new(self)
    }

    /// The flow locks: one run of a flow at a time (`flow_lock.rs`).
    pub fn flow_locks(&self) -> FlowLocks<'_> {
        FlowLocks::new(self)
    }

    /// The record of each flow's latest full run (`coverage.rs`).
    pub fn full_runs(&self) -> FullRuns<'_> {
        FullRuns::new(self)
    }

    /// The keys of one flow under this store's prefix.
    pub(crate) fn flow_keys(&self, flow_id: &str) -> FlowKeys {
        FlowKeys::new(&self.inner.prefix, flow_id)
    }

    /// The shared connection (for the operations of sibling files: ticks, flow locks).
    pub(super) fn conn(&self) -> &Connection {
        &self.inner.conn
    }

    /// How often a flow-lock waiter looks again without a wake-up (see `flow_lock.rs`).
    pub(super) fn flow_lock_poll(&self) -> Duration {
        self.inner.flow_lock_poll
    }

    /// Deletes `key` if its holder is a dead process of this host (`liveness.rs`) and the
    /// key still holds that holder's token (compare-and-delete: anyone who took the key
    /// meanwhile keeps it). Returns whether the holder was judged dead: the caller then tries
    /// once more to take the key.
    pub(super) async fn remove_dead_holder(
        &self,
        key: &str,
        holder: &str,
        what: &'static str,
    ) -> Result<bool, IdempotencyError> {
        if !liveness::holder_is_dead(holder) {
            return Ok(false);
        }
        let removed = self.inner.conn.delete_if_owner(key, holder).await?;
        warn!(holder = %holder, removed, "the {what}'s holder is a dead process of this host: taking it over");
        Ok(true)
    }

    /// `GET key` as an optional string.
    pub(super) async fn get(
        &self,
        key: &str,
        op: &'static str,
    ) -> Result<Option<String>, IdempotencyError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.run(op, &Request::Cmd(cmd)).await
    }

    pub(super) fn unexpected(&self, op: &'static str, detail: String) -> IdempotencyError {
        IdempotencyError::unexpected(&self.inner.url, op, detail)
    }

    /// Sends `req` over the store's connection (with its retries).
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        req: &Request<'_>,
    ) -> Result<T, IdempotencyError> {
        self.inner.conn.run(op, req).await
    }
}

/// A unique owner token: the caller's readable id, a random part, and the stamp of this
/// process (see `liveness.rs`).
pub(super) fn token(owner: &str) -> String {
    format!(
        "{owner}/{}{}",
        uuid::Uuid::new_v4(),
        liveness::token_suffix()
    )
}

fn decode(key: &str, json: &str) -> Result<DeliveryRecord, IdempotencyError> {
    decode_json(key, json)
}

fn decode_json<T: serde::de::DeserializeOwned>(
    key: &str,
    json: &str,
) -> Result<T, IdempotencyError> {
    serde_json::from_str(json).map_err(|source| IdempotencyError::Serialization {
        key: key.to_owned(),
        action: "decoded",
        source,
    })
}
