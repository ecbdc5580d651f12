//! Smoke tests of the test bed's FTPS servers, driven by curl.
//!
//! They prove each server kind and option works as `ferry_tests::ftp` promises before (and
//! independently of) ferry's own FTPS client: if one of these fails, the server setup is
//! at fault, not the client.

use std::path::PathBuf;
use std::process::Output;
use std::time::Instant;

use ferry_tests::ftp::{FtpServer, FtpServerKind, FtpServerOptions, TlsCap};
use ferry_tests::pki::{CertVariant, Pki};

/// curl against one test server, with the server's CA and the test user's credentials.
struct Curl<'a> {
    server: &'a FtpServer,
    /// A scratch folder for the CA file, client identity and downloads.
    dir: tempfile::TempDir,
}

impl<'a> Curl<'a> {
    fn new(server: &'a FtpServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &server.pki.ca_cert_pem).unwrap();
        std::fs::write(dir.path().join("client.pem"), &server.pki.client_cert_pem).unwrap();
        std::fs::write(dir.path().join("client.key"), &server.pki.client_key_pem).unwrap();
        Curl { server, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://{}:{}/{path}", self.server.host, self.server.port)
    }

    /// Runs curl with FTPS required, the test CA, the login and `args`.
    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(
            &[
                "--ssl-reqd",
                "--cacert",
                &self.file("ca.pem").to_string_lossy(),
            ],
            args,
        )
        .await
    }

    /// Runs curl with the login, `tls` and `args` (no TLS options of its own).
    async fn run_with(&self, tls: &[&str], args: &[&str]) -> Output {
        let user = format!("{}:{}", self.server.username, self.server.password);
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--user", &user])
            .args(tls)
            .args(args)
            .output()
            .await
            .expect("running curl (installed by scripts/setup-test-env)")
    }

    /// Uploads `data` as `name`, downloads it back, lists the folder; panics with the
    /// server log on any failure.
    async fn round_trip(&self, name: &str, data: &[u8], tls: &[&str]) {
        let local = self.file("upload.bin");
        std::fs::write(&local, data).unwrap();
        let ok = |out: &Output, what: &str| {
            assert!(
                out.status.success(),
                "{what} on {:?} failed ({}): {}\nserver log:\n{}",
                self.server.kind,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.server.log_text()
            );
        };

        let out = self
            .run(&[tls, &["-T", &local.to_string_lossy(), &self.url(name)]].concat())
            .await;
        ok(&out, "upload");
        assert_eq!(std::fs::read(self.server.root.join(name)).unwrap(), data);

        let downloaded = self.file("download.bin");
        let out = self
            .run(&[tls, &["-o", &downloaded.to_string_lossy(), &self.url(name)]].concat())
            .await;
        ok(&out, "download");
        assert_eq!(std::fs::read(&downloaded).unwrap(), data);

        let out = self
            .run(&[tls, &["--list-only", &self.url("")]].concat())
            .await;
        ok(&out, "listing");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.lines().any(|l| l.trim() == name),
            "listing: {listing}"
        );
    }
}

/// Starts a server and prints how long it took.
async fn start(opts: FtpServerOptions) -> FtpServer {
    let began = Instant::now();
    let kind = opts.kind;
    let server = FtpServer::start(opts).await.unwrap();
    eprintln!("{kind:?} started in {:?}", began.elapsed());
    server
}

#[tokio::test]
async fn every_server_kind_uploads_downloads_and_lists() {
    for kind in FtpServerKind::ALL {
        let server = start(FtpServerOptions::new(kind)).await;
        let curl = Curl::new(&server);
        // curl's TLS 1.3 uploads to vsftpd fail now and then (a known vsftpd 3.0.3 issue
        // with OpenSSL clients), so the TLS 1.3 round trip is for the other servers.
        if kind != FtpServerKind::Vsftpd {
            curl.round_trip("hello-tls13.txt", b"hello over TLS 1.3\n", &["--tlsv1.3"])
                .await;
        }
        curl.round_trip(
            "hello-tls12.txt",
            b"hello over TLS 1.2\n",
            &["--tls-max", "1.2"],
        )
        .await;

        // Files the test puts in the root are the server user's: it may rename them.
        server.write_file("in/seed.txt", b"seed").unwrap();
        let out = curl
            .run(&[
                "--tls-max",
                "1.2",
                "-Q",
                "RNFR in/seed.txt",
                "-Q",
                "RNTO in/moved.txt",
                &curl.url(""),
            ])
            .await;
        assert!(
            out.status.success(),
            "{kind:?} rename: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(server.path("in/moved.txt").is_file());
        let out = curl
            .run(&["--tls-max", "1.2", "-Q", "DELE in/moved.txt", &curl.url("")])
            .await;
        assert!(
            out.status.success(),
            "{kind:?} delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!server.path("in/moved.txt").exists());
        assert!(!server.log_text().is_empty());
    }
}

#[tokio::test]
async fn plaintext_login_is_refused_before_tls() {
    for kind in FtpServerKind::ALL {
        let server = start(FtpServerOptions::new(kind)).await;
        let curl = Curl::new(&server);
        let out = curl.run_with(&[], &["--list-only", &curl.url("")]).await;
        assert!(!out.status.success(), "{kind:?} accepted a plaintext login");
    }
}

#[tokio::test]
async fn each_cert_variant_fails_as_expected() {
    let cases = [
        (CertVariant::Expired, "expired"),
        (CertVariant::WrongHost, "match"),
    ];
    for (variant, error) in cases {
        let server = start(FtpServerOptions {
            cert: variant,
            ..FtpServerOptions::new(FtpServerKind::Vsftpd)
        })
        .await;
        let curl = Curl::new(&server);
        let out = curl.run(&["--list-only", &curl.url("")]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(60), "{variant:?}: {stderr}");
        assert!(stderr.contains(error), "{variant:?}: {stderr}");
    }

    // Self-signed: unknown to any CA, but trusted when the client trusts the leaf itself.
    let server = start(FtpServerOptions {
        cert: CertVariant::SelfSigned,
        ..FtpServerOptions::new(FtpServerKind::Vsftpd)
    })
    .await;
    let curl = Curl::new(&server);
    let other_ca = curl.file("other-ca.pem");
    std::fs::write(&other_ca, Pki::generate(CertVariant::Valid).ca_cert_pem).unwrap();
    let out = curl
        .run_with(
            &["--ssl-reqd", "--cacert", &other_ca.to_string_lossy()],
            &["--list-only", &curl.url("")],
        )
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(60), "{stderr}");
    assert!(
        stderr.contains("self-signed") || stderr.contains("self signed"),
        "{stderr}"
    );
    let out = curl
        .run(&["--tls-max", "1.2", "--list-only", &curl.url("")])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A valid certificate from a CA the client does not trust.
    let server = start(FtpServerOptions::new(FtpServerKind::Vsftpd)).await;
    let curl = Curl::new(&server);
    let out = curl
        .run_with(
            &["--ssl-reqd", "--cacert", &other_ca.to_string_lossy()],
            &["--list-only", &curl.url("")],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn fingerprint_is_sha256_of_the_leaf() {
    let pki = Pki::generate(CertVariant::Valid);
    assert_eq!(pki.server_fingerprint_sha256.len(), 64);
    assert!(
        pki.server_fingerprint_sha256
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("leaf.pem");
    std::fs::write(&cert, &pki.server_cert_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let openssl = String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .replace(':', "");
    assert!(
        openssl.trim().ends_with(&pki.server_fingerprint_sha256),
        "{openssl}"
    );
}

#[tokio::test]
async fn max12_servers_refuse_tls13() {
    for kind in FtpServerKind::ALL {
        let server = start(FtpServerOptions {
            tls_cap: TlsCap::Max12,
            ..FtpServerOptions::new(kind)
        })
        .await;
        let curl = Curl::new(&server);
        let out = curl.run(&["--tlsv1.3", "--list-only", &curl.url("")]).await;
        assert!(!out.status.success(), "{kind:?} accepted TLS 1.3");
        let out = curl
            .run(&["--tls-max", "1.2", "--list-only", &curl.url("")])
            .await;
        assert!(
            out.status.success(),
            "{kind:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_text()
        );
    }
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    for kind in [
        FtpServerKind::Vsftpd,
        FtpServerKind::Proftpd,
        FtpServerKind::Pyftpdlib,
    ] {
        let server = start(FtpServerOptions {
            require_client_cert: true,
            ..FtpServerOptions::new(kind)
        })
        .await;
        let curl = Curl::new(&server);
        let out = curl
            .run(&["--tls-max", "1.2", "--list-only", &curl.url("")])
            .await;
        assert!(
            !out.status.success(),
            "{kind:?} accepted a client without certificate"
        );
        let (cert, key) = (curl.file("client.pem"), curl.file("client.key"));
        let identity = [
            "--cert",
            &cert.to_string_lossy(),
            "--key",
            &key.to_string_lossy(),
        ]
        .map(String::from);
        let identity: Vec<&str> = identity.iter().map(String::as_str).collect();
        curl.round_trip(
            "mtls.txt",
            b"mutual TLS\n",
            &[&identity[..], &["--tls-max", "1.2"]].concat(),
        )
        .await;
    }
}

#[tokio::test]
async fn plaintext_pyftpdlib_records_commands() {
    let server = start(FtpServerOptions {
        plaintext_only: true,
        ..FtpServerOptions::new(FtpServerKind::Pyftpdlib)
    })
    .await;
    let curl = Curl::new(&server);
    // A client that demands TLS stops at AUTH: no USER goes out in clear.
    let out = curl.run(&["--list-only", &curl.url("")]).await;
    assert!(!out.status.success());
    let commands = server.received_commands();
    assert!(
        commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.starts_with("USER")),
        "{commands:?}"
    );
    // Plain FTP works.
    server.write_file("plain.txt", b"plain").unwrap();
    let out = curl.run_with(&[], &[&curl.url("plain.txt")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"plain");
    assert!(
        server
            .received_commands()
            .iter()
            .any(|c| c.starts_with("USER"))
    );
}

#[tokio::test]
async fn pyftpdlib_fakes_nat_and_unreachable_passive_ports() {
    let server = start(FtpServerOptions {
        masquerade_address: Some("127.0.0.2".into()),
        ..FtpServerOptions::new(FtpServerKind::Pyftpdlib)
    })
    .await;
    let curl = Curl::new(&server);
    // PASV advertises 127.0.0.2; curl trusting it fails, curl using the control address works.
    let out = curl
        .run(&[
            "--disable-epsv",
            "--no-ftp-skip-pasv-ip",
            "--list-only",
            &curl.url(""),
        ])
        .await;
    assert!(!out.status.success());
    let out = curl
        .run(&[
            "-v",
            "--disable-epsv",
            "--ftp-skip-pasv-ip",
            "--list-only",
            &curl.url(""),
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("(127,0,0,2,"), "{stderr}");

    let server = start(FtpServerOptions {
        passive_ports_unreachable: true,
        ..FtpServerOptions::new(FtpServerKind::Pyftpdlib)
    })
    .await;
    let curl = Curl::new(&server);
    for passive in ["--disable-epsv", "--ftp-pasv"] {
        let out = curl.run(&[passive, "--list-only", &curl.url("")]).await;
        assert_eq!(
            out.status.code(),
            Some(7),
            "{passive}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn servers_run_in_parallel() {
    let began = Instant::now();
    let kinds = [FtpServerKind::ALL, FtpServerKind::ALL].concat();
    let servers: Vec<FtpServer> = start_all(kinds).await;
    eprintln!("{} servers started in {:?}", servers.len(), began.elapsed());
    for server in &servers {
        Curl::new(server)
            .round_trip(
                "parallel.txt",
                format!("{:?}", server.kind).as_bytes(),
                &["--tls-max", "1.2"],
            )
            .await;
    }
    let ports: std::collections::HashSet<u16> = servers.iter().map(|s| s.port).collect();
    assert_eq!(ports.len(), servers.len());
}

/// Starts a server of each of `kinds`, all at once.
async fn start_all(kinds: Vec<FtpServerKind>) -> Vec<FtpServer> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        tasks.spawn(async move {
            (
                i,
                FtpServer::start(FtpServerOptions::new(kind)).await.unwrap(),
            )
        });
    }
    let mut servers: Vec<(usize, FtpServer)> = tasks.join_all().await;
    servers.sort_by_key(|(i, _)| *i);
    servers.into_iter().map(|(_, s)| s).collect()
}
