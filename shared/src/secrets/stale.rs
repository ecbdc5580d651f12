//! The stale grace: serving the last value fetched from Vault or AWS for a bounded time
//! while the store cannot be reached, instead of failing every flow-run of a partner.
//!
//! Why: a secret store is one more thing that restarts, fails over, gets sealed or loses
//! its network; the value it handed out a few minutes ago is, almost always, still the
//! right one. Failing the run would turn a store blip into missed deliveries.
//!
//! Why only unreachability ([`Fault::Unavailable`]: refused, timed out, 5xx, sealed,
//! throttled): a *definitive* answer from the store (403 permission denied, 404 secret
//! gone, a rejected login) is the store saying "no", and a revoked secret must stop
//! working at once. Such an answer also drops the kept value, so that a later outage
//! cannot bring it back.
//!
//! Why bounded, and from the value's expiry: a value is never used more than
//! `cache_ttl + stale_grace` after the store last confirmed it, however long the outage.
//! Past that the run fails with the store's own "unavailable" error, extended with how old
//! the kept value is (never the value). Each stale use logs a warning naming the
//! reference, is counted ([`StaleGrace::served_total`]) and marks the `secret.resolve`
//! span (`stale = true`, `stale_age_s`), so operators see a store outage before the grace
//! runs out. The store is asked again every 15 s meanwhile (`STALE_RETRY` in the
//! resolver: a store that times out must not hold every resolution), so the fresh value is
//! back within 15 s of the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{Span, warn};

use super::SecretRef;
use super::error::{Fault, Store};
use crate::telemetry::metrics::secrets::SecretMetrics;

/// A value the store returned, and when.
pub(super) struct LastGood<D> {
    pub(super) value: D,
    pub(super) fetched: Instant,
}

/// How a resolution's value was obtained.
#[must_use]
pub(super) enum Freshness {
    /// From the store, or from the cache within `cache_ttl`.
    Fresh,
    /// The last good value, served because the store could not be reached.
    Stale {
        /// How long ago the store returned it.
        age: Duration,
        /// Why the store could not be reached (network or server words, no value).
        reason: String,
    },
}

/// The grace policy and its counter, shared by a resolver's clones.
pub(super) struct StaleGrace {
    cache_ttl: Duration,
    grace: Duration,
    served: AtomicU64,
}

impl StaleGrace {
    pub(super) fn new(cache_ttl: Duration, grace: Duration) -> Self {
        StaleGrace {
            cache_ttl,
            grace,
            served: AtomicU64::new(0),
        }
    }

    /// Whether a failure may be bridged with the last value: only when the store could
    /// not be reached, never when it answered.
    pub(super) fn covers(fault: &Fault) -> bool {
        matches!(fault, Fault::Unavailable(_))
    }

    /// After `fault` (which [`StaleGrace::covers`]): the last value with its freshness if
    /// it is still within the grace, else the fault, told how old the kept value is.
    pub(super) fn fallback<D: Clone>(
        &self,
        last: Option<&LastGood<D>>,
        fault: Fault,
    ) -> Result<(D, Freshness), Fault> {
        let (Some(last), Fault::Unavailable(reason)) = (last, &fault) else {
            return Err(fault);
        };
        if self.grace.is_zero() {
            return Err(fault);
        }
        let age = last.fetched.elapsed();
        if age < self.cache_ttl + self.grace {
            return Ok((
                last.value.clone(),
                Freshness::Stale {
                    age,
                    reason: reason.clone(),
                },
            ));
        }
        Err(Fault::Unavailable(format!(
            "{reason}; the last value, fetched {} s ago, is past secrets.stale_grace ({} s after secrets.cache_ttl) and is no longer used",
            age.as_secs(),
            self.grace.as_secs()
        )))
    }

    /// Records one stale use of `reference`: a warning (reference, age, reason; never the
    /// value), the counter, and the current (`secret.resolve`) span.
    pub(super) fn served(&self, reference: &SecretRef, store: Store, age: Duration, reason: &str) {
        let total = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        SecretMetrics::global().record_stale_served(store.label());
        let span = Span::current();
        span.record("stale", true);
        span.record("stale_age_s", age.as_secs());
        warn!(
            reference = %reference,
            %store,
            age_s = age.as_secs(),
            grace_s = self.grace.as_secs(),
            reason,
            stale_served_total = total,
            "secret store unreachable: serving the last value fetched (stale grace)"
        );
    }

    /// How many resolutions were answered with a stale value so far.
    pub(super) fn served_total(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(age: Duration) -> LastGood<u8> {
        LastGood {
            value: 7,
            fetched: Instant::now() - age,
        }
    }

    #[test]
    fn only_unavailability_within_ttl_plus_grace_is_bridged() {
        let grace = StaleGrace::new(Duration::from_secs(60), Duration::from_secs(600));
        let down = || Fault::Unavailable("connection refused".into());
        let (value, freshness) = grace
            .fallback(Some(&last(Duration::from_secs(300))), down())
            .unwrap();
        assert_eq!(value, 7);
        assert!(matches!(freshness, Freshness::Stale { .. }));
        // Past cache_ttl + grace: the error, saying how old the kept value is.
        let Err(Fault::Unavailable(reason)) =
            grace.fallback(Some(&last(Duration::from_secs(661))), down())
        else {
            panic!("expected unavailable");
        };
        assert!(
            reason.starts_with("connection refused; the last value"),
            "{reason}"
        );
        assert!(reason.contains("secrets.stale_grace"), "{reason}");
        // Nothing kept, or a definitive answer: the fault as is.
        assert!(
            matches!(grace.fallback::<u8>(None, down()), Err(Fault::Unavailable(r)) if r == "connection refused")
        );
        assert!(!StaleGrace::covers(&Fault::NotFound));
        assert!(!StaleGrace::covers(&Fault::PermissionDenied("no".into())));
        // Grace off.
        let off = StaleGrace::new(Duration::from_secs(60), Duration::ZERO);
        assert!(
            off.fallback(Some(&last(Duration::from_secs(61))), down())
                .is_err()
        );
    }

    #[test]
    fn a_stale_use_is_logged_with_the_reference_counted_and_marked_on_the_span() {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .finish();
        let grace = StaleGrace::new(Duration::from_secs(60), Duration::from_secs(600));
        let reference = SecretRef::parse("vault:secret/acme#password").unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "secret.resolve",
                stale = tracing::field::Empty,
                stale_age_s = tracing::field::Empty
            );
            let _in = span.enter();
            grace.served(&reference, Store::Vault, Duration::from_secs(90), "refused");
        });
        assert_eq!(grace.served_total(), 1);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["reference"], "vault:secret/acme#password");
        assert_eq!(line["fields"]["age_s"], 90);
        assert_eq!(line["span"]["stale"], true);
        assert_eq!(line["span"]["stale_age_s"], 90);
    }
}
