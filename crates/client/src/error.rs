//! What can go wrong for a client: connecting, the server refusing a request, the
//! connection ending, bad input handed to the library.

/// Every error of `palaver-client`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad CA certificate PEM: {0}")]
    CaCertificate(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("binding the local UDP socket: {0}")]
    Bind(#[source] std::io::Error),
    #[error("cannot start the QUIC connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("QUIC connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("writing to the signaling stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("reading the signaling stream: {0}")]
    Read(String),
    #[error("sending a datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// The server answered with an `error` frame.
    #[error("refused by the server: {code}: {message}")]
    Refused { code: String, message: String },
    /// In a cluster, the conversation is hosted by another node: connect to `quic` and join
    /// there ([`crate::QuicClient::join_following_redirects`] does it).
    #[error("the conversation is hosted by node {node} at {quic}")]
    Redirected { node: String, quic: String },
    /// The server sent something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection is closed (by either side); no more frames can be exchanged.
    #[error("the connection is closed")]
    Closed,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The WebSocket signaling transport failed (WebRTC participants).
    #[error("WebSocket signaling: {0}")]
    Signaling(String),
    /// The WebRTC peer connection failed or could not be negotiated.
    #[error("WebRTC: {0}")]
    WebRtc(String),
}

impl ClientError {
    /// The server's error code (e.g. `"WrongPasscode"`), for [`ClientError::Refused`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the server refused with `code`.
    pub fn is_refusal(&self, code: palaver_core::ErrorCode) -> bool {
        self.code() == Some(code.as_str())
    }
}
