//! Trust: which server certificates a session accepts and how ferry proves its own identity.
//!
//! Builds one `rustls::ClientConfig` per session from [`TlsSettings`]:
//! - roots: `ca_cert_pem` as the *only* roots when given, the system store otherwise (loaded
//!   once per process);
//! - the server name is checked by webpki against the certificate's SANs;
//! - `server_cert_fingerprint` pins the leaf (SHA-256 of its DER). With a CA, the pin is
//!   checked after the chain; without one, the pin alone identifies the server (self-signed
//!   partner): an exact match of the leaf is stronger than any chain. A resumed handshake
//!   presents no certificate and rustls does not call the verifier for it, so the pin is
//!   enforced where it matters, on the control connection's full handshake; data connections
//!   resume that session (or, on a full handshake, are checked again);
//! - `insecure_skip_verify` accepts any chain (the pin still applies) and is logged as a
//!   warning by the session on every connect;
//! - TLS 1.2 minimum, 1.3 unless capped; no early data (a resumed 0-RTT STOR could be replayed);
//! - a fresh resumption store per session: FileZilla Server and ProFTPD check that a data
//!   connection resumes *this* control session's TLS session, and a store shared between
//!   parallel sessions to one host could hand one session's ticket to another;
//! - a client identity from PEM (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1) for mutual TLS.
//!
//! Private keys and passphrases are [`Secret`]s: they are decoded here, handed to rustls and
//! never formatted; a decoding error says which input was wrong, not what it contained.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, OtherError,
    RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

use super::config::{TlsSettings, TlsVersion};
use super::error::{FtpsError, FtpsErrorKind};
use crate::secrets::Secret;

/// What the verifier saw of the server's leaf certificate, for error messages and the probe.
pub(crate) type SeenLeaf = Arc<Mutex<Option<CertificateDer<'static>>>>;

/// SHA-256 of a certificate's DER encoding.
pub fn sha256_fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A fingerprint as lowercase hex pairs separated by colons (`ab:cd:...`), as operators
/// compare them with `openssl x509 -fingerprint -sha256`.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let mut out = String::with_capacity(95);
    for (i, b) in fp.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&hex::encode([*b]));
    }
    out
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, with or without `:` separators
/// (either case), optionally prefixed by `sha256:`.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], InvalidFingerprint> {
    let t = text.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).map_err(|_| InvalidFingerprint)?;
    Ok(out)
}

/// A fingerprint is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 fingerprint is 64 hex digits, optionally separated by ':'")]
pub struct InvalidFingerprint;

/// The server's leaf certificate does not match the pinned fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "certificate fingerprint mismatch: the server presented {seen}, the partner pins {expected}"
)]
pub struct FingerprintMismatch {
    /// What the server presented (formatted).
    pub seen: String,
    /// What the configuration pins (formatted).
    pub expected: String,
}

/// Human-readable facts about a certificate, for the probe and for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// End of validity.
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
    /// SHA-256 of the DER, formatted by [`format_fingerprint`].
    pub sha256: String,
}

impl CertificateSummary {
    /// Summarises a DER certificate (fields it cannot parse are left as `"?"`).
    pub fn from_der(der: &[u8]) -> CertificateSummary {
        let sha256 = format_fingerprint(&sha256_fingerprint(der));
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => CertificateSummary {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                not_after: chrono::DateTime::from_timestamp(
                    cert.validity().not_after.timestamp(),
                    0,
                ),
                sha256,
            },
            Err(_) => CertificateSummary {
                subject: "?".into(),
                issuer: "?".into(),
                not_after: None,
                sha256,
            },
        }
    }
}

impl fmt::Display for CertificateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject \"{}\", issuer \"{}\", expires {}, sha256 {}",
            self.subject,
            self.issuer,
            self.not_after
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
            self.sha256
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn config_error(message: impl Into<String>) -> FtpsError {
    FtpsError::new(FtpsErrorKind::Configuration, "TLS configuration", message)
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> Result<Arc<RootCertStore>, FtpsError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(r) = ROOTS.get() {
        return Ok(Arc::clone(r));
    }
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "could not load some system root certificates");
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(loaded.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    if store.is_empty() {
        return Err(config_error(
            "no system root certificates found: install ca-certificates or set tls.ca_cert",
        ));
    }
    Ok(Arc::clone(ROOTS.get_or_init(|| Arc::new(store))))
}

fn roots_from_pem(pem: &str) -> Result<Arc<RootCertStore>, FtpsError> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| config_error(format!("tls.ca_cert is not valid PEM: {e}")))?;
        store
            .add(cert)
            .map_err(|e| config_error(format!("tls.ca_cert holds an unusable certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(config_error("tls.ca_cert holds no certificate"));
    }
    Ok(Arc::new(store))
}

/// Decodes the client certificate chain and key for mutual TLS.
pub(crate) fn client_identity(
    cert_pem: &str,
    key_pem: &Secret,
    passphrase: Option<&Secret>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FtpsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("tls.client_cert is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(config_error("tls.client_cert holds no certificate"));
    }
    Ok((certs, decode_private_key(key_pem, passphrase)?))
}

/// Decodes a PEM private key: PKCS#8 (`PRIVATE KEY`), encrypted PKCS#8
/// (`ENCRYPTED PRIVATE KEY`, needs the passphrase), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`).
pub(crate) fn decode_private_key(
    key_pem: &Secret,
    passphrase: Option<&Secret>,
) -> Result<PrivateKeyDer<'static>, FtpsError> {
    let pem = key_pem.expose();
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let passphrase = passphrase.ok_or_else(|| {
            config_error(
                "tls.client_private_key is encrypted but tls.client_key_passphrase is not set",
            )
        })?;
        let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).map_err(|_| {
            config_error("tls.client_private_key is not a valid encrypted PKCS#8 PEM")
        })?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(config_error(
                "tls.client_private_key holds more than the encrypted key",
            ));
        }
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|_| {
            config_error("tls.client_private_key is not a valid encrypted PKCS#8 key")
        })?;
        let doc = info.decrypt(passphrase.expose().as_bytes()).map_err(|_| {
            config_error(
                "tls.client_private_key could not be decrypted: wrong tls.client_key_passphrase \
                 (or an unsupported encryption scheme)",
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            doc.as_bytes().to_vec(),
        )));
    }
    let key = if pem.contains("-----BEGIN PRIVATE KEY-----") {
        PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map(PrivateKeyDer::Pkcs8)
    } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        PrivatePkcs1KeyDer::from_pem_slice(pem.as_bytes()).map(PrivateKeyDer::Pkcs1)
    } else if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        PrivateSec1KeyDer::from_pem_slice(pem.as_bytes()).map(PrivateKeyDer::Sec1)
    } else {
        return Err(config_error(
            "tls.client_private_key is not a PEM private key (PKCS#8, encrypted PKCS#8, \
             PKCS#1 or SEC1)",
        ));
    };
    key.map_err(|_| config_error("tls.client_private_key is not a valid PEM private key"))
}

/// The server certificate verifier of a session: chain and name (unless skipped), then the pin.
#[derive(Debug)]
struct SessionVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    seen: SeenLeaf,
}

impl ServerCertVerifier for SessionVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(pin) = &self.pin {
            let fp = sha256_fingerprint(end_entity);
            // Not secret: a constant-time compare is not needed for a public certificate hash.
            if &fp != pin {
                return Err(TlsError::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(FingerprintMismatch {
                        seen: format_fingerprint(&fp),
                        expected: format_fingerprint(pin),
                    })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the TLS client configuration of one session (with its own resumption store).
///
/// `max_version` may be lower than the settings' (the session's TLS 1.2 fallback).
pub(crate) fn client_config(
    tls: &TlsSettings,
    max_version: TlsVersion,
    seen: SeenLeaf,
) -> Result<Arc<ClientConfig>, FtpsError> {
    let provider = provider();
    let chain = if tls.insecure_skip_verify {
        None
    } else if let Some(pem) = &tls.ca_cert_pem {
        Some(build_webpki(roots_from_pem(pem)?, &provider)?)
    } else if tls.server_cert_fingerprint.is_some() {
        // Pin alone: the partner's certificate is self-signed or privately issued.
        None
    } else {
        Some(build_webpki(system_roots()?, &provider)?)
    };
    let verifier = Arc::new(SessionVerifier {
        chain,
        pin: tls.server_cert_fingerprint,
        provider: Arc::clone(&provider),
        seen,
    });
    let versions: &[&'static rustls::SupportedProtocolVersion] = match max_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| config_error(format!("TLS versions not supported: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            let (certs, key) = client_identity(cert, key, tls.client_key_passphrase.as_ref())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| config_error(format!("client certificate and key rejected: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(config_error(
                "mutual TLS needs both tls.client_cert and tls.client_private_key",
            ));
        }
    };
    super::tls_session_reuse::give_own_session_store(&mut config);
    Ok(Arc::new(config))
}

fn build_webpki(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, FtpsError> {
    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
        .build()
        .map_err(|e| config_error(format!("cannot build the certificate verifier: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftps::classify::from_tls_error;

    // Throwaway test keys generated with openssl for these tests only.
    const EC_PKCS8: &str = include_str!("testdata/ec_pkcs8.pem");
    const EC_SEC1: &str = include_str!("testdata/ec_sec1.pem");
    const RSA_PKCS1: &str = include_str!("testdata/rsa_pkcs1.pem");
    const EC_ENCRYPTED: &str = include_str!("testdata/ec_pkcs8_encrypted.pem");

    #[test]
    fn fingerprints_format_and_parse() {
        let fp = sha256_fingerprint(b"hello");
        let text = format_fingerprint(&fp);
        assert_eq!(text.len(), 95);
        assert!(text.starts_with("2c:f2:4d:ba"));
        assert_eq!(parse_fingerprint(&text), Ok(fp));
        assert_eq!(
            parse_fingerprint(&text.to_uppercase().replace(':', "")),
            Ok(fp)
        );
        assert_eq!(parse_fingerprint(&format!("sha256:{text}")), Ok(fp));
        assert_eq!(parse_fingerprint("abcd"), Err(InvalidFingerprint));
    }

    #[test]
    fn decodes_every_supported_key_format() {
        assert!(matches!(
            decode_private_key(&Secret::new(EC_PKCS8), None),
            Ok(PrivateKeyDer::Pkcs8(_))
        ));
        assert!(matches!(
            decode_private_key(&Secret::new(EC_SEC1), None),
            Ok(PrivateKeyDer::Sec1(_))
        ));
        assert!(matches!(
            decode_private_key(&Secret::new(RSA_PKCS1), None),
            Ok(PrivateKeyDer::Pkcs1(_))
        ));
        let pass = Secret::new("correct horse");
        let decrypted = decode_private_key(&Secret::new(EC_ENCRYPTED), Some(&pass));
        let plain = decode_private_key(&Secret::new(EC_PKCS8), None);
        match (decrypted, plain) {
            (Ok(PrivateKeyDer::Pkcs8(a)), Ok(PrivateKeyDer::Pkcs8(b))) => {
                assert_eq!(a.secret_pkcs8_der(), b.secret_pkcs8_der())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_passphrase_is_a_configuration_error_without_the_secret() {
        let err = decode_private_key(
            &Secret::new(EC_ENCRYPTED),
            Some(&Secret::new("wrong-passphrase-xyz")),
        )
        .unwrap_err();
        assert_eq!(err.kind(), FtpsErrorKind::Configuration);
        assert!(!err.is_transient());
        let text = format!("{err} {err:?}");
        assert!(text.contains("passphrase"));
        assert!(!text.contains("wrong-passphrase-xyz"));
        assert!(!text.contains("PRIVATE KEY-----"));
        let err = decode_private_key(&Secret::new(EC_ENCRYPTED), None).unwrap_err();
        assert!(err.to_string().contains("client_key_passphrase"));
    }

    #[test]
    fn garbage_key_is_refused() {
        let err = decode_private_key(&Secret::new("not a key"), None).unwrap_err();
        assert_eq!(err.kind(), FtpsErrorKind::Configuration);
    }

    #[test]
    fn certificate_errors_are_sorted() {
        let e = from_tls_error(
            "TLS",
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(e.kind(), FtpsErrorKind::CertificateValidation);
        assert!(e.to_string().contains("unknown CA"));
        let e = from_tls_error(
            "TLS",
            TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                FingerprintMismatch {
                    seen: "aa".into(),
                    expected: "bb".into(),
                },
            )))),
        );
        assert_eq!(e.kind(), FtpsErrorKind::CertificateValidation);
        assert!(e.to_string().contains("presented aa"), "{e}");
        let e = from_tls_error(
            "TLS",
            TlsError::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert_eq!(e.kind(), FtpsErrorKind::TlsHandshake);
        assert!(!e.is_transient());
    }

    #[test]
    fn ca_pem_without_certificate_is_refused() {
        let tls = TlsSettings {
            ca_cert_pem: Some("nothing here".into()),
            ..TlsSettings::default()
        };
        let err = client_config(&tls, TlsVersion::Tls13, SeenLeaf::default()).unwrap_err();
        assert_eq!(err.kind(), FtpsErrorKind::Configuration);
    }
}
