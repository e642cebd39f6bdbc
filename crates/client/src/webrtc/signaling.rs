//! The WebSocket signaling of a WebRTC participant: `wss://<server>/signaling/v1` with the
//! access token as `Authorization: Bearer`, trusting the given CA. Connecting waits for
//! `welcome`; then a reader task routes each server frame (answers to requests go to their
//! waiting caller by `requestId`, `media.answer` to the media negotiation, everything else to
//! the bounded event queue) and a heartbeat task sends `ping` every `heartbeatIntervalMs`
//! (the request plumbing is [`crate::requests`], shared with the QUIC client).

use crate::requests::{self, FrameReader, FrameWriter, Requests};
use crate::{ClientError, Welcome};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use palaver_core::protocol::calls::CallEvent;
use palaver_core::protocol::{ClientMessage, ServerMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type WsStream = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The socket's sending half: each frame one text message.
pub(crate) struct SocketWriter(tokio::sync::Mutex<SplitSink<WsStream, Message>>);

impl FrameWriter for SocketWriter {
    async fn write_json(&self, json: String) -> Result<(), ClientError> {
        self.0.lock().await.send(Message::Text(json.into())).await.map_err(|e| ClientError::Signaling(e.to_string()))
    }
}

/// The socket's receiving half: text messages are frames; pings, pongs and binary are skipped.
struct SocketReader(SplitStream<WsStream>);

impl FrameReader for SocketReader {
    async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        while let Some(message) = self.0.next().await {
            match message.map_err(|e| ClientError::Signaling(e.to_string()))? {
                Message::Text(text) => return Ok(Some(text.as_bytes().to_vec())),
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// One authenticated signaling socket and its tasks.
pub(crate) struct Signaling {
    pub requests: Arc<Requests<SocketWriter>>,
    pub welcome: Welcome,
    pub events: mpsc::Receiver<ServerMessage>,
    /// SDP of each `media.answer` the server sent (in order).
    pub answers: mpsc::Receiver<String>,
    /// `call.*` frames: calls between users, invitations into conversations, moves.
    pub calls: mpsc::Receiver<CallEvent>,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
}

/// `host:port` and the TLS server name of an `https://host:port[/...]` base URL.
pub(crate) fn authority(base_url: &str) -> Result<(String, String), ClientError> {
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

pub(crate) fn tls_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, ClientError> {
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
            let (sink, stream) = socket.split();
            let mut reader = SocketReader(stream);
            let welcome = requests::read_welcome(&mut reader).await?;
            Ok::<_, ClientError>((sink, reader, welcome))
        };
        let (sink, reader, welcome) =
            tokio::time::timeout(timeout, handshake).await.map_err(|_| ClientError::Timeout(timeout))??;
        let requests = Arc::new(Requests::new(SocketWriter(tokio::sync::Mutex::new(sink)), "w"));
        let (events_tx, events) = mpsc::channel(event_queue.max(1));
        let (answers_tx, answers) = mpsc::channel(8);
        let (calls_tx, calls) = mpsc::channel(event_queue.max(1));
        // `media.answer` (of this participant's media, in a conversation or a call) goes to the
        // negotiation: one offer at a time is outstanding.
        let divert = move |message| match message {
            ServerMessage::MediaAnswer { sdp, .. } => {
                let _ = answers_tx.try_send(sdp);
                None
            }
            other => Some(other),
        };
        let heartbeat_period = Duration::from_millis(welcome.heartbeat_interval_ms.max(100));
        let tasks = vec![
            tokio::spawn(requests::read_frames(reader, requests.clone(), events_tx, Some(calls_tx), divert)),
            tokio::spawn(requests::heartbeat(requests.clone(), heartbeat_period)),
        ];
        Ok(Self { requests, welcome, events, answers, calls, tasks, timeout })
    }

    /// Registers a fresh `requestId` and sends `message` with it; the receiver gets the frame
    /// answering it (`ack`, `joined`, `error`...).
    pub async fn send_tracked(
        &self,
        message: ClientMessage,
    ) -> Result<(String, oneshot::Receiver<ServerMessage>), ClientError> {
        self.requests.send_tracked(message).await
    }

    /// Sends `message` and waits for its answer; an `error` answer is [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        self.requests.request(message, self.timeout).await
    }

    /// Joins a conversation; the `joined` answer as [`crate::Joined`].
    pub async fn join(
        &self,
        target: palaver_core::protocol::JoinTarget,
        display_name: Option<String>,
    ) -> Result<crate::Joined, ClientError> {
        self.requests.join(target, display_name, self.timeout).await
    }

    /// Sends `message` without a `requestId`.
    pub async fn send(&self, message: ClientMessage) -> Result<(), ClientError> {
        self.requests.send(message).await
    }

    /// Stops the tasks and closes the socket (close frame, best effort).
    pub async fn close(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let mut sink = self.requests.writer().0.lock().await;
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
