//! The client's TLS and QUIC transport configuration: trust the given CA PEM, TLS 1.3 only,
//! ALPN `palaver/1`, QUIC keep-alive and a datagram receive buffer sized for audio bursts.

use crate::ClientError;
use palaver_core::protocol::quic::ALPN;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// QUIC keep-alive: half the idle timeout, as Chromium's QUIC pings after 15 s of quiet. Any
/// packet either way restarts it, so with signaling's own 15 s heartbeat (`welcome`) it rarely
/// fires: at 5 s, 1,000 idle connections cost the server 400 extra packets/s (issue #18).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn client_config(ca_pem: &str) -> Result<quinn::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::CaCertificate(e.to_string()))?;
        roots.add(cert).map_err(|e| ClientError::CaCertificate(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(ClientError::CaCertificate("no CERTIFICATE block found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(|_| ClientError::Tls("idle timeout".into()))?));
    transport.datagram_receive_buffer_size(Some(1 << 20));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
