//! pyftpdlib 2.x, run by `infra/dev-servers/pyftpdlib_server.py` in the test bed's venv.
//!
//! The configurable one: it fakes a PASV address behind NAT, a passive port where nothing
//! listens, and plain FTP, and it records every command it receives.

use std::process::Command;

use anyhow::bail;

use super::{FTP_PASSWORD, FTP_USER, FtpServerOptions, Instance, Launch, TlsCap, dev_server_file};
use crate::ports::free_port;
use crate::tools::testbed_home;

/// The file (in the instance's folder) where the script records the commands it receives.
pub(super) const COMMANDS_LOG: &str = "commands.log";

/// The command that runs the script with this instance's settings.
pub(super) fn launch(inst: &Instance, opts: &FtpServerOptions) -> anyhow::Result<Launch> {
    let python = testbed_home().join("venv/bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: run scripts/setup-test-env (it installs pyftpdlib)",
            python.display()
        );
    }
    let (first, last) = inst.passive_ports;
    let mut command = Command::new(python);
    command
        .arg(dev_server_file("pyftpdlib_server.py"))
        .arg(format!("--port={}", inst.port))
        .arg(format!("--root={}", inst.root.display()))
        .arg(format!("--user={FTP_USER}"))
        .arg(format!("--password={FTP_PASSWORD}"))
        .arg(format!("--passive-ports={first}-{last}"))
        .arg(format!(
            "--commands-log={}",
            inst.dir.join(COMMANDS_LOG).display()
        ));
    if !opts.plaintext_only {
        command
            .arg(format!("--cert={}", inst.cert.display()))
            .arg(format!("--key={}", inst.key.display()));
    }
    if opts.require_client_cert {
        command.arg(format!("--client-ca={}", inst.client_ca.display()));
    }
    if opts.tls_cap == TlsCap::Max12 {
        command.arg("--tls-max-1-2");
    }
    if let Some(address) = &opts.masquerade_address {
        command.arg(format!("--masquerade={address}"));
    }
    if opts.passive_ports_unreachable {
        // A free port nobody listens on; the server advertises it instead of its own.
        command.arg(format!("--unreachable-port={}", free_port()));
    }
    if opts.plaintext_only {
        command.arg("--plaintext");
    }
    for quirk in &opts.quirks {
        command.arg(format!("--quirk={}", quirk.flag()));
    }
    if opts.quirks.contains(&super::Quirk::ListTrickle) {
        command.arg(format!("--trickle-seconds={}", opts.trickle.as_secs_f64()));
    }
    Ok(Launch {
        command,
        logs: vec![],
    })
}
