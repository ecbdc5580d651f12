//! A partner's bandwidth cap (`ftps.connection.max_bytes_per_second`): every session to the
//! partner in one worker process draws from one [`BandwidthCap`], uploads and downloads
//! alike, so four sessions at once share the cap rather than take four times it.
//!
//! The cap is a virtual clock: each chunk of `n` bytes is given the next free slot of
//! `n / rate` seconds, and the caller waits until its slot begins before it moves the
//! chunk. Sessions are served in the order they ask, none can starve another, and no
//! background task or timer is needed. There is no burst allowance: an idle minute does not
//! buy a faster next second (partners cap bandwidth because their line is small).
//!
//! The caps live in a process-wide table keyed by partner and rate, because a partner's
//! sessions are opened by several flows' runs, each with its own pool.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// One partner's cap, shared by its sessions.
#[derive(Debug)]
pub struct BandwidthCap {
    bytes_per_second: u64,
    /// When the next chunk may start.
    next_free: Mutex<Instant>,
}

/// Caps by partner id and rate.
type CapTable = HashMap<(String, u64), Arc<BandwidthCap>>;

/// Every cap of this process.
static CAPS: LazyLock<Mutex<CapTable>> = LazyLock::new(Mutex::default);

impl BandwidthCap {
    /// The cap of `partner` at `bytes_per_second`, shared with every other session of that
    /// partner in this process (created on first use).
    pub fn for_partner(partner: &str, bytes_per_second: u64) -> Arc<BandwidthCap> {
        let mut caps = CAPS.lock().unwrap_or_else(|p| p.into_inner());
        caps.entry((partner.to_owned(), bytes_per_second))
            .or_insert_with(|| Arc::new(BandwidthCap::new(bytes_per_second)))
            .clone()
    }

    /// A cap of its own (not shared through the table).
    pub fn new(bytes_per_second: u64) -> Self {
        BandwidthCap {
            bytes_per_second: bytes_per_second.max(1),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// The rate, in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Waits until `bytes` more may move.
    pub(crate) async fn take(&self, bytes: usize) {
        let slot = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let start = {
            let mut next_free = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next_free).max(Instant::now());
            *next_free = start + slot;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_takers_share_one_rate() {
        let cap = Arc::new(BandwidthCap::new(10_000));
        let started = Instant::now();
        let a = tokio::spawn({
            let cap = cap.clone();
            async move {
                for _ in 0..5 {
                    cap.take(100).await;
                }
            }
        });
        let b = tokio::spawn({
            let cap = cap.clone();
            async move {
                for _ in 0..5 {
                    cap.take(100).await;
                }
            }
        });
        a.await.unwrap();
        b.await.unwrap();
        // 1000 bytes at 10 000 B/s: the last chunk starts after 90 ms (one cap for both;
        // two caps would let both finish after 40 ms).
        assert!(started.elapsed() >= Duration::from_millis(90));
    }

    #[test]
    fn one_partner_and_rate_share_one_cap() {
        let a = BandwidthCap::for_partner("p", 10);
        let b = BandwidthCap::for_partner("p", 10);
        let c = BandwidthCap::for_partner("q", 10);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
