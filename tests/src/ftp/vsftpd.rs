//! vsftpd 3.0.3: the Debian package, one standalone foreground process per test.
//!
//! It is the strictest about TLS session reuse (`require_ssl_reuse=YES`) and logs users in
//! through PAM, hence the system user made by `scripts/setup.d/ftp-servers.sh`.

use std::process::Command;

use super::{FtpServerOptions, Instance, Launch, TlsCap, dev_server_file, render};
use crate::tools::find_tool;

const TEMPLATE: &str = include_str!("../../../infra/dev-servers/vsftpd.conf");

/// Writes this instance's vsftpd.conf and the command that runs it.
pub(super) fn launch(inst: &Instance, opts: &FtpServerOptions) -> anyhow::Result<Launch> {
    let binary = find_tool("vsftpd", &[])?;
    let yes_no = |on: bool| if on { "YES" } else { "NO" };
    let conf = render(
        TEMPLATE,
        &[
            ("PORT", &inst.port.to_string()),
            ("ROOT", &inst.root.to_string_lossy()),
            ("PASV_MIN", &inst.passive_ports.0.to_string()),
            ("PASV_MAX", &inst.passive_ports.1.to_string()),
            ("CERT", &inst.cert.to_string_lossy()),
            ("KEY", &inst.key.to_string_lossy()),
            ("CA", &inst.client_ca.to_string_lossy()),
            ("CLIENT_CERT", yes_no(opts.require_client_cert)),
            ("DIR", &inst.dir.to_string_lossy()),
            ("LOCALTIME", yes_no(opts.local_timezone.is_some())),
        ],
    )?;
    let conf_path = inst.dir.join("vsftpd.conf");
    std::fs::write(&conf_path, conf)?;
    let mut command = Command::new(binary);
    command.arg(&conf_path);
    if let Some(zone) = &opts.local_timezone {
        command.env("TZ", zone);
    }
    if opts.tls_cap == TlsCap::Max12 {
        // vsftpd has no switch for the TLS version: cap OpenSSL's defaults instead.
        command.env("OPENSSL_CONF", dev_server_file("openssl-tls12.cnf"));
    }
    Ok(Launch {
        command,
        logs: vec![inst.dir.join("vsftpd.log"), inst.dir.join("xferlog")],
    })
}
