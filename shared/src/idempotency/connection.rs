//! The connection to Redis and its retry loop: the one place that sends commands, shared by
//! the store (claims, records, locks, ticks) and the leases (renewals, releases).
//!
//! A [`redis::aio::ConnectionManager`] reconnects by itself; the command that met the broken
//! connection still fails, so [`Connection::run`] retries it a few times. Every request ferry
//! sends is safe to repeat: the scripts and `SET NX` recognise their own earlier effect by
//! the owner token.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Script, ScriptInvocation};
use tracing::warn;

use super::config::StoreConfig;
use super::error::{IdempotencyError, is_unavailable};

/// How many times a command is retried after a connection error (so `1 + RETRIES` tries).
const RETRIES: u32 = 2;
/// Pause before the first retry; doubled for the next.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A command or a script invocation, so that one retry loop serves both.
pub(crate) enum Request<'a> {
    Cmd(Cmd),
    Script(ScriptInvocation<'a>),
}

/// One shared, self-healing connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connection {
    manager: ConnectionManager,
    /// The URL with its password redacted: safe for messages and spans.
    url: String,
}

impl Connection {
    /// Opens the connection (`url` is the redacted URL, for messages).
    pub(crate) async fn open(config: &StoreConfig, url: &str) -> Result<Self, IdempotencyError> {
        let client = client(config, url)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|e| IdempotencyError::from_redis(url, "connect", e))?;
        Ok(Connection {
            manager,
            url: url.to_owned(),
        })
    }

    /// Sends `req`, retrying up to [`RETRIES`] times after a connection error (the
    /// connection manager reconnects meanwhile). Every request the store sends is safe
    /// to repeat: scripts and `SET NX` recognise their own earlier effect by the token.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        req: &Request<'_>,
    ) -> Result<T, IdempotencyError> {
        let mut pause = RETRY_PAUSE;
        let mut attempt = 0;
        loop {
            let mut conn = self.manager.clone();
            let result = match req {
                Request::Cmd(cmd) => cmd.query_async(&mut conn).await,
                Request::Script(inv) => inv.invoke_async(&mut conn).await,
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if attempt < RETRIES && is_unavailable(&e) => {
                    attempt += 1;
                    warn!(op, attempt, error = %e, "Redis command failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(IdempotencyError::from_redis(&self.url, op, e)),
            }
        }
    }

    /// Compare-and-`PEXPIRE`: renews `key` for `lease` if it still holds `token`.
    pub(crate) async fn renew_if_owner(
        &self,
        key: &str,
        token: &str,
        lease: Duration,
    ) -> Result<bool, IdempotencyError> {
        static RENEW: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
            )
        });
        let mut inv = RENEW.prepare_invoke();
        inv.key(key).arg(token).arg(millis(lease));
        let renewed: i64 = self.run("renew", &Request::Script(inv)).await?;
        Ok(renewed == 1)
    }

    /// Compare-and-`DEL`: deletes `key` if it still holds `token`.
    pub(crate) async fn delete_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> Result<bool, IdempotencyError> {
        static RELEASE: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
            )
        });
        let mut inv = RELEASE.prepare_invoke();
        inv.key(key).arg(token);
        let deleted: i64 = self.run("release", &Request::Script(inv)).await?;
        Ok(deleted == 1)
    }
}

/// Builds the client: URL, password override, optional CA for TLS.
fn client(config: &StoreConfig, redacted: &str) -> Result<redis::Client, IdempotencyError> {
    let invalid = |reason: String| IdempotencyError::Config {
        reason: format!("Redis URL {redacted}: {reason}"),
    };
    let tls = config.url.starts_with("rediss://");
    if !tls && !config.url.starts_with("redis://") {
        return Err(invalid(
            "must start with redis:// or rediss:// (TLS)".to_owned(),
        ));
    }
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        info = info.set_redis_settings(settings);
    }
    let built = match &config.ca_pem {
        Some(ca) if tls => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        Some(_) => {
            return Err(invalid(
                "a CA certificate is configured but the URL is not rediss://".to_owned(),
            ));
        }
        None => redis::Client::open(info),
    };
    built.map_err(|e| invalid(e.to_string()))
}

/// A duration as whole milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis rejects 0).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
