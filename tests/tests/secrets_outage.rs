//! Secrets under a flaky secret store, against a real OpenBao: the last good value stands in
//! for an unreachable store for `stale_grace` (and never for a definite refusal), and a
//! renewable Vault token is renewed (`renew-self`) instead of being replaced by a new login.

use std::time::Duration;

use ferry_shared::secrets::{
    AwsSettings, Resolver, ResolverSettings, SecretError, SecretRef, VaultAuth, VaultSettings,
};
use ferry_shared::transfer::Outcome;
use ferry_tests::bed::{Bed, run, upload};
use ferry_tests::ftp::FtpServerKind;
use ferry_tests::vault::OpenBao;

const PASSWORD: &str = "vault-pw-7c41";
const REFERENCE: &str = "vault:secret/partners/acme#password";

/// OpenBao with the partner's password and a token that may read it (`ttl`).
async fn bao_with_password(ttl: &str) -> (OpenBao, String) {
    let bao = OpenBao::start().await.expect("OpenBao");
    bao.write_secret("secret", "partners/acme", &[("password", PASSWORD)])
        .await
        .expect("secret");
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .expect("policy");
    let token = bao
        .create_token_with_ttl(&["acme"], ttl)
        .await
        .expect("token");
    (bao, token)
}

fn resolver(bao: &OpenBao, token: &str, cache_ttl: Duration, grace: Duration) -> Resolver {
    Resolver::new(ResolverSettings {
        cache_ttl,
        stale_grace: grace,
        vault: Some(VaultSettings {
            address: bao.addr.clone(),
            namespace: None,
            ca_cert: None,
            auth: VaultAuth::Token(SecretRef::Literal(ferry_shared::secrets::Secret::new(
                token.to_owned(),
            ))),
        }),
        aws: AwsSettings::default(),
    })
}

async fn resolve(resolver: &Resolver) -> Result<String, SecretError> {
    let reference = SecretRef::parse(REFERENCE).expect("reference");
    resolver
        .resolve(&reference)
        .await
        .map(|s| s.expose().to_owned())
}

#[tokio::test]
async fn a_stopped_vault_is_bridged_for_the_grace_period_and_no_longer() {
    let (bao, token) = bao_with_password("1h").await;
    let resolver = resolver(&bao, &token, Duration::ZERO, Duration::from_secs(2));
    assert_eq!(resolve(&resolver).await.unwrap(), PASSWORD);

    drop(bao);
    assert_eq!(
        resolve(&resolver).await.unwrap(),
        PASSWORD,
        "the last good value stands in for the stopped store"
    );
    assert_eq!(resolver.stale_served(), 1);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let error = resolve(&resolver).await.unwrap_err();
    assert!(
        matches!(error, SecretError::Unavailable { .. }),
        "past the grace: {error}"
    );
    assert!(!format!("{error} {error:?}").contains(PASSWORD));
}

#[tokio::test]
async fn a_revoked_token_is_never_bridged() {
    let (bao, token) = bao_with_password("1h").await;
    let resolver = resolver(&bao, &token, Duration::ZERO, Duration::from_secs(3600));
    assert_eq!(resolve(&resolver).await.unwrap(), PASSWORD);

    bao.revoke_token(&token).await.expect("revoke");
    let error = resolve(&resolver).await.unwrap_err();
    assert!(
        matches!(error, SecretError::PermissionDenied { .. }),
        "a definite refusal ends the value: {error}"
    );
    assert_eq!(resolver.stale_served(), 0);
}

#[tokio::test]
async fn a_renewable_token_is_renewed_instead_of_replaced() {
    // Three seconds to live: read at 0, 2.5, 5 and 7.5 s, only a renewed token can answer.
    let (bao, token) = bao_with_password("3s").await;
    let resolver = resolver(&bao, &token, Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        assert_eq!(resolve(&resolver).await.unwrap(), PASSWORD);
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(
        resolver.vault_renewals() >= 2,
        "{}",
        resolver.vault_renewals()
    );
    assert_eq!(resolver.vault_logins(), 1, "one login for the whole time");
}

/// Vault stopped between two runs: the second still logs in to the partner with the
/// cached password, within the grace period.
#[tokio::test]
async fn vault_stopped_between_two_runs_the_second_still_logs_in() {
    let bed = Bed::start("vault-outage", FtpServerKind::Vsftpd).await;
    let bao = OpenBao::start().await.expect("OpenBao");
    bao.write_secret(
        "secret",
        "partners/acme",
        &[("password", bed.server.password.as_str())],
    )
    .await
    .expect("secret");
    bed.config(&upload(""), None);
    let dir = bed.dir.path();
    let partner = std::fs::read_to_string(dir.join("partners/partner.yaml")).expect("partner");
    let literal = format!("\"literal:{}\"", bed.server.password);
    assert!(partner.contains(&literal));
    std::fs::write(
        dir.join("partners/partner.yaml"),
        partner.replace(&literal, &format!("\"{REFERENCE}\"")),
    )
    .expect("partner");
    let settings = std::fs::read_to_string(dir.join("ferry.yaml")).expect("ferry.yaml");
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "{settings}vault:\n  address: {}\n  auth:\n    method: token\n    token: \"literal:{}\"\n\
             secrets:\n  cache_ttl: 1s\n  stale_grace: 1h\n",
            bao.addr, bao.root_token
        ),
    )
    .expect("ferry.yaml");
    let config = ferry_shared::config::Config::load(dir).expect("config");
    let engine = bed
        .engine(std::sync::Arc::new(config), ferry_tests::bed::options("w1"))
        .await;
    std::fs::write(bed.local().join("a.xml"), b"<a/>").expect("a");
    let first = run(&engine, "run-1").await;
    assert_eq!(first.totals.transferred, 1, "{first:#?}");

    drop(bao);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(bed.local().join("b.xml"), b"<b/>").expect("b");
    let second = run(&engine, "run-2").await;

    let row = second.files.iter().find(|r| r.name == "b.xml").expect("b");
    assert_eq!(row.outcome, Outcome::Transferred, "{second:#?}");
    assert!(bed.server.path("in/b.xml").exists());
}
