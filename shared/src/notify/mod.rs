//! Flow notifications: a flow's `notify.webhooks` (see `config/notify.rs`) are told, by a
//! JSON `POST` (`body.rs`), when one of its runs fails, is dead-lettered, or (when asked)
//! succeeds.
//!
//! **When.** `success` / `failure` at the end of every flow-run attempt, wherever it runs
//! (`ferry-worker run`, `consume`, `standalone`: the engine sends them, see
//! `transfer/engine.rs`); a run that failed and will be retried is one `failure` per
//! attempt. `dead_letter` once a queue gives the run up, whether at once (no retry can help)
//! or after its last attempt (`consume` and `standalone`, after the run is settled); a
//! `ferry-worker run` has no queue and so no dead letters.
//!
//! **Never in the run's way.** [`Notifier`] only hands a notification to a task of its own
//! and returns: a receiver that hangs, refuses or answers 500 costs the run nothing and
//! never changes its outcome. Each notification is retried with backoff up to the
//! webhook's `max_attempts`, each request bounded by its `timeout` (`webhook.rs`). At most
//! [`MAX_PENDING`] notifications are under way in a process, and at most
//! [`MAX_PENDING_PER_WEBHOOK`] for one webhook (so that one dead receiver, whose
//! notifications each wait out all their attempts, cannot take every slot from the other
//! flows); one more is dropped (logged, counted `dropped`) rather than queued without bound.
//!
//! **No proxy.** The HTTP client ignores `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`: an
//! `http://` webhook is allowed only to loopback, and a proxy from the environment would
//! carry it, with its secret headers, off the machine in clear.
//!
//! **At shutdown** the process gives the notifications still under way up to
//! [`SHUTDOWN_GRACE`] (5 s) after its runs ended ([`Notifier::drain`]): `ferry-worker run`
//! after printing its report, `consume` and `standalone` after their in-flight runs. What
//! is still pending then is abandoned (logged with the count).
//!
//! Every notification is counted in `ferry_webhook_deliveries_total{flow,event,result}`.

mod body;
mod webhook;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{Instrument, warn};

pub use body::{
    DeadLetterNotice, ErrorNotice, FileNotice, MAX_FILES, RunNotice, RunOutcome, TotalsNotice,
};

use crate::broker::DeadLetterReason;
use crate::config::{Flow, NotifyEvent};
use crate::secrets::Resolver;
use crate::telemetry::LogEvent;
use crate::telemetry::metrics::notify::NotifyMetrics;
use webhook::{Delivery, DeliveryResult, deliver};

/// The most notifications under way at once in one process.
pub const MAX_PENDING: u32 = 256;

/// The most notifications under way at once for one webhook (a flow's `webhooks[i]`).
pub const MAX_PENDING_PER_WEBHOOK: usize = 16;

/// How long a stopping process waits for the notifications under way.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The flow-run attempt being run (set by the queue consumers).
    static RUN_ATTEMPT: u32;
}

/// Runs `run` (a flow-run) as attempt `attempt` of its flow-run message: the attempt its
/// notifications name.
pub fn in_attempt<F: Future>(attempt: u32, run: F) -> impl Future<Output = F::Output> {
    RUN_ATTEMPT.scope(attempt, run)
}

/// The attempt set by [`in_attempt`], if any.
pub fn current_attempt() -> Option<u32> {
    RUN_ATTEMPT.try_with(|attempt| *attempt).ok()
}

/// Sends flow notifications in the background. Cheap to clone; one per engine.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Resolver,
    /// Built on first use (most flows notify nobody).
    client: OnceLock<Result<reqwest::Client, String>>,
    /// One permit per notification under way.
    pending: Arc<Semaphore>,
    /// One permit per notification under way, per webhook (flow id, index).
    per_webhook: std::sync::Mutex<std::collections::HashMap<(String, usize), Arc<Semaphore>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier resolving URLs and headers with `resolver`.
    pub fn new(resolver: Resolver) -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                resolver,
                client: OnceLock::new(),
                pending: Arc::new(Semaphore::new(MAX_PENDING as usize)),
                per_webhook: Default::default(),
            }),
        }
    }

    /// Notifications under way.
    pub fn pending(&self) -> usize {
        MAX_PENDING as usize - self.inner.pending.available_permits()
    }

    /// Tells `flow`'s webhooks that a run attempt ended: `success` or `failure` as
    /// `notice` says (nothing for a run left unfinished to other workers). Returns at once.
    pub fn run_finished(&self, flow: &Flow, notice: &RunNotice) {
        if let Some(event) = notice.finished_event() {
            self.send(flow, event, notice, None);
        }
    }

    /// Tells `flow`'s webhooks that its run was dead-lettered (`notice`: its last attempt).
    /// Returns at once.
    pub fn dead_lettered(
        &self,
        flow: &Flow,
        notice: &RunNotice,
        reason: DeadLetterReason,
        message: &str,
    ) {
        let dead_letter = DeadLetterNotice {
            reason: reason.as_str(),
            message: message.to_owned(),
        };
        self.send(flow, NotifyEvent::DeadLetter, notice, Some(&dead_letter));
    }

    fn send(
        &self,
        flow: &Flow,
        event: NotifyEvent,
        notice: &RunNotice,
        dead_letter: Option<&DeadLetterNotice>,
    ) {
        for (index, hook) in flow.notify.webhooks_for(event) {
            let Some(permits) = self.inner.take_permits(&flow.id, index) else {
                warn!(
                    event = LogEvent::WebhookFailed.as_str(),
                    notify.event = event.as_str(),
                    webhook = index,
                    "webhook notification dropped: {MAX_PENDING} notifications in all, or {MAX_PENDING_PER_WEBHOOK} for this webhook, already under way"
                );
                NotifyMetrics::global().record(&flow.id, event.as_str(), "dropped");
                continue;
            };
            let delivery_id = uuid::Uuid::new_v4().to_string();
            let delivery = Delivery {
                flow_id: flow.id.clone(),
                index,
                hook: hook.clone(),
                event,
                body: body::encode(event, &delivery_id, notice, dead_letter),
                delivery_id,
            };
            let span = tracing::info_span!(
                "webhook.notify",
                flow.id = %flow.id,
                run.id = %notice.run_id,
                notify.event = event.as_str(),
                webhook = index,
            );
            let inner = self.inner.clone();
            tokio::spawn(
                async move {
                    let result = match inner.client() {
                        Ok(client) => deliver(client, &inner.resolver, &delivery).await,
                        Err(reason) => {
                            warn!(
                                event = LogEvent::WebhookFailed.as_str(),
                                reason, "webhook notification given up: no HTTP client"
                            );
                            DeliveryResult::Failed
                        }
                    };
                    NotifyMetrics::global().record(
                        &delivery.flow_id,
                        delivery.event.as_str(),
                        result.as_str(),
                    );
                    drop(permits);
                }
                .instrument(span),
            );
        }
    }

    /// Waits up to `grace` for the notifications under way (at shutdown); says how many
    /// were abandoned.
    pub async fn drain(&self, grace: Duration) {
        if self.pending() == 0 {
            return;
        }
        let all = self.inner.pending.acquire_many(MAX_PENDING);
        match tokio::time::timeout(grace, all).await {
            Ok(_) => {}
            Err(_) => warn!(
                abandoned = self.pending(),
                ?grace,
                "stopping with webhook notifications still under way; they are not sent"
            ),
        }
    }
}

impl Inner {
    /// A slot for one more notification of webhook `index` of `flow_id`: one of the
    /// process's and one of the webhook's; `None` when either is full.
    fn take_permits(
        &self,
        flow_id: &str,
        index: usize,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )> {
        let webhook = {
            let mut per_webhook = self.per_webhook.lock().unwrap_or_else(|e| e.into_inner());
            per_webhook
                .entry((flow_id.to_owned(), index))
                .or_insert_with(|| Arc::new(Semaphore::new(MAX_PENDING_PER_WEBHOOK)))
                .clone()
        };
        let webhook = webhook.try_acquire_owned().ok()?;
        let process = self.pending.clone().try_acquire_owned().ok()?;
        Some((process, webhook))
    }

    fn client(&self) -> Result<&reqwest::Client, &str> {
        self.client
            .get_or_init(|| http_client().map_err(|error| error.without_url().to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The webhooks' HTTP client: never through a proxy from the environment (see the module
/// docs), never following a redirect (a webhook's answer is its answer: a `3xx` is a
/// failed delivery, so that a receiver cannot send the body and its secret headers on to
/// another host).
fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
}
