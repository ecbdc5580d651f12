//! The `worker:` section of `ferry.yaml`: how many flow-runs a worker process runs at once,
//! how long it gives them on stop, where its health endpoints listen, and the leases that
//! let another worker take over from a crashed one.
//!
//! ```yaml
//! worker:
//!   concurrency: 4
//!   shutdown_grace: 30s
//!   health_listen: 127.0.0.1:8080
//!   claim_lease: 60s
//!   flow_lock_lease: 20s
//!   flow_lock_wait: 30s
//! ```
//!
//! Leases must be positive: a zero lease would let a second worker take a file (or a flow)
//! the first one is still transferring.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::yaml::{Cx, Map};

/// The keys of the `worker:` section.
pub(crate) const KEYS: &[&str] = &[
    "concurrency",
    "shutdown_grace",
    "health_listen",
    "claim_lease",
    "flow_lock_lease",
    "flow_lock_wait",
];

/// The worker process's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// `worker.concurrency` (default 4): flow-runs processed at once (the consumer prefetch).
    pub concurrency: u16,
    /// `worker.shutdown_grace` (default 30s): how long running transfers may finish on stop.
    pub shutdown_grace: Duration,
    /// `worker.health_listen` (default `127.0.0.1:8080`): the health endpoints' address.
    pub health_listen: SocketAddr,
    /// `worker.claim_lease` (default 60s): how long a file claim outlives a worker that
    /// stopped renewing it (crashed); another worker may take the file after that.
    pub claim_lease: Duration,
    /// `worker.flow_lock_lease` (default 20s): the same for the flow lock that keeps two
    /// runs of one flow apart: a crashed worker's flow is free again after this.
    pub flow_lock_lease: Duration,
    /// `worker.flow_lock_wait` (default 30s): how long a run waits for another run of the
    /// same flow before it is reported busy (and, for a message, retried later).
    pub flow_lock_wait: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            concurrency: 4,
            shutdown_grace: Duration::from_secs(30),
            health_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            claim_lease: Duration::from_secs(60),
            flow_lock_lease: Duration::from_secs(20),
            flow_lock_wait: Duration::from_secs(30),
        }
    }
}

/// Reads the `worker:` section (`None` when absent: defaults).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>) -> WorkerSettings {
    let mut settings = WorkerSettings::default();
    let Some(worker) = section else {
        return settings;
    };
    if let Some(n) = worker
        .get("concurrency")
        .and_then(|f| f.int(cx, 1u16, 1024))
    {
        settings.concurrency = n;
    }
    if let Some(d) = worker.get("shutdown_grace").and_then(|f| f.duration(cx)) {
        settings.shutdown_grace = d;
    }
    if let Some(d) = worker
        .get("claim_lease")
        .and_then(|f| f.positive_duration(cx))
    {
        settings.claim_lease = d;
    }
    if let Some(d) = worker
        .get("flow_lock_lease")
        .and_then(|f| f.positive_duration(cx))
    {
        settings.flow_lock_lease = d;
    }
    if let Some(d) = worker.get("flow_lock_wait").and_then(|f| f.duration(cx)) {
        settings.flow_lock_wait = d;
    }
    if let Some(addr) = worker.get("health_listen").and_then(|f| f.listen_addr(cx)) {
        settings.health_listen = addr;
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn defaults_values_and_a_zero_lease_refused() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.worker, WorkerSettings::default());
        let (settings, errors) = load(
            "worker:\n  concurrency: 8\n  health_listen: 127.0.0.1:9000\n  claim_lease: 0s\n",
            &[],
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "worker.claim_lease");
        assert_eq!(settings.worker.concurrency, 8);
        assert_eq!(settings.worker.health_listen.port(), 9000);
        assert_eq!(settings.worker.claim_lease, Duration::from_secs(60));
    }
}
