//! [`MediaPathId`]: the name both planes use for a connection-owned datagram path (one QUIC
//! connection), which the media plane attaches a participant's direct transport to. The
//! transport shell registers it; signaling passes it along with `media.attach`.

/// A connection-owned datagram path the media plane can attach a participant to, registered
/// by the transport shell that accepted the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaPathId(pub u64);
