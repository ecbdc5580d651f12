//! Debian's ftpd-ssl (linux-ftpd-ssl 0.17, the BSD ftpd with OpenSSL), unpacked from its
//! package into the test bed and run inetd-style under socat.
//!
//! The old server partners still run: no `FEAT` (so no `MLSD`, no `SIZE`), EPSV yes, `-z
//! secure` (`PROT P` only). It accepts a data connection's TLS handshake only when the
//! ClientHello is already waiting as it handles the command, which is why ferry starts the
//! data handshake before it sends the command. Its build never loads its certificate: the
//! LD_PRELOAD shim `infra/dev-servers/ftpd-ssl-certshim.c` (built by the setup script) does.
//! There is no chroot: the user's Unix home is its root, so FTP paths are the absolute local
//! paths of the instance's folder ([`super::FtpServer::remote_root`]).

use std::process::Command;

use anyhow::bail;

use super::{FtpServerOptions, Instance, Launch, TlsCap, dev_server_file};
use crate::tools::testbed_home;

/// Where `scripts/setup.d/ftp-servers.sh` builds the certificate shim.
const SHIM: &str = "/usr/local/lib/ferry-testbed/ftpd-ssl-certshim.so";

/// The command that runs the server on this instance's port.
pub(super) fn launch(inst: &Instance, opts: &FtpServerOptions) -> anyhow::Result<Launch> {
    let unpacked = testbed_home().join("ftpd-ssl");
    let binary = unpacked.join("usr/sbin/in.ftpd");
    // Outside the test bed's home: the server runs /bin/ls as the logged-in user with the
    // shim preloaded, and that user cannot read root's cache.
    let shim = std::path::PathBuf::from(SHIM);
    for needed in [&binary, &shim] {
        if !needed.is_file() {
            bail!(
                "{} is missing: run scripts/setup-test-env (it unpacks ftpd-ssl and builds its shim)",
                needed.display()
            );
        }
    }
    let mut command = Command::new("socat");
    command
        .arg(format!(
            "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork",
            inst.port
        ))
        // socat splits the command line at spaces itself.
        .arg(format!("EXEC:{} -4 -n -z secure,nofork", binary.display()))
        .env("LD_PRELOAD", &shim)
        .env("FTPD_SSL_CERT", &inst.cert)
        .env("FTPD_SSL_KEY", &inst.key);
    if opts.tls_cap == TlsCap::Max12 {
        command.env("OPENSSL_CONF", dev_server_file("openssl-tls12.cnf"));
    }
    Ok(Launch {
        command,
        logs: vec![],
    })
}
