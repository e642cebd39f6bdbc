//! TLS material: a private CA and a server certificate (SAN localhost, 127.0.0.1, ::1 and
//! configured names) generated with rcgen on first start and kept in `<data_dir>/tls`, or
//! operator-supplied PEM files.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Paths of the PEM files in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA to give clients (self-signed mode only).
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The certificate chain and private key, parsed from the PEM files.
    pub fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .with_context(|| format!("reading {}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing {}", self.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).with_context(|| format!("reading {}", self.key.display()))?;
        Ok((certs, key))
    }

    /// The HTTPS listener's TLS acceptor (TLS 1.2 and 1.3; ALPN h2 and http/1.1).
    pub fn https_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        let (certs, key) = self.load()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the HTTPS certificate and key")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// Ensure a CA and server certificate exist in `dir` (generating what is missing).
pub fn ensure_self_signed(dir: &Path, extra_names: &[String]) -> Result<TlsFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let (cert, key) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    if !(ca_cert.exists() && ca_key.exists()) {
        let ca_key_pair = KeyPair::generate()?;
        let ca = ca_params()?.self_signed(&ca_key_pair)?;
        write_private(&ca_key, &ca_key_pair.serialize_pem())?;
        std::fs::write(&ca_cert, ca.pem()).with_context(|| format!("writing {}", ca_cert.display()))?;
        // A new CA invalidates any old server certificate.
        let _ = std::fs::remove_file(&cert);
        tracing::info!(ca = %ca_cert.display(), "generated a private CA");
    }
    if !(cert.exists() && key.exists()) {
        // The CA's subject and key identify it as issuer; its params are deterministic.
        let ca_key_pair = KeyPair::from_pem(&std::fs::read_to_string(&ca_key)?)?;
        let issuer = Issuer::new(ca_params()?, ca_key_pair);
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, "palaver");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        // Client authentication too: the same certificate is palaver's identity when a SIP
        // trunk asks for one (mutual TLS, a trunk's `client_cert_file`).
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2034, 1, 1);
        let key_pair = KeyPair::generate()?;
        let leaf = params.signed_by(&key_pair, &issuer)?;
        write_private(&key, &key_pair.serialize_pem())?;
        std::fs::write(&cert, leaf.pem()).with_context(|| format!("writing {}", cert.display()))?;
        tracing::info!(cert = %cert.display(), "generated the server certificate");
    }
    Ok(TlsFiles { cert, key, ca: Some(ca_cert) })
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "palaver local CA");
    params.distinguished_name.push(DnType::OrganizationName, "palaver");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2034, 1, 1);
    Ok(params)
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_keeps_files() {
        let dir = std::env::temp_dir().join(format!("palaver-tls-{}", std::process::id()));
        let first = ensure_self_signed(&dir, &["rtc.example.com".into()]).unwrap();
        let pem = std::fs::read_to_string(&first.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let again = ensure_self_signed(&dir, &[]).unwrap();
        assert_eq!(first, again);
        assert_eq!(std::fs::read_to_string(&again.cert).unwrap(), pem, "not regenerated");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
