//! The FTPS client side of the tests: the session configuration a partner definition for a
//! test-bed server gives, connecting with the server's log in the panic message, and the
//! files the tests send and check (written and hashed streaming, and ferry's leftovers).

use std::path::Path;

use ferry_shared::ftps::{Session, SessionConfig};
use ferry_shared::secrets::Secret;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::ftp::{FtpServer, FtpServerKind, FtpServerOptions};

/// The client configuration a partner definition for `server` would give.
pub fn config(server: &FtpServer) -> SessionConfig {
    let mut cfg = SessionConfig::new(server.host.clone(), server.port, server.username.clone());
    cfg.password = Some(Secret::new(server.password.clone()));
    cfg.tls.ca_cert_pem = Some(server.pki.ca_cert_pem.clone());
    cfg
}

/// Starts a server as `opts` say, or panics with the reason.
pub async fn start(opts: FtpServerOptions) -> FtpServer {
    let kind = opts.kind;
    FtpServer::start(opts)
        .await
        .unwrap_or_else(|e| panic!("starting {kind:?}: {e:#}"))
}

/// Starts a server of `kind` with the defaults.
pub async fn server(kind: FtpServerKind) -> FtpServer {
    start(FtpServerOptions::new(kind)).await
}

/// Connects to `server`, or panics with its log.
pub async fn connect(server: &FtpServer, cfg: &SessionConfig) -> Session {
    match Session::connect(cfg).await {
        Ok(s) => s,
        Err(e) => panic!(
            "connect to {:?}: {e}\nserver log:\n{}",
            server.kind,
            server.log_text()
        ),
    }
}

/// Writes `len` bytes of a deterministic pattern to `path`, streaming; returns their SHA-256.
pub async fn make_file(path: &Path, len: u64, seed: u8) -> [u8; 32] {
    let mut file = tokio::fs::File::create(path).await.unwrap();
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1024 * 1024];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        hasher.update(&chunk[..n]);
        file.write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
        chunk.rotate_left(7);
    }
    file.flush().await.unwrap();
    hasher.finalize().into()
}

/// SHA-256 of a file, streaming.
pub fn hash_file(path: &Path) -> [u8; 32] {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().into()
}

/// Files in a folder whose names start with `.` and end with `.ferry-part` (leftovers).
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ferry-part"))
        .collect()
}
