//! The demo's scratch folder and the ferry configuration it writes there: `ferry.yaml`
//! (the embedded store, a file in the scratch folder), one partner (the local FTPS server, CA verification on with the run's
//! CA file, the password in a file as a `file:` secret reference) and two flows, an
//! upload and a download. The same files `ferry-worker run`, `validate` and `audit`
//! read, so the printed folder can be used with them after the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::partner::Certificates;

/// The partner's id in the configuration.
pub const PARTNER: &str = "demo-partner";
/// The upload flow: the local outbox to the partner's `/incoming`.
pub const UPLOAD_FLOW: &str = "demo-upload";
/// The download flow: the partner's `/outgoing` to the local inbox.
pub const DOWNLOAD_FLOW: &str = "demo-download";
/// The partner's account.
pub const USERNAME: &str = "demo";

/// Where everything of one demo lives, under one scratch folder.
pub struct Layout {
    /// The scratch folder (kept after the demo, printed).
    pub scratch: PathBuf,
    /// The configuration directory (`--config`).
    pub config: PathBuf,
    /// Files the upload flow sends.
    pub outbox: PathBuf,
    /// Where the download flow puts what it fetches.
    pub inbox: PathBuf,
    /// The partner's disk (its FTP root).
    pub partner_root: PathBuf,
    /// Certificates and the partner password.
    pub secrets: PathBuf,
    /// The fleet demo's process logs (scheduler, workers, OpenBao).
    pub logs: PathBuf,
}

impl Layout {
    /// Creates a fresh scratch folder under the system's temporary directory.
    pub fn create() -> anyhow::Result<Layout> {
        let scratch = tempfile::Builder::new()
            .prefix("ferry-demo-")
            .tempdir()?
            .keep();
        let layout = Layout {
            config: scratch.join("config"),
            outbox: scratch.join("local/outbox"),
            inbox: scratch.join("local/inbox"),
            partner_root: scratch.join("partner"),
            secrets: scratch.join("secrets"),
            logs: scratch.join("logs"),
            scratch,
        };
        for dir in [
            &layout.config.join("partners"),
            &layout.config.join("flows"),
            &layout.outbox,
            &layout.inbox,
            &layout.partner_root.join("incoming"),
            &layout.partner_root.join("outgoing"),
            &layout.secrets,
            &layout.logs,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(layout)
    }

    /// The partner's `/incoming` folder on its disk.
    pub fn partner_incoming(&self) -> PathBuf {
        self.partner_root.join("incoming")
    }

    /// The partner's `/outgoing` folder on its disk.
    pub fn partner_outgoing(&self) -> PathBuf {
        self.partner_root.join("outgoing")
    }
}

/// Writes the configuration; returns the `--config` directory.
pub fn write(
    layout: &Layout,
    partner: SocketAddr,
    certificates: &Certificates,
    password: &str,
    store: &Path,
) -> anyhow::Result<PathBuf> {
    let password_file = layout.secrets.join("partner-password");
    std::fs::write(&password_file, password)?;
    std::fs::write(layout.config.join("ferry.yaml"), settings(store))?;
    std::fs::write(
        layout
            .config
            .join("partners")
            .join(format!("{PARTNER}.yaml")),
        partner_yaml(
            partner,
            &certificates.ca_cert,
            &format!("file:{}", password_file.display()),
        ),
    )?;
    std::fs::write(
        layout.config.join("flows").join("demo.yaml"),
        flows_yaml(layout),
    )?;
    Ok(layout.config.clone())
}

/// `ferry.yaml`: the embedded store (no Redis) and the audit trail; everything else
/// takes its default.
fn settings(store: &Path) -> String {
    format!(
        "# Written by `ferry-worker demo`.\n\
         # One machine, no Redis: delivery records, claims, locks and the audit trail live in\n\
         # one embedded database file.\n\
         store:\n\
         \x20 kind: embedded\n\
         \x20 path: {path}\n\
         audit:\n\
         \x20 # One hash-chained record per file event: `ferry-worker audit --flow F`.\n\
         \x20 enabled: true\n",
        path = quoted(&store.display().to_string()),
    )
}

/// The partner: the demo server, explicit TLS, the run's CA verified, no pin; the password
/// is the secret reference `password` (a `file:` one alone, a `vault:` one in a fleet).
pub(super) fn partner_yaml(partner: SocketAddr, ca_cert: &Path, password: &str) -> String {
    format!(
        "# The demo's local FTPS server (libunftp in the demo process).\n\
         id: {PARTNER}\n\
         display_name: Demo partner on loopback\n\
         protocol: ftps\n\
         ftps:\n\
         \x20 connection:\n\
         \x20   host: {host}\n\
         \x20   port: {port}\n\
         \x20   passive: true\n\
         \x20   max_connections: 2\n\
         \x20 auth:\n\
         \x20   username: {USERNAME}\n\
         \x20   password: {password}\n\
         \x20 tls:\n\
         \x20   mode: explicit\n\
         \x20   # The CA made for this run: the server's certificate is verified against it.\n\
         \x20   ca_cert: {ca}\n\
         \x20   insecure_skip_verify: false\n",
        host = partner.ip(),
        port = partner.port(),
        password = quoted(password),
        ca = quoted(&format!("file:{}", ca_cert.display())),
    )
}

/// The two flows. No schedule: the demo runs them itself, as `ferry-worker run` does (the
/// fleet demo asks the scheduler's HTTP trigger).
pub(super) fn flows_yaml(layout: &Layout) -> String {
    format!(
        "flows:\n\
         \x20 {UPLOAD_FLOW}:\n\
         \x20   description: Orders from the local outbox to the partner\n\
         \x20   direction: upload\n\
         \x20   target:\n\
         \x20     partner: {PARTNER}\n\
         \x20     path: /incoming\n\
         \x20   local:\n\
         \x20     path: {outbox}\n\
         \x20   files:\n\
         \x20     - pattern: \"*.csv\"\n\
         \x20   idempotency_mode: hash\n\
         \x20   delete_after_upload: false\n\
         \x20   # The sample files were just written: no need to wait for them to settle.\n\
         \x20   min_file_age: 0s\n\
         \x20 {DOWNLOAD_FLOW}:\n\
         \x20   description: Statements from the partner to the local inbox\n\
         \x20   direction: download\n\
         \x20   source:\n\
         \x20     partner: {PARTNER}\n\
         \x20     path: /outgoing\n\
         \x20   local:\n\
         \x20     path: {inbox}\n\
         \x20   files:\n\
         \x20     - pattern: \"*.csv\"\n\
         \x20   idempotency_mode: hash\n\
         \x20   delete_after_download: false\n\
         \x20   min_file_age: 0s\n",
        outbox = quoted(&layout.outbox.display().to_string()),
        inbox = quoted(&layout.inbox.display().to_string()),
    )
}

/// A YAML double-quoted scalar (a JSON string is one) for a value holding a path.
pub(super) fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
