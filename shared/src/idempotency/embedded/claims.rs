//! The embedded twins of the claim scripts in `claim.rs` and `store.rs`: claim (with the
//! delivery-record check, the legacy record, recheck and the commit intent), begin a
//! commit, abandon it, record a delivery. Each function is one transaction's body, so it is
//! as atomic as the script it mirrors; the comments name the script step they stand for.

use std::time::Duration;

use rusqlite::Transaction;

use super::kv;
use crate::idempotency::claim::ClaimReply;

/// The rows one claim looks at (the same names as the Redis keys).
#[derive(Debug, Clone)]
pub(crate) struct ClaimRows {
    pub(crate) delivered: String,
    pub(crate) claim: String,
    pub(crate) intent: String,
    /// The record under the older key, and the file name it must carry to count.
    pub(crate) legacy: Option<(String, String)>,
}

/// `CLAIM`: the record (or a legacy record of the same file name) answers `delivered`
/// unless `recheck`; else the claim is taken (or found already ours, and renewed) and the
/// intent an earlier holder left is returned; else the other owner and its time left.
pub(crate) fn claim(
    tx: &Transaction<'_>,
    rows: &ClaimRows,
    token: &str,
    lease: Duration,
    recheck: bool,
) -> rusqlite::Result<ClaimReply> {
    let mut record = kv::get(tx, &rows.delivered)?;
    if record.is_none()
        && let Some((legacy_key, file_name)) = &rows.legacy
        && let Some(legacy) = kv::get(tx, legacy_key)?
        && legacy_file_name(&legacy).as_deref() == Some(file_name.as_str())
    {
        record = Some(legacy);
    }
    if let Some(record) = &record
        && !recheck
    {
        return Ok(ClaimReply::Delivered(record.clone()));
    }
    let taken = kv::set_nx(tx, &rows.claim, token, lease)? || {
        let ours = kv::get(tx, &rows.claim)?.as_deref() == Some(token);
        ours && kv::pexpire(tx, &rows.claim, lease)?
    };
    if taken {
        return Ok(ClaimReply::Taken {
            earlier: record,
            intent: kv::get(tx, &rows.intent)?,
        });
    }
    Ok(ClaimReply::Other {
        owner: kv::get(tx, &rows.claim)?.unwrap_or_default(),
        expires_in: kv::pttl(tx, &rows.claim)?
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
    })
}

/// `BEGIN_COMMIT`: if the claim is ours, renew it for a whole lease and write the intent
/// for the retention; says whether it was ours.
pub(crate) fn begin_commit(
    tx: &Transaction<'_>,
    claim: &str,
    intent: &str,
    token: &str,
    intent_json: &str,
    retention: Duration,
    lease: Duration,
) -> rusqlite::Result<bool> {
    if kv::get(tx, claim)?.as_deref() != Some(token) {
        return Ok(false);
    }
    kv::pexpire(tx, claim, lease)?;
    kv::set(tx, intent, intent_json, Some(retention))?;
    Ok(true)
}

/// `ABANDON_COMMIT`: if the claim is ours, delete the intent; says whether it was ours.
pub(crate) fn abandon_commit(
    tx: &Transaction<'_>,
    claim: &str,
    intent: &str,
    token: &str,
) -> rusqlite::Result<bool> {
    if kv::get(tx, claim)?.as_deref() != Some(token) {
        return Ok(false);
    }
    kv::del(tx, intent)?;
    Ok(true)
}

/// `RECORD`: write the record under every key in `delivered` for the retention, delete the
/// intent, delete the claim if it is ours. Says whether it was ours (or whether this is a
/// repeat of our own write: the claim gone, the record already this one).
pub(crate) fn record_delivery(
    tx: &Transaction<'_>,
    claim: &str,
    intent: &str,
    delivered: &[String],
    token: &str,
    record_json: &str,
    retention: Duration,
) -> rusqlite::Result<bool> {
    let prior = match delivered.first() {
        Some(main) => kv::get(tx, main)?,
        None => None,
    };
    for key in delivered {
        kv::set(tx, key, record_json, Some(retention))?;
    }
    kv::del(tx, intent)?;
    let owner = kv::get(tx, claim)?;
    if owner.as_deref() == Some(token) {
        kv::del(tx, claim)?;
        return Ok(true);
    }
    Ok(owner.is_none() && prior.as_deref() == Some(record_json))
}

/// The `file_name` of a stored record, if it is JSON with one (the legacy check's `cjson`).
fn legacy_file_name(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("file_name")?.as_str().map(str::to_owned)
}
