//! The demo's FTPS partner: a real FTP server (libunftp) in this process, on 127.0.0.1,
//! that requires explicit TLS (`AUTH TLS`) on the control channel and on every data
//! channel (`PROT P`), presents a server certificate signed by a CA made for this run,
//! accepts one user with a password, and opens its passive data ports on loopback.
//!
//! It serves a folder of the demo's scratch directory, so the walkthrough can show each
//! uploaded file on the partner's disk. [`Partner::stop`] shuts it down and checks that
//! nothing is left listening on its port.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use libunftp::ServerBuilder;
use libunftp::options::{FtpsRequired, PassiveHost, Shutdown};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal};
use unftp_sbe_fs::Filesystem;

/// The passive data ports the partner picks from (on 127.0.0.1).
const PASSIVE_PORTS: std::ops::RangeInclusive<u16> = 50000..=50999;

/// The PEM files of the run's certificates, written in the scratch directory.
pub struct Certificates {
    /// The CA that signed the server certificate: ferry's `tls.ca_cert`.
    pub ca_cert: PathBuf,
    /// The server's certificate chain (leaf, then CA).
    pub server_chain: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

impl Certificates {
    /// Makes a CA and a server certificate for `localhost` and 127.0.0.1 (valid one day)
    /// and writes them under `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Certificates> {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferry demo CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut ca_params);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &ca)?;

        std::fs::create_dir_all(dir)?;
        let certificates = Certificates {
            ca_cert: dir.join("demo-ca.pem"),
            server_chain: dir.join("partner-chain.pem"),
            server_key: dir.join("partner-key.pem"),
        };
        std::fs::write(&certificates.ca_cert, ca.pem())?;
        std::fs::write(
            &certificates.server_chain,
            format!("{}{}", leaf.pem(), ca.pem()),
        )?;
        std::fs::write(&certificates.server_key, key.serialize_pem())?;
        Ok(certificates)
    }
}

/// From the start of last year to the start of the year after next: valid for the run
/// whatever the clock's time zone (the files go with the scratch folder).
fn set_validity(params: &mut CertificateParams) {
    let year = chrono::Datelike::year(&chrono::Utc::now());
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

/// The one account of the demo partner.
#[derive(Debug)]
struct OneUser {
    username: String,
    password: String,
}

#[async_trait::async_trait]
impl Authenticator for OneUser {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        if username != self.username {
            return Err(AuthenticationError::BadUser);
        }
        if creds.password.as_deref() != Some(self.password.as_str()) {
            return Err(AuthenticationError::BadPassword);
        }
        Ok(Principal {
            username: username.to_owned(),
        })
    }
}

/// The running partner.
pub struct Partner {
    /// Its control address (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), libunftp::ServerError>>,
}

impl Partner {
    /// Starts the server on a free loopback port, serving `root`, and waits until it
    /// accepts connections.
    pub async fn start(
        root: &Path,
        certificates: &Certificates,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Partner> {
        let root = root.to_path_buf();
        // Opened once here so that a missing folder is an error, not a panic in a session.
        Filesystem::new(root.clone())
            .with_context(|| format!("opening the partner's folder {}", root.display()))?;
        let port = free_port()?;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let (stop, stopped) = oneshot::channel::<()>();
        let authenticator = Arc::new(OneUser {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        let server = ServerBuilder::with_authenticator(
            Box::new(move || Filesystem::new(root.clone()).expect("opened above")),
            authenticator,
        )
        .greeting("ferry demo partner (FTPS required)")
        .ftps(
            certificates.server_chain.clone(),
            certificates.server_key.clone(),
        )
        .ftps_required(FtpsRequired::All, FtpsRequired::All)
        .passive_host(PassiveHost::Ip(Ipv4Addr::LOCALHOST))
        .passive_ports(PASSIVE_PORTS)
        .shutdown_indicator(async move {
            let _ = stopped.await;
            Shutdown::new().grace_period(Duration::from_secs(2))
        })
        .build()
        .context("building the demo FTPS partner")?;
        let task = tokio::spawn(server.listen(addr.to_string()));
        let partner = Partner {
            addr,
            stop: Some(stop),
            task,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(partner);
            }
            if partner.task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Partner { task, .. } = partner;
        match task.await {
            Ok(Err(error)) => Err(error).context("the demo FTPS partner did not start"),
            _ => bail!("the demo FTPS partner did not start listening on {addr}"),
        }
    }

    /// Shuts the server down and checks that its port no longer accepts connections.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => return Err(error).context("the demo FTPS partner stopped"),
            Ok(Err(join)) => bail!("the demo FTPS partner's task failed: {join}"),
            Err(_) => {
                self.task.abort();
                bail!("the demo FTPS partner did not stop within 10s");
            }
        }
        if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            bail!("{} still accepts connections after the stop", self.addr);
        }
        Ok(())
    }
}

/// A port free on 127.0.0.1 right now (the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// The demo partner refuses a login on a plain control channel (reply 534): a
    /// client must say `AUTH TLS` first. After the stop nothing listens on its port.
    #[tokio::test]
    async fn the_partner_refuses_a_login_without_tls_and_stops_listening() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let certificates = Certificates::generate(scratch.path()).expect("certificates");
        let partner = Partner::start(scratch.path(), &certificates, "demo", "secret")
            .await
            .expect("partner");

        let stream = tokio::net::TcpStream::connect(partner.addr)
            .await
            .expect("connect");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines.next_line().await.expect("read").expect("greeting");
        assert!(greeting.starts_with("220"), "{greeting}");
        write.write_all(b"USER demo\r\n").await.expect("write");
        let reply = lines.next_line().await.expect("read").expect("reply");
        assert!(reply.starts_with("534"), "plain USER got {reply:?}");
        drop((lines, write));

        let addr = partner.addr;
        partner.stop().await.expect("stop");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
