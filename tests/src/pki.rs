//! Certificates for the test bed's TLS servers and clients, made with rcgen at test time.
//!
//! No key ever lands in git: each test gets a fresh CA, a server leaf and a client leaf,
//! plus the broken variants (expired, wrong host, self-signed) that the FTPS client must
//! refuse with a clear error.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use sha2::{Digest, Sha256};

/// Which server certificate [`Pki::generate`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertVariant {
    /// Signed by the test CA, for "localhost" and 127.0.0.1, valid 2020-2100.
    #[default]
    Valid,
    /// Signed by the test CA, but expired at the start of 2021.
    Expired,
    /// Signed by the test CA, for "wrong.example" only.
    WrongHost,
    /// Its own issuer: `ca_cert_pem` is the leaf itself.
    SelfSigned,
}

/// A test PKI: the CA, the server's certificate and key, and a client identity.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA a client trusts for the server (the leaf itself for [`CertVariant::SelfSigned`]).
    pub ca_cert_pem: String,
    /// The server's leaf certificate.
    pub server_cert_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub server_key_pem: String,
    /// Lowercase hex SHA-256 of the server leaf's DER (64 characters), for pinning.
    pub server_fingerprint_sha256: String,
    /// A client certificate for mutual TLS, signed by `client_ca_cert_pem`.
    pub client_cert_pem: String,
    /// The client's private key (PKCS#8 PEM, unencrypted).
    pub client_key_pem: String,
    /// The CA a server trusts for client certificates: the same as `ca_cert_pem`, except for
    /// [`CertVariant::SelfSigned`], where the client certificate still comes from a test CA.
    pub client_ca_cert_pem: String,
}

impl Pki {
    /// Generates a fresh CA, server leaf (shaped by `variant`) and client leaf.
    pub fn generate(variant: CertVariant) -> Pki {
        Self::try_generate(variant).expect("generating test certificates")
    }

    fn try_generate(variant: CertVariant) -> Result<Pki, rcgen::Error> {
        let ca = test_ca()?;

        let names = match variant {
            CertVariant::WrongHost => vec!["wrong.example".to_string()],
            _ => vec!["localhost".to_string(), "127.0.0.1".to_string()],
        };
        let mut params = leaf_params(names, ExtendedKeyUsagePurpose::ServerAuth)?;
        if variant == CertVariant::Expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let server_key = KeyPair::generate()?;
        let server_cert = if variant == CertVariant::SelfSigned {
            params.self_signed(&server_key)?
        } else {
            params.signed_by(&server_key, &ca)?
        };

        let client_key = KeyPair::generate()?;
        let client_cert = leaf_params(
            vec!["ferry-client".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?
        .signed_by(&client_key, &ca)?;

        let ca_cert_pem = match variant {
            CertVariant::SelfSigned => server_cert.pem(),
            _ => ca.pem(),
        };
        Ok(Pki {
            ca_cert_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_fingerprint_sha256: hex::encode(Sha256::digest(server_cert.der())),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            client_ca_cert_pem: ca.pem(),
        })
    }
}

/// A self-signed CA that may sign leaves.
fn test_ca() -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "ferry test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A leaf for `names` (DNS names or IP addresses; the first is also the common name).
fn leaf_params(
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(DnType::CommonName, &names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    Ok(params)
}
