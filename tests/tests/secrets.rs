//! Secret resolution against real stores: every reference kind resolves, every failure
//! says which reference failed and why without ever showing a value, the cache honours its
//! TTL, and concurrent resolutions share one request.
//!
//! Each test starts the servers it needs (OpenBao in dev mode, moto) on free loopback
//! ports; they stop when the test ends. "Unreachable" means a free loopback port where
//! nothing listens.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use ferry_shared::secrets::{
    AwsSettings, Resolver, ResolverSettings, Secret, SecretError, SecretRef, VaultAuth,
    VaultSettings,
};
use ferry_tests::moto::{self, Moto};
use ferry_tests::ports::free_port;
use ferry_tests::vault::OpenBao;

/// A value set in this process's environment for the `env:` tests.
const ENV_VALUE: &str = "env-secret-value-7c1f";
const ENV_NAME: &str = "FERRY_SECRETS_TEST_VALUE";
const UNSET_NAME: &str = "FERRY_SECRETS_TEST_NEVER_SET";

/// Puts what the tests read from the environment in place, once per test binary, before
/// any test does anything else (every test calls it first, and `Once` makes the others
/// wait): the `env:` test variable, and dummy AWS credentials for the SDK's default chain
/// (moto accepts any).
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: runs before any test of this binary starts a thread of its own or calls
        // into C code: each test calls `init()` first and `call_once` blocks the others
        // until this closure returns.
        unsafe {
            std::env::set_var(ENV_NAME, ENV_VALUE);
            std::env::remove_var(UNSET_NAME);
            std::env::set_var("AWS_ACCESS_KEY_ID", moto::ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", moto::SECRET_ACCESS_KEY);
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

fn reference(text: &str) -> SecretRef {
    SecretRef::parse(text).expect("a valid reference")
}

/// The value of the reference written `text`, which must resolve.
async fn resolved(resolver: &Resolver, text: &str) -> Secret {
    resolver.resolve(&reference(text)).await.unwrap()
}

/// The error's message names `reference` and the Debug and Display never show any of
/// `values`.
fn assert_names_reference_only(error: &SecretError, reference: &str, values: &[&str]) {
    let message = error.to_string();
    assert!(
        message.contains(&format!("`{reference}`")),
        "`{message}` should name `{reference}`"
    );
    let debug = format!("{error:?}");
    for value in values {
        assert!(!message.contains(value), "`{message}` shows a secret value");
        assert!(!debug.contains(value), "`{debug}` shows a secret value");
    }
}

fn settings(vault: Option<VaultSettings>, aws: AwsSettings) -> ResolverSettings {
    ResolverSettings {
        cache_ttl: Duration::from_secs(300),
        stale_grace: Duration::ZERO,
        vault,
        aws,
    }
}

fn vault_with(address: &str, auth: VaultAuth) -> VaultSettings {
    VaultSettings {
        address: address.to_string(),
        namespace: None,
        ca_cert: None,
        auth,
    }
}

fn token_resolver(address: &str, token: &str) -> Resolver {
    Resolver::new(settings(
        Some(vault_with(
            address,
            VaultAuth::Token(SecretRef::Literal(ferry_shared::secrets::Secret::new(
                token,
            ))),
        )),
        AwsSettings::default(),
    ))
}

fn aws_resolver(endpoint: &str) -> Resolver {
    Resolver::new(settings(
        None,
        AwsSettings {
            region: Some(moto::REGION.to_string()),
            endpoint_url: Some(endpoint.to_string()),
        },
    ))
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).expect("writing a test file");
}

// ---- env, file, literal -------------------------------------------------------------

#[tokio::test]
async fn env_resolves_and_unset_names_the_variable() {
    init();
    let resolver = Resolver::new(ResolverSettings::default());
    let value = resolved(&resolver, &format!("env:{ENV_NAME}")).await;
    assert_eq!(value.expose(), ENV_VALUE);

    let unset = format!("env:{UNSET_NAME}");
    let error = resolver.resolve(&reference(&unset)).await.unwrap_err();
    assert!(matches!(error, SecretError::EnvUnset { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("secret `{unset}`: the environment variable `{UNSET_NAME}` is not set")
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn file_resolves_less_one_final_newline() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let resolver = Resolver::new(ResolverSettings::default());
    for (name, content, expected) in [
        ("plain", "file-secret", "file-secret"),
        ("lf", "file-secret\n", "file-secret"),
        ("crlf", "file-secret\r\n", "file-secret"),
        ("two", "file-secret\n\n", "file-secret\n"),
    ] {
        let path = dir.path().join(name);
        write(&path, content);
        let value = resolved(&resolver, &format!("file:{}", path.display())).await;
        assert_eq!(value.expose(), expected, "{name}");
    }
}

#[tokio::test]
async fn file_missing_names_the_path_and_the_os_reason() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    let text = format!("file:{}", path.display());
    let error = Resolver::new(ResolverSettings::default())
        .resolve(&reference(&text))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SecretError::FileUnreadable { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("No such file or directory"), "{message}");
    assert_names_reference_only(&error, &text, &[]);
}

#[tokio::test]
async fn file_unreadable_names_the_os_reason() {
    init();
    // Root reads any file whatever its mode: a directory is unreadable as a file for all.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("file:{}", dir.path().display());
    let error = Resolver::new(ResolverSettings::default())
        .resolve(&reference(&text))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SecretError::FileUnreadable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("Is a directory"), "{error}");
    assert_names_reference_only(&error, &text, &[]);
}

#[tokio::test]
async fn literal_resolves_to_itself() {
    init();
    let resolver = Resolver::new(ResolverSettings::default());
    let value = resolved(&resolver, "literal:lit-secret").await;
    assert_eq!(value.expose(), "lit-secret");
    assert_eq!(resolver.backend_fetches(), 0);
}

// ---- Vault / OpenBao ----------------------------------------------------------------

#[tokio::test]
async fn vault_token_auth_reads_a_field_with_the_token_from_a_file() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret(
        "secret",
        "partners/acme",
        &[("username", "acme-user"), ("password", "vault-pw-1d9e")],
    )
    .await
    .unwrap();
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .unwrap();
    let token = bao.create_token(&["acme"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write(&token_file, &format!("{token}\n"));
    let resolver = Resolver::new(settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::Token(SecretRef::File(token_file)),
        )),
        AwsSettings::default(),
    ));

    let password = resolved(&resolver, "vault:secret/partners/acme#password").await;
    assert_eq!(password.expose(), "vault-pw-1d9e");
    let username = resolved(&resolver, "vault:secret/partners/acme#username").await;
    assert_eq!(username.expose(), "acme-user");
    // Both fields came from one read of the secret.
    assert_eq!(resolver.backend_fetches(), 1);
}

#[tokio::test]
async fn vault_non_string_fields_resolve_to_their_json_text() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_json_secret(
        "secret",
        "typed",
        &serde_json::json!({"port": 2121, "enabled": true}),
    )
    .await
    .unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let port = resolved(&resolver, "vault:secret/typed#port").await;
    assert_eq!(port.expose(), "2121");
}

#[tokio::test]
async fn vault_path_missing_is_not_found() {
    init();
    let bao = OpenBao::start().await.unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let text = "vault:secret/partners/nobody#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("secret `{text}`: Vault has no such secret")
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn vault_field_missing_is_field_missing() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret("secret", "partners/acme", &[("password", "vault-pw-52aa")])
        .await
        .unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let text = "vault:secret/partners/acme#passphrase";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::FieldMissing { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("secret `{text}`: the secret has no field `passphrase`")
    );
    assert_names_reference_only(&error, text, &["vault-pw-52aa", &bao.root_token]);
}

#[tokio::test]
async fn vault_token_without_permission_is_permission_denied() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret("secret", "partners/acme", &[("password", "vault-pw-77b0")])
        .await
        .unwrap();
    let token = bao.create_token(&[]).await.unwrap();
    let resolver = token_resolver(&bao.addr, &token);
    let text = "vault:secret/partners/acme#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(
        matches!(error, SecretError::PermissionDenied { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("denied access"), "{message}");
    assert!(message.contains("403"), "{message}");
    assert!(!error.is_transient());
    assert_names_reference_only(&error, text, &["vault-pw-77b0", &token]);
}

#[tokio::test]
async fn vault_unreachable_is_unavailable_and_transient() {
    init();
    let address = format!("http://127.0.0.1:{}", free_port());
    let resolver = token_resolver(&address, "some-token-3f2a");
    let text = "vault:secret/partners/acme#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    assert!(error.is_transient());
    assert!(
        error.to_string().contains("Vault is unavailable"),
        "{error}"
    );
    assert!(error.to_string().contains("refused"), "{error}");
    assert_names_reference_only(&error, text, &["some-token-3f2a"]);
}

#[tokio::test]
async fn vault_unset_token_variable_is_a_login_failure_naming_it() {
    init();
    let bao = OpenBao::start().await.unwrap();
    let resolver = Resolver::new(settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::Token(reference(&format!("env:{UNSET_NAME}"))),
        )),
        AwsSettings::default(),
    ));
    let text = "vault:secret/partners/acme#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::LoginFailed { .. }), "{error}");
    assert!(error.to_string().contains(UNSET_NAME), "{error}");
    assert_names_reference_only(&error, text, &[]);
}

#[tokio::test]
async fn vault_approle_logs_in_and_logs_in_again_when_the_token_expires() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret(
        "secret",
        "partners/acme",
        &[("password", "approle-pw-0b3c")],
    )
    .await
    .unwrap();
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .unwrap();
    bao.enable_approle().await.unwrap();
    let (role_id, secret_id) = bao.create_approle("worker", &["acme"], "2s").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_id_file = dir.path().join("secret-id");
    write(&secret_id_file, &secret_id);
    let mut settings = settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::AppRole {
                mount: "approle".to_string(),
                role_id: SecretRef::Literal(ferry_shared::secrets::Secret::new(role_id)),
                secret_id: SecretRef::File(secret_id_file),
            },
        )),
        AwsSettings::default(),
    );
    settings.cache_ttl = Duration::ZERO;
    let resolver = Resolver::new(settings);
    let text = "vault:secret/partners/acme#password";
    let value = resolved(&resolver, text).await;
    assert_eq!(value.expose(), "approle-pw-0b3c");
    // The first token has expired by now: the resolver must log in again by itself.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let value = resolved(&resolver, text).await;
    assert_eq!(value.expose(), "approle-pw-0b3c");
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn vault_approle_with_a_wrong_secret_id_is_a_login_failure() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.enable_approle().await.unwrap();
    let (role_id, _) = bao.create_approle("worker", &[], "1h").await.unwrap();
    let resolver = Resolver::new(settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::AppRole {
                mount: "approle".to_string(),
                role_id: SecretRef::Literal(ferry_shared::secrets::Secret::new(role_id)),
                secret_id: reference("literal:wrong-secret-id-9d0d"),
            },
        )),
        AwsSettings::default(),
    ));
    let text = "vault:secret/partners/acme#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::LoginFailed { .. }), "{error}");
    assert!(error.to_string().contains("approle"), "{error}");
    assert!(!error.is_transient());
    assert_names_reference_only(&error, text, &["wrong-secret-id-9d0d"]);
}

#[tokio::test]
async fn vault_kubernetes_reads_the_token_file_and_names_it_when_missing() {
    init();
    let bao = OpenBao::start().await.unwrap();
    // No cluster here: OpenBao's TokenReview call goes to a port where nothing listens.
    let kubernetes_host = format!("http://127.0.0.1:{}", free_port());
    bao.enable_kubernetes(&kubernetes_host, "ferry-worker")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let kubernetes = |token_file: &Path| {
        Resolver::new(settings(
            Some(vault_with(
                &bao.addr,
                VaultAuth::Kubernetes {
                    mount: "kubernetes".to_string(),
                    role: "ferry-worker".to_string(),
                    token_file: token_file.to_path_buf(),
                },
            )),
            AwsSettings::default(),
        ))
    };
    let text = "vault:secret/partners/acme#password";

    let error = kubernetes(&token_file)
        .resolve(&reference(text))
        .await
        .unwrap_err();
    assert!(matches!(error, SecretError::LoginFailed { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("kubernetes"), "{message}");
    assert!(
        message.contains(&token_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");

    // With the file present, its token reaches OpenBao, which then fails to review it.
    write(&token_file, "header.payload-k8s-jwt-5e1b.signature\n");
    let error = kubernetes(&token_file)
        .resolve(&reference(text))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(!message.contains("cannot read"), "{message}");
    assert!(
        matches!(
            error,
            SecretError::LoginFailed { .. } | SecretError::Unavailable { .. }
        ),
        "{message}"
    );
    assert_names_reference_only(&error, text, &["payload-k8s-jwt-5e1b"]);
}

#[tokio::test]
async fn vault_cache_honours_the_ttl() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret("secret", "rotating", &[("password", "before-rotation")])
        .await
        .unwrap();
    let mut settings = settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::Token(SecretRef::Literal(ferry_shared::secrets::Secret::new(
                bao.root_token.clone(),
            ))),
        )),
        AwsSettings::default(),
    );
    settings.cache_ttl = Duration::from_millis(1500);
    let resolver = Resolver::new(settings);
    let text = reference("vault:secret/rotating#password");

    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "before-rotation"
    );
    bao.write_secret("secret", "rotating", &[("password", "after-rotation")])
        .await
        .unwrap();
    // Within the TTL: the cached value, no request.
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "before-rotation"
    );
    assert_eq!(resolver.backend_fetches(), 1);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // After the TTL: fetched again, the rotated value.
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "after-rotation"
    );
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn vault_failures_are_not_cached() {
    init();
    let bao = OpenBao::start().await.unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let text = reference("vault:secret/late#password");
    let error = resolver.resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
    bao.write_secret("secret", "late", &[("password", "now-here")])
        .await
        .unwrap();
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "now-here");
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_concurrent_resolutions_share_one_request() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret(
        "secret",
        "partners/acme",
        &[("username", "acme-user"), ("password", "shared-pw")],
    )
    .await
    .unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let resolver = resolver.clone();
        let field = if i % 2 == 0 { "password" } else { "username" };
        let text = reference(&format!("vault:secret/partners/acme#{field}"));
        tasks.spawn(async move { (field, resolver.resolve(&text).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (field, value) = joined.unwrap();
        let expected = if field == "password" {
            "shared-pw"
        } else {
            "acme-user"
        };
        assert_eq!(value.unwrap().expose(), expected);
    }
    assert_eq!(resolver.backend_fetches(), 1);
}

#[tokio::test]
async fn vault_invalid_address_is_an_invalid_setting() {
    init();
    let resolver = token_resolver("not a url", "t");
    let error = resolver
        .resolve(&reference("vault:secret/a#b"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SecretError::InvalidSettings { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not a url"), "{error}");
}

// ---- AWS Secrets Manager (moto) ----------------------------------------------------

#[tokio::test]
async fn aws_whole_string_and_json_fields() {
    init();
    let moto = Moto::start().await.unwrap();
    moto.create_secret("prod/plain", "aws-plain-4c2d")
        .await
        .unwrap();
    moto.create_secret(
        "prod/acme",
        r#"{"username":"acme-user","password":"aws-pw-81fe","port":2121}"#,
    )
    .await
    .unwrap();
    let resolver = aws_resolver(&moto.endpoint);

    let whole = resolved(&resolver, "aws-sm:prod/plain").await;
    assert_eq!(whole.expose(), "aws-plain-4c2d");
    let password = resolved(&resolver, "aws-sm:prod/acme#password").await;
    assert_eq!(password.expose(), "aws-pw-81fe");
    let port = resolved(&resolver, "aws-sm:prod/acme#port").await;
    assert_eq!(port.expose(), "2121");
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn aws_failures_name_the_reference() {
    init();
    let moto = Moto::start().await.unwrap();
    moto.create_secret("prod/acme", r#"{"password":"aws-pw-c0de"}"#)
        .await
        .unwrap();
    moto.create_secret("prod/plain", "aws-plain-not-json-e4f1")
        .await
        .unwrap();
    moto.create_binary_secret("prod/binary", b"\x00\x01binary-77aa")
        .await
        .unwrap();
    let resolver = aws_resolver(&moto.endpoint);

    let text = "aws-sm:prod/nobody#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("secret `{text}`: AWS Secrets Manager has no such secret")
    );

    let text = "aws-sm:prod/acme#passphrase";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::FieldMissing { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("secret `{text}`: the secret has no field `passphrase`")
    );
    assert_names_reference_only(&error, text, &["aws-pw-c0de"]);

    let text = "aws-sm:prod/plain#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::NotJson { .. }), "{error}");
    assert!(error.to_string().contains("not a JSON object"), "{error}");
    assert_names_reference_only(&error, text, &["aws-plain-not-json-e4f1", "not-json"]);

    let text = "aws-sm:prod/binary";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::NotText { .. }), "{error}");
    assert_names_reference_only(&error, text, &["binary-77aa"]);
}

#[tokio::test]
async fn aws_unreachable_is_unavailable_and_transient() {
    init();
    let resolver = aws_resolver(&format!("http://127.0.0.1:{}", free_port()));
    let text = "aws-sm:prod/acme#password";
    let error = resolver.resolve(&reference(text)).await.unwrap_err();
    assert!(matches!(error, SecretError::Unavailable { .. }), "{error}");
    assert!(error.is_transient());
    assert!(
        error
            .to_string()
            .contains("AWS Secrets Manager is unavailable"),
        "{error}"
    );
    assert_names_reference_only(&error, text, &[moto::SECRET_ACCESS_KEY]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_concurrent_resolutions_share_one_request_and_the_ttl_holds() {
    init();
    let moto = Moto::start().await.unwrap();
    moto.create_secret("prod/acme", r#"{"password":"v1"}"#)
        .await
        .unwrap();
    let mut settings = settings(
        None,
        AwsSettings {
            region: Some(moto::REGION.to_string()),
            endpoint_url: Some(moto.endpoint.clone()),
        },
    );
    settings.cache_ttl = Duration::from_millis(1500);
    let resolver = Resolver::new(settings);
    let text = reference("aws-sm:prod/acme#password");
    let requests_before = moto.request_count().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let resolver = resolver.clone();
        let text = text.clone();
        tasks.spawn(async move { resolver.resolve(&text).await });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.unwrap().unwrap().expose(), "v1");
    }
    assert_eq!(resolver.backend_fetches(), 1);
    // Seen from the server too: 24 resolutions, one GetSecretValue.
    assert_eq!(moto.request_count().await - requests_before, 1);

    moto.put_secret("prod/acme", r#"{"password":"v2"}"#)
        .await
        .unwrap();
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "v1");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "v2");
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn vault_over_tls_trusts_the_configured_ca_only() {
    init();
    let bao = OpenBao::start_tls().await.unwrap();
    bao.write_secret("secret", "partners/acme", &[("password", "tls-pw-3a9b")])
        .await
        .unwrap();
    let text = "vault:secret/partners/acme#password";
    let with_ca = |ca_cert: Option<std::path::PathBuf>| {
        let mut vault = vault_with(
            &bao.addr,
            VaultAuth::Token(SecretRef::Literal(ferry_shared::secrets::Secret::new(
                bao.root_token.clone(),
            ))),
        );
        vault.ca_cert = ca_cert;
        Resolver::new(settings(Some(vault), AwsSettings::default()))
    };

    let value = with_ca(bao.ca_cert.clone())
        .resolve(&reference(text))
        .await
        .unwrap();
    assert_eq!(value.expose(), "tls-pw-3a9b");

    // Without the CA the certificate is unknown: a setting to fix, not a retry.
    let error = with_ca(None).resolve(&reference(text)).await.unwrap_err();
    assert!(
        matches!(error, SecretError::InvalidSettings { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not trusted"), "{error}");
    assert_names_reference_only(&error, text, &["tls-pw-3a9b", &bao.root_token]);

    // A CA file that does not exist is named.
    let error = with_ca(Some("/nonexistent/ca.pem".into()))
        .resolve(&reference(text))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SecretError::InvalidSettings { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}

#[tokio::test]
async fn vault_token_rotated_in_its_file_is_picked_up_after_a_403() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret(
        "secret",
        "partners/acme",
        &[("password", "rotated-pw-64d1")],
    )
    .await
    .unwrap();
    bao.create_read_policy("acme", &[("secret", "partners/acme")])
        .await
        .unwrap();
    let first = bao.create_token(&["acme"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write(&token_file, &first);
    let mut settings = settings(
        Some(vault_with(
            &bao.addr,
            VaultAuth::Token(SecretRef::File(token_file.clone())),
        )),
        AwsSettings::default(),
    );
    settings.cache_ttl = Duration::ZERO;
    let resolver = Resolver::new(settings);
    let text = reference("vault:secret/partners/acme#password");
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "rotated-pw-64d1"
    );

    // An agent writes a new token and the old one is revoked: the resolver's next read
    // gets a 403, reads the token file again and retries once.
    let second = bao.create_token(&["acme"]).await.unwrap();
    write(&token_file, &second);
    bao.revoke_token(&first).await.unwrap();
    assert_eq!(
        resolver.resolve(&text).await.unwrap().expose(),
        "rotated-pw-64d1"
    );
}

#[tokio::test]
async fn forget_drops_the_cached_value() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret("secret", "partners/acme", &[("password", "old-pw")])
        .await
        .unwrap();
    let resolver = token_resolver(&bao.addr, &bao.root_token);
    let text = reference("vault:secret/partners/acme#password");
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "old-pw");
    bao.write_secret("secret", "partners/acme", &[("password", "new-pw")])
        .await
        .unwrap();
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "old-pw");
    resolver.forget(&text);
    assert_eq!(resolver.resolve(&text).await.unwrap().expose(), "new-pw");
    assert_eq!(resolver.backend_fetches(), 2);
}

#[tokio::test]
async fn vault_namespace_is_sent_as_x_vault_namespace() {
    init();
    let bao = OpenBao::start().await.unwrap();
    bao.write_secret_in_namespace("team-a", "partners/acme", &[("password", "ns-pw-19c4")])
        .await
        .unwrap();
    let text = reference("vault:secret/partners/acme#password");
    let in_namespace = |namespace: Option<&str>| {
        let mut vault = vault_with(
            &bao.addr,
            VaultAuth::Token(SecretRef::Literal(ferry_shared::secrets::Secret::new(
                bao.root_token.clone(),
            ))),
        );
        vault.namespace = namespace.map(str::to_string);
        Resolver::new(settings(Some(vault), AwsSettings::default()))
    };
    let value = in_namespace(Some("team-a")).resolve(&text).await.unwrap();
    assert_eq!(value.expose(), "ns-pw-19c4");
    // The root namespace has no such secret.
    let error = in_namespace(None).resolve(&text).await.unwrap_err();
    assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
}
