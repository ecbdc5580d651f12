//! [`Settings`]: the fleet-wide settings of `ferry.yaml`, with defaults and environment
//! fallbacks.
//!
//! Every field is optional and a missing `ferry.yaml` means all defaults. Where an
//! environment variable is named (`FERRY_BROKER_URL`, `VAULT_ADDR`, ...) it is used only
//! when the field is absent from the file: the file, being reviewed and versioned, wins.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::http_trigger::HttpTriggerSettings;
use super::redis_topology::RedisTopology;
use super::yaml::{Cx, Field, Map, Node};
pub use crate::secrets::redact_url;
use crate::secrets::{AwsSettings, ResolverSettings, SecretRef, VaultAuth, VaultSettings};

/// The broker URL used when neither `broker.url` nor `FERRY_BROKER_URL` is set.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The Redis URL used when neither `redis.url` nor `FERRY_REDIS_URL` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The settings of `ferry.yaml`, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `security.hardened_mode`: forbid literal secrets and `insecure_skip_verify`.
    pub hardened_mode: bool,
    /// RabbitMQ.
    pub broker: BrokerSettings,
    /// Redis (idempotency records, claims, locks).
    pub redis: RedisSettings,
    /// How secret references are resolved (`vault:`, `aws:`, `secrets:`).
    pub resolver: ResolverSettings,
    /// The worker process.
    pub worker: WorkerSettings,
    /// Per-file transfer retries.
    pub retry: RetrySettings,
    /// Tracing export.
    pub telemetry: TelemetrySettings,
    /// The scheduler process.
    pub scheduler: SchedulerSettings,
    /// `POST /v1/flows/{flow}/runs` (off unless `http_trigger.listen` is set).
    pub http_trigger: HttpTriggerSettings,
    /// The audit trail (see `audit.rs`).
    pub audit: super::audit::AuditSettings,
}

/// RabbitMQ settings. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `broker.url`, else `FERRY_BROKER_URL`, else [`DEFAULT_BROKER_URL`]. May hold a password:
    /// print it with [`redact_url`].
    pub url: String,
    /// `broker.exchange_prefix` (default `ferry`): names of exchanges and queues start with it.
    pub exchange_prefix: String,
    /// `broker.retry_delays` (default `[5s, 30s, 2m, 10m, 30m]`): how long a flow-run that
    /// failed in a way that may pass waits before attempt n+1 (the last delay repeats).
    pub retry_delays: Vec<Duration>,
    /// `broker.max_attempts` (default 6): attempts of one flow-run message, the first one
    /// included, before it is dead-lettered with its last error.
    pub max_attempts: u32,
    /// `broker.bindings` (default `["#"]`, every flow): routing patterns of the flows this
    /// deployment's workers serve (flow ids, `*` for one word, `#` for any), so that a
    /// deployment can dedicate workers to some partners.
    pub bindings: Vec<String>,
}

/// Redis settings. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis.url`, else `FERRY_REDIS_URL`, else [`DEFAULT_REDIS_URL`]. May hold a password:
    /// print it with [`redact_url`].
    pub url: String,
    /// `redis.password`: a secret reference, used when the URL carries none.
    pub password: Option<SecretRef>,
    /// `redis.cluster_nodes` or `redis.sentinel` instead of the single node of `url`
    /// (see `redis_topology.rs`).
    pub topology: RedisTopology,
    /// `redis.key_prefix` (default `ferry`): every key starts with it.
    pub key_prefix: String,
    /// `redis.delivery_retention` (default 90 days): how long a delivery record is kept.
    pub delivery_retention: Duration,
}

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

/// Per-file transfer retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// `retry.max_attempts` (default 3): attempts per file, the first one included; a
    /// flow's `max_attempts` overrides it.
    pub max_attempts: u32,
    /// `retry.base_delay` (default 2s): the first back-off delay, doubled at each attempt.
    pub base_delay: Duration,
    /// `retry.max_delay` (default 60s): the longest back-off delay.
    pub max_delay: Duration,
}

/// Tracing export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelemetrySettings {
    /// `telemetry.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; no export when absent.
    pub otlp_endpoint: Option<String>,
    /// `telemetry.service_name`, else `OTEL_SERVICE_NAME`; when absent each binary uses its
    /// own name.
    pub service_name: Option<String>,
}

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

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hardened_mode: false,
            broker: BrokerSettings {
                url: DEFAULT_BROKER_URL.to_string(),
                exchange_prefix: "ferry".to_string(),
                retry_delays: [5, 30, 120, 600, 1800]
                    .into_iter()
                    .map(Duration::from_secs)
                    .collect(),
                max_attempts: 6,
                bindings: vec!["#".to_string()],
            },
            redis: RedisSettings {
                url: DEFAULT_REDIS_URL.to_string(),
                password: None,
                topology: RedisTopology::Single,
                key_prefix: "ferry".to_string(),
                delivery_retention: Duration::from_secs(90 * 86_400),
            },
            resolver: ResolverSettings::default(),
            worker: WorkerSettings {
                concurrency: 4,
                shutdown_grace: Duration::from_secs(30),
                health_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                claim_lease: Duration::from_secs(60),
                flow_lock_lease: Duration::from_secs(20),
                flow_lock_wait: Duration::from_secs(30),
            },
            retry: RetrySettings {
                max_attempts: 3,
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(60),
            },
            telemetry: TelemetrySettings::default(),
            scheduler: SchedulerSettings::default(),
            http_trigger: HttpTriggerSettings::default(),
            audit: super::audit::AuditSettings::default(),
        }
    }
}

impl fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("url", &redact_url(&self.url))
            .field("exchange_prefix", &self.exchange_prefix)
            .field("retry_delays", &self.retry_delays)
            .field("max_attempts", &self.max_attempts)
            .field("bindings", &self.bindings)
            .finish()
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("topology", &self.topology)
            .field("key_prefix", &self.key_prefix)
            .field("delivery_retention", &self.delivery_retention)
            .finish()
    }
}

/// Whether a URL carries a password in its user-info.
fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

const ROOT_KEYS: &[&str] = &[
    "security",
    "broker",
    "redis",
    "vault",
    "aws",
    "secrets",
    "worker",
    "retry",
    "telemetry",
    "scheduler",
    "http_trigger",
    "audit",
];

/// Reads `ferry.yaml` (already parsed; `None` when absent or empty) with `env` for the
/// environment fallbacks.
pub(crate) fn read(
    cx: &mut Cx<'_>,
    root: Option<&Node>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Settings, SecretRules) {
    let mut settings = Settings::default();
    let root = root.and_then(|node| Map::root(cx, node, ROOT_KEYS));
    let section = |cx: &mut Cx<'_>, name: &str, known: &[&str]| {
        root.as_ref()
            .and_then(|r| r.get(name))
            .and_then(|f| f.map(cx, known))
    };

    if let Some(security) = section(cx, "security", &["hardened_mode"])
        && let Some(hardened) = security.get("hardened_mode").and_then(|f| f.bool(cx))
    {
        settings.hardened_mode = hardened;
    }
    let hardened = settings.hardened_mode;

    let broker = section(
        cx,
        "broker",
        &[
            "url",
            "exchange_prefix",
            "retry_delays",
            "max_attempts",
            "bindings",
        ],
    );
    settings.broker.url = url_field(cx, broker.as_ref(), "FERRY_BROKER_URL", hardened, env)
        .unwrap_or(settings.broker.url);
    if let Some(prefix) = broker
        .as_ref()
        .and_then(|b| key_prefix(cx, b, "exchange_prefix"))
    {
        settings.broker.exchange_prefix = prefix;
    }
    if let Some(broker) = &broker {
        if let Some(field) = broker.get("retry_delays")
            && let Some(items) = field.seq(cx)
        {
            // Every item is read (not stopping at the first bad one) so all are reported.
            let read: Vec<Option<Duration>> = items
                .iter()
                .map(|item| item.get().positive_duration(cx))
                .collect();
            let delays: Option<Vec<Duration>> = read.into_iter().collect();
            match delays {
                Some(delays) if !delays.is_empty() => settings.broker.retry_delays = delays,
                Some(_) => field.error(cx, "give at least one delay, such as `[5s, 30s, 2m]`"),
                None => {}
            }
        }
        if let Some(n) = broker
            .get("max_attempts")
            .and_then(|f| f.int(cx, 1u32, 100))
        {
            settings.broker.max_attempts = n;
        }
        if let Some(field) = broker.get("bindings")
            && let Some(items) = field.seq(cx)
        {
            let mut bindings = Vec::new();
            for item in &items {
                let item = item.get();
                let Some(pattern) = item.str(cx) else {
                    continue;
                };
                if is_routing_pattern(&pattern) {
                    bindings.push(pattern);
                } else {
                    item.error(
                        cx,
                        format!(
                            "`{pattern}` is not a routing pattern: write flow ids, `*` (one word) or `#` (any words), such as `invoices-out` or `#`"
                        ),
                    );
                }
            }
            if items.is_empty() {
                field.error(cx, "give at least one pattern; `#` serves every flow");
            } else if bindings.len() == items.len() {
                settings.broker.bindings = bindings;
            }
        }
    }

    let redis = section(
        cx,
        "redis",
        &[
            &["url", "password", "key_prefix", "delivery_retention"],
            super::redis_topology::KEYS,
        ]
        .concat(),
    );
    if let Some(topology) = super::redis_topology::read(cx, redis.as_ref(), hardened) {
        settings.redis.topology = topology;
    }
    settings.redis.url = url_field(cx, redis.as_ref(), "FERRY_REDIS_URL", hardened, env)
        .unwrap_or(settings.redis.url);
    if let Some(redis) = &redis {
        settings.redis.password = redis.get("password").and_then(|f| f.secret(cx, hardened));
        if let Some(prefix) = key_prefix(cx, redis, "key_prefix") {
            settings.redis.key_prefix = prefix;
        }
        if let Some(d) = redis
            .get("delivery_retention")
            .and_then(|f| f.positive_duration(cx))
        {
            settings.redis.delivery_retention = d;
        }
    }

    let vault = section(cx, "vault", &["address", "namespace", "ca_cert", "auth"]);
    let rules = SecretRules {
        hardened,
        vault_declared: root.as_ref().is_some_and(|r| r.get("vault").is_some())
            || env("VAULT_ADDR").is_some_and(|v| !v.is_empty()),
    };
    settings.resolver.vault = read_vault(
        cx,
        vault.as_ref(),
        root.as_ref().map(Map::loc),
        hardened,
        env,
    );

    let aws = section(cx, "aws", &["region", "endpoint_url"]);
    settings.resolver.aws = AwsSettings {
        region: text_or_env(cx, aws.as_ref(), "region", "AWS_REGION", env),
        endpoint_url: text_or_env(cx, aws.as_ref(), "endpoint_url", "AWS_ENDPOINT_URL", env),
    };

    let http_trigger = section(cx, "http_trigger", super::http_trigger::KEYS);
    settings.http_trigger = super::http_trigger::read(cx, http_trigger.as_ref(), rules);

    if let Some(secrets) = section(cx, "secrets", super::secrets::SECRETS_KEYS) {
        super::secrets::read_secrets(cx, &secrets, &mut settings.resolver);
    }

    if let Some(worker) = section(
        cx,
        "worker",
        &[
            "concurrency",
            "shutdown_grace",
            "health_listen",
            "claim_lease",
            "flow_lock_lease",
            "flow_lock_wait",
        ],
    ) {
        if let Some(n) = worker
            .get("concurrency")
            .and_then(|f| f.int(cx, 1u16, 1024))
        {
            settings.worker.concurrency = n;
        }
        if let Some(d) = worker.get("shutdown_grace").and_then(|f| f.duration(cx)) {
            settings.worker.shutdown_grace = d;
        }
        if let Some(d) = worker
            .get("claim_lease")
            .and_then(|f| f.positive_duration(cx))
        {
            settings.worker.claim_lease = d;
        }
        if let Some(d) = worker
            .get("flow_lock_lease")
            .and_then(|f| f.positive_duration(cx))
        {
            settings.worker.flow_lock_lease = d;
        }
        if let Some(d) = worker.get("flow_lock_wait").and_then(|f| f.duration(cx)) {
            settings.worker.flow_lock_wait = d;
        }
        if let Some(addr) = worker.get("health_listen").and_then(|f| f.listen_addr(cx)) {
            settings.worker.health_listen = addr;
        }
    }

    if let Some(retry) = section(cx, "retry", &["max_attempts", "base_delay", "max_delay"]) {
        if let Some(n) = retry.get("max_attempts").and_then(|f| f.int(cx, 1u32, 100)) {
            settings.retry.max_attempts = n;
        }
        if let Some(d) = retry.get("base_delay").and_then(|f| f.duration(cx)) {
            settings.retry.base_delay = d;
        }
        if let Some(d) = retry.get("max_delay").and_then(|f| f.duration(cx)) {
            settings.retry.max_delay = d;
        }
        if settings.retry.max_delay < settings.retry.base_delay {
            cx.error(
                retry.loc(),
                "retry.max_delay",
                "must not be shorter than retry.base_delay",
            );
        }
    }

    let telemetry = section(cx, "telemetry", &["otlp_endpoint", "service_name"]);
    settings.telemetry = TelemetrySettings {
        otlp_endpoint: text_or_env(
            cx,
            telemetry.as_ref(),
            "otlp_endpoint",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env,
        ),
        service_name: text_or_env(
            cx,
            telemetry.as_ref(),
            "service_name",
            "OTEL_SERVICE_NAME",
            env,
        ),
    };

    if let Some(scheduler) = section(
        cx,
        "scheduler",
        &[
            "catch_up",
            "publish_give_up",
            "stale_tick_claim",
            "metrics_listen",
        ],
    ) {
        if let Some(catch_up) = scheduler
            .get("catch_up")
            .and_then(|f| f.choice(cx, &[("latest", CatchUp::Latest), ("none", CatchUp::None)]))
        {
            settings.scheduler.catch_up = catch_up;
        }
        if let Some(d) = scheduler
            .get("publish_give_up")
            .and_then(|f| f.duration(cx))
        {
            settings.scheduler.publish_give_up = d;
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
                settings.scheduler.stale_tick_claim = d;
            }
        }
        if let Some(addr) = scheduler
            .get("metrics_listen")
            .and_then(|f| f.listen_addr(cx))
        {
            settings.scheduler.metrics_listen = addr;
        }
    }

    if let Some(audit) = section(cx, "audit", super::audit::AUDIT_KEYS) {
        super::audit::read_audit(cx, &audit, hardened, &mut settings.audit);
    }

    (settings, rules)
}

/// `url` of a section, else the environment variable; in hardened mode a password written
/// in the file is refused (put the whole URL in the environment instead).
fn url_field(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    env_name: &str,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let Some(field) = section.and_then(|s| s.get("url")) else {
        return env(env_name).filter(|v| !v.is_empty());
    };
    let url = field.non_empty_str(cx)?;
    if !url.contains("://") {
        field.error(cx, "must be a URL such as `scheme://host:port`");
        return None;
    }
    if hardened && url_has_password(&url) {
        field.error(
            cx,
            format!(
                "hardened mode forbids a password written in the configuration; remove it from the URL and set {env_name} in the environment instead"
            ),
        );
        return None;
    }
    Some(url)
}

/// Whether `pattern` is a topic binding over flow ids: a flow id, `*` or `#`. Flow ids may
/// contain `.`, which topic routing reads as a word separator, so the words of a pattern
/// are checked one by one.
fn is_routing_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.split('.').all(|word| {
            matches!(word, "*" | "#")
                || (!word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
        })
}

/// A prefix for keys or exchange names: `[A-Za-z0-9._-]`, not empty.
fn key_prefix(cx: &mut Cx<'_>, section: &Map<'_>, key: &str) -> Option<String> {
    let field = section.get(key)?;
    let text = field.str(cx)?;
    if !super::is_valid_id(&text) {
        field.error(
            cx,
            "must be letters, digits, `.`, `_` or `-` only (it is part of key and queue names)",
        );
        return None;
    }
    Some(text)
}

/// A text field of a section, else an environment variable.
fn text_or_env(
    cx: &mut Cx<'_>,
    section: Option<&Map<'_>>,
    key: &str,
    env_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    match section.and_then(|s| s.get(key)) {
        Some(field) => field.non_empty_str(cx),
        None => env(env_name).filter(|v| !v.is_empty()),
    }
}

const AUTH_KEYS: &[&str] = &[
    "method",
    "token",
    "role_id",
    "secret_id",
    "mount",
    "role",
    "token_file",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Token,
    AppRole,
    Kubernetes,
}

/// The `vault:` section, present when written or when `VAULT_ADDR` is set.
fn read_vault(
    cx: &mut Cx<'_>,
    vault: Option<&Map<'_>>,
    root_loc: Option<super::yaml::Loc>,
    hardened: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<VaultSettings> {
    let address = text_or_env(cx, vault, "address", "VAULT_ADDR", env);
    if vault.is_none() && address.is_none() {
        return None;
    }
    let namespace = text_or_env(cx, vault, "namespace", "VAULT_NAMESPACE", env);
    let ca_cert = text_or_env(cx, vault, "ca_cert", "VAULT_CACERT", env).map(PathBuf::from);
    let auth_field = vault.and_then(|v| v.get("auth"));
    let auth_map = auth_field.and_then(|f| f.map(cx, AUTH_KEYS));
    let auth = read_vault_auth(cx, auth_map.as_ref(), hardened);
    let Some(address) = address else {
        let loc = vault.map(Map::loc).or(root_loc).unwrap_or_default();
        cx.error(
            loc,
            "vault.address",
            "missing Vault address; set vault.address (or VAULT_ADDR in the environment)",
        );
        return None;
    };
    Some(VaultSettings {
        address,
        namespace,
        ca_cert,
        auth: auth?,
    })
}

/// `vault.auth`: token (default, `env:VAULT_TOKEN`), approle or kubernetes.
fn read_vault_auth(cx: &mut Cx<'_>, auth: Option<&Map<'_>>, hardened: bool) -> Option<VaultAuth> {
    let Some(auth) = auth else {
        return Some(VaultAuth::Token(SecretRef::Env("VAULT_TOKEN".to_string())));
    };
    let method = match auth.get("method") {
        Some(f) => f.choice(
            cx,
            &[
                ("token", Method::Token),
                ("approle", Method::AppRole),
                ("kubernetes", Method::Kubernetes),
            ],
        )?,
        None => Method::Token,
    };
    let (allowed, name): (&[&str], &str) = match method {
        Method::Token => (&["method", "token"], "token"),
        Method::AppRole => (&["method", "role_id", "secret_id", "mount"], "approle"),
        Method::Kubernetes => (&["method", "role", "mount", "token_file"], "kubernetes"),
    };
    for (key, field) in auth.entries() {
        if !allowed.contains(&key) {
            field.error(
                cx,
                format!("`{key}` is not used by the `{name}` method; remove it or change vault.auth.method"),
            );
        }
    }
    let mount = |cx: &mut Cx<'_>, default: &str| match auth.get("mount") {
        Some(f) => f.non_empty_str(cx),
        None => Some(default.to_string()),
    };
    match method {
        Method::Token => Some(VaultAuth::Token(match auth.get("token") {
            Some(f) => f.secret(cx, hardened)?,
            None => SecretRef::Env("VAULT_TOKEN".to_string()),
        })),
        Method::AppRole => {
            let role_id = auth
                .required(cx, "role_id")
                .and_then(|f| f.secret(cx, hardened));
            let secret_id = auth
                .required(cx, "secret_id")
                .and_then(|f| f.secret(cx, hardened));
            let mount = mount(cx, "approle");
            Some(VaultAuth::AppRole {
                mount: mount?,
                role_id: role_id?,
                secret_id: secret_id?,
            })
        }
        Method::Kubernetes => {
            let role = auth.required(cx, "role").and_then(|f| f.non_empty_str(cx));
            let token_file = match auth.get("token_file") {
                Some(f) => f.non_empty_str(cx).map(PathBuf::from),
                None => Some(PathBuf::from(
                    "/var/run/secrets/kubernetes.io/serviceaccount/token",
                )),
            };
            let mount = mount(cx, "kubernetes");
            Some(VaultAuth::Kubernetes {
                mount: mount?,
                role: role?,
                token_file: token_file?,
            })
        }
    }
}

/// What reading a partner's secret-bearing fields needs to know from `ferry.yaml`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretRules {
    /// `security.hardened_mode`: literals are refused.
    pub(crate) hardened: bool,
    /// Vault is configured (a `vault:` section, even an invalid one, or `VAULT_ADDR`), so
    /// `vault:` references are allowed.
    pub(crate) vault_declared: bool,
}

impl SecretRules {
    /// Reads the secret-bearing field `field`; `literal_allowed` for fields that hold no
    /// secret in practice (a CA certificate). A `vault:` reference needs Vault configured.
    pub(crate) fn read(
        &self,
        cx: &mut Cx<'_>,
        field: Field<'_>,
        literal_allowed: bool,
    ) -> Option<SecretRef> {
        let reference = field.secret(cx, self.hardened && !literal_allowed)?;
        if matches!(reference, SecretRef::Vault { .. }) && !self.vault_declared {
            field.error(
                cx,
                "this `vault:` reference needs Vault: add a `vault:` section with `address` to ferry.yaml (or set VAULT_ADDR)",
            );
            return None;
        }
        Some(reference)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;
    use crate::config::yaml::parse;

    fn load(text: &str, env: &[(&str, &str)]) -> (Settings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut cx = Cx::new(Path::new("ferry.yaml"), &mut errors);
        let root = parse(&mut cx, text);
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let (settings, _) = read(&mut cx, root.as_ref(), &env);
        (settings, errors)
    }

    #[test]
    fn empty_file_means_defaults() {
        let (settings, errors) = load("", &[]);
        assert!(errors.is_empty());
        assert_eq!(settings.broker.url, DEFAULT_BROKER_URL);
        assert_eq!(
            settings.redis.delivery_retention,
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(settings.worker.concurrency, 4);
        assert!(settings.resolver.vault.is_none());
    }

    #[test]
    fn environment_fills_absent_fields_only() {
        let env = [
            ("FERRY_BROKER_URL", "amqp://env-host"),
            ("FERRY_REDIS_URL", "redis://env-host"),
            ("VAULT_ADDR", "https://vault.env:8200"),
        ];
        let (settings, errors) = load("redis:\n  url: redis://file-host\n", &env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(settings.broker.url, "amqp://env-host");
        assert_eq!(settings.redis.url, "redis://file-host");
        let vault = settings.resolver.vault.unwrap();
        assert_eq!(vault.address, "https://vault.env:8200");
        assert!(
            matches!(vault.auth, VaultAuth::Token(SecretRef::Env(ref n)) if n == "VAULT_TOKEN")
        );
    }

    #[test]
    fn vault_auth_methods_check_their_fields() {
        let text = "vault:\n  address: https://v\n  auth:\n    method: approle\n    role: x\n    role_id: env:R\n";
        let (_, errors) = load(text, &[]);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["vault.auth.role", "vault.auth.secret_id"]);
    }

    #[test]
    fn hardened_mode_refuses_a_literal_vault_token() {
        let text = "security:\n  hardened_mode: true\nvault:\n  address: https://v\n  auth:\n    token: hvs.LiteralToken\n";
        let (settings, errors) = load(text, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "vault.auth.token");
        assert_eq!((errors[0].line, errors[0].column), (Some(6), Some(5)));
        assert!(!errors[0].to_string().contains("LiteralToken"));
        assert!(settings.resolver.vault.is_none());
        // Outside hardened mode a literal token is accepted (and never printed).
        let (settings, errors) = load(&text.replace("true", "false"), &[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!format!("{settings:?}").contains("LiteralToken"));
    }

    #[test]
    fn scheduler_timings_have_defaults_and_a_floor() {
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
    fn debug_hides_url_passwords() {
        let settings = Settings::default();
        assert!(!format!("{settings:?}").contains("guest:guest"));
    }
}
