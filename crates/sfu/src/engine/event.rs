//! What an [`Engine`](super::Engine) reports back to the control plane.

use std::net::SocketAddr;

use super::{CommandError, RouterId};
use crate::router::TransportId;

/// What an engine reports back to the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// Loudest talkers of a router (from its mixer), at most every 300 ms and only on change.
    ActiveSpeakers { router: RouterId, speakers: [Option<TransportId>; 3] },
    /// A transport's peer proved its ICE credentials from this address.
    TransportConnected { transport: TransportId, remote: SocketAddr },
    /// A DTMF tone (RFC 4733 event code 0–15) ended on a transport with a telephone-event
    /// payload type; reported once per tone. `duration` is in 8 kHz timestamp units.
    Dtmf { transport: TransportId, event: u8, duration: u16 },
    /// A command was refused.
    CommandFailed { command: &'static str, error: CommandError },
}
