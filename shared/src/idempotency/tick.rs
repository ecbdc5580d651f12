//! Scheduler ticks: each (flow, cron tick) is published once across all replicas, and a
//! tick that was claimed but never published is not lost.
//!
//! A tick's key (`<prefix>:{flow:<flow>}:tick:<unix-seconds>`) goes through two states:
//!
//! ```text
//!   (absent) --claim--> claimed {owner, at_ms} --published--> published {run, at_ms}
//!                          |  ^ renewed while the owner publishes
//!                          |  '-- taken over by any replica once at_ms is older than
//!                          '---- `stale` (owner crashed, or gave up and abandoned it: at_ms = 0)
//! ```
//!
//! One replica wins the claim ([`TickClaim::Won`]) and publishes; the others see
//! [`TickClaim::ClaimedByOtherReplica`] or [`TickClaim::AlreadyPublished`]. While the winner
//! publishes (the publisher retries for up to `scheduler.publish_give_up`), it renews the
//! claim every third of `stale`; once the broker confirms, it marks the tick published. If
//! the publish gives up (the broker down for longer), the winner abandons the claim, which
//! makes it stale at once. If the winner crashes, its claim goes stale after `stale`.
//!
//! Stale claims are found without scanning keys: every claimed tick is also a member of the
//! flow's pending set (`<prefix>:{flow:<flow>}:ticks-pending`, scored by the claim's last
//! renewal) until it is published. Every replica looks at the pending set of each flow
//! every third of `stale` and on start (the catch-up after a restart), and tries to claim
//! each member again ([`Ticks::retry`]): a fresh claim is left alone, a stale one is
//! taken over ([`TickClaim::TookOver`]) and published. A pending tick whose key expired
//! (claimed longer ago than the key's TTL) is dropped ([`TickClaim::Expired`]): the cron
//! has moved on by at least one period and the scheduler never fires a burst of stale
//! ticks.
//!
//! All times are Redis's (`TIME` inside the scripts), so the replicas' clocks do not matter.
//! Every step is one script over keys of one flow (one hash tag, Cluster-safe). On the
//! embedded store each script's twin (`embedded/ticks.rs`) runs in one transaction, by this
//! machine's clock (one node).
//!
//! What remains: a publish whose confirm was lost may have reached the queue before the
//! publisher gave up; the retry then publishes the tick a second time. A duplicate flow-run
//! is harmless (files are claimed and recorded one by one, and a run covered by a newer one
//! finishes at once), a lost one is not, so the design leans that way. A tick key written
//! by an older ferry (a bare timestamp) counts as published.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::Script;
use tracing::{debug, warn};

use super::backend::Backend;
use super::connection::{Request, millis};
use super::embedded::ticks::{self as embedded_ticks, TickAction, TickMode, TickRows};
use super::error::IdempotencyError;
use super::store::{Store, token};

/// Claim a tick (fresh, or again when retried), taking over a stale claim.
///
/// KEYS: tick, pending set. ARGV: token, TTL seconds, stale ms, member (unix seconds),
/// mode (`new` / `retry`). Reply: {status[, owner, age ms]}.
static CLAIM_TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = redis.call('GET', KEYS[1])
if not current then
  if ARGV[5] == 'retry' then
    redis.call('ZREM', KEYS[2], ARGV[4])
    return {'expired'}
  end
  redis.call('SET', KEYS[1], cjson.encode({state = 'claimed', owner = ARGV[1], at_ms = now}), 'EX', ARGV[2])
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('EXPIRE', KEYS[2], ARGV[2])
  end
  return {'won'}
end
local ok, decoded = pcall(cjson.decode, current)
if not ok or type(decoded) ~= 'table' or decoded['state'] ~= 'claimed' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  return {'published'}
end
if decoded['owner'] == ARGV[1] then
  return {'won'}
end
local age = now - (tonumber(decoded['at_ms']) or 0)
if age >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], cjson.encode({state = 'claimed', owner = ARGV[1], at_ms = now}), 'KEEPTTL')
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  return {'took_over', tostring(decoded['owner']), tostring(age)}
end
return {'other', tostring(decoded['owner']), tostring(age)}
",
    )
});

/// Act on our own claim: renew it, mark it published, or abandon it.
///
/// KEYS: tick, pending set. ARGV: token, member, action (`renew` / `published` /
/// `abandon`), flow-run id (for `published`). Reply: 1 done, 0 the claim is not ours.
static OWN_TICK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, decoded = pcall(cjson.decode, current)
if not ok or type(decoded) ~= 'table' or decoded['state'] ~= 'claimed' or decoded['owner'] ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == 'published' then
  redis.call('SET', KEYS[1], cjson.encode({state = 'published', run = ARGV[4], at_ms = now}), 'KEEPTTL')
  redis.call('ZREM', KEYS[2], ARGV[2])
elseif ARGV[3] == 'abandon' then
  redis.call('SET', KEYS[1], cjson.encode({state = 'claimed', owner = ARGV[1], at_ms = 0}), 'KEEPTTL')
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
else
  redis.call('SET', KEYS[1], cjson.encode({state = 'claimed', owner = ARGV[1], at_ms = now}), 'KEEPTTL')
  redis.call('ZADD', KEYS[2], now, ARGV[2])
end
return 1
",
    )
});

/// What claiming a tick found.
#[must_use = "a won tick must be published (then marked) or abandoned"]
#[derive(Debug)]
pub enum TickClaim {
    /// This replica claimed the tick: publish it, then [`TickLease::published`].
    Won(TickLease),
    /// The tick's earlier claim was stale (its replica crashed or gave up): this replica
    /// took it over and must publish it.
    TookOver {
        /// Our claim.
        lease: TickLease,
        /// The owner token of the stale claim.
        previous_owner: String,
        /// How long that claim had gone without renewal.
        stale_for: Duration,
    },
    /// The tick's flow-run was published (by any replica): nothing to do.
    AlreadyPublished,
    /// Another replica claimed the tick recently and is publishing it.
    ClaimedByOtherReplica {
        /// Its owner token.
        owner: String,
        /// Since its claim's last renewal.
        renewed_ago: Duration,
    },
    /// Only when retried: the tick's key has expired (claimed longer ago than its TTL); it
    /// is dropped from the pending set and not published.
    Expired,
}

/// The result of [`TickLease::published`].
#[must_use = "a lost tick claim means another replica may publish the tick too: log it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickPublished {
    /// The tick is marked published.
    Marked,
    /// The claim had been taken over meanwhile (this replica stalled past `stale`): the
    /// other replica may publish the tick too.
    ClaimLost,
}

/// This replica's claim on one tick.
pub struct TickLease {
    store: Store,
    key: String,
    pending: String,
    member: String,
    token: String,
}

impl std::fmt::Debug for TickLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickLease")
            .field("key", &self.key)
            .field("owner", &self.token)
            .finish()
    }
}

impl TickLease {
    /// This claim's owner token.
    pub fn owner(&self) -> &str {
        &self.token
    }

    /// Renews the claim (while publishing); `false` when it is no longer ours.
    pub async fn renew(&self) -> Result<bool, IdempotencyError> {
        Ok(self.act(TickAction::Renew, "").await? == 1)
    }

    /// Marks the tick published by the flow-run `flow_run_id`.
    pub async fn published(self, flow_run_id: &str) -> Result<TickPublished, IdempotencyError> {
        Ok(
            if self.act(TickAction::Published, flow_run_id).await? == 1 {
                TickPublished::Marked
            } else {
                warn!(key = %self.key, "the tick's claim was taken over while it was published");
                TickPublished::ClaimLost
            },
        )
    }

    /// Gives the claim up after a publish that gave up: the tick is stale at once, so the
    /// next look at the pending set (by any replica) publishes it. `false` when the claim
    /// was no longer ours.
    pub async fn abandon(self) -> Result<bool, IdempotencyError> {
        Ok(self.act(TickAction::Abandon, "").await? == 1)
    }

    async fn act(&self, action: TickAction, flow_run_id: &str) -> Result<i64, IdempotencyError> {
        if let Backend::Embedded(db) = self.store.backend() {
            let rows = TickRows {
                key: self.key.clone(),
                pending: self.pending.clone(),
                member: self.member.clone(),
            };
            let (token, run) = (self.token.clone(), flow_run_id.to_owned());
            return db
                .call("tick", move |tx| {
                    embedded_ticks::act(tx, &rows, &token, action, &run)
                })
                .await;
        }
        let action = match action {
            TickAction::Renew => "renew",
            TickAction::Published => "published",
            TickAction::Abandon => "abandon",
        };
        let mut inv = OWN_TICK.prepare_invoke();
        inv.key(&self.key)
            .key(&self.pending)
            .arg(&self.token)
            .arg(&self.member)
            .arg(action)
            .arg(flow_run_id);
        self.store.run("tick", &Request::Script(inv)).await
    }
}

/// The tick claims of a store: `store.ticks()`.
#[derive(Debug, Clone, Copy)]
pub struct Ticks<'a> {
    store: &'a Store,
}

impl<'a> Ticks<'a> {
    /// The tick claims kept in `store`.
    pub(super) fn new(store: &'a Store) -> Self {
        Ticks { store }
    }
}

impl Ticks<'_> {
    /// Claims `tick` of `flow_id` for this replica (`owner`): see [`TickClaim`]. The tick's
    /// key lives for `ttl` (rounded up to whole seconds; keep it longer than the clock
    /// skew between replicas and than a flow's period); a claim not renewed for `stale` is
    /// taken over.
    #[tracing::instrument(
        name = "idempotency.claim_tick",
        skip_all,
        fields(flow = flow_id, tick = %tick, outcome)
    )]
    pub async fn claim(
        self,
        flow_id: &str,
        tick: DateTime<Utc>,
        owner: &str,
        ttl: Duration,
        stale: Duration,
    ) -> Result<TickClaim, IdempotencyError> {
        self.claim_as(flow_id, tick, owner, ttl, stale, TickMode::New)
            .await
    }

    /// Like [`Ticks::claim`] for a tick found in the pending set: a tick whose key has
    /// expired is dropped ([`TickClaim::Expired`]), never claimed afresh.
    #[tracing::instrument(
        name = "idempotency.retry_tick",
        skip_all,
        fields(flow = flow_id, tick = %tick, outcome)
    )]
    pub async fn retry(
        self,
        flow_id: &str,
        tick: DateTime<Utc>,
        owner: &str,
        stale: Duration,
    ) -> Result<TickClaim, IdempotencyError> {
        self.claim_as(
            flow_id,
            tick,
            owner,
            Duration::from_secs(1),
            stale,
            TickMode::Retry,
        )
        .await
    }

    /// The ticks of `flow_id` claimed but not yet published, oldest first.
    pub async fn pending(self, flow_id: &str) -> Result<Vec<DateTime<Utc>>, IdempotencyError> {
        let set = self.store.flow_keys(flow_id).ticks_pending();
        let members: Vec<String> = match self.store.backend() {
            Backend::Embedded(db) => {
                db.call("pending_ticks", move |tx| embedded_ticks::pending(tx, &set))
                    .await?
            }
            Backend::Redis(_) => {
                let mut cmd = redis::cmd("ZRANGE");
                cmd.arg(set).arg(0).arg(-1);
                self.store.run("pending_ticks", &Request::Cmd(cmd)).await?
            }
        };
        let mut ticks: Vec<DateTime<Utc>> = members
            .iter()
            .filter_map(|m| m.parse::<i64>().ok())
            .filter_map(|secs| Utc.timestamp_opt(secs, 0).single())
            .collect();
        ticks.sort();
        Ok(ticks)
    }

    async fn claim_as(
        self,
        flow_id: &str,
        tick: DateTime<Utc>,
        owner: &str,
        ttl: Duration,
        stale: Duration,
        mode: TickMode,
    ) -> Result<TickClaim, IdempotencyError> {
        let keys = self.store.flow_keys(flow_id);
        let key = keys.tick(tick);
        let pending = keys.ticks_pending();
        let member = tick.timestamp().to_string();
        let token = token(owner);
        let secs = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
        let reply: Vec<String> = match self.store.backend() {
            Backend::Embedded(db) => {
                let rows = TickRows {
                    key: key.clone(),
                    pending: pending.clone(),
                    member: member.clone(),
                };
                let token = token.clone();
                let ttl = Duration::from_secs(secs);
                db.call("claim_tick", move |tx| {
                    embedded_ticks::claim(tx, &rows, &token, ttl, stale, mode)
                })
                .await?
            }
            Backend::Redis(_) => {
                let mode = match mode {
                    TickMode::New => "new",
                    TickMode::Retry => "retry",
                };
                let mut inv = CLAIM_TICK.prepare_invoke();
                inv.key(&key)
                    .key(&pending)
                    .arg(&token)
                    .arg(secs)
                    .arg(millis(stale))
                    .arg(&member)
                    .arg(mode);
                self.store.run("claim_tick", &Request::Script(inv)).await?
            }
        };
        let age = |ms: Option<&String>| {
            Duration::from_millis(ms.and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(0))
        };
        let lease = || TickLease {
            store: self.store.clone(),
            key: key.clone(),
            pending: pending.clone(),
            member: member.clone(),
            token: token.clone(),
        };
        let outcome = match reply.first().map(String::as_str) {
            Some("won") => TickClaim::Won(lease()),
            Some("took_over") => TickClaim::TookOver {
                lease: lease(),
                previous_owner: reply.get(1).cloned().unwrap_or_default(),
                stale_for: age(reply.get(2)),
            },
            Some("published") => TickClaim::AlreadyPublished,
            Some("other") => TickClaim::ClaimedByOtherReplica {
                owner: reply.get(1).cloned().unwrap_or_default(),
                renewed_ago: age(reply.get(2)),
            },
            Some("expired") => TickClaim::Expired,
            _ => {
                return Err(self
                    .store
                    .unexpected("claim_tick", format!("tick script answered {reply:?}")));
            }
        };
        let status = reply.first().map(String::as_str).unwrap_or_default();
        tracing::Span::current().record("outcome", status);
        debug!(outcome = status, "tick claim checked");
        Ok(outcome)
    }
}
