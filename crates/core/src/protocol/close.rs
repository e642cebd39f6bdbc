//! Why the server ends a signaling connection on its own initiative, as both transports say
//! it: a WebSocket close code (the private range 4000-4999, or the RFC 6455 code that names
//! the reason) and a QUIC application close code, each with the same reason text. Clients tell
//! a revoked or rate-limited session from a dropped one by it.

/// A server-initiated end of a signaling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionClose {
    /// The identity's access tokens were revoked, or the identity was deleted.
    AccessRevoked,
    /// The client kept sending frames over its rate limit (WebSocket 1008 "policy violation").
    RateLimited,
}

impl ConnectionClose {
    /// The close a WebSocket close `code` stands for, if it is one of these.
    pub fn from_websocket_code(code: u16) -> Option<Self> {
        [Self::AccessRevoked, Self::RateLimited].into_iter().find(|c| c.websocket_code() == code)
    }

    /// The WebSocket close frame code.
    pub const fn websocket_code(self) -> u16 {
        match self {
            Self::AccessRevoked => 4001,
            Self::RateLimited => 1008,
        }
    }

    /// The QUIC application close code (after the transport's own 0-3 in [`super::quic`]:
    /// normal, protocol, authentication failed, shutdown).
    pub const fn quic_code(self) -> u32 {
        match self {
            Self::AccessRevoked => 4,
            Self::RateLimited => 5,
        }
    }

    /// The close reason text of both transports.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::AccessRevoked => "access revoked",
            Self::RateLimited => "rate limit exceeded",
        }
    }
}
