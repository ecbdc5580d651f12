//! OpenBao (Vault's API) for the secret tests: a dev-mode server on a free loopback port,
//! plus the administration a test needs (KV v2 secrets, policies, tokens, AppRole,
//! Kubernetes auth), done over HTTP with `vaultrs`, the client ferry itself uses.
//!
//! Dev mode keeps everything in memory, unseals itself, mounts KV v2 at `secret/` and
//! accepts a root token chosen here; the server dies with the handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;
use vaultrs::api::auth::approle::requests::SetAppRoleRequest;
use vaultrs::api::auth::kubernetes::requests::{
    ConfigureKubernetesAuthRequest, CreateKubernetesRoleRequest,
};
use vaultrs::api::sys::requests::EnableEngineRequest;
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

use crate::ports::free_port;
use crate::process::ServerProcess;
use crate::tools::find_tool;

/// The audit log's file name in the server's temporary folder.
const AUDIT_LOG: &str = "audit.log";

/// A running OpenBao dev server, killed on drop.
pub struct OpenBao {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token (all rights): for setting up, never for the resolver under test
    /// unless a test means it.
    pub root_token: String,
    /// The CA that signed the server's certificate, when started with [`OpenBao::start_tls`].
    pub ca_cert: Option<PathBuf>,
    client: VaultClient,
    _server: ServerProcess,
    _dir: TempDir,
}

impl OpenBao {
    /// Starts `bao server -dev` (plain HTTP) on a free port of 127.0.0.1 and waits until
    /// it serves requests.
    pub async fn start() -> anyhow::Result<OpenBao> {
        Self::start_with(false, false).await
    }

    /// Like [`OpenBao::start`], with a file audit device (declared in a config file: OpenBao
    /// refuses to enable one through the API) whose entries [`OpenBao::audited_paths`]
    /// reads: proof of which requests a client really sent.
    pub async fn start_audited() -> anyhow::Result<OpenBao> {
        Self::start_with(false, true).await
    }

    /// Like [`OpenBao::start`], but over HTTPS with a certificate from a CA that OpenBao
    /// generates (`-dev-tls`); the CA is at [`OpenBao::ca_cert`].
    pub async fn start_tls() -> anyhow::Result<OpenBao> {
        Self::start_with(true, false).await
    }

    async fn start_with(tls: bool, audit: bool) -> anyhow::Result<OpenBao> {
        let bao = find_tool("bao", &["venv/bin"])?;
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let root_token = format!("root-{}", rand::random::<u64>());
        let mut command = Command::new(bao);
        command
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg("-dev-no-store-token")
            // Keep the CLI's token helper and any state away from the real HOME.
            .env("HOME", dir.path())
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR");
        let audit_log = dir.path().join(AUDIT_LOG);
        if audit {
            let config = dir.path().join("audit.hcl");
            std::fs::write(
                &config,
                format!(
                    "audit \"file\" \"ferry-test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                    audit_log.display()
                ),
            )?;
            command.arg(format!("-config={}", config.display()));
        }
        let tls_dir = dir.path().join("tls");
        if tls {
            std::fs::create_dir_all(&tls_dir)?;
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", tls_dir.display()));
        }
        let log = dir.path().join("openbao.log");
        let server = tokio::task::spawn_blocking(move || {
            ServerProcess::spawn("openbao", command, &log, port, Duration::from_secs(30))
        })
        .await??;
        let (addr, ca_cert) = if tls {
            (
                format!("https://127.0.0.1:{port}"),
                Some(tls_dir.join("vault-ca.pem")),
            )
        } else {
            (format!("http://127.0.0.1:{port}"), None)
        };
        let client = client(&addr, &root_token, ca_cert.as_deref())?;
        let bao = OpenBao {
            addr,
            root_token,
            ca_cert,
            client,
            _server: server,
            _dir: dir,
        };
        bao.wait_until_healthy().await?;
        Ok(bao)
    }

    /// Waits until the server serves authenticated requests (initialized, unsealed, the
    /// root token in place). `vaultrs::sys::health` cannot parse OpenBao's answer (no
    /// `performance_standby` field), so the probe is a token self-lookup.
    async fn wait_until_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match vaultrs::token::lookup_self(&self.client).await {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!(
                    "OpenBao at {} is not ready: {:?}\nlog:\n{}",
                    self.addr,
                    anyhow::Error::from(e),
                    self.log_text()
                ),
            }
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self._server.log_text()
    }

    /// The path of every request the server received so far, in order (`auth/approle/login`,
    /// `auth/token/renew-self`, `secret/data/...`), from the audit device of a server
    /// started with [`OpenBao::start_audited`].
    pub fn audited_paths(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self._dir.path().join(AUDIT_LOG)).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["type"] == "request")
            .filter_map(|entry| entry["request"]["path"].as_str().map(str::to_owned))
            .collect()
    }

    /// Deletes the KV v2 secret `path` under `mount` with all its versions: reads then get 404.
    pub async fn delete_secret(&self, mount: &str, path: &str) -> anyhow::Result<()> {
        vaultrs::kv2::delete_metadata(&self.client, mount, path)
            .await
            .map_err(server_error)
            .with_context(|| format!("deleting {mount}/{path}"))?;
        Ok(())
    }

    /// Revokes every token issued by the AppRole logins (`sys/leases/revoke-prefix`): their
    /// next use, a renewal included, gets a 403.
    pub async fn revoke_approle_tokens(&self) -> anyhow::Result<()> {
        self.raw_post("/v1/sys/leases/revoke-prefix/auth/approle/login", "{}")
            .await
            .context("revoking the AppRole tokens")
    }

    /// Stops (`SIGSTOP`) the server: connections are still accepted by the kernel, but no
    /// request is answered (a store that times out). [`OpenBao::resume`] undoes it.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Resumes a server stopped with [`OpenBao::pause`].
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pgid = rustix::process::Pid::from_raw(self._server.pid() as i32)
            .expect("a server's pid is positive");
        rustix::process::kill_process_group(pgid, signal).expect("signalling OpenBao");
    }

    /// How many audited requests went to `path`.
    pub fn audited_count(&self, path: &str) -> usize {
        self.audited_paths().iter().filter(|p| *p == path).count()
    }

    /// Seals the server: every request then gets `503 Vault is sealed` (a store that is up
    /// but not serving).
    pub async fn seal(&self) -> anyhow::Result<()> {
        vaultrs::sys::seal(&self.client)
            .await
            .map_err(server_error)
            .context("sealing")?;
        Ok(())
    }

    /// A batch-token AppRole role (batch tokens cannot be renewed) issuing tokens with
    /// `policies` that live `token_ttl`; returns its `(role_id, secret_id)`.
    pub async fn create_batch_approle(
        &self,
        name: &str,
        policies: &[&str],
        token_ttl: &str,
    ) -> anyhow::Result<(String, String)> {
        self.approle(name, policies, token_ttl, token_ttl, Some("batch"))
            .await
    }

    /// Writes (a new version of) the KV v2 secret `path` under `mount`.
    pub async fn write_secret(
        &self,
        mount: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let data: HashMap<&str, &str> = fields.iter().copied().collect();
        vaultrs::kv2::set(&self.client, mount, path, &data)
            .await
            .with_context(|| format!("writing {mount}/{path}"))?;
        Ok(())
    }

    /// Writes a KV v2 secret whose fields are any JSON values.
    pub async fn write_json_secret(
        &self,
        mount: &str,
        path: &str,
        data: &serde_json::Value,
    ) -> anyhow::Result<()> {
        vaultrs::kv2::set(&self.client, mount, path, data)
            .await
            .with_context(|| format!("writing {mount}/{path}"))?;
        Ok(())
    }

    /// Creates (or replaces) policy `name` granting `read` on the KV v2 data of each of
    /// `mount/path` (for example `("secret", "partners/acme")`).
    pub async fn create_read_policy(
        &self,
        name: &str,
        secrets: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let policy: String = secrets
            .iter()
            .map(|(mount, path)| {
                format!("path \"{mount}/data/{path}\" {{ capabilities = [\"read\"] }}\n")
            })
            .collect();
        vaultrs::sys::policy::set(&self.client, name, &policy)
            .await
            .with_context(|| format!("creating policy {name}"))?;
        Ok(())
    }

    /// A new token carrying `policies` (plus `default`); with none it carries `default`
    /// only and can read no secret (a 403 on every KV read).
    pub async fn create_token(&self, policies: &[&str]) -> anyhow::Result<String> {
        self.create_token_with_ttl(policies, "1h").await
    }

    /// [`OpenBao::create_token`] with a renewable lease of `ttl` (`"3s"`): it expires unless
    /// renewed.
    pub async fn create_token_with_ttl(
        &self,
        policies: &[&str],
        ttl: &str,
    ) -> anyhow::Result<String> {
        let mut request = CreateTokenRequest::builder();
        request
            .policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .ttl(ttl)
            .renewable(true);
        if policies.is_empty() {
            // With no policy a child token inherits its parent's (root): ask for `default` only.
            request.policies(vec!["default".to_string()]);
        }
        let auth = vaultrs::token::new(&self.client, Some(&mut request))
            .await
            .context("creating a token")?;
        Ok(auth.client_token)
    }

    /// Revokes `token` (and its children): its next use gets a 403.
    pub async fn revoke_token(&self, token: &str) -> anyhow::Result<()> {
        vaultrs::token::revoke(&self.client, token)
            .await
            .map_err(server_error)
            .context("revoking a token")?;
        Ok(())
    }

    /// Creates namespace `name` (an OpenBao 2.3+ feature) with a KV v2 engine at `secret/`,
    /// and writes `fields` at `secret/path` inside it.
    pub async fn write_secret_in_namespace(
        &self,
        name: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.raw_post(&format!("/v1/sys/namespaces/{name}"), "{}")
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&self.addr)
            .token(&self.root_token)
            .namespace(Some(name.to_string()))
            .ca_certs(
                self.ca_cert
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            )
            .identity(None)
            .verify(true);
        let client = VaultClient::new(settings.build().context("namespace client settings")?)?;
        let mut options = EnableEngineRequest::builder();
        options.options(HashMap::from([("version".to_string(), "2".to_string())]));
        vaultrs::sys::mount::enable(&client, "secret", "kv", Some(&mut options))
            .await
            .map_err(server_error)
            .with_context(|| format!("mounting KV v2 in namespace {name}"))?;
        let data: HashMap<&str, &str> = fields.iter().copied().collect();
        vaultrs::kv2::set(&client, "secret", path, &data)
            .await
            .map_err(server_error)
            .with_context(|| format!("writing secret/{path} in namespace {name}"))?;
        Ok(())
    }

    /// A bare HTTP/1.1 POST with the root token, for the few endpoints `vaultrs` lacks
    /// (plain HTTP servers only).
    async fn raw_post(&self, path: &str, body: &str) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = self
            .addr
            .strip_prefix("http://")
            .context("raw requests need a plain HTTP server")?;
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nX-Vault-Token: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.root_token,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response.lines().next().unwrap_or_default();
        if !(status.contains(" 200 ") || status.contains(" 204 ")) {
            bail!("POST {path}: {response}");
        }
        Ok(())
    }

    /// Enables the AppRole auth method at `approle/` (once per server).
    pub async fn enable_approle(&self) -> anyhow::Result<()> {
        vaultrs::sys::auth::enable(&self.client, "approle", "approle", None)
            .await
            .context("enabling AppRole")?;
        Ok(())
    }

    /// Creates AppRole role `name` issuing tokens with `policies` that live `token_ttl`
    /// (Vault syntax: "1h", "2s"), and returns its `(role_id, secret_id)`.
    pub async fn create_approle(
        &self,
        name: &str,
        policies: &[&str],
        token_ttl: &str,
    ) -> anyhow::Result<(String, String)> {
        self.approle(name, policies, token_ttl, token_ttl, None)
            .await
    }

    /// Like [`OpenBao::create_approle`], but its (renewable) tokens may be renewed up to
    /// `token_max_ttl` in all.
    pub async fn create_renewable_approle(
        &self,
        name: &str,
        policies: &[&str],
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> anyhow::Result<(String, String)> {
        self.approle(name, policies, token_ttl, token_max_ttl, None)
            .await
    }

    async fn approle(
        &self,
        name: &str,
        policies: &[&str],
        token_ttl: &str,
        token_max_ttl: &str,
        token_type: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let mut request = SetAppRoleRequest::builder();
        request
            .token_policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .token_ttl(token_ttl)
            .token_max_ttl(token_max_ttl);
        if let Some(token_type) = token_type {
            request.token_type(token_type);
        }
        vaultrs::auth::approle::role::set(&self.client, "approle", name, Some(&mut request))
            .await
            .with_context(|| format!("creating AppRole role {name}"))?;
        let role_id = vaultrs::auth::approle::role::read_id(&self.client, "approle", name)
            .await
            .context("reading the role id")?
            .role_id;
        let secret_id =
            vaultrs::auth::approle::role::secret::generate(&self.client, "approle", name, None)
                .await
                .context("generating a secret id")?
                .secret_id;
        Ok((role_id, secret_id))
    }

    /// Enables Kubernetes auth at `kubernetes/`, pointed at `kubernetes_host` (no cluster
    /// here: a login then fails when OpenBao calls the TokenReview API), with role `role`.
    pub async fn enable_kubernetes(&self, kubernetes_host: &str, role: &str) -> anyhow::Result<()> {
        vaultrs::sys::auth::enable(&self.client, "kubernetes", "kubernetes", None)
            .await
            .context("enabling Kubernetes auth")?;
        // Not in a pod: no local CA or JWT for OpenBao to pick up.
        let mut config = ConfigureKubernetesAuthRequest::builder();
        let ca = rcgen::generate_simple_self_signed(vec!["kubernetes.invalid".to_string()])
            .context("a CA certificate for the fake cluster")?;
        config
            .disable_local_ca_jwt(true)
            .kubernetes_ca_cert(ca.cert.pem());
        vaultrs::auth::kubernetes::configure(
            &self.client,
            "kubernetes",
            kubernetes_host,
            Some(&mut config),
        )
        .await
        .map_err(server_error)
        .context("configuring Kubernetes auth")?;
        let mut request = CreateKubernetesRoleRequest::builder();
        request
            .bound_service_account_names(vec!["ferry-worker".to_string()])
            .bound_service_account_namespaces(vec!["ferry".to_string()]);
        vaultrs::auth::kubernetes::role::create(
            &self.client,
            "kubernetes",
            role,
            Some(&mut request),
        )
        .await
        .context("creating the Kubernetes role")?;
        Ok(())
    }
}

/// A `vaultrs` client for `addr` with `token` (trusting `ca_cert`), ignoring the VAULT_*
/// environment.
fn client(addr: &str, token: &str, ca_cert: Option<&Path>) -> anyhow::Result<VaultClient> {
    let settings = VaultClientSettingsBuilder::default()
        .address(addr)
        .token(token)
        .ca_certs(
            ca_cert
                .map(|p| p.to_string_lossy().into_owned())
                .into_iter()
                .collect(),
        )
        .identity(None)
        .verify(true)
        .timeout(Some(Duration::from_secs(10)))
        .build()
        .context("vault client settings")?;
    Ok(VaultClient::new(settings)?)
}

/// Keeps the server's own error texts (`ClientError`'s Display drops them).
fn server_error(error: vaultrs::error::ClientError) -> anyhow::Error {
    match error {
        vaultrs::error::ClientError::APIError { code, errors } => {
            anyhow::anyhow!("HTTP {code}: {}", errors.join("; "))
        }
        other => other.into(),
    }
}
