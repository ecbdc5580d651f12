//! [`Link`]: how commands reach Redis, one implementation per [`RedisTopology`]: a single node, a Redis
//! Cluster, or the master that Redis Sentinel names.
//!
//! - **Single**: a [`ConnectionManager`], which reconnects to the same address by itself.
//! - **Cluster**: the `redis` crate's cluster connection, which routes each command to the
//!   node holding its keys' slot and follows `MOVED`/`ASK` after a resharding or failover.
//!   ferry's scripts touch only keys of one flow, which share the `{flow:<id>}` hash tag and
//!   so one slot (see `keys.rs`): no script is ever split across nodes.
//! - **Sentinel**: a [`ConnectionManager`] to the master the sentinels name. After a
//!   connection error or a `READONLY` answer (the old master demoted by a failover) the
//!   manager is dropped and the sentinels are asked again at the next try, so writes follow
//!   the new master instead of being retried against a replica.
//!
//! Each topology also opens dedicated connections for blocking commands ([`Link::dedicated`]:
//! a connection of its own to the node, the cluster or the current master), which must never
//! share the multiplexed connection above (see `flow_lock.rs`).
//!
//! Nothing here decides what is safe to retry: [`Connection::run`](super::connection) does.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, RedisResult, ScriptInvocation, TlsCertificates,
    TlsMode, Value,
};
use tokio::sync::Mutex;

use super::config::StoreConfig;
use super::error::{IdempotencyError, is_unavailable};
use crate::config::RedisTopology;

/// A command or a script invocation, so that one retry loop serves both.
pub(crate) enum Request<'a> {
    Cmd(Cmd),
    Script(ScriptInvocation<'a>),
}

/// One way of reaching Redis. Behind a trait object so that the store's futures do not
/// carry the cluster client's deep types (their `Send` check overflowed the compiler's
/// recursion limit in callers that spawn a run).
pub(crate) trait Link: Send + Sync {
    /// One try of `req` (no retry here: [`Connection::run`](super::connection) retries).
    fn send<'a>(&'a self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>>;

    /// `cmd` on every master of a cluster, one reply per master keyed by its address;
    /// `None` for a topology with a single master (send it as any command).
    fn on_every_master(&self, _cmd: Cmd) -> Option<BoxFuture<'_, RedisResult<Value>>> {
        None
    }

    /// A new connection of its own, for blocking commands (no response timeout: the caller
    /// bounds each command).
    fn dedicated(&self) -> BoxFuture<'_, RedisResult<Box<dyn Dedicated>>>;
}

/// A connection used by one blocking command at a time.
pub(crate) trait Dedicated: Send {
    /// One try of `req`.
    fn send<'a>(&'a mut self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>>;
}

impl<C: ConnectionLike + Send> Dedicated for C {
    fn send<'a>(&'a mut self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>> {
        Box::pin(send(self, req))
    }
}

/// How long a cluster's dedicated connection waits for a reply (the caller bounds each
/// blocking command far below this).
const DEDICATED_CLUSTER_REPLY: Duration = Duration::from_secs(3600);

/// A connection of its own to one node, without a response timeout.
async fn dedicated_to(
    client: &redis::Client,
    connect_timeout: Duration,
) -> RedisResult<Box<dyn Dedicated>> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Box::new(conn))
}

/// Connects as `config.topology` says (`redacted` names the store in errors). The connect
/// futures are boxed: the cluster client's is large, and callers nest this.
pub(crate) async fn open(
    config: &StoreConfig,
    redacted: &str,
) -> Result<Arc<dyn Link>, IdempotencyError> {
    let connect = |e| IdempotencyError::from_redis(redacted, "connect", e);
    match &config.topology {
        RedisTopology::Single => {
            let client = single_client(config, redacted)?;
            let manager = Box::pin(ConnectionManager::new_with_config(
                client.clone(),
                manager_config(config),
            ))
            .await
            .map_err(connect)?;
            Ok(Arc::new(Single {
                manager,
                client,
                connect_timeout: config.connect_timeout,
            }))
        }
        RedisTopology::Cluster { nodes } => {
            let client = cluster_builder(config, nodes, redacted)?
                .build()
                .map_err(|e| invalid(redacted, e.to_string()))?;
            let blocking = cluster_builder(config, nodes, redacted)?
                .response_timeout(DEDICATED_CLUSTER_REPLY)
                .build()
                .map_err(|e| invalid(redacted, e.to_string()))?;
            let conn = Box::pin(client.get_async_connection())
                .await
                .map_err(connect)?;
            Ok(Arc::new(Cluster { conn, blocking }))
        }
        RedisTopology::Sentinel { master_name, nodes } => {
            let sentinel = sentinel_client(config, master_name, nodes, redacted)?;
            let link = SentinelLink {
                sentinel: Mutex::new(sentinel),
                master: Mutex::new(None),
                manager_config: manager_config(config),
                connect_timeout: config.connect_timeout,
            };
            // Fails now (closed) when no sentinel names a reachable master.
            Box::pin(link.master()).await.map_err(connect)?;
            Ok(Arc::new(link))
        }
    }
}

/// One node, through a [`ConnectionManager`] (it reconnects by itself).
struct Single {
    manager: ConnectionManager,
    client: redis::Client,
    connect_timeout: Duration,
}

impl Link for Single {
    fn send<'a>(&'a self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>> {
        let mut conn = self.manager.clone();
        Box::pin(async move { send(&mut conn, req).await })
    }

    fn dedicated(&self) -> BoxFuture<'_, RedisResult<Box<dyn Dedicated>>> {
        Box::pin(dedicated_to(&self.client, self.connect_timeout))
    }
}

/// A Redis Cluster: commands go to the master of their keys' slot.
struct Cluster {
    conn: ClusterConnection,
    /// The same cluster with a long response timeout, for dedicated connections.
    blocking: ClusterClient,
}

impl Link for Cluster {
    fn send<'a>(&'a self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>> {
        let mut conn = self.conn.clone();
        Box::pin(async move { send(&mut conn, req).await })
    }

    fn dedicated(&self) -> BoxFuture<'_, RedisResult<Box<dyn Dedicated>>> {
        Box::pin(async move {
            let conn = self.blocking.get_async_connection().await?;
            Ok(Box::new(conn) as Box<dyn Dedicated>)
        })
    }

    fn on_every_master(&self, cmd: Cmd) -> Option<BoxFuture<'_, RedisResult<Value>>> {
        let mut conn = self.conn.clone();
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        Some(Box::pin(
            async move { conn.route_command(cmd, routing).await },
        ))
    }
}

/// The sentinels and the master they named last.
struct SentinelLink {
    sentinel: Mutex<SentinelClient>,
    master: Mutex<Option<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
    connect_timeout: Duration,
}

impl SentinelLink {
    /// A connection to the current master, asking the sentinels when none is known.
    async fn master(&self) -> RedisResult<ConnectionManager> {
        let mut master = self.master.lock().await;
        if let Some(manager) = master.as_ref() {
            return Ok(manager.clone());
        }
        let client = Box::pin(self.sentinel.lock().await.async_get_client()).await?;
        let manager = Box::pin(ConnectionManager::new_with_config(
            client,
            self.manager_config.clone(),
        ))
        .await?;
        *master = Some(manager.clone());
        Ok(manager)
    }
}

impl Link for SentinelLink {
    /// After an error that may mean a failover (connection lost, `READONLY`), the master is
    /// forgotten: the next try asks the sentinels again.
    fn send<'a>(&'a self, req: &'a Request<'_>) -> BoxFuture<'a, RedisResult<Value>> {
        Box::pin(async move {
            let mut master = self.master().await?;
            let result = send(&mut master, req).await;
            if result.as_ref().is_err_and(is_unavailable) {
                *self.master.lock().await = None;
            }
            result
        })
    }

    /// A connection of its own to the master the sentinels name now.
    fn dedicated(&self) -> BoxFuture<'_, RedisResult<Box<dyn Dedicated>>> {
        Box::pin(async move {
            let client = Box::pin(self.sentinel.lock().await.async_get_client()).await?;
            dedicated_to(&client, self.connect_timeout).await
        })
    }
}

/// One try of `req` over `conn`.
async fn send<C: ConnectionLike + Send>(conn: &mut C, req: &Request<'_>) -> RedisResult<Value> {
    match req {
        Request::Cmd(cmd) => cmd.query_async(conn).await,
        Request::Script(inv) => inv.invoke_async(conn).await,
    }
}

fn manager_config(config: &StoreConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(100))
        .set_max_delay(Duration::from_secs(1))
}

fn invalid(redacted: &str, reason: String) -> IdempotencyError {
    IdempotencyError::Config {
        reason: format!("Redis {redacted}: {reason}"),
    }
}

/// `redis://` or `rediss://` (TLS) for one URL; anything else is refused.
fn is_tls(url: &str, redacted: &str) -> Result<bool, IdempotencyError> {
    if url.starts_with("rediss://") {
        Ok(true)
    } else if url.starts_with("redis://") {
        Ok(false)
    } else {
        Err(invalid(
            redacted,
            "every URL must start with redis:// or rediss:// (TLS)".to_owned(),
        ))
    }
}

/// A CA configured for a topology reached without TLS is a mistake, not something to ignore.
fn certificates(
    config: &StoreConfig,
    tls: bool,
    redacted: &str,
) -> Result<Option<TlsCertificates>, IdempotencyError> {
    match &config.ca_pem {
        Some(ca) if tls => Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.clone()),
        })),
        Some(_) => Err(invalid(
            redacted,
            "a CA certificate is configured but the URL is not rediss://".to_owned(),
        )),
        None => Ok(None),
    }
}

/// The single node's client: URL, password override, optional CA for TLS.
fn single_client(config: &StoreConfig, redacted: &str) -> Result<redis::Client, IdempotencyError> {
    let tls = is_tls(&config.url, redacted)?;
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| invalid(redacted, e.to_string()))?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        info = info.set_redis_settings(settings);
    }
    let built = match certificates(config, tls, redacted)? {
        Some(certs) => redis::Client::build_with_tls(info, certs),
        None => redis::Client::open(info),
    };
    built.map_err(|e| invalid(redacted, e.to_string()))
}

/// The cluster client: seed nodes, password, timeouts, TLS trust.
fn cluster_builder(
    config: &StoreConfig,
    nodes: &[String],
    redacted: &str,
) -> Result<ClusterClientBuilder, IdempotencyError> {
    let mut tls = false;
    for node in nodes {
        tls |= is_tls(node, redacted)?;
    }
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout)
        .retries(2)
        .min_retry_wait(100)
        .max_retry_wait(1_000);
    if let Some(password) = &config.password {
        builder = builder.password(password.expose());
    }
    if let Some(certs) = certificates(config, tls, redacted)? {
        builder = builder.tls(TlsMode::Secure).certs(certs);
    }
    Ok(builder)
}

/// The sentinel client: the sentinels' addresses (and their password, from their URLs), and
/// how to reach the master they name (the store's password, TLS as the sentinels' URLs).
fn sentinel_client(
    config: &StoreConfig,
    master_name: &str,
    nodes: &[String],
    redacted: &str,
) -> Result<SentinelClient, IdempotencyError> {
    let mut tls = false;
    let mut addrs = Vec::new();
    let mut sentinel_password = None;
    for node in nodes {
        tls |= is_tls(node, redacted)?;
        let info = node
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid(redacted, e.to_string()))?;
        if let Some(password) = info.redis_settings().password() {
            sentinel_password = Some(password.to_owned());
        }
        addrs.push(info.addr().clone());
    }
    let bad = |e: redis::RedisError| invalid(redacted, e.to_string());
    let mut builder =
        SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master).map_err(bad)?;
    if let Some(password) = &config.password {
        builder = builder.set_client_to_redis_password(password.expose());
    }
    if let Some(password) = sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
    }
    if let Some(certs) = certificates(config, tls, redacted)? {
        builder = builder
            .set_client_to_redis_certificates(certs.clone())
            .set_client_to_sentinel_certificates(certs);
    }
    builder.build().map_err(bad)
}
