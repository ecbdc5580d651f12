//! Claiming a file: [`Store::claim`] and [`Store::claim_to_recheck`], and what they find
//! ([`ClaimOutcome`]). On Redis one script checks the delivery record and takes the claim;
//! on the embedded store its twin (`embedded/claims.rs`) does the same in one transaction.
//! Both answer a [`ClaimReply`], turned into the outcome here, so the two stores cannot
//! disagree on what a reply means.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tracing::{debug, warn};

use super::backend::Backend;
use super::connection::{Request, millis};
use super::embedded::claims::{self as embedded_claims, ClaimRows};
use super::error::IdempotencyError;
use super::intent::CommitIntent;
use super::keys::DeliveryKey;
use super::lease::{Claim, Lease};
use super::record::DeliveryRecord;
use super::store::{Store, decode, decode_json, token};

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

/// What the claim script (or its embedded twin) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimReply {
    /// The file was delivered (the record's JSON); nothing was claimed.
    Delivered(String),
    /// The claim is ours. `earlier`: the record, when claimed to recheck a delivered file;
    /// `intent`: the commit intent an earlier holder left (JSON).
    Taken {
        earlier: Option<String>,
        intent: Option<String>,
    },
    /// Another owner holds the claim (its token, empty when it vanished meanwhile), for this
    /// long unless renewed.
    Other {
        owner: String,
        expires_in: Option<Duration>,
    },
}

impl ClaimReply {
    /// The Redis script's reply: `{status, value[, intent | ms left]}`.
    fn from_script(reply: &[String]) -> Option<Self> {
        let non_empty = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned();
        match reply {
            [status, record, ..] if status == "delivered" => {
                Some(ClaimReply::Delivered(record.clone()))
            }
            [status, _, rest @ ..] if status == "claimed" => Some(ClaimReply::Taken {
                earlier: None,
                intent: non_empty(rest.first()),
            }),
            [status, record, rest @ ..] if status == "recheck" => Some(ClaimReply::Taken {
                earlier: Some(record.clone()),
                intent: non_empty(rest.first()),
            }),
            [status, owner, rest @ ..] if status == "other" => Some(ClaimReply::Other {
                owner: owner.clone(),
                // PTTL: -1 no expiry, -2 gone since; either way no time left to report.
                expires_in: rest
                    .first()
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .map(Duration::from_millis),
            }),
            _ => None,
        }
    }
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

impl Store {
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
            let reply = self.claim_once(key, &token, lease, recheck).await?;
            let holder = match &reply {
                ClaimReply::Other { owner, .. } if !took_over => owner.clone(),
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
        let claim = || {
            Claim::new(
                Lease::new(self.backend().clone(), claim_key.clone(), token.clone()),
                key.clone(),
                lease,
            )
        };
        // An intent this version cannot read (written by a newer one, or damaged) must not
        // block the file: without it the file is sent again, the worst case being the
        // duplicate the intent would have avoided.
        let read_intent = |json: &str| match decode_json::<CommitIntent>(&flow.intent(key), json) {
            Ok(intent) => Some(intent),
            Err(err) => {
                warn!(error = %err, "an unreadable commit intent is ignored; the file is sent again");
                None
            }
        };
        let (status, outcome) = match reply {
            ClaimReply::Delivered(record) => (
                "delivered",
                ClaimOutcome::AlreadyDelivered(decode(&delivered_key, &record)?),
            ),
            ClaimReply::Taken {
                earlier: Some(record),
                ..
            } => (
                "recheck",
                ClaimOutcome::Recheck {
                    claim: claim(),
                    earlier: decode(&delivered_key, &record)?,
                },
            ),
            ClaimReply::Taken {
                earlier: None,
                intent,
            } => match intent.as_deref().and_then(read_intent) {
                None => ("claimed", ClaimOutcome::Claimed(claim())),
                Some(intent) => (
                    "claimed",
                    ClaimOutcome::Unfinished {
                        claim: claim(),
                        intent,
                    },
                ),
            },
            ClaimReply::Other { owner, expires_in } => {
                ("other", ClaimOutcome::ClaimedByOther { owner, expires_in })
            }
        };
        let span = tracing::Span::current();
        span.record("recheck", recheck);
        span.record("outcome", status);
        debug!(outcome = status, "claim checked");
        Ok(outcome)
    }

    /// One try of the claim, on either backend.
    async fn claim_once(
        &self,
        key: &DeliveryKey,
        token: &str,
        lease: Duration,
        recheck: bool,
    ) -> Result<ClaimReply, IdempotencyError> {
        let flow = self.flow_keys(key.flow_id());
        let rows = ClaimRows {
            delivered: flow.delivered(key),
            claim: flow.claim(key),
            intent: flow.intent(key),
            legacy: key
                .legacy()
                .map(|legacy| (flow.delivered_id(&legacy.id), legacy.file_name.clone())),
        };
        if let Backend::Embedded(db) = self.backend() {
            let token = token.to_owned();
            return db
                .call("claim", move |tx| {
                    embedded_claims::claim(tx, &rows, &token, lease, recheck)
                })
                .await;
        }
        let mut inv = CLAIM.prepare_invoke();
        inv.key(&rows.delivered)
            .key(&rows.claim)
            .key(&rows.intent)
            .arg(token)
            .arg(millis(lease))
            .arg(if recheck { "1" } else { "0" });
        if let Some((legacy_key, file_name)) = &rows.legacy {
            inv.key(legacy_key).arg(file_name);
        }
        let reply: Vec<String> = self.run("claim", &Request::Script(inv)).await?;
        ClaimReply::from_script(&reply)
            .ok_or_else(|| self.unexpected("claim", format!("claim script answered {reply:?}")))
    }
}
