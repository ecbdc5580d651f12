//! The Redis key layout: every key the store reads or writes is built here, and only here.
//!
//! All keys of one flow carry the same Redis Cluster hash tag `{flow:<flow-id>}`, so they
//! live in one slot and the store's Lua scripts (which touch a claim and a record together)
//! stay valid on a cluster. Raw file names never appear in a key: they are hashed, which
//! keeps keys short, printable and free of the `{`, `}` and `:` that would break the layout.
//! Flow ids are escaped for the same reason. See the table in the [module docs](super).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::error::IdempotencyError;

/// The prefix used when the configuration gives none.
pub const DEFAULT_PREFIX: &str = "ferry";

/// Where one flow's keys live: the prefix and the flow's hash tag.
///
/// Cheap to build; the store makes one per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKeys {
    base: String,
}

impl FlowKeys {
    /// The keys of `flow_id` under `prefix` (a prefix already checked by [`check_prefix`]).
    pub fn new(prefix: &str, flow_id: &str) -> Self {
        FlowKeys {
            base: format!("{prefix}:{{flow:{}}}", escape(flow_id)),
        }
    }

    /// `<prefix>:{flow:<flow>}:claim:<key>`: who is transferring this file right now.
    pub fn claim(&self, key: &DeliveryKey) -> String {
        format!("{}:claim:{}", self.base, key.id)
    }

    /// `<prefix>:{flow:<flow>}:delivered:<key>`: the record of a finished delivery.
    pub fn delivered(&self, key: &DeliveryKey) -> String {
        format!("{}:delivered:{}", self.base, key.id)
    }

    /// `<prefix>:{flow:<flow>}:intent:<key>`: a delivery between its rename and its record
    /// (see [`CommitIntent`](super::CommitIntent)).
    pub fn intent(&self, key: &DeliveryKey) -> String {
        format!("{}:intent:{}", self.base, key.id)
    }

    /// The delivery record key of an older layout's id (see [`DeliveryKey::named_content`]).
    pub(crate) fn delivered_id(&self, id: &str) -> String {
        format!("{}:delivered:{id}", self.base)
    }

    /// `<prefix>:{flow:<flow>}:lock`: the flow-wide lock.
    pub fn lock(&self) -> String {
        format!("{}:lock", self.base)
    }

    /// `<prefix>:{flow:<flow>}:tick:<unix-seconds>`: one scheduler tick, claimed once.
    pub fn tick(&self, tick: DateTime<Utc>) -> String {
        format!("{}:tick:{}", self.base, tick.timestamp())
    }

    /// `<prefix>:{flow:<flow>}:ticks-pending`: ticks claimed but not yet published (a sorted
    /// set of unix seconds, scored by the claim's last renewal), see `tick.rs`.
    pub fn ticks_pending(&self) -> String {
        format!("{}:ticks-pending", self.base)
    }

    /// `<prefix>:{flow:<flow>}:lock-wake`: a list the flow lock's release pushes a token onto,
    /// so that a waiter blocked on it wakes at once (see `flow_lock.rs`).
    pub fn lock_wake(&self) -> String {
        format!("{}:lock-wake", self.base)
    }

    /// `<prefix>:{flow:<flow>}:full-run`: the latest run of the flow that took every file and
    /// settled them all (see `coverage.rs`).
    pub fn full_run(&self) -> String {
        format!("{}:full-run", self.base)
    }

    /// `<prefix>:{flow:<flow>}:audit`: the flow's audit trail, a stream of hash-chained
    /// records (see `audit/store.rs`).
    pub fn audit(&self) -> String {
        format!("{}:audit", self.base)
    }

    /// `<prefix>:{flow:<flow>}:audit-head`: `<seq> <sha-256 hex>` of the audit trail's last
    /// record, the link the next record must carry.
    pub fn audit_head(&self) -> String {
        format!("{}:audit-head", self.base)
    }

    /// `<prefix>:{flow:<flow>}:audit-first`: the stream id of the first record kept after
    /// the retention last trimmed the trail (absent when nothing was ever trimmed).
    pub fn audit_first(&self) -> String {
        format!("{}:audit-first", self.base)
    }
}

/// Rejects prefixes that would break the layout (braces would move the hash tag).
pub fn check_prefix(prefix: &str) -> Result<(), IdempotencyError> {
    let ok = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(IdempotencyError::Config {
            reason: format!(
                "key prefix {prefix:?} must be non-empty and use only ASCII letters, digits, \
                 '-', '_', '.' and ':' (no braces: they would change the Redis Cluster hash tag)"
            ),
        })
    }
}

/// What makes one delivery unique within a flow; the `<key>` part of claim and record keys.
///
/// Build it with the constructor matching the flow's `idempotency_mode` (uploads) or with
/// [`DeliveryKey::download`] for the claim a download takes before fetching a remote file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    flow_id: String,
    id: String,
    /// Records written before this key's layout that also prove the delivery: the old
    /// content key, valid only for a record of the same file name.
    legacy: Option<Legacy>,
}

/// A record under an older key that counts for this one when its file name matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Legacy {
    pub(crate) id: String,
    pub(crate) file_name: String,
}

impl DeliveryKey {
    /// Content mode (`idempotency_mode: content`): the same bytes are delivered once per
    /// flow, whatever their name. `sha256` is the file's digest.
    pub fn content(flow_id: impl Into<String>, sha256: &[u8; 32]) -> Self {
        DeliveryKey {
            flow_id: flow_id.into(),
            id: format!("sha256:{}", hex::encode(sha256)),
            legacy: None,
        }
    }

    /// Hash mode (`idempotency_mode: hash`, the default): a file is identified by its name
    /// and the SHA-256 of its content. Records of the earlier content-only layout (before
    /// this mode keyed on names) still count when they name the same file.
    pub fn named_content(flow_id: impl Into<String>, file_name: &str, sha256: &[u8; 32]) -> Self {
        let hex = hex::encode(sha256);
        DeliveryKey {
            flow_id: flow_id.into(),
            id: format!("file:{}:sha256:{hex}", name_digest(file_name)),
            legacy: Some(Legacy {
                id: format!("sha256:{hex}"),
                file_name: file_name.to_owned(),
            }),
        }
    }

    /// A SHA-256 of this key (flow and id): a stable name for what belongs to it, such as
    /// an upload's temporary file.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.flow_id.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.id.as_bytes());
        hasher.finalize().into()
    }

    /// The older record this key also accepts, if any.
    pub(crate) fn legacy(&self) -> Option<&Legacy> {
        self.legacy.as_ref()
    }

    /// Name mode: a file is identified by its name, size and modification time (whole
    /// seconds, so listings of different precision agree within a second).
    pub fn name(
        flow_id: impl Into<String>,
        file_name: &str,
        size: u64,
        modified: DateTime<Utc>,
    ) -> Self {
        DeliveryKey {
            flow_id: flow_id.into(),
            id: format!(
                "name:{}:{size}:{}",
                name_digest(file_name),
                modified.timestamp()
            ),
            legacy: None,
        }
    }

    /// Download claims: a remote file seen in a listing, before its content is known.
    ///
    /// A separate namespace from [`DeliveryKey::content`], which the download records
    /// once the bytes are fetched and hashed, and from [`DeliveryKey::name`].
    pub fn download(
        flow_id: impl Into<String>,
        remote_name: &str,
        size: u64,
        modified: DateTime<Utc>,
    ) -> Self {
        DeliveryKey {
            flow_id: flow_id.into(),
            id: format!(
                "download:{}:{size}:{}",
                name_digest(remote_name),
                modified.timestamp()
            ),
            legacy: None,
        }
    }

    /// The flow this key belongs to.
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// The key's identity as it appears in Redis keys (no raw file names).
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.flow_id, self.id)
    }
}

/// SHA-256 of a file name, hex: fixed length, no separators, no case or encoding games.
fn name_digest(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// Percent-escapes everything but `[A-Za-z0-9._-]`, so a flow id can never close the hash
/// tag early (`}`) or add a separator (`:`). Injective: distinct ids stay distinct.
fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0)
            .single()
            .expect("valid timestamp")
    }

    #[test]
    fn layout_matches_the_documented_table() {
        let k = FlowKeys::new("ferry", "payroll-out");
        let key = DeliveryKey::content("payroll-out", &[0xab; 32]);
        let hex = "ab".repeat(32);
        assert_eq!(
            k.claim(&key),
            format!("ferry:{{flow:payroll-out}}:claim:sha256:{hex}")
        );
        assert_eq!(
            k.delivered(&key),
            format!("ferry:{{flow:payroll-out}}:delivered:sha256:{hex}")
        );
        assert_eq!(k.lock(), "ferry:{flow:payroll-out}:lock");
        assert_eq!(
            k.tick(at(1_700_000_000)),
            "ferry:{flow:payroll-out}:tick:1700000000"
        );
    }

    #[test]
    fn names_are_hashed_and_modes_do_not_collide() {
        let name = DeliveryKey::name("f", "a:b}{c d.csv", 10, at(5));
        let download = DeliveryKey::download("f", "a:b}{c d.csv", 10, at(5));
        for k in [&name, &download] {
            assert!(!k.as_str().contains('{') && !k.as_str().contains('}'));
            assert!(!k.as_str().contains(' '));
            assert!(k.as_str().ends_with(":10:5"), "{}", k.as_str());
        }
        assert_ne!(name.as_str(), download.as_str());
        assert!(name.as_str().starts_with("name:"));
        assert!(download.as_str().starts_with("download:"));
        // Size and time are part of the identity.
        assert_ne!(name, DeliveryKey::name("f", "a:b}{c d.csv", 11, at(5)));
        assert_ne!(name, DeliveryKey::name("f", "a:b}{c d.csv", 10, at(6)));
        // Sub-second differences do not matter.
        let later = at(5) + chrono::Duration::milliseconds(900);
        assert_eq!(name, DeliveryKey::name("f", "a:b}{c d.csv", 10, later));
    }

    #[test]
    fn all_keys_of_a_flow_share_one_cluster_slot() {
        use redis::cluster_routing::Slot;
        for flow in ["payroll-out", "a}b:c{d", "x"] {
            let k = FlowKeys::new("ferry:prod", flow);
            let slot = Slot::for_key(k.lock());
            let keys = [
                k.claim(&DeliveryKey::content(flow, &[1; 32])),
                k.delivered(&DeliveryKey::name(flow, "{x}.csv", 1, at(1))),
                k.claim(&DeliveryKey::download(flow, "y", 2, at(2))),
                k.tick(at(1_700_000_000)),
                k.intent(&DeliveryKey::content(flow, &[3; 32])),
                k.ticks_pending(),
                k.lock_wake(),
                k.full_run(),
                k.audit(),
                k.audit_head(),
                k.audit_first(),
            ];
            for key in keys {
                assert_eq!(Slot::for_key(&key), slot, "{key}");
            }
        }
        // Different flows spread over slots (these two differ).
        assert_ne!(
            Slot::for_key(FlowKeys::new("ferry", "a").lock()),
            Slot::for_key(FlowKeys::new("ferry", "b").lock())
        );
    }

    #[test]
    fn hostile_flow_ids_cannot_break_the_hash_tag() {
        let k = FlowKeys::new("ferry", "a}b:c{d");
        assert_eq!(k.lock(), "ferry:{flow:a%7Db%3Ac%7Bd}:lock");
        assert_ne!(FlowKeys::new("p", "a%3A"), FlowKeys::new("p", "a:"));
    }

    #[test]
    fn prefixes_with_braces_are_rejected() {
        assert!(check_prefix("ferry").is_ok());
        assert!(check_prefix("prod:ferry-1").is_ok());
        for bad in ["", "fe{rry", "a}b", "with space"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
