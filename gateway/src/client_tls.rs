//! TLS for the CLI's remote use (`--api https://...`). The gateway's
//! certificate is self-signed by default, so the CLI trusts it by its
//! SHA-256 fingerprint (`SGW_TLS_FINGERPRINT`, as `sgw gateway` and the
//! console's Settings show it); an admin's own certificate can be checked
//! against a CA file instead (`SGW_CA_CERT`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts exactly the certificate whose SHA-256 is pinned; the handshake
/// signatures are still verified with it.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let d = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if crate::admin::same_secret(d.as_ref(), &self.sha256) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the gateway's certificate does not match SGW_TLS_FINGERPRINT (check the fingerprint the gateway logged)"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses `AB:CD:...` (or plain hex) into the 32 bytes of a SHA-256.
pub fn parse_fingerprint(text: &str) -> Result<Vec<u8>, String> {
    let hexits: String = text.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect();
    match hex::decode(&hexits) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(format!("SGW_TLS_FINGERPRINT {text:?} is not a SHA-256 fingerprint (AB:CD:... 32 bytes)")),
    }
}

/// The client configuration: a pinned fingerprint, or a CA file.
pub fn client_config(fingerprint: Option<&str>, ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match (fingerprint, ca_file) {
        (Some(fp), _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate { sha256: parse_fingerprint(fp)?, provider }))
            .with_no_client_auth(),
        (None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| format!("SGW_CA_CERT {}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("SGW_CA_CERT {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("SGW_CA_CERT {}: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, None) => {
            return Err("an https:// gateway needs SGW_TLS_FINGERPRINT (its certificate's SHA-256, shown by `sgw \
                        gateway` and the console's Settings) or SGW_CA_CERT (a CA file for your own certificate)"
                .into())
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let fp = "6D:62:3F:E2:EC:4E:94:A0:79:94:1C:CC:D7:A9:40:2A:BE:15:39:BB:B3:5F:C0:8F:0A:77:5A:E7:11:54:36:FB";
        assert_eq!(parse_fingerprint(fp).unwrap().len(), 32);
        assert_eq!(parse_fingerprint(&fp.replace(':', "").to_lowercase()).unwrap(), parse_fingerprint(fp).unwrap());
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(client_config(None, None).is_err());
        assert!(client_config(Some(fp), None).is_ok());
    }
}
