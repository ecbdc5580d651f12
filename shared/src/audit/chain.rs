//! The hash chain: each record's link (SHA-256 of its stored bytes) and, when
//! `audit.hmac_key` is set, its HMAC-SHA256 under that key.
//!
//! **Why both.** The SHA-256 link makes an edit, a deletion or a reordering visible to
//! anyone who re-hashes the chain, but whoever can write to Redis can also recompute every
//! hash after an edit. The HMAC closes that: without the key (resolved from a secret
//! reference, never stored in Redis or in the trail) a rewritten record cannot carry a valid
//! HMAC, so `audit verify` with the key rejects a chain that was "repaired" after tampering.
//!
//! Both are computed over a domain tag and the record's canonical bytes (`record.rs`), which
//! include `seq` and `prev`: the link is therefore a hash of the whole history up to it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::secrets::Secret;

/// The tag every hashed message starts with, so a record hash can never be mistaken for a
/// hash of anything else ferry computes.
const DOMAIN: &[u8] = b"ferry-audit-v1\n";

/// The `prev` of the first record of a chain: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 (lowercase hex) of a record's stored bytes: its link, which the next record
/// carries as `prev`.
pub fn record_hash(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(bytes);
    hex::encode(hasher.finalize())
}

/// The HMAC key of the trail (`audit.hmac_key`, resolved). Its value never leaves this type
/// except into the MAC; `Debug` shows nothing.
#[derive(Clone)]
pub struct ChainKey(Secret);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(***)")
    }
}

impl ChainKey {
    /// A key from a resolved secret.
    pub fn new(secret: Secret) -> Self {
        ChainKey(secret)
    }

    /// HMAC-SHA256 (lowercase hex) of a record's stored bytes.
    pub fn mac(&self, bytes: &[u8]) -> String {
        hex::encode(self.mac_of(bytes).finalize().into_bytes())
    }

    /// Whether `mac_hex` is the HMAC of `bytes` (compared in constant time).
    pub fn verifies(&self, bytes: &[u8], mac_hex: &str) -> bool {
        let Ok(mac) = hex::decode(mac_hex) else {
            return false;
        };
        self.mac_of(bytes).verify_slice(&mac).is_ok()
    }

    fn mac_of(&self, bytes: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac.update(bytes);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_macs_depend_on_every_byte_and_on_the_key() {
        let a = record_hash(b"{\"seq\":1}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, record_hash(b"{\"seq\":2}"));
        let key = ChainKey::new(Secret::new("k1".to_owned()));
        let mac = key.mac(b"x");
        assert!(key.verifies(b"x", &mac));
        assert!(!key.verifies(b"y", &mac));
        assert!(!ChainKey::new(Secret::new("k2".to_owned())).verifies(b"x", &mac));
        assert!(!format!("{key:?}").contains("k1"));
    }
}
