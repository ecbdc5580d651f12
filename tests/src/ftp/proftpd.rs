//! ProFTPD 1.3.8 with mod_tls, unpacked from the Debian packages into the test bed.
//!
//! It requires TLS session reuse and checks that a data connection resumes the session of
//! ITS control connection; under TLS 1.3 that catches clients that run out of tickets.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::{FTP_USER, FtpServerOptions, Instance, Launch, PASSWORD_HASH, TlsCap, render};
use crate::tools::testbed_home;

const TEMPLATE: &str = include_str!("../../../infra/dev-servers/proftpd.conf");

/// Writes this instance's proftpd.conf and user files, and the command that runs it.
pub(super) fn launch(inst: &Instance, opts: &FtpServerOptions) -> anyhow::Result<Launch> {
    let unpacked = testbed_home().join("proftpd");
    let binary = unpacked.join("usr/sbin/proftpd");
    if !binary.is_file() {
        anyhow::bail!(
            "{} is missing: run scripts/setup-test-env (it unpacks ProFTPD)",
            binary.display()
        );
    }
    let (uid, gid) = inst.owner;
    let root = inst.root.to_string_lossy();
    write_private(
        &inst.dir.join("ftpd.passwd"),
        &format!("{FTP_USER}:{PASSWORD_HASH}:{uid}:{gid}::{root}:/bin/false\n"),
    )?;
    write_private(
        &inst.dir.join("ftpd.group"),
        &format!("{FTP_USER}:x:{gid}:{FTP_USER}\n"),
    )?;
    let protocols = match opts.tls_cap {
        TlsCap::Default => "TLSv1.2 TLSv1.3",
        TlsCap::Max12 => "TLSv1.2",
    };
    let conf = render(
        TEMPLATE,
        &[
            ("PORT", &inst.port.to_string()),
            (
                "MODULES",
                &unpacked.join("usr/lib/proftpd").to_string_lossy(),
            ),
            ("DIR", &inst.dir.to_string_lossy()),
            ("PASV_MIN", &inst.passive_ports.0.to_string()),
            ("PASV_MAX", &inst.passive_ports.1.to_string()),
            ("PROTOCOLS", protocols),
            ("CERT", &inst.cert.to_string_lossy()),
            ("KEY", &inst.key.to_string_lossy()),
            ("CA", &inst.client_ca.to_string_lossy()),
            (
                "VERIFY_CLIENT",
                if opts.require_client_cert {
                    "on"
                } else {
                    "off"
                },
            ),
        ],
    )?;
    let conf_path = inst.dir.join("proftpd.conf");
    std::fs::write(&conf_path, conf)?;
    let mut command = Command::new(binary);
    // -n: foreground, logging to SystemLog.
    command.arg("-n").arg("-c").arg(&conf_path);
    Ok(Launch {
        command,
        logs: vec![
            inst.dir.join("proftpd.log"),
            inst.dir.join("tls.log"),
            inst.dir.join("xferlog"),
        ],
    })
}

/// Writes a file only its owner may read: ProFTPD refuses world-readable user files.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
