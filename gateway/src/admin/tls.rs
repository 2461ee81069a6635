//! The console's HTTPS certificate: the admin's own (`--tls-cert`,
//! `--tls-key`), or one the gateway makes for its names and addresses on
//! first start and keeps in `DATA_DIR/tls/` (owner-only). Its SHA-256
//! fingerprint is logged and shown on the local console, so an admin can
//! check what the browser is shown before trusting it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::files::{create_private_dir, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("cannot make the certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its key, ready for rustls.
pub struct TlsIdentity {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate, `AB:CD:...`.
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

/// The names the generated certificate covers: localhost, the host name
/// and every address of the machine, plus the configured names.
pub fn certificate_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Some(h) = host_name() {
        names.push(h);
    }
    names.extend(local_addresses().into_iter().map(|ip| ip.to_string()));
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

/// Every address of the machine's interfaces, loopback included.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs().map(|v| v.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    ips.sort();
    ips.dedup();
    ips
}

fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { path: path.to_path_buf(), msg: e.to_string() })
}

fn read_chain(cert_path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read { path: cert_path.to_path_buf(), msg: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Read { path: cert_path.to_path_buf(), msg: "no certificate".into() });
    }
    Ok(chain)
}

/// The SHA-256 fingerprint of the first certificate in a PEM file (what
/// the local console shows, so an admin can check the browser's).
pub fn certificate_fingerprint(cert_path: &Path) -> Result<String, TlsError> {
    Ok(fingerprint(read_chain(cert_path)?[0].as_ref()))
}

fn load(cert_path: &Path, key_path: &Path) -> Result<TlsIdentity, TlsError> {
    let chain = read_chain(cert_path)?;
    let key_pem = read(key_path)?;
    let fingerprint = fingerprint(chain[0].as_ref());
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Read { path: key_path.to_path_buf(), msg: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsIdentity { config: Arc::new(config), fingerprint, cert_path: cert_path.to_path_buf() })
}

/// The admin's certificate when given, else the gateway's own, made on
/// first use.
pub fn load_or_create(
    data_dir: &Path,
    admin_cert: Option<(&Path, &Path)>,
    names: &[String],
) -> Result<TlsIdentity, TlsError> {
    if let Some((cert, key)) = admin_cert {
        return load(cert, key);
    }
    let dir = data_dir.join("tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert_path.exists() && key_path.exists()) {
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let mut params =
            rcgen::CertificateParams::new(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "sgw storage gateway");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
        create_private_dir(&dir).map_err(|source| TlsError::Write { path: dir.clone(), source })?;
        // The key first: a crash between the two leaves no certificate
        // without its key, and the next start makes both again.
        write_atomically(&dir, "key.pem", key.serialize_pem().as_bytes())
            .map_err(|source| TlsError::Write { path: key_path.clone(), source })?;
        write_atomically(&dir, "cert.pem", cert.pem().as_bytes())
            .map_err(|source| TlsError::Write { path: cert_path.clone(), source })?;
    }
    load(&cert_path, &key_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn generated_once_private_and_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let names = certificate_names(&["gw.example".into()]);
        assert!(names.contains(&"localhost".to_string()) && names.contains(&"127.0.0.1".to_string()));
        let a = load_or_create(tmp.path(), None, &names).unwrap();
        let b = load_or_create(tmp.path(), None, &names).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let mode = std::fs::metadata(tmp.path().join("tls/key.pem")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The admin's own certificate is used as given.
        let c = load_or_create(
            tmp.path(),
            Some((&tmp.path().join("tls/cert.pem"), &tmp.path().join("tls/key.pem"))),
            &[],
        )
        .unwrap();
        assert_eq!(c.fingerprint, a.fingerprint);
        assert!(load_or_create(tmp.path(), Some((Path::new("/nonexistent"), Path::new("/nonexistent"))), &[]).is_err());
    }
}
