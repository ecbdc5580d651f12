//! The `scheduler:` section of `ferry.yaml`: what the scheduler does with ticks it missed,
//! where it serves its metrics, and the timings of publishing a tick and of taking over a
//! tick whose replica crashed.
//!
//! ```yaml
//! scheduler:
//!   catch_up: latest          # or none
//!   metrics_listen: 127.0.0.1:9464
//!   publish_give_up: 2m
//!   stale_tick_claim: 30s     # at least 1s
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::yaml::{Cx, Map};

/// The keys of the `scheduler:` section.
pub(crate) const KEYS: &[&str] = &[
    "catch_up",
    "publish_give_up",
    "stale_tick_claim",
    "metrics_listen",
];

/// The scheduler process's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerSettings {
    /// `scheduler.catch_up` (default `latest`): what to do with ticks missed while down.
    pub catch_up: CatchUp,
    /// `scheduler.metrics_listen` (default `127.0.0.1:9464`): where `GET /metrics` is served.
    pub metrics_listen: SocketAddr,
    /// `scheduler.publish_give_up` (default 2m): how long one attempt to publish a tick's
    /// flow-run retries before it gives up and leaves the tick to a later retry.
    pub publish_give_up: Duration,
    /// `scheduler.stale_tick_claim` (default 30s): a tick claimed but neither published nor
    /// renewed for this long (its replica crashed or gave up) is taken over by any replica.
    /// Claims are renewed and pending ticks looked for every third of it.
    pub stale_tick_claim: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            catch_up: CatchUp::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            publish_give_up: Duration::from_secs(120),
            stale_tick_claim: Duration::from_secs(30),
        }
    }
}

/// What the scheduler does with ticks it missed (while stopped or partitioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Run each flow once for its latest missed tick.
    #[default]
    Latest,
    /// Skip missed ticks; wait for the next one.
    None,
}

/// Reads the `scheduler:` section (`None` when absent: defaults).
pub(crate) fn read(cx: &mut Cx<'_>, section: Option<&Map<'_>>) -> SchedulerSettings {
    let mut settings = SchedulerSettings::default();
    let Some(scheduler) = section else {
        return settings;
    };
    if let Some(catch_up) = scheduler
        .get("catch_up")
        .and_then(|f| f.choice(cx, &[("latest", CatchUp::Latest), ("none", CatchUp::None)]))
    {
        settings.catch_up = catch_up;
    }
    if let Some(d) = scheduler
        .get("publish_give_up")
        .and_then(|f| f.duration(cx))
    {
        settings.publish_give_up = d;
    }
    if let Some(field) = scheduler.get("stale_tick_claim")
        && let Some(d) = field.duration(cx)
    {
        if d < Duration::from_secs(1) {
            field.error(
                cx,
                "must be at least 1s (claims are renewed every third of it)",
            );
        } else {
            settings.stale_tick_claim = d;
        }
    }
    if let Some(addr) = scheduler
        .get("metrics_listen")
        .and_then(|f| f.listen_addr(cx))
    {
        settings.metrics_listen = addr;
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::load;
    use super::*;

    #[test]
    fn timings_have_defaults_and_a_floor() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty());
        assert_eq!(settings.scheduler.publish_give_up, Duration::from_secs(120));
        assert_eq!(settings.scheduler.stale_tick_claim, Duration::from_secs(30));
        let (settings, errors) = load("scheduler:\n  stale_tick_claim: 500ms\n", &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "scheduler.stale_tick_claim");
        assert_eq!((errors[0].line, errors[0].column), (Some(2), Some(3)));
        assert_eq!(settings.scheduler.stale_tick_claim, Duration::from_secs(30));
    }

    #[test]
    fn catch_up_choices() {
        let (settings, errors) = load("scheduler:\n  catch_up: none\n", &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.scheduler.catch_up, CatchUp::None);
        let (_, errors) = load("scheduler:\n  catch_up: all\n", &[]);
        assert_eq!(errors[0].field, "scheduler.catch_up");
    }
}
