//! The keys and certificates the APNs simulator trusts and presents, generated once per process.
//!
//! A private CA signs the server certificate (for `localhost` and `127.0.0.1`) and a client
//! certificate for certificate-based auth. The provider-token signing key is a P-256 key in the
//! PKCS#8 PEM form Apple hands out as an `AuthKey_<key id>.p8` file. Everything is generated on
//! first use, so every sandbox in one process (and every test that configures a client) shares
//! the same material; nothing secret is ever written to the repository.

use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

/// Key id of the provider-token signing key, as Apple's ten-character key ids look.
pub const KEY_ID: &str = "FANOUTKEY1";

/// Team id the simulator expects in a provider token's `iss` claim.
pub const TEAM_ID: &str = "FANOUTTEAM";

/// The app's bundle id, which the client certificate is issued for: the topic of a request
/// authenticated by certificate that names none.
pub const TOPIC: &str = "com.fanout.sandbox";

/// What a client needs to trust the simulator and authenticate to it.
///
/// Served by `GET /api/apns/credentials` (with the endpoint) and returned in-process by
/// [`credentials`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The CA certificate (PEM) that signed the server and client certificates: add it as a
    /// trusted root.
    pub ca_pem: String,
    /// Key id for the provider token's `kid` header.
    pub key_id: String,
    /// Team id for the provider token's `iss` claim.
    pub team_id: String,
    /// The ES256 provider-token signing key, PKCS#8 PEM (the content of a `.p8` file).
    pub signing_key_pem: String,
    /// A client certificate (PEM) signed by the CA, for certificate-based auth.
    pub client_cert_pem: String,
    /// The client certificate's private key, PKCS#8 PEM.
    pub client_key_pem: String,
    /// The bundle id the client certificate is issued for; any topic is accepted.
    pub topic: String,
}

/// Why the credentials could not be generated (in practice: the system RNG failed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("failed to generate apns sandbox credentials: {0}")]
pub struct CredentialsError(String);

/// The public credentials plus what only the server holds.
#[derive(Debug)]
pub(crate) struct Identity {
    pub credentials: Credentials,
    /// The provider key's public point, uncompressed, for verifying token signatures.
    pub provider_public_key: Vec<u8>,
    /// TLS with ALPN `h2`, the server certificate, and optional client certificates.
    pub tls: Arc<ServerConfig>,
}

/// Returns the process-wide credentials, generating them on first use.
pub fn credentials() -> Result<&'static Credentials, CredentialsError> {
    identity().map(|identity| &identity.credentials)
}

/// Returns the process-wide identity, generating it on first use.
pub(crate) fn identity() -> Result<&'static Identity, CredentialsError> {
    static IDENTITY: OnceLock<Result<Identity, CredentialsError>> = OnceLock::new();
    IDENTITY
        .get_or_init(generate)
        .as_ref()
        .map_err(Clone::clone)
}

fn generate() -> Result<Identity, CredentialsError> {
    let failed = |e: &dyn std::fmt::Display| CredentialsError(e.to_string());
    let new_key = || KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| failed(&e));

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("Fanout Sandbox APNs CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, new_key()?).map_err(|e| failed(&e))?;

    let server_key = new_key()?;
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| failed(&e))?;
    server_params.distinguished_name = name("localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .map_err(|e| failed(&e))?;

    let client_key = new_key()?;
    let mut client_params = CertificateParams::default();
    client_params.distinguished_name = name(&format!("Apple Push Services: {TOPIC}"));
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &ca)
        .map_err(|e| failed(&e))?;

    let provider_key = new_key()?;

    let tls = server_config(
        ca.der().clone(),
        server_cert.der().clone(),
        PrivatePkcs8KeyDer::from(server_key.serialize_der()),
    )
    .map_err(|e| failed(&e))?;

    Ok(Identity {
        credentials: Credentials {
            ca_pem: ca.pem(),
            key_id: KEY_ID.to_owned(),
            team_id: TEAM_ID.to_owned(),
            signing_key_pem: provider_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            topic: TOPIC.to_owned(),
        },
        provider_public_key: provider_key.public_key_raw().to_vec(),
        tls: Arc::new(tls),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Fanout Sandbox");
    name
}

/// TLS as APNs offers it: HTTP/2 only, and a client certificate optional (token auth needs
/// none), verified against the sandbox CA when presented.
fn server_config(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use rustls_pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn signing_key_is_a_p8_that_verifies_with_the_public_key() {
        let identity = identity().unwrap();
        let pem = &identity.credentials.signing_key_pem;
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .unwrap();
        let signature = key.sign(&rng, b"payload").unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_FIXED,
            &identity.provider_public_key,
        );
        assert!(public.verify(b"payload", signature.as_ref()).is_ok());
        assert!(public.verify(b"other", signature.as_ref()).is_err());
    }

    #[test]
    fn generated_once_per_process() {
        assert!(std::ptr::eq(credentials().unwrap(), credentials().unwrap()));
    }
}
