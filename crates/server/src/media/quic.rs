//! `media.attach` for QUIC participants: the participant's media becomes a queue transport of
//! its room's worker (plain RTP through the connection's datagram path, no ICE/DTLS/SRTP), a
//! producer per declared track (audio feeds the room's mixer), and one audio receive slot that
//! carries its mix, like a browser's first audio slot (so QUIC participants and browsers share
//! one room, router and mixer). Video receive slots
//! are not offered to QUIC participants yet; their sent video is forwarded to browsers.

use super::{Participant, Producer, Room, Slot, WebRtcMedia, mix_output, plan_slots, refused};
use crate::quic::paths::{QuicPaths, Route};
use palaver_core::ErrorCode;
use palaver_core::protocol::{MediaKind, MediaTrack};
use palaver_sfu::router::{LayerSpec, ProducerId, ProducerSpec, TrackKind, TransportId};
use palaver_sfu::rtp::{Codec, ExtensionMap};
use palaver_sfu::worker::{Command, DEFAULT_EGRESS_CAPACITY, DatagramLink, RoomId};
use palaver_signaling::gateway::{MediaError, MediaPathId, MediaSession};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

/// RFC 6464 audio-level header-extension ID on QUIC (fixed: there is no SDP).
pub const QUIC_AUDIO_LEVEL_ID: u8 = 1;
/// The receive slot's name in `media.slots`-style bookkeeping.
const QUIC_AUDIO_MID: &str = "quic-audio";

fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
        MediaKind::Screen => TrackKind::Screen,
    }
}

/// A producer for one declared track: one layer, identified by its SSRC.
fn producer_spec(id: ProducerId, transport: TransportId, track: &MediaTrack) -> ProducerSpec {
    let kind = track_kind(track.kind);
    let (codec, bitrate) = match kind {
        TrackKind::Audio => (Codec::Opus, 128_000),
        TrackKind::Video | TrackKind::Screen => (Codec::Vp8, 2_500_000),
    };
    ProducerSpec {
        id,
        transport,
        kind,
        mid: None,
        codecs: vec![(track.payload_type, codec)],
        layers: vec![LayerSpec {
            rid: None,
            ssrc: Some(track.ssrc),
            rtx_ssrc: None,
            width: 1280,
            height: 720,
            max_bitrate_bps: bitrate,
        }],
        extensions: ExtensionMap { audio_level: QUIC_AUDIO_LEVEL_ID, ..ExtensionMap::default() },
    }
}

impl WebRtcMedia {
    /// The registry of QUIC connections' datagram paths (shared with the QUIC endpoint).
    pub fn quic_paths(&self) -> Arc<QuicPaths> {
        self.quic_paths.clone()
    }

    /// Creates the room's record (and the worker's room) on first use.
    fn ensure_room(&self, state: &mut super::State, conversation: &str) -> Result<(), MediaError> {
        if state.rooms.contains_key(conversation) {
            return Ok(());
        }
        state.next_room += 1;
        let id = RoomId(state.next_room);
        let worker = self.pool.worker_for_room(id).index;
        self.send(worker, Command::CreateRoom { room: id })?;
        let room =
            Room { id, worker, participants: HashMap::new(), next_join: 0, spoke: HashMap::new(), speaker_round: 0 };
        state.rooms.insert(conversation.to_owned(), room);
        Ok(())
    }

    /// `media.attach`: (re)creates the participant's queue transport, producers and audio slot,
    /// routes the connection's datagrams to it, and returns the tracks the server sends.
    pub(super) fn attach_quic(
        &self,
        session: &MediaSession,
        path_id: MediaPathId,
        tracks: &[MediaTrack],
    ) -> Result<Vec<MediaTrack>, MediaError> {
        let path = self
            .quic_paths
            .get(path_id)
            .ok_or_else(|| refused(ErrorCode::InvalidState, "the QUIC connection has closed"))?;
        self.release(session, false);
        let mut guard = self.state.lock().map_err(|_| refused(ErrorCode::InternalError, "media state poisoned"))?;
        let state = &mut *guard;
        self.ensure_room(state, &session.conversation_id)?;
        let transport = TransportId(state.next());
        let mut producers = Vec::new();
        let mut specs = Vec::new();
        if session.may_send_media {
            for track in tracks {
                let id = ProducerId(state.next());
                specs.push(producer_spec(id, transport, track));
                producers.push(Producer { id, kind: track_kind(track.kind) });
            }
        }
        let audio_pt =
            tracks.iter().find(|t| t.kind == MediaKind::Audio).map_or(MediaTrack::DEFAULT_OPUS_PT, |t| t.payload_type);
        let ssrc = rand::thread_rng().gen_range(1..u32::MAX);
        let slots = vec![Slot { mid: QUIC_AUDIO_MID.to_owned(), kind: TrackKind::Audio, ssrc, consumer: None }];
        let room = state.rooms.get_mut(&session.conversation_id).expect("room ensured above");
        let (room_id, worker) = (room.id, room.worker);
        let link = DatagramLink::new(DEFAULT_EGRESS_CAPACITY);
        self.send(worker, Command::AddQueueTransport { id: transport, room: room_id, link: link.clone() })?;
        for spec in specs {
            self.send(worker, Command::AddProducer { room: room_id, spec })?;
        }
        if let Some(command) = mix_output(room_id, transport, &slots, Some(audio_pt)) {
            self.send(worker, command)?;
        }
        room.next_join += 1;
        let joined = room.next_join;
        room.participants.insert(session.participant_id.clone(), Participant { transport, producers, slots, joined });
        let sharing = state.sharing.get(&session.conversation_id).map(String::as_str);
        let plan = plan_slots(room, sharing, None, &mut state.next_id);
        self.apply(&session.conversation_id, room, plan)?;
        drop(guard);
        path.set_route(Some(Route { pool: self.pool.clone(), worker, transport, link }));
        tracing::info!(conversation = %session.conversation_id, participant = %session.participant_id,
            transport = transport.0, tracks = tracks.len(), "QUIC media attached");
        Ok(vec![MediaTrack { kind: MediaKind::Audio, ssrc, payload_type: audio_pt }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_tracks_become_single_layer_producers() {
        let audio = producer_spec(ProducerId(3), TransportId(2), &MediaTrack::opus(77));
        assert_eq!(audio.kind, TrackKind::Audio);
        assert_eq!(audio.codecs, vec![(111, Codec::Opus)]);
        assert_eq!(audio.layers.len(), 1);
        assert_eq!(audio.layers[0].ssrc, Some(77));
        assert_eq!(audio.extensions.audio_level, QUIC_AUDIO_LEVEL_ID);
        let video = MediaTrack { kind: MediaKind::Screen, ssrc: 5, payload_type: 96 };
        let video = producer_spec(ProducerId(4), TransportId(2), &video);
        assert_eq!((video.kind, video.codecs[0]), (TrackKind::Screen, (96, Codec::Vp8)));
    }
}
