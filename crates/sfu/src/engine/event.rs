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
    /// A command was refused.
    CommandFailed { command: &'static str, error: CommandError },
}
