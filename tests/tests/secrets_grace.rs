//! Secrets under a flaky secret store, against a real OpenBao (and moto, and a real FTPS
//! server for the flow-runs):
//!
//! - the stale grace: while the store cannot be reached (stopped, sealed, not answering),
//!   the last value is served for `secrets.stale_grace` past `cache_ttl`, logged and
//!   counted; past it, or with the grace off, the run fails with the store's
//!   "unavailable" error and never the value; a definitive answer (403, 404, a field
//!   gone) fails at once and drops the kept value;
//! - token lifetime: a renewable token is renewed with `renew-self` instead of a new
//!   login; a new login happens only when the renewal is refused or capped by the max TTL,
//!   or the token is not renewable. OpenBao's audit log shows which requests were sent.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use ferry_shared::config::Config;
use ferry_shared::secrets::{
    AwsSettings, Resolver, ResolverSettings, Secret, SecretError, SecretRef, VaultAuth,
    VaultSettings,
};
use ferry_shared::transfer::{Engine, Outcome, TransferError, run_flow};
use ferry_tests::bed::{Bed, names_with, options, run, sha256_hex, upload, write_files};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::moto::{self, Moto};
use ferry_tests::vault::OpenBao;

/// Dummy AWS credentials for the SDK's default chain (moto accepts any), put in place once
/// per test binary before the AWS test does anything else.
fn init_aws() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: only the AWS test reads these, and it calls this first; `call_once`
        // returns once they are set.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY);
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

const PASSWORD_REF: &str = "vault:secret/partners/acme#password";

fn reference(text: &str) -> SecretRef {
    SecretRef::parse(text).expect("a valid reference")
}

fn literal(value: &str) -> SecretRef {
    SecretRef::Literal(Secret::new(value))
}

fn vault(address: &str, auth: VaultAuth) -> Option<VaultSettings> {
    Some(VaultSettings {
        address: address.to_string(),
        namespace: None,
        ca_cert: None,
        auth,
    })
}

/// A resolver on `bao` with its root token, `cache_ttl` and `stale_grace`.
fn root_resolver(bao: &OpenBao, cache_ttl: Duration, stale_grace: Duration) -> Resolver {
    Resolver::new(ResolverSettings {
        cache_ttl,
        stale_grace,
        vault: vault(&bao.addr, VaultAuth::Token(literal(&bao.root_token))),
        aws: AwsSettings::default(),
    })
}

/// An AppRole resolver with no cache, so that every resolution reads from OpenBao.
fn approle_resolver(bao: &OpenBao, role_id: String, secret_id: String) -> Resolver {
    Resolver::new(ResolverSettings {
        cache_ttl: Duration::ZERO,
        stale_grace: Duration::ZERO,
        vault: vault(
            &bao.addr,
            VaultAuth::AppRole {
                mount: "approle".to_string(),
                role_id: literal(&role_id),
                secret_id: literal(&secret_id),
            },
        ),
        aws: AwsSettings::default(),
    })
}

async fn seeded(password: &str) -> OpenBao {
    let bao = OpenBao::start_audited().await.unwrap();
    bao.write_secret("secret", "partners/acme", &[("password", password)])
        .await
        .unwrap();
    bao
}

// ---- the stale grace in flow-runs ---------------------------------------------------

/// `ferry.yaml` additions for a partner whose password is in `bao`.
fn vault_settings(bao: &OpenBao, cache_ttl: &str, stale_grace: &str) -> String {
    format!(
        "vault:\n  address: {}\n  auth:\n    token: \"literal:{}\"\n\
         secrets:\n  cache_ttl: {cache_ttl}\n  stale_grace: {stale_grace}\n",
        bao.addr, bao.root_token
    )
}

/// The engine of `bed` with its own resolver (to read the counter), and that resolver.
async fn engine_with_resolver(bed: &Bed, config: Arc<Config>) -> (Engine, Resolver) {
    let resolver = Resolver::new(config.settings.resolver.clone());
    let engine = Engine::new(config, resolver.clone(), bed.store().await, options("w1"));
    (engine, resolver)
}

/// The PASS commands the partner's server received (pyftpdlib logs them).
fn logins(bed: &Bed) -> Vec<String> {
    bed.server
        .received_commands()
        .into_iter()
        .filter(|line| line.starts_with("PASS "))
        .collect()
}

#[tokio::test]
async fn vault_stopped_between_two_runs_the_second_logs_in_with_the_cached_password() {
    let bed = Bed::start("stale-grace-run", FtpServerKind::Pyftpdlib).await;
    let bao = seeded(&bed.server.password).await;
    let config = bed.config_with(
        &upload(""),
        None,
        &vault_settings(&bao, "1s", "10m"),
        PASSWORD_REF,
    );
    assert_eq!(
        config.settings.resolver.stale_grace,
        Duration::from_secs(600)
    );
    let (engine, resolver) = engine_with_resolver(&bed, config).await;

    let first = write_files(&bed.local(), 1, 2048);
    let report = run(&engine, "run-1").await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(logins(&bed).len(), 1);
    // The next run must open a new session, hence log in again.
    engine.close().await;

    // OpenBao goes away; the cached password expires (cache_ttl 1s) between the runs.
    drop(bao);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    std::fs::write(bed.local().join("g000.xml"), &second).unwrap();
    let report = run(&engine, "run-2").await;
    assert!(report.is_success(), "{report:?}");
    assert_eq!(names_with(&report, Outcome::Transferred), ["g000.xml"]);
    // The server really saw a second login, with the cached password.
    let logins = logins(&bed);
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[1], format!("PASS {}", bed.server.password));
    let remote = bed.remote_files("in");
    assert_eq!(remote.get("f000.xml"), first.get("f000.xml"));
    assert_eq!(remote.get("g000.xml"), Some(&sha256_hex(&second)));
    assert_eq!(resolver.stale_served(), 1);
}

#[tokio::test]
async fn past_the_grace_the_run_fails_with_store_unavailable_and_never_the_value() {
    let bed = Bed::start("stale-grace-past", FtpServerKind::Pyftpdlib).await;
    let bao = seeded(&bed.server.password).await;
    let config = bed.config_with(
        &upload(""),
        None,
        &vault_settings(&bao, "1s", "1s"),
        PASSWORD_REF,
    );
    let (engine, resolver) = engine_with_resolver(&bed, config).await;
    write_files(&bed.local(), 1, 1024);
    assert!(run(&engine, "run-1").await.is_success());
    engine.close().await;

    drop(bao);
    // Past cache_ttl + stale_grace (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let error = run_flow(&engine, "f", None, "run-2", None)
        .await
        .expect_err("the run must fail past the grace");
    assert!(matches!(error, TransferError::Secret { .. }), "{error}");
    assert!(error.is_transient(), "{error}");
    let message = error.to_string();
    assert!(message.contains(PASSWORD_REF), "{message}");
    assert!(message.contains("Vault is unavailable"), "{message}");
    assert!(message.contains("secrets.stale_grace"), "{message}");
    assert!(!message.contains(&bed.server.password), "{message}");
    assert!(!format!("{error:?}").contains(&bed.server.password));
    assert_eq!(resolver.stale_served(), 0);
    assert_eq!(logins(&bed).len(), 1);
}

// ---- the stale grace in the resolver ------------------------------------------------

#[tokio::test]
async fn a_sealed_vault_5xx_is_bridged_and_counted() {
    let bao = seeded("sealed-pw-4c1a").await;
    let resolver = root_resolver(&bao, Duration::from_millis(300), Duration::from_secs(60));
    let text = reference(PASSWORD_REF);
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "sealed-pw-4c1a"
    );
    bao.seal().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for served in 1..=2 {
        let value = resolver.resolve(&text).await.unwrap();
        assert_eq!(value.expose(), "sealed-pw-4c1a");
        assert_eq!(resolver.stale_served(), served);
    }
    // OpenBao answered 503 once; the second stale answer did not ask again (15 s wait).
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn a_vault_that_does_not_answer_is_bridged() {
    let bao = seeded("paused-pw-18e2").await;
    let resolver = root_resolver(&bao, Duration::from_millis(300), Duration::from_secs(120));
    let text = reference(PASSWORD_REF);
    resolver.resolve(&text).await.unwrap();
    bao.pause();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    let value = resolver.resolve(&text).await;
    bao.resume();
    assert_eq!(value.unwrap().expose(), "paused-pw-18e2");
    // It waited for the request timeout, not for ever.
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(resolver.stale_served(), 1);
}

#[tokio::test]
async fn grace_zero_turns_it_off() {
    let bao = seeded("off-pw-7d0f").await;
    let resolver = root_resolver(&bao, Duration::from_millis(300), Duration::ZERO);
    let text = reference(PASSWORD_REF);
    resolver.resolve(&text).await.unwrap();
    drop(bao);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    assert!(!error.to_string().contains("off-pw-7d0f"));
    assert_eq!(resolver.stale_served(), 0);
}

#[tokio::test]
async fn a_403_fails_at_once_and_a_later_outage_does_not_bring_the_value_back() {
    let bao = seeded("revoked-pw-2b9c").await;
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .unwrap();
    let token = bao.create_token(&["acme"]).await.unwrap();
    let resolver = Resolver::new(ResolverSettings {
        cache_ttl: Duration::from_millis(300),
        stale_grace: Duration::from_secs(600),
        vault: vault(&bao.addr, VaultAuth::Token(literal(&token))),
        aws: AwsSettings::default(),
    });
    let text = reference(PASSWORD_REF);
    resolver.resolve(&text).await.unwrap();
    // The policy no longer grants the secret: a definitive "no".
    bao.create_read_policy("acme", &[("secret", "partners/other")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(
        matches!(error, SecretError::PermissionDenied { .. }),
        "{error}"
    );
    // Then OpenBao goes away: the revoked value must not come back as a stale one.
    drop(bao);
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    assert!(!error.to_string().contains("stale_grace"), "{error}");
    assert_eq!(resolver.stale_served(), 0);
}

#[tokio::test]
async fn a_deleted_secret_or_field_fails_at_once() {
    let bao = seeded("deleted-pw-5a3e").await;
    let resolver = root_resolver(&bao, Duration::from_millis(300), Duration::from_secs(600));
    let text = reference(PASSWORD_REF);
    resolver.resolve(&text).await.unwrap();
    // The field is gone from the new version.
    bao.write_secret("secret", "partners/acme", &[("username", "acme")])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::FieldMissing { .. }), "{error}");
    // The whole secret is gone.
    bao.delete_secret("secret", "partners/acme").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
    assert_eq!(resolver.stale_served(), 0);
}

#[tokio::test]
async fn aws_unreachable_is_bridged_too() {
    init_aws();
    let moto = Moto::start().await.unwrap();
    moto.create_secret("prod/acme", r#"{"password":"aws-pw-9e4d"}"#)
        .await
        .unwrap();
    let resolver = Resolver::new(ResolverSettings {
        cache_ttl: Duration::from_millis(300),
        stale_grace: Duration::from_secs(600),
        vault: None,
        aws: AwsSettings {
            region: Some(moto::REGION.to_string()),
            endpoint_url: Some(moto.endpoint.clone()),
        },
    });
    let text = reference("aws-sm:prod/acme#password");
    resolver.resolve(&text).await.unwrap();
    drop(moto);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "aws-pw-9e4d"
    );
    assert_eq!(resolver.stale_served(), 1);
}

// ---- token renewal -------------------------------------------------------------------

/// Resolves `text` every 200 ms for `span`; every resolution must succeed.
async fn keep_resolving(resolver: &Resolver, text: &str, expected: &str, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        let value = resolver.resolve(&reference(text)).await.unwrap();
        assert_eq!(value.expose(), expected);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn approle_bao(password: &str) -> OpenBao {
    let bao = seeded(password).await;
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .unwrap();
    bao.enable_approle().await.unwrap();
    bao
}

const LOGIN: &str = "auth/approle/login";
const RENEW: &str = "auth/token/renew-self";

#[tokio::test]
async fn a_renewable_token_is_renewed_not_replaced_by_a_new_login() {
    let bao = approle_bao("renewed-pw-6f2b").await;
    let (role_id, secret_id) = bao
        .create_renewable_approle("worker", &["acme"], "2s", "1h")
        .await
        .unwrap();
    let resolver = approle_resolver(&bao, role_id, secret_id);
    // Twice the token's TTL: without renewal it would have expired twice.
    keep_resolving(
        &resolver,
        PASSWORD_REF,
        "renewed-pw-6f2b",
        Duration::from_secs(4),
    )
    .await;
    assert_eq!(bao.audited_count(LOGIN), 1, "{:?}", bao.audited_paths());
    assert!(bao.audited_count(RENEW) >= 2, "{:?}", bao.audited_paths());
}

#[tokio::test]
async fn a_batch_token_cannot_be_renewed_and_is_replaced_by_a_new_login() {
    let bao = approle_bao("batch-pw-0c7a").await;
    let (role_id, secret_id) = bao
        .create_batch_approle("worker", &["acme"], "2s")
        .await
        .unwrap();
    let resolver = approle_resolver(&bao, role_id, secret_id);
    keep_resolving(
        &resolver,
        PASSWORD_REF,
        "batch-pw-0c7a",
        Duration::from_secs(4),
    )
    .await;
    assert!(bao.audited_count(LOGIN) >= 2, "{:?}", bao.audited_paths());
    assert_eq!(bao.audited_count(RENEW), 0, "{:?}", bao.audited_paths());
}

#[tokio::test]
async fn a_renewal_capped_by_the_max_ttl_leads_to_a_new_login() {
    let bao = approle_bao("capped-pw-3e8d").await;
    let (role_id, secret_id) = bao
        .create_renewable_approle("worker", &["acme"], "2s", "3s")
        .await
        .unwrap();
    let resolver = approle_resolver(&bao, role_id, secret_id);
    keep_resolving(
        &resolver,
        PASSWORD_REF,
        "capped-pw-3e8d",
        Duration::from_secs(4),
    )
    .await;
    assert!(bao.audited_count(RENEW) >= 1, "{:?}", bao.audited_paths());
    assert!(bao.audited_count(LOGIN) >= 2, "{:?}", bao.audited_paths());
}

#[tokio::test]
async fn a_refused_renewal_leads_to_a_new_login_before_any_read_is_refused() {
    let bao = approle_bao("refused-pw-1a5c").await;
    let (role_id, secret_id) = bao
        .create_renewable_approle("worker", &["acme"], "2s", "1h")
        .await
        .unwrap();
    let resolver = approle_resolver(&bao, role_id, secret_id);
    let text = reference(PASSWORD_REF);
    resolver.resolve(&text).await.unwrap();
    bao.revoke_approle_tokens().await.unwrap();
    // Past three quarters of the lease: the next resolution renews first.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "refused-pw-1a5c"
    );
    // From the first login on (the set-up wrote the secret before).
    let sequence: Vec<String> = bao
        .audited_paths()
        .into_iter()
        .skip_while(|p| p != LOGIN)
        .filter(|p| p == LOGIN || p == RENEW || p.starts_with("secret/data/"))
        .collect();
    assert_eq!(
        sequence,
        [
            LOGIN,
            "secret/data/partners/acme",
            RENEW,
            LOGIN,
            "secret/data/partners/acme"
        ],
    );
}

/// A configured (not logged-in) token with a TTL: looked up, then renewed before it ends.
/// Three seconds to live, read at 0, 2.5, 5 and 7.5 s: only a renewed token can answer.
#[tokio::test]
async fn a_configured_renewable_token_is_renewed_before_it_expires() {
    let bao = OpenBao::start().await.expect("OpenBao");
    bao.write_secret("secret", "partners/acme", &[("password", "cfg-pw-5a1e")])
        .await
        .expect("secret");
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .expect("policy");
    let token = bao
        .create_token_with_ttl(&["acme"], "3s")
        .await
        .expect("token");
    let resolver = Resolver::new(ResolverSettings {
        cache_ttl: Duration::ZERO,
        stale_grace: Duration::ZERO,
        vault: vault(&bao.addr, VaultAuth::Token(literal(&token))),
        aws: AwsSettings::default(),
    });
    let text = reference("vault:secret/partners/acme#password");
    for _ in 0..4 {
        let value = resolver.resolve(&text).await.expect("resolved");
        assert_eq!(value.expose(), "cfg-pw-5a1e");
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(
        resolver.vault_renewals() >= 2,
        "{}",
        resolver.vault_renewals()
    );
    assert_eq!(resolver.vault_logins(), 1, "one login for the whole time");
}
