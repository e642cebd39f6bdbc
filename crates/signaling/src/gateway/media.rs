//! The seam to the media plane: the gateway hands SDP offers and ICE candidates of a
//! participant (and, on QUIC connections, `media.attach` requests naming the connection's
//! datagram path) to a [`MediaPlane`] and relays its answer back on the socket.
//! Until a media plane is plugged in, [`MediaUnavailable`] answers every offer with the
//! `MediaUnavailable` error code.

use palaver_core::protocol::{IceCandidate, MediaTrack, UdpMedia};
use palaver_core::{ErrorCode, MediaPathId};
use std::future::Future;
use std::pin::Pin;

/// Which participant session a media call is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaSession {
    pub conversation_id: String,
    pub participant_id: String,
    /// False for room consumers: they only receive.
    pub may_send_media: bool,
}

/// A media-plane refusal, sent to the client as an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MediaError {
    pub code: ErrorCode,
    pub message: String,
}

/// What `media.attach` resolves to: the tracks the server sends, and for a connection whose
/// media carrier is SRTP over UDP, where to send it (`media.attached`'s `udp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedMedia {
    pub tracks: Vec<MediaTrack>,
    pub udp: Option<UdpMedia>,
}

pub type MediaFuture<T> = Pin<Box<dyn Future<Output = Result<T, MediaError>> + Send>>;

/// The media plane as the control plane sees it (its port): join by SDP offer or by direct
/// path attach, trickle ICE, share, subscribe, leave.
pub trait MediaPlane: Send + Sync + 'static {
    /// An SDP offer from the client; resolves to the SDP answer.
    fn offer(&self, session: MediaSession, sdp: String) -> MediaFuture<String>;
    /// A trickled ICE candidate from the client.
    fn ice_candidate(&self, session: MediaSession, candidate: IceCandidate) -> MediaFuture<()>;
    /// The participant's session ended: release its media resources.
    fn leave(&self, session: MediaSession);
    /// The participant started or stopped sharing its screen (roster `screenShare`): the
    /// media plane routes only active screen shares to the others' screen slots.
    fn screen_share(&self, _session: MediaSession, _active: bool) {}
    /// The participant sized or paused its video receive slots (`media.subscribe`, already
    /// validated); unknown mids are ignored.
    fn subscribe(&self, _session: MediaSession, _slots: Vec<palaver_core::protocol::SlotSubscription>) {}
    /// Plain RTP over the connection's datagram `path` (QUIC): the participant sends `tracks`
    /// (already checked: `group_sent_tracks`) and receives the audio mix plus the video slots
    /// `receive` asks for; resolves to the tracks the server sends it (and, for an SRTP
    /// carrier, the worker's UDP address and ICE credentials). Replaces an earlier media
    /// session of the participant.
    fn attach(
        &self,
        session: MediaSession,
        path: MediaPathId,
        tracks: Vec<MediaTrack>,
        receive: palaver_core::protocol::MediaReceive,
    ) -> MediaFuture<AttachedMedia> {
        let _ = (session, path, tracks, receive);
        Box::pin(async { Err(MediaUnavailable::refusal()) })
    }
    /// Seats a server-side participant (a Call Automation leg: player, recognizer, recorder,
    /// voice-bot stream) in `session.conversation_id` under `session.participant_id`: it is
    /// heard in the mix and hears the mix (see [`super::legs`]). Detach it with
    /// [`ServerLeg::detach`](super::legs::ServerLeg::detach).
    fn attach_leg(&self, session: MediaSession) -> MediaFuture<std::sync::Arc<dyn super::legs::ServerLeg>> {
        let _ = session;
        Box::pin(async { Err(MediaUnavailable::refusal()) })
    }
    /// A SIP trunk leg (plain RTP/AVP): joins the participant with the media the trunk's SDP
    /// `peer_sdp` offers, choosing the first of `codecs` (`PCMU`, `PCMA`, `opus`) it lists;
    /// resolves to the server's SDP answer. Replaces an earlier session of the participant.
    fn attach_trunk(&self, session: MediaSession, peer_sdp: String, codecs: Vec<String>) -> MediaFuture<TrunkAnswer> {
        let _ = (session, peer_sdp, codecs);
        Box::pin(async { Err(MediaUnavailable::refusal()) })
    }
    /// Moves a phone leg's trunk transport from `from`'s conference to `to`'s (Call
    /// Automation moving a phone caller into a group call or a room); `peer_sdp` and `codecs`
    /// are what the leg last agreed with its trunk. [`TrunkReseat::Moved`]: done, same RTP
    /// address; [`TrunkReseat::Reoffer`]: nothing changed, the leg must be offered the new
    /// conference's address (a re-INVITE).
    fn reseat_trunk(
        &self,
        from: MediaSession,
        to: MediaSession,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkReseat> {
        let _ = (from, to, peer_sdp, codecs);
        Box::pin(async { Err(MediaUnavailable::refusal()) })
    }
    /// Conversation `conversation` (no media yet) is to be hosted where `with` is, once it
    /// gets media: a phone rung into a group call or a room is offered that worker's socket.
    fn colocate(&self, conversation: &str, with: &str) {
        let _ = (conversation, with);
    }
    /// The server's SDP offer for a call out through a trunk (`codecs` in preference order);
    /// the trunk's answer then goes to [`Self::attach_trunk`].
    fn trunk_offer(&self, session: MediaSession, codecs: Vec<String>) -> MediaFuture<String> {
        let _ = (session, codecs);
        Box::pin(async { Err(MediaUnavailable::refusal()) })
    }
}

/// What the media plane agreed with a SIP trunk for a phone leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkAnswer {
    /// The server's SDP (an answer to the trunk's offer).
    pub sdp: String,
    /// The codec agreed (`PCMU`, `PCMA`, `opus`).
    pub codec: String,
}

/// Where a re-seated phone leg's media is ([`MediaPlane::reseat_trunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkReseat {
    /// The trunk transport is in the new conference; its RTP address did not change.
    Moved,
    /// The new conference is served from another socket: the leg is still where it was and
    /// must be offered that socket (re-INVITE) to join there.
    Reoffer,
}

/// The negotiator used while no media plane is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaUnavailable;

impl MediaUnavailable {
    fn refusal() -> MediaError {
        MediaError { code: ErrorCode::MediaUnavailable, message: "no media plane is configured on this server".into() }
    }
}

impl MediaPlane for MediaUnavailable {
    fn offer(&self, _session: MediaSession, _sdp: String) -> MediaFuture<String> {
        Box::pin(async { Err(Self::refusal()) })
    }
    fn ice_candidate(&self, _session: MediaSession, _candidate: IceCandidate) -> MediaFuture<()> {
        Box::pin(async { Err(Self::refusal()) })
    }
    fn leave(&self, _session: MediaSession) {}
}
