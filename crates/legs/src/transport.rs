//! What a leg needs from the process: its configuration ([`LegConfig`]) and its way into the
//! media plane ([`LegTransport`], implemented by the server's media adapter): RTP into its
//! worker, the mix out of its link, and the per-participant audio of its conversation (mute,
//! hold, addressed streams, the per-source tap).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use palaver_sfu::engine::SourceTap;
use palaver_sfu::net::DirectLink;
use palaver_sfu::router::TransportId;

use crate::sources::Sources;

/// What a leg needs of the process.
#[derive(Debug, Clone)]
pub struct LegConfig {
    /// Where recordings are written.
    pub recordings_dir: PathBuf,
    pub sources: Arc<Sources>,
    /// The per-source taps shared by the legs of each conversation (an unmixed stream and an
    /// unmixed recording at once).
    pub taps: Arc<crate::tap_hub::TapHubs>,
}

/// How a leg's packets reach its worker; the server's media adapter implements it.
pub trait LegTransport: Send + Sync + 'static {
    /// Queues one RTP packet of the leg into the worker (false when the queue is full).
    fn send(&self, packet: Bytes) -> bool;
    /// The leg's link (the mix arrives on its egress queue).
    fn link(&self) -> &Arc<DirectLink>;
    /// Releases the leg's media (after it finished its work).
    fn detach(&self);
    /// What the leg sends under `ssrc` is heard only by `listeners` (participant raw ids,
    /// joining participants included); `None` ends that stream.
    fn set_audience(&self, ssrc: u32, listeners: Option<Vec<String>>);
    /// Mutes or unmutes `target` (a raw id) in the conversation's mix.
    fn set_muted(&self, target: &str, muted: bool);
    /// Holds `target` (out of the mix; it hears only what is addressed to it) or unholds it.
    fn set_held(&self, target: &str, held: bool);
    /// Starts (`Some`) or stops the conversation's per-source tap into this leg.
    fn set_source_tap(&self, tap: Option<Arc<SourceTap>>);
    /// The participant (media name) a tapped frame's source transport belongs to.
    fn source_name(&self, source: TransportId) -> Option<String>;
}
