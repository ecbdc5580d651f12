//! [`Engine`]: what a worker keeps between flow-runs (configuration, secret resolver,
//! idempotency store, one session pool per partner), and the flow-run itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{Instrument, field::Empty, info, info_span, warn};

use super::context::{RunContext, RunStop, StopReason};
use super::download::download_file;
use super::error::TransferError;
use super::hash_cache::HashCache;
use super::limits::{counts_toward_limit, hit_time_limit, in_batches, in_order};
use super::metrics;
use super::partner::partner_session_config;
use super::plan::FlowPlan;
use super::pool::SessionPool;
use super::report::{Direction, FileError, FileErrorKind, FileReport, RunInfo, RunReport};
use super::selection::{Walk, is_stable, select_local};
use super::sweep::sweep_stale_parts;
use super::upload::{remote_location, upload_file};
use crate::audit::AuditLog;
use crate::config::{Config, IdempotencyMode};
use crate::ftps::{FtpsError, FtpsErrorKind, RemoteEntry, SessionConfig};
use crate::idempotency::{FlowLock, FullRun, LockWait, Store, StoreConfig, Unlocked};
use crate::notify::{Notifier, RunNotice, current_attempt};
use crate::secrets::{Resolver, Secret};
use crate::telemetry::metrics::{Metrics, file_labels};

/// Called with each file's row as soon as the file is done (for progress output).
pub type Progress<'a> = &'a (dyn Fn(&FileReport) + Send + Sync);

/// The engine's own knobs (the rest comes from the configuration).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Who this worker is, in claims and locks (`<host>-<pid>` by default): what an
    /// operator sees as the holder of a busy flow or a file left to another worker.
    pub worker_id: String,
    /// How long a file claim lasts without renewal; a crashed worker's files are taken by
    /// others after this. Renewed every third of it while a transfer runs.
    pub claim_lease: Duration,
    /// How long the flow lock lasts without renewal (renewed every third of it while the
    /// run lasts): after a crash, the flow is free again within this time.
    pub flow_lock_lease: Duration,
    /// How long a run waits for another run of the same flow before reporting it busy.
    pub flow_lock_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        // The pod name on Kubernetes; the kernel's host name elsewhere.
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_owned());
        EngineOptions {
            worker_id: format!("{host}-{}", std::process::id()),
            claim_lease: Duration::from_secs(60),
            flow_lock_lease: Duration::from_secs(20),
            flow_lock_wait: Duration::from_secs(30),
        }
    }
}

/// A partner's pool and the fingerprint of the settings it was built with.
struct PartnerPool {
    fingerprint: [u8; 32],
    pool: SessionPool,
}

/// Runs flows. One per worker process; cheap to share behind an `Arc`.
pub struct Engine {
    config: Arc<Config>,
    resolver: Resolver,
    store: Store,
    options: EngineOptions,
    pools: Mutex<HashMap<String, PartnerPool>>,
    audit: AuditLog,
    hashes: HashCache,
    notifier: Notifier,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over already-built parts.
    pub fn new(
        config: Arc<Config>,
        resolver: Resolver,
        store: Store,
        options: EngineOptions,
    ) -> Self {
        let audit = AuditLog::new(&config.settings.audit, &store, resolver.clone());
        let notifier = Notifier::new(resolver.clone());
        Engine {
            config,
            notifier,
            resolver,
            store,
            options,
            pools: Mutex::new(HashMap::new()),
            audit,
            hashes: HashCache::default(),
        }
    }

    /// Builds the resolver and connects the store from the configuration's settings, at
    /// once: it fails (closed) when Redis cannot be reached (`ferry-worker run`; the worker's
    /// consume loop waits for Redis at start instead, retrying the connect).
    pub async fn connect(
        config: Arc<Config>,
        options: EngineOptions,
    ) -> Result<Self, TransferError> {
        let resolver = Resolver::new(config.settings.resolver.clone());
        let store_config =
            StoreConfig::from_config(&config, &resolver)
                .await
                .map_err(|source| TransferError::Secret {
                    flow_id: String::new(),
                    partner: "redis".to_owned(),
                    field: "redis.password",
                    source: Box::new(source),
                })?;
        let store = Store::connect(&store_config)
            .await
            .map_err(|source| TransferError::Store {
                flow_id: String::new(),
                source: Box::new(source),
            })?;
        Ok(Engine::new(config, resolver, store, options))
    }

    /// The configuration the engine runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The idempotency store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The flow notifications' sender (`notify:`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Closes the idle sessions of every partner (at shutdown).
    pub async fn close(&self) {
        let pools: Vec<SessionPool> = self
            .pools
            .lock()
            .map(|pools| pools.values().map(|p| p.pool.clone()).collect())
            .unwrap_or_default();
        for pool in pools {
            pool.close_idle().await;
        }
    }

    /// Runs one flow: takes the flow lock, selects the files (all, or only those named in
    /// `only_files`), moves each one exactly once, and reports what happened to each.
    ///
    /// Errors are for runs that could not run at all (unknown flow, Redis down, flow busy,
    /// partner unreachable for a listing); a file that fails is a row of the report.
    pub async fn run_flow(
        &self,
        flow_id: &str,
        only_files: Option<&[String]>,
        run_id: &str,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport, TransferError> {
        self.run_flow_requested(flow_id, only_files, run_id, None, progress)
            .await
    }

    /// Like [`Engine::run_flow`] for a run requested at `requested_at` (a flow-run
    /// message's): once it holds the flow lock, a run that a newer, complete run of the
    /// flow has covered finishes at once (its report's `covered_by`, no rows; see
    /// `idempotency/coverage.rs`). Without `requested_at` the run is never covered.
    pub async fn run_flow_requested(
        &self,
        flow_id: &str,
        only_files: Option<&[String]>,
        run_id: &str,
        requested_at: Option<DateTime<Utc>>,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport, TransferError> {
        let plan = FlowPlan::from_config(&self.config, flow_id)?;
        let span = info_span!(
            "flow_run",
            flow.id = %plan.flow_id,
            run.id = %run_id,
            direction = plan.direction.as_str(),
            partner = %plan.partner_id,
            files = Empty,
            bytes = Empty,
            outcome = Empty,
            error.type = Empty,
        );
        let started = Instant::now();
        let in_flight = Metrics::global().run_started(&plan.flow_id);
        // Boxed: the run is a deep state machine, and callers nest it in theirs.
        let result = Box::pin(self.run_locked(&plan, only_files, run_id, requested_at, progress))
            .instrument(span.clone())
            .await;
        drop(in_flight);
        // What Redis refused during the run is tried once more (see `audit/trail.rs`).
        self.audit.flush().instrument(span.clone()).await;
        match &result {
            Ok(report) => {
                metrics::record_run(&plan.partner_id, report);
                span.record("files", report.files.len());
                span.record("bytes", report.totals.bytes);
                span.record("outcome", if report.is_success() { "ok" } else { "failed" });
                span.in_scope(|| info!("{}", report.summary_line()));
            }
            Err(err) => {
                metrics::record_not_run(&plan.flow_id, err, started.elapsed());
                span.record("outcome", err.kind().as_str());
                span.record("error.type", err.kind().as_str());
                span.in_scope(|| warn!(error = %err, "flow-run did not run"));
            }
        }
        // Handed to the notifier's own tasks: nothing here waits for a webhook.
        if let Some(flow) = self.config.flows.get(&plan.flow_id)
            && !flow.notify.webhooks.is_empty()
        {
            span.in_scope(|| {
                let notice = RunNotice::from_outcome(flow, run_id, current_attempt(), &result);
                self.notifier.run_finished(flow, &notice);
            });
        }
        result
    }

    /// Holds the flow lock around the run.
    async fn run_locked(
        &self,
        plan: &FlowPlan,
        only_files: Option<&[String]>,
        run_id: &str,
        requested_at: Option<DateTime<Utc>>,
        progress: Option<Progress<'_>>,
    ) -> Result<RunReport, TransferError> {
        let store_error = |source| TransferError::Store {
            flow_id: plan.flow_id.clone(),
            source: Box::new(source),
        };
        let wait = self
            .store
            .flow_locks()
            .wait(
                &plan.flow_id,
                &self.options.worker_id,
                self.options.flow_lock_lease,
                self.options.flow_lock_wait,
            )
            .await
            .map_err(store_error)?;
        let lock = match wait {
            LockWait::Acquired(lock) => lock,
            LockWait::Busy { holder, waited } => {
                return Err(TransferError::FlowBusy {
                    flow_id: plan.flow_id.clone(),
                    holder,
                    waited,
                });
            }
        };
        let started_at = Utc::now();
        if let Some(requested_at) = requested_at {
            match self.covered(plan, run_id, requested_at, started_at).await {
                Ok(Some(report)) => {
                    self.release(lock).await;
                    return Ok(report);
                }
                Ok(None) => {}
                Err(err) => {
                    // Not knowing only costs the run its shortcut.
                    warn!(error = %err, "could not look for a covering run; running");
                }
            }
        }
        // A run that loses its flow lock (Redis unreachable, the lease taken over) or meets
        // Redis unavailable for a file stops taking new files (see `context.rs`); files
        // under way finish under their own claims, and the report still has a row for
        // every file the run touched.
        let stop = RunStop::default();
        let mut run = Box::pin(self.run(plan, only_files, run_id, progress, &stop));
        let outcome = tokio::select! {
            biased;
            outcome = &mut run => outcome,
            reason = lock.keep_alive() => {
                warn!(%reason, "the flow lock was lost; no new file is started in this run");
                stop.stop(StopReason::LockLost);
                run.await
            }
        };
        // A run of every file that settled each one covers the runs queued behind it.
        if let Ok(report) = &outcome
            && only_files.is_none()
            && stop.reason().is_none()
            && report.settled_everything()
        {
            let full = FullRun {
                run_id: run_id.to_owned(),
                started_at,
                finished_at: Utc::now(),
            };
            if let Err(err) = self.store.full_runs().record(&plan.flow_id, &full).await {
                warn!(error = %err, "could not record the run as covering the runs queued behind it");
            }
        }
        self.release(lock).await;
        outcome
    }

    /// Gives the flow lock back; says so in the log when it was lost while the run held it.
    async fn release(&self, lock: FlowLock) {
        match self.store.flow_locks().unlock(lock).await {
            Ok(Unlocked::Released) => {}
            Ok(Unlocked::AlreadyLost) => warn!(
                "the flow lock had expired or been taken over before the run released it; \
                 another run of this flow may have overlapped this one"
            ),
            Err(err) => {
                warn!(error = %err, "could not release the flow lock; it expires with its lease");
            }
        }
    }

    /// The report of a run that a newer, complete run of its flow covered, if one did.
    async fn covered(
        &self,
        plan: &FlowPlan,
        run_id: &str,
        requested_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> Result<Option<RunReport>, crate::idempotency::IdempotencyError> {
        let Some(covering) = self
            .store
            .full_runs()
            .covering(&plan.flow_id, requested_at)
            .await?
        else {
            return Ok(None);
        };
        info!(
            covering_run = %covering.run_id,
            covering_started_at = %covering.started_at,
            %requested_at,
            "nothing left to do: a newer run of the flow took every file"
        );
        let info = RunInfo {
            flow_id: plan.flow_id.clone(),
            run_id: run_id.to_owned(),
            direction: plan.direction,
            started_at,
        };
        let took = (Utc::now() - started_at).to_std().unwrap_or_default();
        Ok(Some(RunReport::covered(info, took, covering)))
    }

    /// The run itself: select, then move the files in parallel over the partner's pool.
    async fn run(
        &self,
        plan: &FlowPlan,
        only_files: Option<&[String]>,
        run_id: &str,
        progress: Option<Progress<'_>>,
        stop: &RunStop,
    ) -> Result<RunReport, TransferError> {
        let started = Instant::now();
        let info = RunInfo {
            flow_id: plan.flow_id.clone(),
            run_id: run_id.to_owned(),
            direction: plan.direction,
            started_at: chrono::Utc::now(),
        };
        let pool = self.pool_for(plan).await?;
        let ctx = RunContext {
            plan,
            store: &self.store,
            pool: &pool,
            owner: &self.options.worker_id,
            run_id,
            trace_id: crate::telemetry::current_trace_id(),
            claim_lease: self.options.claim_lease,
            deadline: started + plan.run_timeout,
            stop,
            audit: &self.audit,
            hashes: &self.hashes,
        };
        let parallel = plan.max_connections.max(1) * FILES_IN_FLIGHT_PER_SESSION;
        let labels = file_labels(&plan.flow_id, &plan.partner_id, plan.direction.as_str());

        let left_for_next_run;
        // Copied into each batch's closures, so the files' futures borrow the run, not them.
        let (run_ctx, run_labels) = (&ctx, &labels);
        let (rows, not_yet_stable) = match plan.direction {
            Direction::Upload => {
                let walk = Walk {
                    recursive: plan.is_recursive(),
                    min_age: plan.min_file_age,
                    now: SystemTime::now(),
                    follow_links: plan.follow_links,
                };
                let selectors = plan.clone();
                let selection =
                    select_local(&plan.local_dir, walk, move |name| selectors.selects(name))
                        .await
                        .map_err(|source| TransferError::LocalIo {
                            flow_id: plan.flow_id.clone(),
                            path: plan.local_dir.clone(),
                            source,
                        })?;
                let (files, mut missing) = only_named(selection.ready, only_files, |f| &f.name);
                let files = in_order(files, plan.limits.order);
                let (links, _) = only_named(selection.links, only_files, |(name, _)| name);
                if plan.idempotency == IdempotencyMode::None && !files.is_empty() {
                    let dirs = files
                        .iter()
                        .map(|f| remote_location(&plan.remote_dir, &f.name).0)
                        .collect();
                    sweep_stale_parts(&ctx, &dirs).await;
                }
                missing.retain(|name| !links.iter().any(|(link, _)| link == name));
                let (mut rows, left) = in_batches(
                    files,
                    &plan.limits,
                    counts_toward_limit,
                    hit_time_limit,
                    |batch| {
                        in_parallel(batch, parallel, progress, stop, move |file| {
                            Box::pin(metrics::timed_file(run_labels, upload_file(run_ctx, file)))
                        })
                    },
                )
                .await;
                left_for_next_run = left;
                rows.extend(links.into_iter().map(|(name, reason)| {
                    let path = plan.local_dir.join(&name).display().to_string();
                    FileReport::skipped(
                        name,
                        path,
                        FileError::permanent(FileErrorKind::LinkNotFollowed, reason),
                    )
                }));
                (with_missing(rows, missing), selection.not_yet_stable)
            }
            Direction::Download => {
                let (ready, not_yet_stable) = self.list_remote(&ctx).await?;
                let (entries, missing) = only_named(ready, only_files, |e| &e.name);
                let entries = in_order(entries, plan.limits.order);
                let (rows, left) = in_batches(
                    entries,
                    &plan.limits,
                    counts_toward_limit,
                    hit_time_limit,
                    |batch| {
                        in_parallel(batch, parallel, progress, stop, move |entry| {
                            Box::pin(metrics::timed_file(
                                run_labels,
                                download_file(run_ctx, entry),
                            ))
                        })
                    },
                )
                .await;
                left_for_next_run = left;
                (with_missing(rows, missing), not_yet_stable)
            }
        };
        super::audit::record_unspanned(&ctx, &rows).await;
        let timed_out = rows.iter().any(|r| {
            r.error
                .as_ref()
                .is_some_and(|e| e.kind == FileErrorKind::RunTimeout)
        });
        let mut report = RunReport::new(info, started.elapsed(), rows, not_yet_stable, timed_out);
        report.left_for_next_run = left_for_next_run;
        Ok(report)
    }

    /// The partner's files that the flow takes, and those not yet stable.
    async fn list_remote(
        &self,
        ctx: &RunContext<'_>,
    ) -> Result<(Vec<RemoteEntry>, Vec<String>), TransferError> {
        let plan = ctx.plan;
        let mut attempts = 0;
        let listing = ctx.with_retries(&mut attempts, || async {
            let mut session = ctx.pool.get().await?;
            let listing = session.list(&plan.remote_dir).await;
            session.keep_if_ok(listing)
        });
        // A partner that trickles its listing must not hold the flow lock and a worker slot
        // past the run's time limit.
        let listing = tokio::time::timeout_at(ctx.deadline, listing)
            .await
            .unwrap_or_else(|_| {
                Err(FtpsError::new(
                    FtpsErrorKind::Timeout,
                    format!("listing of {}", plan.remote_dir),
                    format!(
                        "the run reached its time limit ({:?}) before the partner finished the \
                         listing",
                        plan.run_timeout
                    ),
                ))
            })
            .map_err(|source| TransferError::Partner {
                flow_id: plan.flow_id.clone(),
                partner: plan.partner_id.clone(),
                source: Box::new(source),
            })?;
        // A file still waiting for its marker counts as not yet stable (see `markers.rs`).
        let (listing, mut not_yet_stable) =
            super::markers::ready_by_marker(plan.done_marker.as_ref(), listing);
        not_yet_stable.retain(|name| plan.selects(name));
        let now = SystemTime::now();
        let mut ready = Vec::new();
        for entry in listing {
            // Another flow's part or a file moved aside, shown by `MLSD` or `LIST -a`.
            if !entry.is_file
                || crate::ftps::is_working_file(&entry.name)
                || !plan.selects(&entry.name)
            {
                continue;
            }
            // A listed time says the file changed within its second, minute (`LIST`) or day:
            // with a stability age, count it from the end of that span. A file is then taken
            // only once no later change can carry the same listed time, which is what keeps
            // a download's identity (name, size, listed time) unique on servers that list
            // to the minute (see `download.rs`).
            let stable = entry.modified.is_none_or(|m| {
                let latest = match entry.precision.span() {
                    Some(span) if !plan.min_file_age.is_zero() => m + span,
                    _ => m,
                };
                is_stable(latest.into(), plan.min_file_age, now)
            });
            if stable {
                ready.push(entry);
            } else {
                not_yet_stable.push(entry.name);
            }
        }
        ready.sort_by(|a, b| a.name.cmp(&b.name));
        not_yet_stable.sort();
        Ok((ready, not_yet_stable))
    }

    /// The session pool of the flow's partner, built (or rebuilt, when a secret or setting
    /// changed since) from the partner's configuration with its secrets resolved.
    async fn pool_for(&self, plan: &FlowPlan) -> Result<SessionPool, TransferError> {
        let partner = self.config.partners.get(&plan.partner_id).ok_or_else(|| {
            TransferError::Configuration {
                flow_id: plan.flow_id.clone(),
                reason: format!("partner {:?} is not configured", plan.partner_id),
            }
        })?;
        let session_config = partner_session_config(&self.resolver, partner, &plan.flow_id).await?;
        let fingerprint = fingerprint(&session_config, plan.max_connections);
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = pools.get(&plan.partner_id)
            && existing.fingerprint == fingerprint
        {
            return Ok(existing.pool.clone());
        }
        let pool = SessionPool::new(session_config, plan.max_connections);
        pools.insert(
            plan.partner_id.clone(),
            PartnerPool {
                fingerprint,
                pool: pool.clone(),
            },
        );
        Ok(pool)
    }
}

/// Files in flight per session of the pool. A file spends part of its time off the partner
/// (hashing, its claim, its commit intent and record in the store, the audit record): with
/// one file per session, each session sat idle for those steps. Two per session keep the
/// sessions busy; the pool still bounds the sessions to `max_connections`, and a file takes
/// a session only to transfer, never while it waits for the store.
const FILES_IN_FLIGHT_PER_SESSION: usize = 2;

/// Runs `handle` on every item, at most `parallel` at a time, and collects the rows,
/// telling `progress` about each as soon as it is done. A row that met Redis unavailable
/// stops the run (`stop`): the items not yet started are reported not started.
async fn in_parallel<T, Fut>(
    items: Vec<T>,
    parallel: usize,
    progress: Option<Progress<'_>>,
    stop: &RunStop,
    handle: impl Fn(T) -> Fut,
) -> Vec<FileReport>
where
    Fut: Future<Output = FileReport>,
{
    let mut rows = Vec::with_capacity(items.len());
    let mut running = FuturesUnordered::new();
    let mut done = |row: FileReport| {
        stop.after(&row);
        if let Some(progress) = progress {
            progress(&row);
        }
        rows.push(row);
    };
    for item in items {
        if running.len() >= parallel
            && let Some(row) = running.next().await
        {
            done(row);
        }
        running.push(handle(item));
    }
    while let Some(row) = running.next().await {
        done(row);
    }
    rows
}

/// Keeps the items named in `only` (all when `None`), and the names asked for but absent.
fn only_named<T>(
    items: Vec<T>,
    only: Option<&[String]>,
    name: impl Fn(&T) -> &String,
) -> (Vec<T>, Vec<String>) {
    let Some(only) = only else {
        return (items, Vec::new());
    };
    let (kept, _): (Vec<T>, Vec<T>) = items.into_iter().partition(|i| only.contains(name(i)));
    let missing = only
        .iter()
        .filter(|n| !kept.iter().any(|i| name(i) == *n))
        .cloned()
        .collect();
    (kept, missing)
}

/// Adds a failed row for each file asked for by name that the run did not find.
fn with_missing(mut rows: Vec<FileReport>, missing: Vec<String>) -> Vec<FileReport> {
    rows.extend(missing.into_iter().map(|name| {
        // Retryable: a file named by an upstream event may not be stable yet.
        let error = FileError::retryable(
            FileErrorKind::NotFound,
            format!("{name} was asked for but is not among the flow's matching, stable files"),
        );
        FileReport::failed(name, 0, error)
    }));
    rows
}

/// A digest of everything a session is built from, secrets included, so a rotated secret
/// or a changed setting gets a new pool. Never logged.
fn fingerprint(cfg: &SessionConfig, max_connections: usize) -> [u8; 32] {
    let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
    let tls = &cfg.tls;
    let material = format!(
        "{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{}",
        cfg.host,
        cfg.port,
        cfg.username,
        secret(&cfg.password),
        tls.ca_cert_pem,
        tls.client_cert_pem,
        secret(&tls.client_key_pem),
        secret(&tls.client_key_passphrase),
        tls.server_cert_fingerprint,
        tls.insecure_skip_verify,
        tls.max_version,
        cfg.nat_workaround,
        cfg.prefer_epsv,
        cfg.timeouts,
        max_connections,
    );
    Sha256::digest(material.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker spawns runs on its runtime: the run's future must be `Send`.
    #[test]
    fn a_run_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        fn check(engine: &Engine) {
            let run = engine.run_flow("f", None, "r", None);
            assert_send(&run);
        }
        let _ = check;
    }

    #[test]
    fn only_named_keeps_the_asked_and_lists_the_missing() {
        let items = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let only = ["c".to_owned(), "z".to_owned()];
        let (kept, missing) = only_named(items.clone(), Some(&only), |s| s);
        assert_eq!(kept, ["c"]);
        assert_eq!(missing, ["z"]);
        assert_eq!(only_named(items, None, |s| s).0.len(), 3);
    }
}
