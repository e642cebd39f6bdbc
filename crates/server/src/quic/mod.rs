//! The native QUIC transport (`docs/quic.md`): a quinn endpoint with ALPN `palaver/1` and the
//! server's TLS certificate. Each connection carries one signaling stream (length-prefixed
//! JSON frames, the WebSocket v1 messages after an `auth` frame) and RTP/RTCP as datagrams,
//! which reach the media workers through queue transports once the client sends `media.attach`.

mod connection;
mod frames;
pub mod paths;
pub mod socket;
pub mod traffic;

use crate::tls::TlsFiles;
use anyhow::{Context, Result};
use palaver_core::protocol::quic::{ALPN, ALPN_NAME, CLOSE_SHUTDOWN};
use palaver_signaling::app::AppState;
use paths::QuicPaths;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use traffic::{CountingSocket, QuicTraffic};

const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DATAGRAM_BUFFER: usize = 1 << 20;

/// `[server.quic]`: the native QUIC transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicSection {
    /// Serve QUIC at all (needs TLS: off when `tls.mode = "off"`).
    pub enabled: bool,
    /// UDP address; default: the HTTPS listen IP, port = HTTPS port + 1 (0 when HTTPS uses 0).
    pub listen: Option<SocketAddr>,
    /// Kernel receive and send buffer asked for the endpoint's UDP socket, bytes (default
    /// 8 MiB, for bursts; the kernel may clamp it, which is logged at startup).
    pub socket_buffer: usize,
}

/// Default `[server.quic] socket_buffer`.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

impl Default for QuicSection {
    fn default() -> Self {
        Self { enabled: true, listen: None, socket_buffer: DEFAULT_SOCKET_BUFFER }
    }
}

impl QuicSection {
    /// The address to bind, given the configured HTTPS listen address.
    pub fn listen_addr(&self, https: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if https.port() == 0 { 0 } else { https.port().checked_add(1).unwrap_or(0) };
            SocketAddr::new(https.ip(), port)
        })
    }
}

/// The running QUIC endpoint.
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    pub local_addr: SocketAddr,
    pub paths: Arc<QuicPaths>,
    /// Datagrams read from the socket and discarded inside quinn (`/metrics`).
    pub traffic: Arc<QuicTraffic>,
    accept: tokio::task::JoinHandle<()>,
}

impl QuicServer {
    /// Binds `listen` (with `socket_buffer` bytes of kernel buffers) and accepts connections
    /// until [`Self::close`].
    pub fn start(
        listen: SocketAddr,
        socket_buffer: usize,
        tls: &TlsFiles,
        state: AppState,
        paths: Arc<QuicPaths>,
    ) -> Result<Self> {
        let traffic = Arc::new(QuicTraffic::default());
        let endpoint = counted_endpoint(listen, socket_buffer, server_config(tls)?, traffic.clone())?;
        let local_addr = endpoint.local_addr().context("QUIC endpoint address")?;
        let accept = {
            let (endpoint, paths, traffic) = (endpoint.clone(), paths.clone(), traffic.clone());
            tokio::spawn(async move {
                while let Some(incoming) = endpoint.accept().await {
                    traffic.attempt();
                    tokio::spawn(connection::serve(incoming, state.clone(), paths.clone(), traffic.clone()));
                }
            })
        };
        tracing::info!(listen = %local_addr, alpn = ALPN_NAME, "QUIC endpoint ready");
        Ok(Self { endpoint, local_addr, paths, traffic, accept })
    }

    /// What `GET /quic` answers: where to connect, and the shell's datagram drop counters.
    pub fn discovery(&self) -> serde_json::Value {
        let d = &self.paths.drops;
        serde_json::json!({
            "address": self.local_addr.to_string(),
            "alpn": ALPN_NAME,
            "connections": self.paths.connections(),
            "datagramsDropped": {
                "unattached": d.unattached.load(Ordering::Relaxed),
                "ingressFull": d.ingress_full.load(Ordering::Relaxed),
                "unsendable": d.unsendable.load(Ordering::Relaxed),
            },
        })
    }

    /// Closes every connection (code 3) and stops accepting.
    pub async fn close(&self) {
        self.endpoint.close(CLOSE_SHUTDOWN.into(), b"server shutting down");
        self.accept.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// A server endpoint on `listen` whose socket ([`socket::bind_with_buffers`]) counts what it
/// reads into `traffic`.
fn counted_endpoint(
    listen: SocketAddr,
    socket_buffer: usize,
    config: quinn::ServerConfig,
    traffic: Arc<QuicTraffic>,
) -> Result<quinn::Endpoint> {
    let (socket, _) = socket::bind_with_buffers(listen, socket_buffer)
        .with_context(|| format!("binding the QUIC endpoint on {listen}"))?;
    let runtime = quinn::default_runtime().context("no async runtime for the QUIC endpoint")?;
    let socket = Arc::new(CountingSocket::new(runtime.wrap_udp_socket(socket)?, traffic));
    quinn::Endpoint::new_with_abstract_socket(quinn::EndpointConfig::default(), Some(config), socket, runtime)
        .with_context(|| format!("starting the QUIC endpoint on {listen}"))
}

fn server_config(tls: &TlsFiles) -> Result<quinn::ServerConfig> {
    let (certs, key) = tls.load()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the QUIC certificate and key")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).context("QUIC TLS configuration")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    // One signaling stream per connection; no unidirectional streams.
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().context("idle timeout")?));
    transport.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    transport.datagram_send_buffer_size(DATAGRAM_BUFFER);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_sits_next_to_https() {
        let q = QuicSection::default();
        assert_eq!(q.listen_addr("127.0.0.1:8443".parse().unwrap()).to_string(), "127.0.0.1:8444");
        assert_eq!(q.listen_addr("0.0.0.0:0".parse().unwrap()).to_string(), "0.0.0.0:0");
        assert_eq!(q.listen_addr("[::1]:65535".parse().unwrap()).to_string(), "[::1]:0");
        let fixed = QuicSection { listen: Some("127.0.0.1:9000".parse().unwrap()), ..QuicSection::default() };
        assert_eq!(fixed.listen_addr("127.0.0.1:8443".parse().unwrap()).to_string(), "127.0.0.1:9000");
    }
}
