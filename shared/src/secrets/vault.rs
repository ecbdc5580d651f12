//! The Vault (or OpenBao) back end: reads KV v2 secrets with `vaultrs`, and owns the login.
//!
//! One client token is kept for the whole process and shared by every resolution. It comes
//! from the configured method: a token (itself an `env:`/`file:`/literal reference, read
//! again at each login so an agent-rotated token file is picked up), AppRole (role id and
//! secret id, exchanged for a token), or Kubernetes (the pod's service-account token
//! exchanged for a token). Any 403 leads to one fresh login and one retry before it is
//! reported as [`Fault::PermissionDenied`]: a revoked or expired token heals itself, a
//! missing policy does not.
//!
//! Token lifetime: three quarters into a token's lease, a renewable token is renewed with
//! `renew-self` rather than replaced by a new login, so a long-running worker holds one
//! token (one login in Vault's audit log, no pile of live tokens, no secret id use per
//! lease). A login happens again only when the renewal is refused (any answer but a
//! success: revoked, expired, past its max TTL, which OpenBao answers with a 500), when it
//! no longer restores the full lease (the token's max TTL is near), or when the token is
//! not renewable (batch tokens). A configured token (the `token` method)
//! is looked up once (`lookup-self`) to learn its TTL and renewability; "logging in again"
//! then means reading its reference again (an agent may have written a new one). A
//! renewal that cannot reach Vault is reported as [`Fault::Unavailable`] and tried again
//! on the next read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::{debug, info, instrument, warn};
use vaultrs::api::AuthInfo;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::error::{Fault, chain};
use super::settings::{VaultAuth, VaultSettings};
use super::{Secret, SecretRef, local};
use crate::telemetry::metrics::secrets::SecretMetrics;

/// How long one HTTP request to Vault may take before it counts as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of one KV v2 secret. Non-string values are kept as their JSON text.
pub(crate) type Fields = Arc<HashMap<String, Secret>>;

/// The Vault client of a resolver: settings, and the current logged-in session.
pub(crate) struct VaultBackend {
    settings: VaultSettings,
    /// The current session; the lock also makes concurrent logins a single one.
    session: Mutex<Option<Arc<Session>>>,
    /// Logins so far (a configured token's session counts as one).
    logins: AtomicU64,
    /// Successful `renew-self` calls so far.
    renewals: AtomicU64,
}

/// A client holding a valid token, and what is known of the token's lease.
struct Session {
    /// Shared with the session a renewal makes: the token stays the same.
    client: Arc<VaultClient>,
    /// When to renew or log in again (three quarters into the lease); `None`: never (a
    /// token without expiry, or one whose lease is unknown).
    renew_at: Option<Instant>,
    /// Whether Vault lets this token renew itself.
    renewable: bool,
    /// The lease a renewal should restore (the token's TTL when it was issued); a renewal
    /// granting less means the max TTL is near.
    full_lease: Duration,
}

/// What a `renew-self` came to.
enum Renewal {
    /// The lease is extended: the new session.
    Renewed(Session),
    /// Vault refused or capped the renewal: a new login is due.
    LogInAgain(String),
}

/// Why one read failed: a 403 is kept apart, it may be healed by a fresh login.
enum ReadFailure {
    Forbidden(String),
    Other(Fault),
}

impl VaultBackend {
    /// A back end for these settings; nothing is contacted before the first read.
    pub(crate) fn new(settings: VaultSettings) -> Self {
        VaultBackend {
            settings,
            session: Mutex::new(None),
            logins: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
        }
    }

    /// Logins so far (a configured token's session counts as one).
    pub(crate) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// Successful `renew-self` calls so far.
    pub(crate) fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// The fields of the KV v2 secret `path` under `mount`.
    #[instrument(name = "vault.read", skip(self), fields(address = %self.settings.address))]
    pub(crate) async fn read(&self, mount: &str, path: &str) -> Result<Fields, Fault> {
        let session = self.session().await?;
        match read_with(&session, mount, path).await {
            Err(ReadFailure::Forbidden(reason)) => {
                warn!(%reason, "Vault answered 403; logging in again and retrying once");
                self.discard(&session).await;
                let session = self.session().await?;
                read_with(&session, mount, path)
                    .await
                    .map_err(|failure| match failure {
                        ReadFailure::Forbidden(reason) => Fault::PermissionDenied(reason),
                        ReadFailure::Other(fault) => fault,
                    })
            }
            Err(ReadFailure::Other(fault)) => Err(fault),
            Ok(fields) => Ok(fields),
        }
    }

    /// The current session: renewed if its lease is ending and it is renewable, else after
    /// a login if there is none or its lease is ending.
    async fn session(&self) -> Result<Arc<Session>, Fault> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            match session.renew_at {
                None => return Ok(Arc::clone(session)),
                Some(at) if Instant::now() < at => return Ok(Arc::clone(session)),
                Some(_) if session.renewable => match renew(session).await? {
                    Renewal::Renewed(renewed) => {
                        self.renewals.fetch_add(1, Ordering::Relaxed);
                        let renewed = Arc::new(renewed);
                        *current = Some(Arc::clone(&renewed));
                        return Ok(renewed);
                    }
                    Renewal::LogInAgain(why) => info!(why, "logging in to Vault again"),
                },
                Some(_) => info!(
                    "the Vault token is not renewable and its lease is ending; logging in again"
                ),
            }
        }
        let session = Arc::new(self.login().await?);
        self.logins.fetch_add(1, Ordering::Relaxed);
        SecretMetrics::global().record_login("vault");
        *current = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Forgets `stale` (unless another task already replaced it).
    async fn discard(&self, stale: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *current = None;
        }
    }

    /// A new session through the configured method.
    async fn login(&self) -> Result<Session, Fault> {
        match &self.settings.auth {
            VaultAuth::Token(token) => {
                let token = credential(token, "token", "token").await?;
                debug!("using the configured Vault token");
                configured_token(self.client(token.expose())?).await
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let role_id = credential(role_id, "approle", "role id").await?;
                let secret_id = credential(secret_id, "approle", "secret id").await?;
                let client = self.client("")?;
                let auth = vaultrs::auth::approle::login(
                    &client,
                    mount,
                    role_id.expose(),
                    secret_id.expose(),
                )
                .await
                .map_err(|e| login_fault("approle", &e))?;
                Ok(logged_in(client, &auth, "approle"))
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                token_file,
            } => {
                let jwt = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    Fault::LoginFailed {
                        method: "kubernetes",
                        reason: format!(
                            "cannot read the service-account token file `{}`: {e}",
                            token_file.display()
                        ),
                    }
                })?;
                let client = self.client("")?;
                let auth = vaultrs::auth::kubernetes::login(&client, mount, role, jwt.trim())
                    .await
                    .map_err(|e| login_fault("kubernetes", &e))?;
                Ok(logged_in(client, &auth, "kubernetes"))
            }
        }
    }

    /// A client for the configured address, namespace and CA, carrying `token` (empty: none).
    fn client(&self, token: &str) -> Result<VaultClient, Fault> {
        let address = &self.settings.address;
        // vaultrs panics on a malformed address: check it first.
        let url = url::Url::parse(address).map_err(|e| {
            Fault::InvalidSettings(format!("the address `{address}` is not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Fault::InvalidSettings(format!(
                "the address `{address}` must start with http:// or https://"
            )));
        }
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(url.as_str())
            .token(token)
            .namespace(self.settings.namespace.clone())
            .ca_certs(
                self.settings
                    .ca_cert
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            )
            .identity(None)
            .verify(true)
            .timeout(Some(REQUEST_TIMEOUT));
        let settings = builder
            .build()
            .map_err(|e| Fault::InvalidSettings(e.to_string()))?;
        VaultClient::new(settings).map_err(|e| match e {
            ClientError::FileReadError { path, source } => {
                Fault::InvalidSettings(format!("cannot read the CA file `{path}`: {source}"))
            }
            ClientError::ParseCertificateError { path, .. } => {
                Fault::InvalidSettings(format!("the CA file `{path}` holds no PEM certificate"))
            }
            other => Fault::InvalidSettings(chain(&other)),
        })
    }
}

/// One read with one session.
async fn read_with(session: &Session, mount: &str, path: &str) -> Result<Fields, ReadFailure> {
    let data: HashMap<String, serde_json::Value> =
        match vaultrs::kv2::read(session.client.as_ref(), mount, path).await {
            Ok(data) => data,
            Err(ClientError::APIError { code: 403, errors }) => {
                return Err(ReadFailure::Forbidden(server_words(403, &errors)));
            }
            Err(ClientError::APIError { code: 404, .. } | ClientError::ResponseDataEmptyError) => {
                return Err(ReadFailure::Other(Fault::NotFound));
            }
            Err(e) => return Err(ReadFailure::Other(fault(&e))),
        };
    let fields = data
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (name, Secret::new(text))
        })
        .collect();
    Ok(Arc::new(fields))
}

/// Resolves a credential of the login (token, role id, secret id): local references only.
async fn credential(
    reference: &SecretRef,
    method: &'static str,
    what: &str,
) -> Result<Secret, Fault> {
    match local::resolve(reference).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(Fault::LoginFailed {
            method,
            reason: format!("the {what} cannot be read: {e}"),
        }),
        None => Err(Fault::InvalidSettings(format!(
            "the Vault {what} must be an env:, file: or literal reference, not `{reference}`"
        ))),
    }
}

/// The session after a login by `method`: the client carries the new token, renewed (or
/// replaced by a new login) once three quarters of its lease have passed.
fn logged_in(mut client: VaultClient, auth: &AuthInfo, method: &'static str) -> Session {
    client.set_token(&auth.client_token);
    info!(
        method,
        lease_seconds = auth.lease_duration,
        renewable = auth.renewable,
        "logged in to Vault"
    );
    Session {
        client: Arc::new(client),
        renew_at: renew_at(auth.lease_duration),
        renewable: auth.renewable,
        full_lease: Duration::from_secs(auth.lease_duration),
    }
}

/// The session of a configured token, with its lease as `lookup-self` tells. A token that
/// cannot look itself up (no `default` policy) is used as is, never renewed; a Vault that
/// cannot be reached fails the login (tried again at the next read).
async fn configured_token(client: VaultClient) -> Result<Session, Fault> {
    let (renew_at, renewable, full_lease) = match vaultrs::token::lookup_self(&client).await {
        Ok(info) => {
            let renewable = info.renewable.unwrap_or(false);
            debug!(
                ttl_seconds = info.ttl,
                renewable, "looked up the configured Vault token"
            );
            // What a renewal restores: the TTL the token was issued with (its period).
            let full = if info.creation_ttl > 0 {
                info.creation_ttl
            } else {
                info.ttl
            };
            (renew_at(info.ttl), renewable, Duration::from_secs(full))
        }
        Err(e) => match fault(&e) {
            Fault::Unavailable(reason) => return Err(Fault::Unavailable(reason)),
            other => {
                debug!(reason = ?other, "the configured Vault token cannot look itself up; it will not be renewed");
                (None, false, Duration::ZERO)
            }
        },
    };
    Ok(Session {
        client: Arc::new(client),
        renew_at,
        renewable,
        full_lease,
    })
}

/// Renews `session`'s token with `renew-self`: a refusal (any answer) or a lease shorter than
/// the full one (the max TTL is near) calls for a new login; an outage is a fault.
async fn renew(session: &Session) -> Result<Renewal, Fault> {
    match vaultrs::token::renew_self(session.client.as_ref(), None).await {
        Ok(auth) => {
            let lease = Duration::from_secs(auth.lease_duration);
            if lease < session.full_lease {
                return Ok(Renewal::LogInAgain(format!(
                    "the renewal granted {} s of the token's {} s: its max TTL is near",
                    lease.as_secs(),
                    session.full_lease.as_secs()
                )));
            }
            info!(
                lease_seconds = auth.lease_duration,
                "renewed the Vault token (renew-self)"
            );
            Ok(Renewal::Renewed(Session {
                client: Arc::clone(&session.client),
                renew_at: renew_at(auth.lease_duration),
                renewable: auth.renewable,
                full_lease: session.full_lease,
            }))
        }
        // Any answer, a 5xx included (OpenBao says "past the max TTL, cannot renew" with a
        // 500): a new login, which itself reports an outage if there is one.
        Err(ClientError::APIError { code, errors }) => Ok(Renewal::LogInAgain(format!(
            "Vault refused to renew the token: {}",
            server_words(code, &errors)
        ))),
        Err(e) => match fault(&e) {
            Fault::Unavailable(reason) => Err(Fault::Unavailable(reason)),
            _ => Ok(Renewal::LogInAgain(
                "the renewal's answer could not be read".to_string(),
            )),
        },
    }
}

/// When to renew or log in again for a lease of `seconds` (0: the token never expires).
fn renew_at(seconds: u64) -> Option<Instant> {
    (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds) * 3 / 4)
}

/// A login's failure: the server's refusal is final, an outage is transient.
fn login_fault(method: &'static str, error: &ClientError) -> Fault {
    match error {
        ClientError::APIError { code, errors } if (400..500).contains(code) && *code != 429 => {
            Fault::LoginFailed {
                method,
                reason: server_words(*code, errors),
            }
        }
        other => fault(other),
    }
}

/// Any other failure: by status, or by kind for errors below HTTP.
fn fault(error: &ClientError) -> Fault {
    match error {
        ClientError::APIError { code, errors } => {
            let words = server_words(*code, errors);
            match code {
                403 => Fault::PermissionDenied(words),
                404 => Fault::NotFound,
                429 | 500.. => Fault::Unavailable(words),
                _ => Fault::Unexpected(words),
            }
        }
        ClientError::RestClientError { source } if rejects_certificate(source) => {
            // Retrying will not help: the CA setting (or the server's certificate) is wrong.
            Fault::InvalidSettings(format!(
                "Vault's TLS certificate is not trusted (check the CA setting): {}",
                chain(source)
            ))
        }
        ClientError::RestClientError { source }
            if matches!(
                source,
                rustify::errors::ClientError::RequestError { .. }
                    | rustify::errors::ClientError::ResponseError { .. }
            ) || is_network(source) =>
        {
            // A request that never got an answer, or a cut one: refused, reset, a keep-alive
            // connection the server closed (a stopped or restarted Vault), a timeout. The
            // chain says which.
            Fault::Unavailable(chain(source))
        }
        // Not the chain: a response's parse error could quote the response.
        other => Fault::Unexpected(other.to_string()),
    }
}

/// Whether the TLS handshake failed on Vault's certificate (unknown issuer, wrong name,
/// expired): found as a typed `rustls::Error` in the chain.
fn rejects_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        // An io::Error's `source()` skips the error it wraps (possibly another io::Error):
        // unwrap those first.
        let mut inner = e;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if let Some(rustls::Error::InvalidCertificate(_)) = inner.downcast_ref::<rustls::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether the error happened on the way to the server (connect, TLS, timeout).
fn is_network(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>().is_some() || e.to_string().contains("timed out") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Vault's own error texts ("permission denied"), or the status when it gave none. Vault
/// wraps some in a multi-line list ("1 error occurred:\n\t* permission denied\n\n"):
/// keep the items, on one line.
fn server_words(code: u16, errors: &[String]) -> String {
    let items: Vec<&str> = errors
        .iter()
        .flat_map(|error| {
            let listed: Vec<&str> = error
                .lines()
                .filter_map(|line| line.trim().strip_prefix("* "))
                .collect();
            if listed.is_empty() {
                vec![error.trim()]
            } else {
                listed
            }
        })
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("{} (HTTP {code})", items.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_words_flatten_vaults_error_lists() {
        let listed = vec!["1 error occurred:\n\t* permission denied\n\n".to_string()];
        assert_eq!(server_words(403, &listed), "permission denied (HTTP 403)");
        let plain = vec!["invalid role or secret ID".to_string()];
        assert_eq!(
            server_words(400, &plain),
            "invalid role or secret ID (HTTP 400)"
        );
        assert_eq!(server_words(404, &[]), "HTTP 404");
    }
}
