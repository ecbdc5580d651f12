//! Real FTPS servers for the tests: vsftpd, ProFTPD, Pure-FTPd and pyftpdlib.
//!
//! ferry must work with the servers its partners run, and each of them has its own idea of
//! TLS session reuse, listings and errors, so the FTPS client is tested against the real
//! thing. Each [`FtpServer`] is a child process on free loopback ports with its own temp
//! dir, certificates ([`Pki`]) and user, and is stopped when dropped, so tests run in
//! parallel. The binaries come from `scripts/setup.d/ftp-servers.sh`; the configs live in
//! `infra/dev-servers/`.

mod ftpd_ssl;
mod proftpd;
mod pureftpd;
mod pyftpdlib;
mod vsftpd;

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::pki::{CertVariant, Pki};
use crate::ports::{free_port, free_port_range};
use crate::process::ServerProcess;

/// The account every server kind logs in: a system user for vsftpd (PAM), a virtual user
/// with the same name, uid and gid elsewhere. Created by `scripts/setup.d/ftp-servers.sh`.
pub const FTP_USER: &str = "ferry-ftp";
/// The test account's password (set by `scripts/setup.d/ftp-servers.sh`).
pub const FTP_PASSWORD: &str = "ferry-ftp-test-password";
/// SHA-512 crypt of [`FTP_PASSWORD`] (`openssl passwd -6 -salt ferrytestbed ...`), for the
/// virtual users of ProFTPD and Pure-FTPd.
const PASSWORD_HASH: &str = "$6$ferrytestbed$H0.j9cNllRl3Je8uVLPeC3Qoz0uMk.TiWkChONg6Ui8fGiPA4GCdCKsl6a/H5c.ENzmcsvECof9JIr0a.SgKK0";

/// How many passive ports each instance reserves.
const PASSIVE_PORTS: u16 = 20;
/// How long a server may take to listen (they take well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Which FTPS server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpServerKind {
    /// vsftpd 3.0.3 (Debian package): requires TLS session reuse on data connections.
    Vsftpd,
    /// ProFTPD 1.3.8 with mod_tls: requires TLS session reuse, checked per control session.
    Proftpd,
    /// Pure-FTPd 1.0.50: TLS required, no session reuse required.
    PureFtpd,
    /// pyftpdlib 2.x: the one that can fake NAT, unreachable passive ports and plain FTP.
    Pyftpdlib,
    /// Debian's ftpd-ssl 0.17 (old OpenSSL BSD ftpd): no FEAT, no chroot (paths are absolute
    /// local paths, see [`FtpServer::remote_root`]). Not in [`FtpServerKind::ALL`].
    FtpdSsl,
}

impl FtpServerKind {
    /// The chrooted kinds, for tests that run against all of them.
    pub const ALL: [FtpServerKind; 4] = [
        FtpServerKind::Vsftpd,
        FtpServerKind::Proftpd,
        FtpServerKind::PureFtpd,
        FtpServerKind::Pyftpdlib,
    ];
}

/// Which TLS versions the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsCap {
    /// TLS 1.2 and 1.3.
    #[default]
    Default,
    /// TLS 1.2 only: the server refuses TLS 1.3.
    Max12,
}

/// A way a partner's server misbehaves, played by pyftpdlib (`--quirk` of
/// `infra/dev-servers/pyftpdlib_server.py`, where each is implemented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// `RNFR` always answers 550, as if a partner-side hook had taken the file.
    RnfrRefused,
    /// `RNTO` answers 553 when the target exists (no rename over an existing file).
    RntoNoOverwrite,
    /// `RNTO` always answers 553.
    RntoRefused,
    /// Data connections go to a socket that never answers TLS; `STOR`/`RETR`/`LIST`/`MLSD`
    /// answer `150` then `425` on the control connection.
    ReplyDuringDataHandshake,
    /// `FEAT` lists `MLST`, `MLSD` answers 500.
    MlsdRefused,
    /// Listings send one line every `trickle_seconds`.
    ListTrickle,
    /// Listings never end.
    ListEndless,
    /// `RETR` sends half the file, closes without TLS `close_notify`, then answers 226.
    CutDownloads,
    /// `MDTM name` answers `213 name`: a test names its files after the replies it wants.
    MdtmEchoesName,
    /// The first `STOR` the server receives answers 450 (transient); later ones are served.
    StorRefusedOnce,
    /// `FEAT` lists `XSHA256`, which answers a SHA-256 of zeros whatever the file.
    Xsha256Lies,
    /// The first `STOR` is cut after [`CUT_UPLOAD_AT`] bytes (the file keeps that many, the
    /// data connection closes without TLS `close_notify`, `STOR` answers 426).
    CutFirstUpload,
    /// The first `RETR` is cut after [`CUT_DOWNLOAD_AT`] bytes (the data connection closes
    /// without TLS `close_notify`, `RETR` answers 426); later ones, `REST` included, are
    /// served whole.
    CutFirstDownload,
    /// `REST` answers 350, but the next `RETR` sends the file from its start.
    RestIgnored,
    /// Names are the bytes on the server's disk, sent and taken as they are (an old server
    /// on a Latin-1 disk).
    Latin1Names,
    /// Listings (`LIST` and `MLSD`) show each file one byte larger than it is; `SIZE` tells
    /// the truth.
    ListedSizesOff,
    /// The `226` after `STOR` names the bytes received, as Serv-U does.
    StorReplyCounts,
    /// The `226` after `STOR` names one byte more than it received.
    StorReplyCountsOff,
}

/// Where [`Quirk::CutFirstUpload`] cuts (the server's `--cut-upload-at` default): 120 MiB.
pub const CUT_UPLOAD_AT: u64 = 120 * 1024 * 1024;

/// Where [`Quirk::CutFirstDownload`] cuts (the server's `--cut-download-at` default):
/// 120 MiB, 60% of a 200 MiB file.
pub const CUT_DOWNLOAD_AT: u64 = 120 * 1024 * 1024;

impl Quirk {
    pub(super) fn flag(self) -> &'static str {
        match self {
            Quirk::RnfrRefused => "rnfr-550",
            Quirk::RntoNoOverwrite => "rnto-no-overwrite",
            Quirk::RntoRefused => "rnto-553",
            Quirk::ReplyDuringDataHandshake => "reply-during-data-handshake",
            Quirk::MlsdRefused => "mlsd-refused",
            Quirk::ListTrickle => "list-trickle",
            Quirk::ListEndless => "list-endless",
            Quirk::CutDownloads => "cut-downloads",
            Quirk::MdtmEchoesName => "mdtm-echoes-name",
            Quirk::StorRefusedOnce => "stor-450-once",
            Quirk::Xsha256Lies => "xsha256-lies",
            Quirk::CutFirstUpload => "cut-first-upload",
            Quirk::Latin1Names => "latin1-names",
            Quirk::CutFirstDownload => "cut-first-download",
            Quirk::RestIgnored => "rest-ignored",
            Quirk::ListedSizesOff => "listed-sizes-off",
            Quirk::StorReplyCounts => "stor-reply-counts",
            Quirk::StorReplyCountsOff => "stor-reply-counts-off",
        }
    }
}

/// How to start an [`FtpServer`]; `new(kind)` gives the defaults.
#[derive(Debug, Clone)]
pub struct FtpServerOptions {
    /// Which server.
    pub kind: FtpServerKind,
    /// The server certificate's flavour.
    pub cert: CertVariant,
    /// TLS versions the server accepts.
    pub tls_cap: TlsCap,
    /// Mutual TLS: the server demands a client certificate signed by the test CA
    /// (vsftpd, ProFTPD, pyftpdlib).
    pub require_client_cert: bool,
    /// pyftpdlib only: PASV advertises this address instead of 127.0.0.1 (a NAT test;
    /// use another loopback address such as "127.0.0.2").
    pub masquerade_address: Option<String>,
    /// pyftpdlib only: PASV/EPSV advertise a port on 127.0.0.1 where nothing listens.
    pub passive_ports_unreachable: bool,
    /// pyftpdlib only: plain FTP without TLS (AUTH TLS answered with 500).
    pub plaintext_only: bool,
    /// pyftpdlib only: the ways it misbehaves.
    pub quirks: Vec<Quirk>,
    /// pyftpdlib only: the pause between two listing lines under [`Quirk::ListTrickle`].
    pub trickle: Duration,
    /// vsftpd only: `LIST` and `MDTM` show the wall-clock time of this IANA zone
    /// (`use_localtime=YES`, the server's `TZ`), as servers set up for local users do.
    /// vsftpd fixes the zone's offset when it starts (no daylight-saving change after).
    pub local_timezone: Option<String>,
}

impl FtpServerOptions {
    /// Defaults for `kind`: valid certificate, TLS 1.2 and 1.3, no client certificate.
    pub fn new(kind: FtpServerKind) -> Self {
        FtpServerOptions {
            kind,
            cert: CertVariant::Valid,
            tls_cap: TlsCap::Default,
            require_client_cert: false,
            masquerade_address: None,
            passive_ports_unreachable: false,
            plaintext_only: false,
            quirks: Vec::new(),
            trickle: Duration::from_secs(100),
            local_timezone: None,
        }
    }

    /// Defaults for pyftpdlib with `quirks`.
    pub fn misbehaving(quirks: &[Quirk]) -> Self {
        FtpServerOptions {
            quirks: quirks.to_vec(),
            ..FtpServerOptions::new(FtpServerKind::Pyftpdlib)
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let pyftpdlib_only = self.masquerade_address.is_some()
            || self.passive_ports_unreachable
            || self.plaintext_only
            || !self.quirks.is_empty();
        if pyftpdlib_only && self.kind != FtpServerKind::Pyftpdlib {
            bail!(
                "masquerade_address, passive_ports_unreachable, plaintext_only and quirks need pyftpdlib, not {:?}",
                self.kind
            );
        }
        if self.local_timezone.is_some() && self.kind != FtpServerKind::Vsftpd {
            bail!("local_timezone needs vsftpd, not {:?}", self.kind);
        }
        if self.require_client_cert
            && matches!(self.kind, FtpServerKind::PureFtpd | FtpServerKind::FtpdSsl)
        {
            bail!(
                "{:?} cannot verify client certificates here: use another server kind",
                self.kind
            );
        }
        Ok(())
    }
}

/// A running FTPS server on 127.0.0.1; dropping it stops the server and removes its files.
pub struct FtpServer {
    /// Which server this is.
    pub kind: FtpServerKind,
    /// Always "127.0.0.1".
    pub host: String,
    /// The control port.
    pub port: u16,
    /// The login name.
    pub username: String,
    /// The login password.
    pub password: String,
    /// The local folder that is the user's FTP root: tests read and write files here.
    pub root: PathBuf,
    /// The FTP path of [`Self::root`]: `/` for the chrooted servers, the folder's absolute
    /// path for ftpd-ssl.
    pub remote_root: String,
    /// The certificates the server uses (and the client identity it accepts).
    pub pki: Pki,
    /// The passive port range the server uses (inclusive).
    pub passive_ports: (u16, u16),
    /// Declared before `dir`: the process must die before its folder goes.
    process: ServerProcess,
    /// Server logs besides the process's own output, shown by [`FtpServer::log_text`].
    extra_logs: Vec<PathBuf>,
    owner: (u32, u32),
    dir: TempDir,
}

/// What the per-kind modules get to write their configuration.
struct Instance {
    /// This instance's folder (configs, certificates, logs).
    dir: PathBuf,
    root: PathBuf,
    port: u16,
    passive_ports: (u16, u16),
    /// uid and gid of [`FTP_USER`], who owns `root`.
    owner: (u32, u32),
    cert: PathBuf,
    key: PathBuf,
    /// The CA that client certificates must chain to.
    client_ca: PathBuf,
}

/// How a per-kind module launches its server.
struct Launch {
    command: Command,
    /// Log files the server writes besides stdout/stderr.
    logs: Vec<PathBuf>,
}

impl FtpServer {
    /// Starts a server as `opts` says; it accepts connections when this returns.
    pub async fn start(opts: FtpServerOptions) -> anyhow::Result<FtpServer> {
        tokio::task::spawn_blocking(move || Self::start_blocking(opts))
            .await
            .context("FTP server start task")?
    }

    fn start_blocking(opts: FtpServerOptions) -> anyhow::Result<FtpServer> {
        opts.check()?;
        let owner = account_ids(FTP_USER)?;
        let pki = Pki::generate(opts.cert);
        let dir = tempfile::Builder::new().prefix("ferry-ftp-").tempdir()?;
        // The server's user must reach its root inside this folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root)?;
        chown(&root, Some(owner.0), Some(owner.1)).context("giving the FTP root to ferry-ftp")?;
        let inst = Instance {
            dir: dir.path().to_path_buf(),
            root: root.clone(),
            port: free_port(),
            passive_ports: free_port_range(PASSIVE_PORTS),
            owner,
            cert: write(dir.path(), "server.crt", &pki.server_cert_pem)?,
            key: write(dir.path(), "server.key", &pki.server_key_pem)?,
            client_ca: write(dir.path(), "client-ca.crt", &pki.client_ca_cert_pem)?,
        };
        let launch = match opts.kind {
            FtpServerKind::Vsftpd => vsftpd::launch(&inst, &opts)?,
            FtpServerKind::Proftpd => proftpd::launch(&inst, &opts)?,
            FtpServerKind::PureFtpd => pureftpd::launch(&inst, &opts)?,
            FtpServerKind::Pyftpdlib => pyftpdlib::launch(&inst, &opts)?,
            FtpServerKind::FtpdSsl => ftpd_ssl::launch(&inst, &opts)?,
        };
        let remote_root = match opts.kind {
            FtpServerKind::FtpdSsl => root.display().to_string(),
            _ => "/".to_string(),
        };
        let name = format!("{:?}", opts.kind);
        let process = ServerProcess::spawn(
            &name,
            launch.command,
            &inst.dir.join("server.log"),
            inst.port,
            START_TIMEOUT,
        )?;
        Ok(FtpServer {
            kind: opts.kind,
            host: "127.0.0.1".to_string(),
            port: inst.port,
            username: FTP_USER.to_string(),
            password: FTP_PASSWORD.to_string(),
            root,
            remote_root,
            pki,
            passive_ports: inst.passive_ports,
            process,
            extra_logs: launch.logs,
            owner,
            dir,
        })
    }

    /// The server's logs so far: its output, then its own log files (protocol, TLS and
    /// transfer logs where the server has them), each under a `==> name <==` header.
    pub fn log_text(&self) -> String {
        let mut text = format!("==> output <==\n{}", self.process.log_text());
        for log in &self.extra_logs {
            let name = log.file_name().unwrap_or_default().to_string_lossy();
            let body = std::fs::read_to_string(log).unwrap_or_default();
            text.push_str(&format!("==> {name} <==\n{body}"));
        }
        text
    }

    /// Every command line the server received, in order (pyftpdlib only, password
    /// included; empty for the others): proves, for example, that no USER went in clear.
    pub fn received_commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(pyftpdlib::COMMANDS_LOG))
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The FTP path of `relative` (such as "in/a.txt"): under [`Self::remote_root`].
    pub fn remote(&self, relative: &str) -> String {
        let relative = relative.trim_start_matches('/');
        format!("{}/{relative}", self.remote_root.trim_end_matches('/'))
    }

    /// The local path of `relative` (an FTP path such as "in/a.txt") inside [`Self::root`].
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    /// Writes a file under the FTP root (creating folders), owned by the FTP user so that
    /// the server may overwrite, rename or delete it. Returns its local path.
    pub fn write_file(&self, relative: &str, contents: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            self.create_dir(parent.strip_prefix(&self.root).unwrap_or(Path::new("")))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        chown(&path, Some(self.owner.0), Some(self.owner.1))?;
        Ok(path)
    }

    /// Sets the modification time of a file under the FTP root (as a partner's process that
    /// wrote it at `at` would have left it).
    pub fn set_modified(&self, relative: &str, at: SystemTime) -> anyhow::Result<()> {
        let path = self.path(relative);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(at))
            .with_context(|| format!("setting the modification time of {}", path.display()))
    }

    /// Creates a folder (and its parents) under the FTP root, owned by the FTP user.
    pub fn create_dir(&self, relative: impl AsRef<Path>) -> anyhow::Result<PathBuf> {
        let mut path = self.root.clone();
        for part in relative.as_ref().components() {
            path.push(part);
            if !path.is_dir() {
                std::fs::create_dir(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                chown(&path, Some(self.owner.0), Some(self.owner.1))?;
            }
        }
        Ok(path)
    }
}

/// Writes `contents` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Fills a config template from `infra/dev-servers/`: every `{{NAME}}` must have a value.
fn render(template: &str, values: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut text = template.to_string();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        bail!(
            "config template has an unfilled value near: {}",
            &text[at..]
        );
    }
    Ok(text)
}

/// The file `infra/dev-servers/NAME` of this workspace.
fn dev_server_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/dev-servers")
        .join(name)
}

/// uid and gid of a system account, from /etc/passwd.
fn account_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == user)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .with_context(|| {
            format!("system user `{user}` is missing: run scripts/setup-test-env (it creates it)")
        })
}
