//! TLS to frps (frpc's default) and on the embedded relay, with rustls (ring).
//!
//! frpc skips certificate verification unless `transport.tls.trustedCaFile` is set, and
//! frps by default presents a random self-signed certificate, so the default here is the
//! same; the engine says so loudly in its log. With a CA configured the server is verified.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// frp's custom first byte: sent before the ClientHello when
/// `disableCustomTLSFirstByte = false`; frps consumes it.
pub const FRP_TLS_HEAD_BYTE: u8 = 0x17;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (frpc's behaviour without a trusted CA), but still
/// checks the handshake signatures so the session keys are bound to that certificate.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read_pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("cannot read certificate file {path}: {e}"))?;
    rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {path}: {e}"))
}

fn read_pem_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read key file {path}: {e}"))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| format!("bad PEM in {path}: {e}"))?
        .ok_or_else(|| format!("no private key found in {path}"))
}

/// Client-side TLS settings, from frpc's `transport.tls.*`.
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    /// Send 0x17 before the ClientHello (frpc `disableCustomTLSFirstByte = false`).
    pub custom_first_byte: bool,
    pub verifies_server: bool,
}

pub fn client_tls(
    tls: &crate::config::TlsClientConfig,
    server_addr: &str,
) -> Result<ClientTls, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifies = !tls.trusted_ca_file.is_empty();
    let builder = if verifies {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_pem_certs(&tls.trusted_ca_file)? {
            roots
                .add(c)
                .map_err(|e| format!("bad CA certificate in {}: {e}", tls.trusted_ca_file))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    };
    let config = if !tls.cert_file.is_empty() && !tls.key_file.is_empty() {
        builder
            .with_client_auth_cert(
                read_pem_certs(&tls.cert_file)?,
                read_pem_key(&tls.key_file)?,
            )
            .map_err(|e| format!("client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    let name = if tls.server_name.is_empty() {
        server_addr
    } else {
        tls.server_name.as_str()
    };
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("transport.tls.serverName {name:?} is not a valid name: {e}"))?;
    Ok(ClientTls {
        config: Arc::new(config),
        server_name,
        custom_first_byte: !tls.disable_custom_tls_first_byte,
        verifies_server: verifies,
    })
}

/// Server-side TLS for the relay: a fresh self-signed certificate (frps does the same
/// when no certificate is configured), or the given PEM files.
pub fn server_tls(cert_key: Option<(&str, &str)>) -> Result<Arc<rustls::ServerConfig>, String> {
    let (certs, key) = match cert_key {
        Some((c, k)) => (read_pem_certs(c)?, read_pem_key(k)?),
        None => {
            let cert = rcgen::generate_simple_self_signed(vec!["stcp-engine-relay".to_string()])
                .map_err(|e| format!("generate self-signed certificate: {e}"))?;
            let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
            (vec![cert.cert.der().clone()], key)
        }
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(Arc::new(config))
}
