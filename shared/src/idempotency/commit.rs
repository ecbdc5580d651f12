//! Finishing a claim: [`Store::begin_commit`] (the intent, right before the rename),
//! [`Store::abandon_commit`], [`Store::record_delivery`] (the record, and the claim let go in
//! the same step), [`Store::release`] and [`Store::delivery`]. On Redis each is one script; on
//! the embedded store its twin in `embedded/claims.rs` runs in one transaction.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tracing::{debug, warn};

use super::backend::Backend;
use super::connection::{Request, millis};
use super::embedded::claims as embedded_claims;
use super::error::IdempotencyError;
use super::intent::{CommitIntent, CommitStart};
use super::keys::DeliveryKey;
use super::lease::Claim;
use super::record::DeliveryRecord;
use super::store::{Store, decode};

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

impl Store {
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
        let held = if let Backend::Embedded(db) = self.backend() {
            let claim_key = claim.lease().key().to_owned();
            let token = claim.lease().token().to_owned();
            let lease = claim.duration();
            db.call("begin_commit", move |tx| {
                embedded_claims::begin_commit(
                    tx,
                    &claim_key,
                    &intent_key,
                    &token,
                    &json,
                    retention,
                    lease,
                )
            })
            .await?
        } else {
            let mut inv = BEGIN_COMMIT.prepare_invoke();
            inv.key(claim.lease().key())
                .key(&intent_key)
                .arg(claim.lease().token())
                .arg(&json)
                .arg(millis(retention))
                .arg(millis(claim.duration()));
            let held: i64 = self.run("begin_commit", &Request::Script(inv)).await?;
            held == 1
        };
        tracing::Span::current().record("held", held);
        Ok(if held {
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
        if let Backend::Embedded(db) = self.backend() {
            let claim_key = claim.lease().key().to_owned();
            let token = claim.lease().token().to_owned();
            return db
                .call("abandon_commit", move |tx| {
                    embedded_claims::abandon_commit(tx, &claim_key, &intent_key, &token)
                })
                .await;
        }
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
        let mut delivered = vec![main_key];
        delivered.extend(also.iter().map(|k| flow.delivered(k)));
        let intent_key = flow.intent(claim.key());
        let held = if let Backend::Embedded(db) = self.backend() {
            let claim_key = claim.lease().key().to_owned();
            let token = claim.lease().token().to_owned();
            db.call("record_delivery", move |tx| {
                embedded_claims::record_delivery(
                    tx,
                    &claim_key,
                    &intent_key,
                    &delivered,
                    &token,
                    &json,
                    retention,
                )
            })
            .await?
        } else {
            let mut inv = RECORD.prepare_invoke();
            inv.key(claim.lease().key()).key(&intent_key);
            for k in &delivered {
                inv.key(k);
            }
            inv.arg(claim.lease().token())
                .arg(&json)
                .arg(millis(retention));
            let held: i64 = self.run("record_delivery", &Request::Script(inv)).await?;
            held == 1
        };
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
        let json = self.get(&redis_key, "delivery").await?;
        json.map(|j| decode(&redis_key, &j)).transpose()
    }
}
