//! Why the server ends a signaling connection on its own initiative, as both transports say
//! it: a WebSocket close code (private range 4000-4999) and a QUIC application close code,
//! each with the same reason text. Clients tell a revoked session from a dropped one by it.

/// A server-initiated end of a signaling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionClose {
    /// The identity's access tokens were revoked, or the identity was deleted.
    AccessRevoked,
}

impl ConnectionClose {
    /// The close a WebSocket close `code` stands for, if it is one of these.
    pub fn from_websocket_code(code: u16) -> Option<Self> {
        [Self::AccessRevoked].into_iter().find(|c| c.websocket_code() == code)
    }

    /// The WebSocket close frame code.
    pub const fn websocket_code(self) -> u16 {
        match self {
            Self::AccessRevoked => 4001,
        }
    }

    /// The QUIC application close code (after the transport's own 0-3 in [`super::quic`]:
    /// normal, protocol, authentication failed, shutdown).
    pub const fn quic_code(self) -> u32 {
        match self {
            Self::AccessRevoked => 4,
        }
    }

    /// The close reason text of both transports.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::AccessRevoked => "access revoked",
        }
    }
}
