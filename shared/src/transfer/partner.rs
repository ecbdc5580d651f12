//! A partner's FTPS session settings, built from its configuration with every secret
//! reference resolved at the moment of use, so that a rotated password or certificate
//! reaches the next session without a restart.

use super::error::TransferError;
use crate::config::{ListingEncoding, Partner, TlsVersion as ConfiguredTlsVersion};
use crate::ftps::{
    BandwidthCap, ListingLimits, NameEncoding, SessionConfig, Timeouts, TlsSettings, TlsVersion,
};
use crate::secrets::{Resolver, Secret, SecretRef};

/// Resolves one of the partner's secret references, naming the field in the error.
async fn resolve(
    resolver: &Resolver,
    flow_id: &str,
    partner: &Partner,
    field: &'static str,
    reference: &SecretRef,
) -> Result<Secret, TransferError> {
    resolver
        .resolve(reference)
        .await
        .map_err(|source| TransferError::Secret {
            flow_id: flow_id.to_owned(),
            partner: format!("partner {}", partner.id),
            field,
            source: Box::new(source),
        })
}

/// The partner's FTPS session settings with every secret reference resolved: what a
/// flow's session pool and `ferry-worker probe` connect with. `flow_id` (empty outside a
/// flow-run) only names the flow in errors.
pub async fn partner_session_config(
    resolver: &Resolver,
    partner: &Partner,
    flow_id: &str,
) -> Result<SessionConfig, TransferError> {
    let ftps = &partner.ftps;
    let password = match &ftps.auth.password {
        Some(r) => Some(resolve(resolver, flow_id, partner, "auth.password", r).await?),
        None => None,
    };
    let ca_cert_pem = match &ftps.tls.ca_cert {
        Some(r) => Some(
            resolve(resolver, flow_id, partner, "tls.ca_cert", r)
                .await?
                .expose()
                .to_owned(),
        ),
        None => None,
    };
    let (mut client_cert_pem, mut client_key_pem, mut client_key_passphrase) = (None, None, None);
    if let Some(identity) = &ftps.tls.client_identity {
        client_cert_pem = Some(
            resolve(
                resolver,
                flow_id,
                partner,
                "tls.client_cert",
                &identity.cert,
            )
            .await?
            .expose()
            .to_owned(),
        );
        client_key_pem = Some(
            resolve(
                resolver,
                flow_id,
                partner,
                "tls.client_private_key",
                &identity.private_key,
            )
            .await?,
        );
        if let Some(r) = &identity.key_passphrase {
            client_key_passphrase =
                Some(resolve(resolver, flow_id, partner, "tls.client_key_passphrase", r).await?);
        }
    }
    let c = &ftps.connection;
    let mut session = SessionConfig::new(&c.host, c.port, &ftps.auth.username);
    session.password = password;
    session.tls = TlsSettings {
        ca_cert_pem,
        client_cert_pem,
        client_key_pem,
        client_key_passphrase,
        server_cert_fingerprint: ftps.tls.server_cert_fingerprint,
        insecure_skip_verify: ftps.tls.insecure_skip_verify,
        max_version: match ftps.tls.max_version {
            ConfiguredTlsVersion::Tls12 => TlsVersion::Tls12,
            ConfiguredTlsVersion::Tls13 => TlsVersion::Tls13,
        },
        ..TlsSettings::default()
    };
    session.nat_workaround = c.nat_workaround;
    session.allowed_data_addresses = c.allowed_data_addresses.clone();
    session.listing_limits = ListingLimits {
        max_bytes: c.max_listing_bytes,
        max_entries: c.max_listing_entries as usize,
    };
    session.listing_timezone = c.listing_timezone;
    session.mdtm_timezone = c.mdtm_timezone;
    session.timeouts = Timeouts {
        connect: c.connect_timeout,
        reply: c.command_timeout,
        data_idle: c.data_timeout,
    };
    session.prefer_epsv = !c.disable_epsv;
    session.use_mlsd = !c.disable_mlsd;
    session.list_hidden = c.list_hidden;
    session.name_encoding = match c.listing_encoding {
        ListingEncoding::Utf8 => NameEncoding::Utf8,
        ListingEncoding::Latin1 => NameEncoding::Latin1,
    };
    session.resume = !c.disable_resume;
    session.bandwidth = c
        .max_bytes_per_second
        .map(|rate| BandwidthCap::for_partner(&partner.id, rate));
    session.partner_id = Some(partner.id.clone());
    Ok(session)
}
