//! `audit verify`: walk a flow's trail from its first kept record to its head and name the
//! first record that breaks the chain.
//!
//! For each record, in stream order: its stored bytes must parse; their hash must be the
//! stored hash (an edited byte fails here); with a key, its HMAC must verify (a record
//! rewritten with a recomputed SHA-256 chain but without the key fails here); its `seq` must
//! follow the previous record's (a deleted record leaves a gap, a swapped one goes back) and
//! its `prev` must be the previous record's hash (a reordered or replaced predecessor fails
//! here). With a key, records written before the key was set (no HMAC) are accepted when a
//! keyed record follows them: its HMAC covers its `prev`, which pins everything before it.
//! The first record is accepted with its own `prev` when it is seq 1 (whose `prev` must
//! be the genesis zeros) or the first record the retention kept (`audit-first`); any other
//! first record means records were removed from the start. The last record must be the head
//! (read before the walk): a trail shorter than its head lost its last records. Records
//! appended while the walk runs (after the head it read) are left for the next verify.
//!
//! The walk reads the stream a page at a time: memory does not grow with the trail.

use std::fmt;

use super::chain::{ChainKey, GENESIS, record_hash};
use super::error::AuditError;
use super::record::AuditRecord;
use super::store::{AuditStore, Head, StoredEntry};

/// Entries read per round trip.
const PAGE: usize = 500;

/// Why a record breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// Its stored bytes are not a record.
    Unreadable,
    /// Its bytes do not hash to its stored hash: it was edited.
    HashMismatch,
    /// A key is configured but the record has no HMAC.
    MissingHmac,
    /// Its HMAC does not verify under the key: it was rewritten without the key.
    HmacMismatch,
    /// Records `from..=to` are missing before it: they were deleted.
    Missing {
        /// The first missing seq.
        from: u64,
        /// The last missing seq.
        to: u64,
    },
    /// Its seq does not follow the previous record's: records were reordered.
    OutOfOrder {
        /// The seq expected here.
        expected: u64,
    },
    /// Its `prev` is not the previous record's hash.
    LinkMismatch,
    /// It is the first record, but neither seq 1 nor the first record the retention kept:
    /// records were removed from the start of the trail.
    CutAtStart,
    /// The trail ends here, but its head says records up to this seq were written: the
    /// last records were deleted.
    TailMissing {
        /// The head's seq.
        head_seq: u64,
    },
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakKind::Unreadable => f.write_str("its stored bytes are not an audit record"),
            BreakKind::HashMismatch => {
                f.write_str("its content does not match its hash (the record was edited)")
            }
            BreakKind::MissingHmac => f.write_str(
                "it has no HMAC, audit.hmac_key is set, and no keyed record after it vouches for it",
            ),
            BreakKind::HmacMismatch => {
                f.write_str("its HMAC does not verify (the record was rewritten without the key)")
            }
            BreakKind::Missing { from, to } if from == to => {
                write!(f, "record #{from} is missing before it (deleted or moved)")
            }
            BreakKind::Missing { from, to } => {
                write!(
                    f,
                    "records #{from} to #{to} are missing before it (deleted or moved)"
                )
            }
            BreakKind::OutOfOrder { expected } => {
                write!(
                    f,
                    "record #{expected} was expected here (records were reordered)"
                )
            }
            BreakKind::LinkMismatch => f.write_str(
                "its link (prev) is not the hash of the record before it (reordered or replaced)",
            ),
            BreakKind::CutAtStart => f.write_str(
                "it is the first record, but neither #1 nor the first one the retention kept \
                 (records were removed from the start)",
            ),
            BreakKind::TailMissing { head_seq } => write!(
                f,
                "the trail ends here, but its head says records up to #{head_seq} were written \
                 (the last records were deleted)"
            ),
        }
    }
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenRecord {
    /// Its stream id.
    pub id: String,
    /// Its seq, when it could be read.
    pub seq: Option<u64>,
    /// Its file, when it could be read.
    pub file: Option<String>,
    /// How many records before it verified.
    pub verified_before: u64,
    /// Why.
    pub kind: BreakKind,
}

impl fmt::Display for BrokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record #{seq}")?,
            None => f.write_str("record")?,
        }
        write!(f, " (stream id {}", self.id)?;
        if let Some(file) = &self.file {
            write!(f, ", file {}", crate::ftps::printable(file))?;
        }
        write!(f, "): {}", self.kind)
    }
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a broken chain must be reported"]
pub enum Verdict {
    /// Every record from the first kept to the head verified.
    Intact {
        /// How many records.
        count: u64,
        /// The first record's seq (1 unless the retention trimmed), 0 for an empty trail.
        first_seq: u64,
        /// The head's seq.
        last_seq: u64,
        /// Whether HMACs were checked (a key was given).
        hmac_checked: bool,
    },
    /// The first record that breaks the chain.
    Broken(BrokenRecord),
}

/// Verifies `flow`'s trail in `store` (HMACs too, with `key`).
pub async fn verify(
    store: &AuditStore,
    flow: &str,
    key: Option<&ChainKey>,
) -> Result<Verdict, AuditError> {
    let head = store.head(flow).await?;
    let first_kept = store.first_kept(flow).await?;
    let mut walk = Walk {
        key,
        seen_keyed: false,
        unkeyed: None,
        first_kept,
        last: None,
        count: 0,
        first_seq: 0,
    };
    let mut after: Option<String> = None;
    'pages: loop {
        let page = store.page(flow, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for entry in &page {
            if let Some(broken) = walk.check(entry) {
                return Ok(Verdict::Broken(broken));
            }
            if walk.last.as_ref().is_some_and(|l| l.seq >= head.seq) {
                break 'pages;
            }
        }
    }
    Ok(walk.finish(&head))
}

/// The walk's state: the last record that verified.
struct Walk<'k> {
    key: Option<&'k ChainKey>,
    /// With a key: a keyed record was seen (every later one must be keyed too).
    seen_keyed: bool,
    /// With a key: the first of the records without an HMAC seen since the last keyed one.
    /// Records written before the key was set are accepted once a keyed record follows
    /// them (its HMAC covers its `prev`, which pins the whole chain before it); a trail
    /// that ends without one fails here.
    unkeyed: Option<BrokenRecord>,
    first_kept: Option<String>,
    last: Option<Head>,
    count: u64,
    first_seq: u64,
}

impl Walk<'_> {
    fn check(&mut self, entry: &StoredEntry) -> Option<BrokenRecord> {
        let broken = |seq, file, kind| BrokenRecord {
            id: entry.id.clone(),
            seq,
            file,
            verified_before: self.count,
            kind,
        };
        let Ok(record) = AuditRecord::decode(&entry.record) else {
            return Some(broken(None, None, BreakKind::Unreadable));
        };
        let seq = Some(record.seq);
        let file = Some(record.event.file.clone());
        if record_hash(&entry.record) != entry.hash {
            return Some(broken(seq, file, BreakKind::HashMismatch));
        }
        if let Some(key) = self.key {
            match &entry.hmac {
                None if self.seen_keyed => {
                    return Some(broken(seq, file, BreakKind::MissingHmac));
                }
                None => {
                    if self.unkeyed.is_none() {
                        self.unkeyed = Some(broken(seq, file.clone(), BreakKind::MissingHmac));
                    }
                }
                Some(mac) if !key.verifies(&entry.record, mac) => {
                    return Some(broken(seq, file, BreakKind::HmacMismatch));
                }
                Some(_) => {
                    self.seen_keyed = true;
                    self.unkeyed = None;
                }
            }
        }
        match &self.last {
            None => {
                let genesis = record.seq == 1 && record.prev == GENESIS;
                let kept = self.first_kept.as_deref() == Some(entry.id.as_str());
                if !genesis && !kept {
                    return Some(broken(seq, file, BreakKind::CutAtStart));
                }
                self.first_seq = record.seq;
            }
            Some(last) => {
                let expected = last.seq + 1;
                if record.seq > expected {
                    let kind = BreakKind::Missing {
                        from: expected,
                        to: record.seq - 1,
                    };
                    return Some(broken(seq, file, kind));
                }
                if record.seq < expected {
                    return Some(broken(seq, file, BreakKind::OutOfOrder { expected }));
                }
                if record.prev != last.hash {
                    return Some(broken(seq, file, BreakKind::LinkMismatch));
                }
            }
        }
        self.count += 1;
        self.last = Some(Head {
            seq: record.seq,
            hash: entry.hash.clone(),
        });
        None
    }

    fn finish(self, head: &Head) -> Verdict {
        if let Some(unkeyed) = self.unkeyed {
            return Verdict::Broken(unkeyed);
        }
        let last = self.last.unwrap_or_else(Head::empty);
        if last.seq < head.seq || (last.seq == head.seq && last.hash != head.hash) {
            return Verdict::Broken(BrokenRecord {
                id: "(end of the trail)".to_owned(),
                seq: (last.seq > 0).then_some(last.seq),
                file: None,
                verified_before: self.count,
                kind: BreakKind::TailMissing { head_seq: head.seq },
            });
        }
        Verdict::Intact {
            count: self.count,
            first_seq: self.first_seq,
            last_seq: last.seq,
            hmac_checked: self.key.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::AuditOutcome;
    use super::super::record::tests::event;
    use super::*;

    fn chain(n: u64) -> Vec<StoredEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let bytes = AuditRecord::new(
                    event(&format!("{seq}.xml"), AuditOutcome::Transferred),
                    seq,
                    prev.clone(),
                )
                .encode();
                prev = record_hash(&bytes);
                StoredEntry {
                    id: format!("{seq}-0"),
                    record: bytes,
                    hash: prev.clone(),
                    hmac: None,
                }
            })
            .collect()
    }

    fn walk(entries: &[StoredEntry], first_kept: Option<&str>) -> Verdict {
        let mut walk = Walk {
            key: None,
            seen_keyed: false,
            unkeyed: None,
            first_kept: first_kept.map(str::to_owned),
            last: None,
            count: 0,
            first_seq: 0,
        };
        for entry in entries {
            if let Some(broken) = walk.check(entry) {
                return Verdict::Broken(broken);
            }
        }
        let head = Head {
            seq: 5,
            hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default(),
        };
        walk.finish(&head)
    }

    fn keyed_walk(entries: &[StoredEntry], key: &ChainKey) -> Verdict {
        let mut walk = Walk {
            key: Some(key),
            seen_keyed: false,
            unkeyed: None,
            first_kept: None,
            last: None,
            count: 0,
            first_seq: 0,
        };
        for entry in entries {
            if let Some(broken) = walk.check(entry) {
                return Verdict::Broken(broken);
            }
        }
        let last = entries.last().map(|e| e.hash.clone()).unwrap_or_default();
        walk.finish(&Head {
            seq: entries.len() as u64,
            hash: last,
        })
    }

    #[test]
    fn a_key_set_later_pins_the_records_before_it_but_a_trailing_unkeyed_record_fails() {
        let key = ChainKey::new(crate::secrets::Secret::new("k".to_owned()));
        let mut entries = chain(5);
        for entry in &mut entries[2..] {
            entry.hmac = Some(key.mac(&entry.record));
        }
        assert!(matches!(
            keyed_walk(&entries, &key),
            Verdict::Intact { count: 5, .. }
        ));

        let mut stripped = entries.clone();
        stripped[4].hmac = None;
        assert_eq!(
            kind(keyed_walk(&stripped, &key)),
            Some(("5-0".into(), BreakKind::MissingHmac))
        );

        let unkeyed = chain(3);
        assert_eq!(
            kind(keyed_walk(&unkeyed, &key)),
            Some(("1-0".into(), BreakKind::MissingHmac))
        );
    }

    fn kind(v: Verdict) -> Option<(String, BreakKind)> {
        match v {
            Verdict::Broken(b) => Some((b.id, b.kind)),
            Verdict::Intact { .. } => None,
        }
    }

    #[test]
    fn intact_edited_deleted_swapped_and_trimmed() {
        let entries = chain(5);
        assert!(matches!(
            walk(&entries, None),
            Verdict::Intact { count: 5, .. }
        ));

        let mut edited = entries.clone();
        edited[2].record[10] ^= 1;
        assert!(kind(walk(&edited, None)).is_some_and(|(id, _)| id == "3-0"));

        let mut deleted = entries.clone();
        deleted.remove(2);
        assert_eq!(
            kind(walk(&deleted, None)),
            Some(("4-0".into(), BreakKind::Missing { from: 3, to: 3 }))
        );

        // Two records' contents swapped in place (the stream ids stay in order).
        let mut swapped = entries.clone();
        let (second, fourth) = (swapped[1].clone(), swapped[3].clone());
        (swapped[1].record, swapped[1].hash) = (fourth.record, fourth.hash);
        (swapped[3].record, swapped[3].hash) = (second.record, second.hash);
        assert_eq!(
            kind(walk(&swapped, None)),
            Some(("2-0".into(), BreakKind::Missing { from: 2, to: 3 }))
        );

        let trimmed = &entries[2..];
        assert!(matches!(
            walk(trimmed, Some("3-0")),
            Verdict::Intact {
                count: 3,
                first_seq: 3,
                ..
            }
        ));
        assert_eq!(
            kind(walk(trimmed, None)),
            Some(("3-0".into(), BreakKind::CutAtStart))
        );

        let tail = &entries[..4];
        assert!(matches!(
            kind(walk(tail, None)),
            Some((_, BreakKind::TailMissing { head_seq: 5 }))
        ));
    }
}
