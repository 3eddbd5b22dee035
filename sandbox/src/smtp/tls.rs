//! The sandbox's TLS identity: a throwaway certificate authority and a server certificate it
//! signed for the loopback names, made fresh at start-up.
//!
//! Clients trust the sandbox by adding the CA certificate ([`SmtpTls::ca_pem`], also served at
//! `GET /api/smtp/ca.pem`) to their roots, as they would for a private relay. Nothing is written
//! to disk and the keys die with the process.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::Sandbox;
use crate::http::{ApiError, ApiResult};

/// Names the server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why the sandbox's certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or signing a certificate failed.
    #[error("failed to generate the sandbox certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the generated certificate or key.
    #[error("failed to configure tls: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// The certificate the SMTP listeners present, with the CA that signed it. Cheap to clone.
#[derive(Clone)]
pub struct SmtpTls {
    inner: Arc<Inner>,
}

struct Inner {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for SmtpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTls").finish_non_exhaustive()
    }
}

impl SmtpTls {
    /// Generates a new CA and a server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn generate() -> Result<Self, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fanout-sandbox test ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = SERVER_NAMES.iter().map(|&n| n.to_owned()).collect();
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        // The provider is named rather than taken from the process default, so the sandbox
        // works whatever else in the process installed one (or none).
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone()], key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ca_pem: ca_cert.pem(),
                acceptor: TlsAcceptor::from(Arc::new(config)),
            }),
        })
    }

    /// Returns the PEM of the CA certificate a client must trust to reach the sandbox over TLS.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.inner.acceptor
    }
}

/// `GET /api/smtp/ca.pem`: the CA certificate, for clients outside the process.
pub(crate) async fn ca_pem(State(sandbox): State<Arc<Sandbox>>) -> ApiResult<impl IntoResponse> {
    let Some(tls) = &sandbox.smtp_options.tls else {
        let message = "smtp tls is not configured";
        return Err(ApiError::rejected(StatusCode::NOT_FOUND, message));
    };
    let headers = [(header::CONTENT_TYPE, "application/x-pem-file")];
    Ok((headers, tls.ca_pem().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ca_is_pem() {
        let tls = SmtpTls::generate().unwrap();
        assert!(tls.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        // Every start-up makes a new authority.
        assert_ne!(SmtpTls::generate().unwrap().ca_pem(), tls.ca_pem());
    }
}
