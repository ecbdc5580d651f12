//! Pure-FTPd 1.0.50, unpacked from the Debian packages into the test bed.
//!
//! TLS is required (`-Y 3`) but session reuse is not, and it sends no TLS 1.3 tickets:
//! the lenient end of what partners run. Its settings are command-line flags.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::{FTP_USER, FtpServerOptions, Instance, Launch, PASSWORD_HASH, TlsCap, dev_server_file};
use crate::tools::testbed_home;

/// Creates this instance's virtual user database and the command that runs the server.
pub(super) fn launch(inst: &Instance, opts: &FtpServerOptions) -> anyhow::Result<Launch> {
    let unpacked = testbed_home().join("pure-ftpd");
    let binary = unpacked.join("usr/sbin/pure-ftpd");
    if !binary.is_file() {
        bail!(
            "{} is missing: run scripts/setup-test-env (it unpacks Pure-FTPd)",
            binary.display()
        );
    }
    let pdb = inst.dir.join("pureftpd.pdb");
    add_virtual_user(&unpacked.join("usr/bin/pure-pw"), inst, &pdb)?;

    let (first, last) = inst.passive_ports;
    let xferlog = inst.dir.join("xferlog");
    let mut command = Command::new(binary);
    command
        .arg(format!("--bind=127.0.0.1,{}", inst.port))
        .arg(format!("--passiveportrange={first}:{last}"))
        // The address PASV advertises.
        .arg("--forcepassiveip=127.0.0.1")
        .arg(format!("--login=puredb:{}", pdb.display()))
        .arg("--noanonymous")
        .arg("--chrooteveryone")
        .arg("--dontresolve")
        // 3: refuse plaintext control and data connections.
        .arg("--tls=3")
        .arg(format!(
            "--certfile={},{}",
            inst.cert.display(),
            inst.key.display()
        ))
        .arg(format!(
            "--pidfile={}",
            inst.dir.join("pure-ftpd.pid").display()
        ))
        // Files 644, folders 755.
        .arg("--umask=133:022")
        // Pure-FTPd logs sessions to syslog only; the transfer log goes to a file.
        .arg(format!("--altlog=clf:{}", xferlog.display()));
    if opts.tls_cap == TlsCap::Max12 {
        // No flag for the TLS version: cap OpenSSL's defaults instead.
        command.env("OPENSSL_CONF", dev_server_file("openssl-tls12.cnf"));
    }
    Ok(Launch {
        command,
        logs: vec![xferlog],
    })
}

/// Writes the passwd file for [`FTP_USER`] (uid/gid of the root's owner, chrooted in the
/// root: the `/./` suffix) and compiles it into the puredb the server reads. The hash is
/// SHA-512 crypt rather than `pure-pw useradd`'s argon2id, which costs ~1 s per login.
fn add_virtual_user(pure_pw: &Path, inst: &Instance, pdb: &Path) -> anyhow::Result<()> {
    let passwd = inst.dir.join("pureftpd.passwd");
    let (uid, gid) = inst.owner;
    let root = inst.root.display();
    std::fs::write(
        &passwd,
        format!("{FTP_USER}:{PASSWORD_HASH}:{uid}:{gid}::{root}/./::::::::::::\n"),
    )?;
    let out = Command::new(pure_pw)
        .arg("mkdb")
        .arg(pdb)
        .arg("-f")
        .arg(&passwd)
        .output()
        .context("running pure-pw")?;
    if !out.status.success() {
        bail!(
            "pure-pw mkdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
