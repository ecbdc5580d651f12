//! [`Resolver`]: the one door to every secret, with the cache in front of the remote stores.
//!
//! Secrets are resolved when a flow-run needs them, not when the configuration is loaded,
//! so a password rotated in Vault or AWS is picked up without a restart. To spare the
//! stores, what a remote store returns is kept for `cache_ttl`; the cache holds whole
//! documents (a Vault secret with all its fields, an AWS secret string), so a partner's
//! `#username` and `#password` come from one request and one version. Concurrent
//! resolutions of one document share one request (single flight): the first caller starts
//! the fetch and the others await the same shared future. A failure is handed to the
//! callers waiting for it and then forgotten, never cached. When the store cannot be
//! reached, the last value fetched is served for `secrets.stale_grace` more (see
//! [`super::stale`]); a definitive answer (403, 404) drops it.
//!
//! `env:`, `file:` and literals are cheap and local: they are read on every call.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::field::Empty;
use tracing::{Instrument, debug, debug_span, instrument};

use super::aws::AwsBackend;
use super::error::{Fault, Store};
use super::settings::ResolverSettings;
use super::stale::{Freshness, LastGood, StaleGrace};
use super::vault::{Fields, VaultBackend};
use super::{Secret, SecretError, SecretRef, local};
use crate::telemetry::metrics::secrets::SecretMetrics;

/// The longest one fetch (login and retries included) may take before its waiters get
/// [`SecretError::Unavailable`].
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// While a stale value is served, how long until the store is asked again: a store that
/// times out must not make every resolution wait for it.
const STALE_RETRY: Duration = Duration::from_secs(15);

/// Resolves [`SecretRef`]s to [`Secret`]s. Cheap to clone: clones share one cache, one
/// Vault session and one AWS client.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ResolverSettings,
    vault: Option<VaultBackend>,
    aws: AwsBackend,
    cache: Mutex<HashMap<DocumentKey, Slot>>,
    fetches: AtomicU64,
    grace: StaleGrace,
}

/// What one request to a remote store returns, and the cache's unit.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum DocumentKey {
    Vault { mount: String, path: String },
    Aws { secret_id: String },
}

/// A fetched document.
#[derive(Clone)]
enum Document {
    Vault(Fields),
    Aws(Secret),
}

type Fetch = Shared<BoxFuture<'static, Result<Document, Fault>>>;

/// A cache entry: the last document fetched (fresh for `cache_ttl`, then kept for the
/// stale grace), and the fetch under way, if any.
#[derive(Default)]
struct Slot {
    last: Option<LastGood<Document>>,
    fetch: Option<Fetch>,
    /// The store could not be reached at the last try: why, and when to try again
    /// ([`STALE_RETRY`]); meanwhile the last value is served without asking.
    outage: Option<(String, Instant)>,
}

impl Resolver {
    /// A resolver for these settings. Nothing is contacted until the first resolution.
    pub fn new(settings: ResolverSettings) -> Resolver {
        let vault = settings.vault.clone().map(VaultBackend::new);
        let aws = AwsBackend::new(settings.aws.clone());
        let grace = StaleGrace::new(settings.cache_ttl, settings.stale_grace);
        Resolver {
            inner: Arc::new(Inner {
                settings,
                vault,
                aws,
                cache: Mutex::new(HashMap::new()),
                fetches: AtomicU64::new(0),
                grace,
            }),
        }
    }

    /// The value `reference` points to now (or at most `cache_ttl` ago for a remote store;
    /// at most `cache_ttl + stale_grace` ago while that store cannot be reached).
    #[instrument(
        name = "secret.resolve",
        skip_all,
        fields(reference = %reference, stale = Empty, stale_age_s = Empty)
    )]
    pub async fn resolve(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let result = self.resolve_uncounted(reference).await;
        SecretMetrics::global().record_resolution(
            reference.store_label(),
            result.as_ref().err().map(SecretError::kind_label),
        );
        result
    }

    /// [`Resolver::resolve`] without counting it in the metrics.
    async fn resolve_uncounted(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Env(variable) => local::read_env(reference, variable),
            SecretRef::File(path) => local::read_file(reference, path).await,
            SecretRef::Literal(value) => Ok(value.clone()),
            SecretRef::Vault { mount, path, field } => {
                let key = DocumentKey::Vault {
                    mount: mount.clone(),
                    path: path.clone(),
                };
                match self.document(key, reference, Store::Vault).await {
                    Ok(Document::Vault(fields)) => {
                        fields
                            .get(field)
                            .cloned()
                            .ok_or_else(|| SecretError::FieldMissing {
                                reference: reference.clone(),
                                field: field.clone(),
                            })
                    }
                    Ok(Document::Aws(_)) => wrong_document(reference, Store::Vault),
                    Err(fault) => Err(fault.into_error(Store::Vault, reference)),
                }
            }
            SecretRef::AwsSecretsManager { secret_id, field } => {
                let key = DocumentKey::Aws {
                    secret_id: secret_id.clone(),
                };
                match self
                    .document(key, reference, Store::AwsSecretsManager)
                    .await
                {
                    Ok(Document::Aws(text)) => match field {
                        None => Ok(text),
                        Some(field) => json_field(reference, &text, field),
                    },
                    Ok(Document::Vault(_)) => wrong_document(reference, Store::AwsSecretsManager),
                    Err(fault) => Err(fault.into_error(Store::AwsSecretsManager, reference)),
                }
            }
        }
    }

    /// Drops the cached document behind `reference`, so the next resolution fetches it
    /// again (for instance after a partner rejected a password that may have been rotated).
    pub fn forget(&self, reference: &SecretRef) {
        let key = match reference {
            SecretRef::Vault { mount, path, .. } => DocumentKey::Vault {
                mount: mount.clone(),
                path: path.clone(),
            },
            SecretRef::AwsSecretsManager { secret_id, .. } => DocumentKey::Aws {
                secret_id: secret_id.clone(),
            },
            SecretRef::Env(_) | SecretRef::File(_) | SecretRef::Literal(_) => return,
        };
        let mut cache = self.inner.cache();
        // A fetch under way is fresh: let it be. The kept value goes, stale grace included:
        // the partner just rejected it.
        if let Some(slot) = cache.get_mut(&key) {
            slot.last = None;
            if slot.fetch.is_none() {
                cache.remove(&key);
            }
        }
    }

    /// How many requests this resolver (and its clones) sent to the remote stores so far,
    /// one per document fetched: for tests and metrics of the cache and the single flight.
    pub fn backend_fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Vault logins so far (a configured token's session counts as one): with renewal, one
    /// for as long as the token may be renewed.
    pub fn vault_logins(&self) -> u64 {
        self.inner.vault.as_ref().map_or(0, VaultBackend::logins)
    }

    /// Vault token renewals (`renew-self`) so far.
    pub fn vault_renewals(&self) -> u64 {
        self.inner.vault.as_ref().map_or(0, VaultBackend::renewals)
    }

    /// How many resolutions were answered with a stale value (the store unreachable, the
    /// last value within `secrets.stale_grace`) so far, by this resolver and its clones.
    pub fn stale_served(&self) -> u64 {
        self.inner.grace.served_total()
    }

    /// The document for `key` (behind `reference`, in `store`): from the cache, from the
    /// fetch under way, fetched now, or, when the store cannot be reached, the last one
    /// within the stale grace.
    async fn document(
        &self,
        key: DocumentKey,
        reference: &SecretRef,
        store: Store,
    ) -> Result<Document, Fault> {
        let (document, freshness) = self.fetched(key).await?;
        if let Freshness::Stale { age, reason } = freshness {
            self.inner.grace.served(reference, store, age, &reason);
        }
        Ok(document)
    }

    /// [`Resolver::document`] without the bookkeeping of a stale answer.
    async fn fetched(&self, key: DocumentKey) -> Result<(Document, Freshness), Fault> {
        let fetch = {
            let mut cache = self.inner.cache();
            let slot = cache.entry(key.clone()).or_default();
            match (&slot.last, &slot.fetch) {
                (Some(last), _) if last.fetched.elapsed() < self.inner.settings.cache_ttl => {
                    debug!("cache hit");
                    return Ok((last.value.clone(), Freshness::Fresh));
                }
                (_, Some(fetch)) => {
                    debug!("joining the fetch under way");
                    fetch.clone()
                }
                (last, None) => {
                    if let Some((reason, retry_at)) = &slot.outage
                        && Instant::now() < *retry_at
                        && let Ok(served) = self
                            .inner
                            .grace
                            .fallback(last.as_ref(), Fault::Unavailable(reason.clone()))
                    {
                        debug!("the store was unreachable moments ago: not asking again yet");
                        return Ok(served);
                    }
                    if last.is_some() {
                        debug!("cached value expired");
                    }
                    let fetch = self.start_fetch(key.clone());
                    slot.fetch = Some(fetch.clone());
                    fetch
                }
            }
        };
        let result = fetch.clone().await;
        // The first waiter to get here settles the slot; the others find it settled.
        let mut cache = self.inner.cache();
        if let Some(slot) = cache.get_mut(&key)
            && slot.fetch.as_ref().is_some_and(|f| f.ptr_eq(&fetch))
        {
            slot.fetch = None;
            slot.outage = None;
            match &result {
                Ok(document) => {
                    slot.last = Some(LastGood {
                        value: document.clone(),
                        fetched: Instant::now(),
                    });
                }
                // Unreachable: keep the last value for the grace.
                Err(Fault::Unavailable(reason)) => {
                    slot.outage = Some((reason.clone(), Instant::now() + STALE_RETRY));
                }
                // The store answered no (403, 404...): a revoked secret stops working now.
                Err(_) => slot.last = None,
            }
            if slot.last.is_none() {
                cache.remove(&key);
            }
        }
        match result {
            Ok(document) => Ok((document, Freshness::Fresh)),
            Err(fault) if StaleGrace::covers(&fault) => {
                let last = cache.get(&key).and_then(|slot| slot.last.as_ref());
                self.inner.grace.fallback(last, fault)
            }
            Err(fault) => Err(fault),
        }
    }

    /// A shared future that fetches `key` once, whoever polls it.
    fn start_fetch(&self, key: DocumentKey) -> Fetch {
        let inner = Arc::clone(&self.inner);
        let span = debug_span!("secret.fetch", document = ?key);
        async move {
            inner.fetches.fetch_add(1, Ordering::Relaxed);
            let fetch = async {
                match &key {
                    DocumentKey::Vault { mount, path } => match &inner.vault {
                        Some(vault) => vault.read(mount, path).await.map(Document::Vault),
                        None => Err(Fault::NotConfigured),
                    },
                    DocumentKey::Aws { secret_id } => {
                        inner.aws.read(secret_id).await.map(Document::Aws)
                    }
                }
            };
            // Every waiter of this fetch is bounded by it: a store that accepts the
            // connection and never answers must not hold a flow-run forever.
            tokio::time::timeout(FETCH_TIMEOUT, fetch)
                .await
                .unwrap_or_else(|_| {
                    Err(Fault::Unavailable(format!(
                        "no answer within {} s",
                        FETCH_TIMEOUT.as_secs()
                    )))
                })
        }
        .instrument(span)
        .boxed()
        .shared()
    }
}

impl fmt::Debug for Resolver {
    /// The settings (references only, redacted) and the cache's size, never a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.inner.settings)
            .field("cached_documents", &self.inner.cache().len())
            .field("backend_fetches", &self.backend_fetches())
            .field("stale_served", &self.stale_served())
            .finish()
    }
}

impl Inner {
    /// The cache, even if a panicking thread poisoned its lock (the map stays consistent:
    /// every change is a single insert or remove).
    fn cache(&self) -> MutexGuard<'_, HashMap<DocumentKey, Slot>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Field `field` of a JSON object secret string: a string as is, another JSON value as
/// its JSON text.
fn json_field(reference: &SecretRef, text: &Secret, field: &str) -> Result<Secret, SecretError> {
    let not_json = |reason: String| SecretError::NotJson {
        reference: reference.clone(),
        reason,
    };
    // serde_json's syntax errors give a position, never the text around it.
    let value: serde_json::Value =
        serde_json::from_str(text.expose()).map_err(|e| not_json(e.to_string()))?;
    let serde_json::Value::Object(mut object) = value else {
        let kind = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        return Err(not_json(format!("it is {kind}")));
    };
    match object.remove(field) {
        Some(serde_json::Value::String(value)) => Ok(Secret::new(value)),
        Some(other) => Ok(Secret::new(other.to_string())),
        None => Err(SecretError::FieldMissing {
            reference: reference.clone(),
            field: field.to_string(),
        }),
    }
}

/// A document of the wrong kind for its key: impossible by construction, reported rather
/// than panicking.
fn wrong_document(reference: &SecretRef, store: Store) -> Result<Secret, SecretError> {
    Err(
        Fault::Unexpected("internal error: wrong document kind".to_string())
            .into_error(store, reference),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> SecretRef {
        SecretRef::parse("aws-sm:prod/acme#password").unwrap()
    }

    #[test]
    fn json_fields_strings_and_other_values() {
        let text = Secret::new(r#"{"password":"hunter2","port":2121}"#);
        assert_eq!(
            json_field(&reference(), &text, "password")
                .unwrap()
                .expose(),
            "hunter2"
        );
        assert_eq!(
            json_field(&reference(), &text, "port").unwrap().expose(),
            "2121"
        );
        let missing = json_field(&reference(), &text, "user").unwrap_err();
        assert!(matches!(missing, SecretError::FieldMissing { .. }));
    }

    #[test]
    fn not_json_never_quotes_the_text() {
        for text in [
            "hunter2",
            "\"hunter2\"",
            "[\"hunter2\"]",
            "{\"a\": hunter2}",
        ] {
            let e = json_field(&reference(), &Secret::new(text), "password").unwrap_err();
            assert!(matches!(e, SecretError::NotJson { .. }), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[tokio::test]
    async fn vault_without_settings_is_not_configured() {
        let resolver = Resolver::new(ResolverSettings::default());
        let reference = SecretRef::parse("vault:secret/acme#password").unwrap();
        let e = resolver.resolve(&reference).await.unwrap_err();
        assert!(matches!(e, SecretError::NotConfigured { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "secret `vault:secret/acme#password`: no Vault is configured"
        );
    }
}
