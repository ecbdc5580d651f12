//! The embedded twins of the tick scripts (`tick.rs`): claim a tick (fresh, retried, taken
//! over when stale) and act on our own claim (renew, published, abandon), with the flow's
//! pending set as rows of `tick_pending` in place of a sorted set.
//!
//! The tick's state is a [`kv`] row under the Redis key name, holding the same JSON. The
//! pending set's expiry is kept on its rows: claiming a tick makes every row of the set live
//! at least the tick's TTL (Redis: `EXPIRE` when the set's TTL is shorter), and a row added
//! later takes the set's expiry (Redis: `ZADD` keeps the key's TTL). Times are this
//! machine's clock: one node, one clock. The answers have the scripts' shape, so `tick.rs`
//! reads both stores' replies with one decoder.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::json;

use super::kv::{self, now_ms};

/// The pending sets, created when the file is opened (`db.rs`).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tick_pending (
    set_key TEXT NOT NULL,
    member TEXT NOT NULL,
    score INTEGER NOT NULL,
    expires_at_ms INTEGER,
    PRIMARY KEY (set_key, member)
);
";

/// What a tick claim is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickMode {
    /// A tick of the cron: claim it when absent.
    New,
    /// A tick found in the pending set: an absent one has expired and is dropped.
    Retry,
}

/// What to do with our own claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TickAction {
    Renew,
    Published,
    Abandon,
}

/// The rows of one tick.
#[derive(Debug, Clone)]
pub(crate) struct TickRows {
    pub(crate) key: String,
    pub(crate) pending: String,
    pub(crate) member: String,
}

/// `CLAIM_TICK`. Reply: `{status[, owner, age ms]}` as the script's.
pub(crate) fn claim(
    tx: &Transaction<'_>,
    rows: &TickRows,
    token: &str,
    ttl: Duration,
    stale: Duration,
    mode: TickMode,
) -> rusqlite::Result<Vec<String>> {
    let now = now_ms();
    let Some(current) = kv::get(tx, &rows.key)? else {
        if mode == TickMode::Retry {
            zrem(tx, &rows.pending, &rows.member)?;
            return Ok(vec!["expired".into()]);
        }
        let state = json!({"state": "claimed", "owner": token, "at_ms": now}).to_string();
        kv::set(tx, &rows.key, &state, Some(ttl))?;
        zadd(tx, &rows.pending, &rows.member, now)?;
        expire_at_least(tx, &rows.pending, ttl)?;
        return Ok(vec!["won".into()]);
    };
    let decoded: Option<serde_json::Value> = serde_json::from_str(&current).ok();
    let claimed = decoded
        .as_ref()
        .filter(|v| v.get("state").and_then(|s| s.as_str()) == Some("claimed"));
    let Some(claimed) = claimed else {
        zrem(tx, &rows.pending, &rows.member)?;
        return Ok(vec!["published".into()]);
    };
    let owner = claimed
        .get("owner")
        .and_then(|o| o.as_str())
        .unwrap_or_default()
        .to_owned();
    if owner == token {
        return Ok(vec!["won".into()]);
    }
    let at = claimed
        .get("at_ms")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let age = now - at;
    let stale_ms = i64::try_from(stale.as_millis()).unwrap_or(i64::MAX);
    if age >= stale_ms {
        let state = json!({"state": "claimed", "owner": token, "at_ms": now}).to_string();
        kv::set_keep_ttl(tx, &rows.key, &state)?;
        zadd(tx, &rows.pending, &rows.member, now)?;
        return Ok(vec!["took_over".into(), owner, age.to_string()]);
    }
    Ok(vec!["other".into(), owner, age.to_string()])
}

/// `OWN_TICK`: 1 done, 0 the claim is not ours.
pub(crate) fn act(
    tx: &Transaction<'_>,
    rows: &TickRows,
    token: &str,
    action: TickAction,
    flow_run_id: &str,
) -> rusqlite::Result<i64> {
    let Some(current) = kv::get(tx, &rows.key)? else {
        return Ok(0);
    };
    let ours = serde_json::from_str::<serde_json::Value>(&current)
        .ok()
        .is_some_and(|v| {
            v.get("state").and_then(|s| s.as_str()) == Some("claimed")
                && v.get("owner").and_then(|o| o.as_str()) == Some(token)
        });
    if !ours {
        return Ok(0);
    }
    let now = now_ms();
    match action {
        TickAction::Published => {
            let state = json!({"state": "published", "run": flow_run_id, "at_ms": now});
            kv::set_keep_ttl(tx, &rows.key, &state.to_string())?;
            zrem(tx, &rows.pending, &rows.member)?;
        }
        TickAction::Abandon => {
            let state = json!({"state": "claimed", "owner": token, "at_ms": 0});
            kv::set_keep_ttl(tx, &rows.key, &state.to_string())?;
            zadd(tx, &rows.pending, &rows.member, 0)?;
        }
        TickAction::Renew => {
            let state = json!({"state": "claimed", "owner": token, "at_ms": now});
            kv::set_keep_ttl(tx, &rows.key, &state.to_string())?;
            zadd(tx, &rows.pending, &rows.member, now)?;
        }
    }
    Ok(1)
}

/// `ZRANGE pending 0 -1`: the live members, by score.
pub(crate) fn pending(tx: &Transaction<'_>, set: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare(
        "SELECT member FROM tick_pending
         WHERE set_key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
         ORDER BY score, member",
    )?;
    let rows = stmt.query_map(params![set, now_ms()], |row| row.get(0))?;
    rows.collect()
}

/// `ZADD`: a new member takes the set's expiry (none when the set is new or never expires).
fn zadd(tx: &Transaction<'_>, set: &str, member: &str, score: i64) -> rusqlite::Result<()> {
    drop_expired(tx, set)?;
    let expiry: Option<i64> = tx
        .query_row(
            "SELECT MAX(expires_at_ms) FROM tick_pending WHERE set_key = ?1",
            params![set],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    tx.execute(
        "INSERT INTO tick_pending (set_key, member, score, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (set_key, member) DO UPDATE SET score = excluded.score",
        params![set, member, score, expiry],
    )?;
    Ok(())
}

fn zrem(tx: &Transaction<'_>, set: &str, member: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM tick_pending WHERE set_key = ?1 AND member = ?2",
        params![set, member],
    )?;
    Ok(())
}

/// The set lives at least `ttl` from now (`EXPIRE` when its TTL is shorter; a set without
/// one, `TTL` -1, counts as shorter, as in the script).
fn expire_at_least(tx: &Transaction<'_>, set: &str, ttl: Duration) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE tick_pending SET expires_at_ms = ?2
         WHERE set_key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms < ?2)",
        params![set, kv::deadline(ttl)],
    )?;
    Ok(())
}

/// An expired set is gone: its rows are deleted before it is written again.
fn drop_expired(tx: &Transaction<'_>, set: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM tick_pending WHERE set_key = ?1 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2",
        params![set, now_ms()],
    )?;
    Ok(())
}
