//! The client side of SIP over TLS to trunks: every TLS connection palaver opens is made
//! here, with the configuration of the one trunk it goes to.
//!
//! rsipstack has one client TLS configuration per transport layer (one trust store, one SNI
//! rule: the request's host, so an in-dialog request to an SBC's IP Contact sent the IP), but
//! it dials every TLS connection through its `platform::tls` connector seam when one is
//! registered. palaver registers [`Connector`] there: it picks the trunk the connection is
//! for ([`TrunkTlsSet::trunk_for`]: the trunk's `address`, else its `tls_server_name`, else
//! the one TLS trunk on that IP) and handshakes with that trunk's own rustls
//! [`ClientConfig`]: only its `ca_file` as roots (so a certificate from trunk A's CA is
//! refused for trunk B), its `crl_file`, its client certificate (mutual TLS), and its
//! `tls_server_name` as the SNI and checked name whatever host the request named (so a
//! redial after the connection dropped still says `sbc.carrier.example`). A destination that
//! is no TLS trunk is refused: palaver opens TLS connections only to its trunks.
//!
//! The seam is process-wide (rsipstack keeps one connector); each gateway registers its
//! trunks' set, and the newest set that knows a destination answers (a process runs one
//! gateway; tests may run several, on distinct addresses).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, RwLock, Weak};
use std::time::Duration;

use rsipstack::platform::tls::{TlsClientConfig, TlsConnector as SeamConnector, TlsStream as SeamStream};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::config::{TrunkConfig, TrunkTransport};
use crate::gateway::SipError;

/// TCP connect and TLS handshake limits of a dial (rsipstack's own dial had none).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One TLS trunk's client side.
pub(crate) struct TrunkTls {
    pub name: String,
    pub address: SocketAddr,
    /// `tls_server_name` (lower case), when set.
    dns_name: Option<String>,
    /// The SNI and the name the certificate is checked against: `tls_server_name`, else
    /// `address`'s IP (rustls sends no SNI for an IP).
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
}

impl TrunkTls {
    fn new(trunk: &TrunkConfig) -> Result<Self, SipError> {
        let server_name = match &trunk.tls_server_name {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|_| bad(trunk, format!("tls_server_name `{name}` is not a DNS name")))?,
            None => ServerName::IpAddress(trunk.address.ip().into()),
        };
        Ok(Self {
            name: trunk.name.clone(),
            address: trunk.address,
            dns_name: trunk.tls_server_name.as_ref().map(|n| n.to_ascii_lowercase()),
            server_name,
            config: Arc::new(client_config(trunk)?),
        })
    }

    /// The SNI this trunk's handshakes send (`None`: an IP, no SNI).
    pub fn sni(&self) -> Option<&str> {
        self.dns_name.as_deref()
    }
}

fn bad(trunk: &TrunkConfig, why: String) -> SipError {
    SipError::Transport(format!("trunk `{}`: {why}", trunk.name))
}

fn read(trunk: &TrunkConfig, key: &str, path: &Path) -> Result<Vec<u8>, SipError> {
    let text = std::fs::read(path).map_err(|e| SipError::TlsFile(path.display().to_string(), e))?;
    if !String::from_utf8_lossy(&text).contains("-----BEGIN ") {
        return Err(bad(trunk, format!("{key} {} holds no PEM", path.display())));
    }
    Ok(text)
}

/// The trunk's rustls client configuration: its `ca_file` as the only roots (with its
/// `crl_file`), and its client certificate when it has one.
fn client_config(trunk: &TrunkConfig) -> Result<ClientConfig, SipError> {
    let ca = trunk.ca_file.as_deref().ok_or_else(|| bad(trunk, "transport = \"tls\" needs ca_file".into()))?;
    let pem = read(trunk, "ca_file", ca)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(trunk, format!("ca_file {}: {e}", ca.display())))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(trunk, format!("ca_file {} holds no PEM certificate", ca.display())));
    }
    let mut verifier = WebPkiServerVerifier::builder(Arc::new(roots));
    if let Some(path) = &trunk.crl_file {
        let pem = read(trunk, "crl_file", path)?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(trunk, format!("crl_file {}: {e}", path.display())))?;
        if crls.is_empty() {
            return Err(bad(trunk, format!("crl_file {} holds no X509 CRL", path.display())));
        }
        verifier = verifier.with_crls(crls).only_check_end_entity_revocation().allow_unknown_revocation_status();
    }
    let verifier = verifier.build().map_err(|e| bad(trunk, format!("ca_file/crl_file: {e}")))?;
    let builder = ClientConfig::builder().with_webpki_verifier(verifier);
    match (&trunk.client_cert_file, &trunk.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(trunk, "client_cert_file", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(trunk, format!("client_cert_file {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read(trunk, "client_key_file", key)?)
                .map_err(|e| bad(trunk, format!("client_key_file {}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| bad(trunk, format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// A gateway's TLS trunks.
pub(crate) struct TrunkTlsSet {
    trunks: Vec<TrunkTls>,
}

impl TrunkTlsSet {
    pub fn new(trunks: &[TrunkConfig]) -> Result<Self, SipError> {
        let trunks = trunks.iter().filter(|t| t.transport == TrunkTransport::Tls).map(TrunkTls::new);
        Ok(Self { trunks: trunks.collect::<Result<_, _>>()? })
    }

    pub fn is_empty(&self) -> bool {
        self.trunks.is_empty()
    }

    /// The trunk a TLS connection to `addr`, asked for under `requested` (the request's host:
    /// a name or an IP), belongs to: the trunk whose `address` it is, else the one whose
    /// `tls_server_name` was asked for, else the only TLS trunk on `addr`'s IP (an SBC whose
    /// Contact names another port).
    pub fn trunk_for(&self, addr: SocketAddr, requested: &str) -> Option<&TrunkTls> {
        if let Some(trunk) = self.trunks.iter().find(|t| t.address == addr) {
            return Some(trunk);
        }
        let requested = requested.trim_end_matches('.').to_ascii_lowercase();
        if let Some(trunk) = self.trunks.iter().find(|t| t.dns_name.as_deref() == Some(requested.as_str())) {
            return Some(trunk);
        }
        let mut same_ip = self.trunks.iter().filter(|t| t.address.ip() == addr.ip());
        match (same_ip.next(), same_ip.next()) {
            (Some(trunk), None) => Some(trunk),
            _ => None,
        }
    }
}

/// The gateways' trunk sets the connector serves (weak: a dropped gateway's set goes).
static SETS: RwLock<Vec<Weak<TrunkTlsSet>>> = RwLock::new(Vec::new());
static INSTALL: Once = Once::new();

/// Makes `set`'s trunks reachable over TLS: rsipstack's dials go through [`Connector`].
pub(crate) fn register(set: &Arc<TrunkTlsSet>) {
    let mut sets = SETS.write().unwrap_or_else(|e| e.into_inner());
    sets.retain(|s| s.strong_count() > 0);
    sets.push(Arc::downgrade(set));
    INSTALL.call_once(|| rsipstack::platform::tls::set_client_connector(Arc::new(Connector)));
}

/// rsipstack's TLS client connector (see the module docs).
struct Connector;

#[async_trait::async_trait]
impl SeamConnector for Connector {
    async fn connect(&self, config: &TlsClientConfig, addr: SocketAddr) -> rsipstack::Result<Box<dyn SeamStream>> {
        let set = {
            let sets = SETS.read().unwrap_or_else(|e| e.into_inner());
            sets.iter().rev().filter_map(Weak::upgrade).find(|s| s.trunk_for(addr, &config.server_name).is_some())
        };
        let Some(trunk) = set.as_ref().and_then(|s| s.trunk_for(addr, &config.server_name)) else {
            tracing::warn!(%addr, requested = %config.server_name, "TLS connection refused: not a TLS trunk");
            return Err(rsipstack::Error::Error(format!(
                "TLS to {addr} (`{}`) refused: no `transport = \"tls\"` trunk has this address, name or IP",
                config.server_name
            )));
        };
        let stream = dial(trunk, addr).await.map_err(rsipstack::Error::Error)?;
        Ok(Box::new(stream))
    }
}

/// Opens a TLS connection to `addr` with `trunk`'s configuration. When the trunk asked for
/// a client certificate, the dial waits a moment for its verdict: in TLS 1.3 the client's
/// handshake ends before the server has checked the client's certificate, so a refusal
/// (none presented, or one it does not trust) arrives as an alert just after; caught here it
/// fails the call at once with the trunk's words instead of a transaction timeout.
pub(crate) async fn dial(trunk: &TrunkTls, addr: SocketAddr) -> Result<ClientStream, String> {
    let started = std::time::Instant::now();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("TCP connect to {addr} timed out"))?
        .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
    let asked = Arc::new(AtomicBool::new(false));
    let mut config = (*trunk.config).clone();
    config.client_auth_cert_resolver =
        Arc::new(NoteRequest { inner: config.client_auth_cert_resolver.clone(), asked: asked.clone() });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(trunk.server_name.clone(), tcp))
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out"))?
        .map_err(|e| e.to_string())?;
    let client_certificate = trunk.config.client_auth_cert_resolver.has_certs();
    let (mut read, write) = tokio::io::split(tls);
    let mut early = Vec::new();
    let asked = asked.load(Ordering::Relaxed);
    if asked {
        // About one more round trip (the handshake took about two), within bounds.
        let verdict = started.elapsed().clamp(VERDICT_MIN, VERDICT_MAX);
        let mut buf = vec![0; 16 * 1024];
        match tokio::time::timeout(verdict, read.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(n)) => early.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if client_certificate => {
                return Err(format!("the trunk refused palaver's client certificate: {e}"));
            }
            Ok(Err(e)) => return Err(format!("the trunk requires a client certificate (certificate required): {e}")),
        }
    }
    tracing::info!(trunk = %trunk.name, %addr, sni = ?trunk.sni(), client_certificate_asked = asked, client_certificate, "TLS connection to trunk");
    Ok(ClientStream { read: Mutex::new((read, early)), write: Mutex::new(write), local })
}

/// How long a dial waits for the verdict on its client certificate.
const VERDICT_MIN: Duration = Duration::from_millis(50);
const VERDICT_MAX: Duration = Duration::from_secs(1);

/// The trunk's client certificate resolver, noting that the trunk asked for one (rustls
/// asks the resolver only when a CertificateRequest came).
#[derive(Debug)]
struct NoteRequest {
    inner: Arc<dyn ResolvesClientCert>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for NoteRequest {
    fn resolve(&self, hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.inner.resolve(hints, schemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A handshaken connection, as rsipstack's seam reads and writes it (the halves are locked
/// apart: a pending read must not hold up a write).
pub(crate) struct ClientStream {
    /// The read half, and bytes read while waiting for the certificate verdict.
    read: Mutex<(ReadHalf<Tls>, Vec<u8>)>,
    write: Mutex<WriteHalf<Tls>>,
    local: SocketAddr,
}

#[async_trait::async_trait]
impl SeamStream for ClientStream {
    async fn recv(&self) -> rsipstack::Result<Vec<u8>> {
        let mut read = self.read.lock().await;
        if !read.1.is_empty() {
            return Ok(std::mem::take(&mut read.1));
        }
        let mut buf = vec![0; 16 * 1024];
        let n = read.0.read(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn send_all(&self, data: Vec<u8>) -> rsipstack::Result<()> {
        let mut write = self.write.lock().await;
        write.write_all(&data).await?;
        Ok(write.flush().await?)
    }

    async fn shutdown(&self) -> rsipstack::Result<()> {
        Ok(self.write.lock().await.shutdown().await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.local)
    }
}
