//! `ferry-worker probe`: connect to a partner exactly as a flow would and print each step,
//! so that "the transfer fails" becomes "passive mode: data connection to 10.0.0.5:50000
//! refused". Secrets are resolved as for a flow and never printed.
//!
//! Exit codes: 0 when every step succeeded, 1 at the first failing step (named, with its
//! error kind and whether a retry could help), 2 for a configuration error.

use std::process::ExitCode;

use ferry_shared::config::Config;
use ferry_shared::ftps::{self, ProbeStep};
use ferry_shared::secrets::Resolver;
use ferry_shared::startup::EXIT_CONFIG;
use ferry_shared::transfer::partner_session_config;

/// Probes `partner_id`, listing `path` (the login directory when `None`).
pub async fn run(config: &Config, partner_id: &str, path: Option<&str>) -> ExitCode {
    let Some(partner) = config.partners.get(partner_id) else {
        let known: Vec<&str> = config.partners.keys().map(String::as_str).collect();
        eprintln!(
            "ferry-worker probe: no partner `{partner_id}`; configured: {}",
            known.join(", ")
        );
        return ExitCode::from(EXIT_CONFIG);
    };
    let resolver = Resolver::new(config.settings.resolver.clone());
    let session_config = match partner_session_config(&resolver, partner, "").await {
        Ok(session_config) => session_config,
        Err(error) => {
            println!("FAILED  secrets        [{}] {error}", error.kind().as_str());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "probing partner {partner_id} ({}:{})",
        partner.ftps.connection.host, partner.ftps.connection.port
    );
    let mut print_step = |step: ProbeStep| println!("ok      {:<14} {}", step.name, step.detail);
    match ftps::probe(&session_config, path, &mut print_step).await {
        Ok(()) => {
            println!("partner {partner_id}: every step succeeded");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let retry = if error.is_transient() {
                "a retry may help"
            } else {
                "a retry will not help"
            };
            println!(
                "FAILED  {:<14} [{}] {error} ({retry})",
                error.step(),
                error.kind()
            );
            ExitCode::FAILURE
        }
    }
}
