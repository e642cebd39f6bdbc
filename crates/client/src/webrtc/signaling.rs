//! The WebSocket signaling of a WebRTC participant: `wss://<server>/signaling/v1` with the
//! access token as `Authorization: Bearer`, trusting the given CA. Connecting waits for
//! `welcome`; then a reader task routes each server frame (answers to requests go to their
//! waiting caller by `requestId`, `media.answer` to the media negotiation, everything else to
//! the bounded event queue) and a heartbeat task sends `ping` every `heartbeatIntervalMs`.

use crate::{ClientError, Welcome};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use palaver_core::protocol::{ClientFrame, ClientMessage, ServerMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type WsStream = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Signaling counters (monotonic).
#[derive(Default)]
pub(crate) struct SignalingCounters {
    pub events_dropped: AtomicU64,
    pub invalid_frames: AtomicU64,
}

pub(crate) struct Shared {
    sink: tokio::sync::Mutex<SplitSink<WsStream, Message>>,
    pending: Mutex<HashMap<String, oneshot::Sender<ServerMessage>>>,
    next_request: AtomicU64,
    pub counters: SignalingCounters,
}

impl Shared {
    async fn write(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let json = serde_json::to_string(frame).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        self.sink.lock().await.send(Message::Text(json.into())).await.map_err(|e| ClientError::Signaling(e.to_string()))
    }

    fn forget(&self, id: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(id);
        }
    }
}

/// One authenticated signaling socket and its tasks.
pub(crate) struct Signaling {
    pub shared: Arc<Shared>,
    pub welcome: Welcome,
    pub events: mpsc::Receiver<ServerMessage>,
    /// SDP of each `media.answer` the server sent (in order).
    pub answers: mpsc::Receiver<String>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
}

/// `host:port` and the TLS server name of an `https://host:port[/...]` base URL.
fn authority(base_url: &str) -> Result<(String, String), ClientError> {
    let rest = base_url
        .strip_prefix("https://")
        .ok_or_else(|| ClientError::InvalidArgument(format!("base URL must be https://host:port, got {base_url}")))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => return Err(ClientError::InvalidArgument(format!("base URL has no port: {base_url}"))),
    };
    Ok((host_port.to_string(), host.trim_matches(['[', ']']).to_string()))
}

fn tls_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::CaCertificate(e.to_string()))?;
        roots.add(cert).map_err(|e| ClientError::CaCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::CaCertificate("no CERTIFICATE block found".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn parse_server(text: &str) -> Result<ServerMessage, ClientError> {
    serde_json::from_str(text).map_err(|e| ClientError::Protocol(format!("unreadable server frame: {e}")))
}

fn welcome_of(message: ServerMessage) -> Result<Welcome, ClientError> {
    match message {
        ServerMessage::Welcome {
            protocol_version,
            connection_id,
            identifier,
            display_name,
            heartbeat_interval_ms,
            idle_timeout_ms,
            max_frame_bytes,
            token_expires_at_ms,
        } => Ok(Welcome {
            protocol_version,
            connection_id,
            identifier,
            display_name,
            heartbeat_interval_ms,
            idle_timeout_ms,
            max_frame_bytes,
            token_expires_at_ms,
        }),
        ServerMessage::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
        other => Err(ClientError::Protocol(format!("expected welcome, got {other:?}"))),
    }
}

/// The `requestId` a server frame answers, if any.
fn answered_request(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::Ack { request_id }
        | ServerMessage::Error { request_id, .. }
        | ServerMessage::Joined { request_id, .. }
        | ServerMessage::CallPlaced { request_id, .. }
        | ServerMessage::MediaAttached { request_id, .. } => request_id.as_deref(),
        _ => None,
    }
}

/// Reads text frames until one is not a ping/pong/binary; `Ok(None)` when the socket ends.
async fn next_text(stream: &mut SplitStream<WsStream>) -> Result<Option<String>, ClientError> {
    while let Some(message) = stream.next().await {
        match message.map_err(|e| ClientError::Signaling(e.to_string()))? {
            Message::Text(text) => return Ok(Some(text.to_string())),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

impl Signaling {
    /// Opens the socket to `base_url` (`https://host:port`), authenticated with `token`, and
    /// waits for `welcome`.
    pub async fn connect(
        base_url: &str,
        ca_pem: &str,
        token: &str,
        event_queue: usize,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let (host_port, server_name) = authority(base_url)?;
        let connector = tls_connector(ca_pem)?;
        let name = ServerName::try_from(server_name.clone())
            .map_err(|_| ClientError::InvalidArgument(format!("bad server name {server_name}")))?;
        let mut request = format!("wss://{host_port}/signaling/v1")
            .into_client_request()
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidArgument("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", bearer);
        let handshake = async {
            let tcp =
                tokio::net::TcpStream::connect(&host_port).await.map_err(|e| ClientError::Signaling(e.to_string()))?;
            tcp.set_nodelay(true).map_err(|e| ClientError::Signaling(e.to_string()))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| ClientError::Tls(e.to_string()))?;
            let (socket, _) = tokio_tungstenite::client_async(request, tls).await.map_err(refusal)?;
            let (sink, mut stream) = socket.split();
            let first = next_text(&mut stream).await?.ok_or(ClientError::Closed)?;
            let welcome = welcome_of(parse_server(&first)?)?;
            Ok::<_, ClientError>((sink, stream, welcome))
        };
        let (sink, stream, welcome) =
            tokio::time::timeout(timeout, handshake).await.map_err(|_| ClientError::Timeout(timeout))??;
        let shared = Arc::new(Shared {
            sink: tokio::sync::Mutex::new(sink),
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            counters: SignalingCounters::default(),
        });
        let (events_tx, events) = mpsc::channel(event_queue.max(1));
        let (answers_tx, answers) = mpsc::channel(8);
        let heartbeat_period = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
        let tasks = vec![
            tokio::spawn(read_frames(stream, shared.clone(), events_tx, answers_tx)),
            tokio::spawn(heartbeat(shared.clone(), heartbeat_period)),
        ];
        Ok(Self { shared, welcome, events, answers, tasks, timeout })
    }

    /// Registers a fresh `requestId` and sends `message` with it; the receiver gets the frame
    /// answering it (`ack`, `joined`, `error`...).
    pub async fn send_tracked(
        &self,
        message: ClientMessage,
    ) -> Result<(String, oneshot::Receiver<ServerMessage>), ClientError> {
        let id = format!("w{}", self.shared.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().map_err(|_| ClientError::Closed)?.insert(id.clone(), tx);
        if let Err(e) = self.shared.write(&ClientFrame { request_id: Some(id.clone()), message }).await {
            self.shared.forget(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Sends `message` and waits for its answer; an `error` answer is [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let (id, rx) = self.send_tracked(message).await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => {
                self.shared.forget(&id);
                Err(ClientError::Timeout(self.timeout))
            }
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(ServerMessage::Error { code, message, .. })) => Err(ClientError::Refused { code, message }),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Sends `message` without a `requestId`.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.shared.write(&ClientFrame { request_id: None, message }).await
    }

    /// Stops the tasks and closes the socket (close frame, best effort).
    pub async fn close(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let mut sink = self.shared.sink.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// An HTTP refusal of the upgrade (401/403 with the ACS error body) as [`ClientError::Refused`].
fn refusal(e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    if let tokio_tungstenite::tungstenite::Error::Http(response) = &e {
        let body = response.body().as_deref().unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
            && let (Some(code), Some(message)) = (v["error"]["code"].as_str(), v["error"]["message"].as_str())
        {
            return ClientError::Refused { code: code.to_string(), message: message.to_string() };
        }
        return ClientError::Signaling(format!("upgrade refused with HTTP {}", response.status()));
    }
    ClientError::Signaling(e.to_string())
}

async fn read_frames(
    mut stream: SplitStream<WsStream>,
    shared: Arc<Shared>,
    events: mpsc::Sender<ServerMessage>,
    answers: mpsc::Sender<String>,
) {
    loop {
        let text = match next_text(&mut stream).await {
            Ok(Some(text)) => text,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "signaling socket ended");
                break;
            }
        };
        let message = match parse_server(&text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a server frame");
                shared.counters.invalid_frames.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if let Some(id) = answered_request(&message) {
            let waiter = shared.pending.lock().ok().and_then(|mut p| p.remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
                continue;
            }
        }
        match message {
            ServerMessage::Pong { .. } => {}
            ServerMessage::MediaAnswer { sdp, call_id: None } => {
                let _ = answers.try_send(sdp);
            }
            other => {
                if events.try_send(other).is_err() {
                    shared.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if let Ok(mut pending) = shared.pending.lock() {
        pending.clear();
    }
}

async fn heartbeat(shared: Arc<Shared>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ping = ClientFrame { request_id: None, message: ClientMessage::Ping { nonce: None } };
        if shared.write(&ping).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_give_authority_and_server_name() {
        let (a, n) = authority("https://127.0.0.1:8443").unwrap();
        assert_eq!((a.as_str(), n.as_str()), ("127.0.0.1:8443", "127.0.0.1"));
        let (a, n) = authority("https://[::1]:9000/meetings").unwrap();
        assert_eq!((a.as_str(), n.as_str()), ("[::1]:9000", "::1"));
        assert!(authority("http://127.0.0.1:8443").is_err());
        assert!(authority("https://localhost").is_err());
    }

    #[test]
    fn a_ca_without_certificates_is_an_error() {
        assert!(matches!(tls_connector("not a pem"), Err(ClientError::CaCertificate(_))));
    }
}
