//! `listen_tls`: palaver's own TLS acceptor in front of rsipstack's connections, because
//! rsipstack's TLS listener cannot ask for client certificates. With `[sip] tls_client_ca`
//! every connection must present a certificate chaining to that CA (mutual TLS, as SBCs in
//! direct routing expect of each other); a handshake without one, or with another CA's,
//! fails before any SIP is read and is logged. An accepted connection (its SNI and whether a
//! client certificate came are logged) is handed to rsipstack as a server TLS connection, so
//! dialogs, Contacts and in-dialog requests work as on rsipstack's own listener. The
//! trunks' allow-list runs before the handshake (anyone else costs one counter).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transport::tls::{TlsConfig, TlsConnection, TlsListenerConnection};
use rsipstack::transport::{SipAddr, SipConnection};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gateway::SipError;

/// A handshake must finish this soon (a peer that opens a connection and says nothing
/// holds one task, not a listener).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn pem(path: &Path) -> Result<Vec<u8>, SipError> {
    std::fs::read(path).map_err(|e| SipError::TlsFile(path.display().to_string(), e))
}

fn invalid(what: &str, path: &Path, why: impl std::fmt::Display) -> SipError {
    SipError::Transport(format!("[sip] {what} {}: {why}", path.display()))
}

/// The listener's rustls configuration: `cert`/`key`, and client certificates required and
/// verified against `client_ca` (and its CRLs, `client_crl`) when it is set.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_crl: Option<&Path>,
) -> Result<ServerConfig, SipError> {
    let chain = CertificateDer::pem_slice_iter(&pem(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls_cert", cert, e))?;
    if chain.is_empty() {
        return Err(invalid("tls_cert", cert, "no PEM certificate"));
    }
    let private = PrivateKeyDer::from_pem_slice(&pem(key)?).map_err(|e| invalid("tls_key", key, e))?;
    let builder = match client_ca {
        Some(path) => {
            let certs = CertificateDer::pem_slice_iter(&pem(path)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("tls_client_ca", path, e))?;
            let mut roots = RootCertStore::empty();
            if roots.add_parsable_certificates(certs).0 == 0 {
                return Err(invalid("tls_client_ca", path, "no PEM certificate"));
            }
            let mut verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            if let Some(crl) = client_crl {
                let crls = CertificateRevocationListDer::pem_slice_iter(&pem(crl)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("tls_client_crl", crl, e))?;
                if crls.is_empty() {
                    return Err(invalid("tls_client_crl", crl, "no X509 CRL"));
                }
                verifier =
                    verifier.with_crls(crls).only_check_end_entity_revocation().allow_unknown_revocation_status();
            }
            let verifier = verifier.build().map_err(|e| invalid("tls_client_ca", path, e))?;
            ServerConfig::builder().with_client_cert_verifier(verifier)
        }
        None => ServerConfig::builder().with_no_client_auth(),
    };
    builder.with_single_cert(chain, private).map_err(|e| invalid("tls_cert/tls_key", cert, e))
}

/// A bound `listen_tls`, not yet accepting.
pub(crate) struct Listener {
    listener: TcpListener,
    local: SipAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    mutual: bool,
}

impl Listener {
    /// `mutual`: `config` requires client certificates (for the log).
    pub async fn bind(addr: SocketAddr, config: ServerConfig, mutual: bool) -> Result<Self, SipError> {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| SipError::Transport(format!("listen_tls {addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| SipError::Transport(e.to_string()))?;
        let local = SipAddr { r#type: Some(rsipstack::sip::Transport::Tls), addr: bound.into() };
        Ok(Self { listener, local, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), mutual })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local.get_socketaddr().expect("an IP address")
    }

    /// The listener's address as rsipstack's listener list holds it, so the Via of
    /// palaver's requests over TLS names `listen_tls` (rsipstack looks for its own
    /// addresses there). Never served by rsipstack: added after it started its listeners.
    pub async fn placeholder(&self) -> Result<SipConnection, SipError> {
        let listener = TlsListenerConnection::new(self.local_addr(), None, TlsConfig::default())
            .await
            .map_err(|e| SipError::Transport(e.to_string()))?;
        Ok(SipConnection::TlsListener(listener))
    }

    /// Accepts until `cancel`: allowed sources only, then the handshake, then the
    /// connection goes to `endpoint`'s transport layer.
    pub fn serve(
        self,
        endpoint: Arc<EndpointInner>,
        allowed: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
        cancel: CancellationToken,
    ) {
        tokio::spawn(async move {
            tracing::info!(listen_tls = %self.local, mutual_tls = self.mutual, "SIP/TLS listener");
            loop {
                let accepted = tokio::select! {
                    _ = cancel.cancelled() => return,
                    accepted = self.listener.accept() => accepted,
                };
                let (tcp, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "listen_tls accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if !allowed(remote.ip()) {
                    continue;
                }
                let endpoint = endpoint.clone();
                let (acceptor, local, cancel) = (self.acceptor.clone(), self.local.clone(), cancel.child_token());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::warn!(%remote, %error, "SIP/TLS handshake on listen_tls refused");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(%remote, "SIP/TLS handshake on listen_tls timed out");
                            return;
                        }
                    };
                    let (_, session) = stream.get_ref();
                    let sni = session.server_name().map(str::to_owned);
                    let client_certificate = session.peer_certificates().is_some_and(|c| !c.is_empty());
                    tracing::info!(%remote, sni = ?sni, client_certificate, "SIP/TLS connection accepted");
                    let remote = SipAddr { r#type: Some(rsipstack::sip::Transport::Tls), addr: remote.into() };
                    match TlsConnection::from_server_stream(stream, local, remote.clone(), Some(cancel)).await {
                        Ok(connection) => endpoint.transport_layer.add_connection(SipConnection::Tls(connection)),
                        Err(error) => tracing::warn!(%remote, %error, "SIP/TLS connection not usable"),
                    }
                });
            }
        });
    }
}
