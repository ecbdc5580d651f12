//! The per-file retry policy: how many attempts a file gets and how long to wait between
//! them when a transient error (server busy, connection dropped) interrupts a transfer.
//!
//! Waits grow exponentially and use "full jitter" (a uniform draw between zero and the
//! exponential cap), so a fleet of workers that failed together does not retry together.
//! [`RetryPolicy::run`] is the loop every partner operation of a file runs in. Reconnects
//! to services use [`crate::backoff::Backoff`] instead.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::warn;

use crate::ftps::{FtpsError, FtpsErrorKind};

/// How a failing file is retried within one flow-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// The cap of the wait before the second attempt; doubled for every further attempt.
    pub base_delay: Duration,
    /// No wait is ever longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, waits capped at 2 s then 4 s, never more than 60 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Whether another attempt may follow attempt number `attempt` (1-based).
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }

    /// The upper bound of the wait after failed attempt `attempt` (1-based):
    /// `min(max_delay, base_delay * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay)
    }

    /// Runs `attempt` until it succeeds, retrying transient failures with this policy's
    /// waits while `deadline` leaves time for the wait. `attempts` counts every try;
    /// `on_retry` is told of each failure that is tried again (for the retry metric).
    ///
    /// `local_file_changed` is never retried: the claim was taken for the old content.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        deadline: Instant,
        attempts: &mut u32,
        mut attempt: F,
        on_retry: impl Fn(&FtpsError),
    ) -> Result<T, FtpsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, FtpsError>>,
    {
        loop {
            *attempts += 1;
            let err = match attempt().await {
                Ok(out) => return Ok(out),
                Err(err) => err,
            };
            let retryable = err.is_transient()
                && err.kind() != FtpsErrorKind::LocalFileChanged
                && self.allows_another(*attempts);
            if !retryable {
                return Err(err);
            }
            let delay = self.delay(*attempts, &mut rand::rng());
            if Instant::now() + delay >= deadline {
                return Err(err);
            }
            warn!(attempt = *attempts, error = %err, retry_in = ?delay, "transient partner error; retrying");
            on_retry(&err);
            tokio::time::sleep(delay).await;
        }
    }

    /// The wait after failed attempt `attempt`: uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
        };
        let ceilings: Vec<u64> = (1..=7).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn delays_stay_within_the_ceiling() {
        let p = RetryPolicy::default();
        let mut rng = rand::rng();
        for attempt in 1..=5 {
            for _ in 0..200 {
                assert!(p.delay(attempt, &mut rng) <= p.ceiling(attempt));
            }
        }
    }

    #[test]
    fn attempts_are_counted_from_one() {
        let p = RetryPolicy::default();
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        let once = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert!(!once.allows_another(1));
    }
}
