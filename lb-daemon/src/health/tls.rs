//! TLS for `https` checks: rustls with the ring provider.
//!
//! - `verify = true`: the certificate must chain to a root of the system
//!   store (rustls-native-certs, loaded once) and be valid for the
//!   backend's IP address (there is no host name to check against).
//! - `verify = false`: any certificate is accepted, as `curl -k` or
//!   HAProxy's `verify none` do; the handshake signature is still checked,
//!   so the peer holds the key of the certificate it sent.
use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::result::Failure;

/// Runs the TLS handshake over `tcp` with the backend `address`.
pub async fn connect(
    tcp: TcpStream,
    address: IpAddr,
    verify: bool,
) -> Result<TlsStream<TcpStream>, Failure> {
    let config = client_config(verify)?;
    let name = ServerName::IpAddress(address.into());
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::from_io(&e))
}

/// The shared client configuration for `verify` (built once per process).
pub fn client_config(verify: bool) -> Result<Arc<ClientConfig>, Failure> {
    static VERIFYING: OnceLock<Result<Arc<ClientConfig>, Failure>> = OnceLock::new();
    static ACCEPTING: OnceLock<Result<Arc<ClientConfig>, Failure>> = OnceLock::new();
    let cell = if verify { &VERIFYING } else { &ACCEPTING };
    cell.get_or_init(|| build_config(verify)).clone()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build_config(verify: bool) -> Result<Arc<ClientConfig>, Failure> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Tls(e.to_string()))?;
    let config = if verify {
        builder
            .with_root_certificates(system_roots())
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The system's trusted roots; certificates that do not parse are left
/// out (and logged), an unreadable store gives an empty set, so that every
/// verified check fails with a TLS reason rather than the daemon.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "loading the system's root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            added,
            ignored,
            "root certificates that do not parse are ignored"
        );
    }
    roots
}

/// `verify = false`: any certificate chain, any name, any date.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_configurations_build_and_are_shared() {
        for verify in [true, false] {
            let first = client_config(verify).expect("config builds");
            let again = client_config(verify).expect("config builds");
            assert!(Arc::ptr_eq(&first, &again));
        }
        let verifying = client_config(true).unwrap();
        let accepting = client_config(false).unwrap();
        assert!(!Arc::ptr_eq(&verifying, &accepting));
    }
}
