//! [`MeshTls`]: the mesh's mutual TLS. Every node holds a certificate issued by the cluster CA
//! (`[cluster] mesh_ca_cert`/`mesh_ca_key`), names itself by CN = node id, and accepts only
//! peers whose client certificate chains to the same CA; a node outside the cluster cannot
//! open a relay. For development and the tests, [`ensure_dev_ca`] generates the CA once.

use super::{ALPN, IDLE_TIMEOUT, KEEP_ALIVE, MeshError, SERVER_NAME};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The quinn configurations of one node's mesh endpoint.
pub struct MeshTls {
    pub server: quinn::ServerConfig,
    pub client: quinn::ClientConfig,
}

fn tls_err(e: impl std::fmt::Display) -> MeshError {
    MeshError::Tls(e.to_string())
}

/// Generate a cluster CA at `cert`/`key` when neither file exists (development and tests).
/// Returns whether it generated one.
pub fn ensure_dev_ca(cert: &Path, key: &Path) -> Result<bool, MeshError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    params.distinguished_name.push(DnType::CommonName, "palaver cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key_pair = KeyPair::generate().map_err(tls_err)?;
    let ca = params.self_signed(&key_pair).map_err(tls_err)?;
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(key, &key_pair.serialize_pem())?;
    std::fs::write(cert, ca.pem())?;
    tracing::info!(ca = %cert.display(), "generated a cluster CA for the node mesh (development)");
    Ok(true)
}

fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(pem.as_bytes())
}

impl MeshTls {
    /// This node's mesh TLS: a fresh key and a certificate for [`SERVER_NAME`] with CN
    /// `node_id`, issued by the CA in `ca_cert_pem`/`ca_key_pem`, trusting only that CA.
    pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, node_id: &str) -> Result<Self, MeshError> {
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(tls_err)?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(tls_err)?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(tls_err)?;
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key_pair = KeyPair::generate().map_err(tls_err)?;
        let leaf = params.signed_by(&key_pair, &issuer).map_err(tls_err)?;
        let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(tls_err)?;
        let chain = vec![leaf.der().clone(), ca_der.clone()];
        let key = PrivateKeyDer::from_pem_slice(key_pair.serialize_pem().as_bytes()).map_err(tls_err)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).map_err(tls_err)?;
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(tls_err)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls_err)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls_err)?;
        client.alpn_protocols = vec![ALPN.to_vec()];

        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(tls_err)?));
        let transport = Arc::new(transport);
        let mut server =
            quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server).map_err(tls_err)?));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client).map_err(tls_err)?));
        client.transport_config(transport);
        Ok(Self { server, client })
    }
}

#[cfg(test)]
mod tests;
