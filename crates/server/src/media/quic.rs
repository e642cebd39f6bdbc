//! `media.attach` for QUIC participants: the participant's media becomes a queue transport of
//! its room's worker (plain RTP through the connection's datagram path, no ICE/DTLS/SRTP), a
//! producer per declared track group (audio feeds the room's mixer; rid layers of one kind are
//! one simulcast producer), one audio receive slot that carries its mix, and the camera/screen
//! receive slots it asks for (`receive`), which the last-N planner fills exactly like a
//! browser's (so QUIC participants and browsers share one room, router and mixer).

use super::{Participant, Producer, Room, Slot, WebRtcMedia, mix_output, plan_slots, refused};
use crate::quic::paths::{QuicPaths, Route};
use palaver_core::ErrorCode;
use palaver_core::MediaPathId;
use palaver_core::protocol::{MediaKind, MediaReceive, MediaTrack, SentTrackGroup, group_sent_tracks};
use palaver_sfu::router::{LayerSpec, Numbering, ProducerId, ProducerSpec, TrackKind, TransportId};
use palaver_sfu::rtp::{Codec, ExtensionMap, ShortId};
use palaver_sfu::worker::{Command, DEFAULT_EGRESS_CAPACITY, DatagramLink, RoomId};
use palaver_signaling::gateway::{MediaError, MediaSession};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;

/// RFC 6464 audio-level header-extension ID on QUIC (fixed: there is no SDP).
pub const QUIC_AUDIO_LEVEL_ID: u8 = 1;
/// The audio receive slot's name (the mix).
const QUIC_AUDIO_MID: &str = "quic-audio";
/// The screen receive slot's name; camera slots are `quic-video-0`, `quic-video-1`, ...
const QUIC_SCREEN_MID: &str = "quic-screen";
/// Size of a layer without width/height and a rid other than q/h/f, and of a single-layer track.
const FULL_SIZE: (u16, u16) = (1280, 720);
/// Expected bitrate of a 1280×720 layer (smaller layers scale by area).
const FULL_BITRATE_BPS: u64 = 2_500_000;

fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
        MediaKind::Screen => TrackKind::Screen,
    }
}

/// A layer's picture size: its own width/height, else the usual size of rid q/h/f
/// (320×180, 640×360, 1280×720), else (other rids) the browser rule — layer `index` of
/// `count` in declaration order is 1280×720 scaled down by 2 per layer above it.
fn layer_size(track: &MediaTrack, index: usize, count: usize) -> (u16, u16) {
    let by_rid = match track.rid.as_deref() {
        Some("q") => (320, 180),
        Some("h") => (640, 360),
        Some("f") | None => FULL_SIZE,
        Some(_) => {
            let scale = 1u16 << (count - 1 - index).min(4);
            (FULL_SIZE.0 / scale, FULL_SIZE.1 / scale)
        }
    };
    (track.width.unwrap_or(by_rid.0), track.height.unwrap_or(by_rid.1))
}

/// A producer for one declared track group: one layer per track, identified by its SSRC.
fn producer_spec(id: ProducerId, transport: TransportId, group: &SentTrackGroup<'_>) -> ProducerSpec {
    let kind = track_kind(group.kind);
    let codec = if kind == TrackKind::Audio { Codec::Opus } else { Codec::Vp8 };
    let count = group.layers.len();
    let layers = group
        .layers
        .iter()
        .enumerate()
        .map(|(index, track)| {
            let (width, height) = layer_size(track, index, count);
            let area = u64::from(width) * u64::from(height);
            let full_area = u64::from(FULL_SIZE.0) * u64::from(FULL_SIZE.1);
            let max_bitrate_bps = match kind {
                TrackKind::Audio => 128_000,
                _ => (FULL_BITRATE_BPS * area / full_area).max(100_000),
            };
            LayerSpec {
                rid: track.rid.as_deref().and_then(|r| ShortId::new(r.as_bytes())),
                ssrc: Some(track.ssrc),
                rtx_ssrc: None,
                width,
                height,
                max_bitrate_bps,
            }
        })
        .collect();
    let extensions = match kind {
        TrackKind::Audio => ExtensionMap { audio_level: QUIC_AUDIO_LEVEL_ID, ..ExtensionMap::default() },
        _ => ExtensionMap::default(),
    };
    ProducerSpec {
        id,
        transport,
        kind,
        mid: None,
        codecs: vec![(group.layers[0].payload_type, codec)],
        layers,
        extensions,
    }
}

/// The receive slots of a QUIC participant: the mix (audio), `receive.video` camera slots and
/// the screen slot if asked for, each with a fresh server SSRC.
fn receive_slots(receive: MediaReceive) -> Vec<Slot> {
    let mut rng = rand::thread_rng();
    let mut slot = |mid: String, kind| Slot { mid, kind, ssrc: rng.gen_range(1..u32::MAX), consumer: None };
    let mut slots = vec![slot(QUIC_AUDIO_MID.to_owned(), TrackKind::Audio)];
    for i in 0..receive.video {
        slots.push(slot(format!("quic-video-{i}"), TrackKind::Video));
    }
    if receive.screen {
        slots.push(slot(QUIC_SCREEN_MID.to_owned(), TrackKind::Screen));
    }
    slots
}

/// What the server sends on each slot, as listed in `media.attached` (VP8 on video slots).
fn attached_tracks(slots: &[Slot], audio_pt: u8, vp8_pt: u8) -> Vec<MediaTrack> {
    slots
        .iter()
        .map(|s| {
            let (kind, payload_type) = match s.kind {
                TrackKind::Audio => (MediaKind::Audio, audio_pt),
                TrackKind::Video => (MediaKind::Video, vp8_pt),
                TrackKind::Screen => (MediaKind::Screen, vp8_pt),
            };
            // The mix is not a named slot (`media.slots` lists video slots only).
            let mid = (s.kind != TrackKind::Audio).then(|| s.mid.clone());
            MediaTrack { mid, ..MediaTrack::new(kind, s.ssrc, payload_type) }
        })
        .collect()
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

    /// `media.attach`: (re)creates the participant's queue transport, producers and receive
    /// slots, routes the connection's datagrams to it, and returns the tracks the server sends.
    pub(super) fn attach_quic(
        &self,
        session: &MediaSession,
        path_id: MediaPathId,
        tracks: &[MediaTrack],
        receive: MediaReceive,
    ) -> Result<Vec<MediaTrack>, MediaError> {
        let groups = group_sent_tracks(tracks).map_err(|m| refused(ErrorCode::InvalidParameter, m))?;
        receive.check().map_err(|m| refused(ErrorCode::InvalidParameter, m))?;
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
            for group in &groups {
                let id = ProducerId(state.next());
                specs.push(producer_spec(id, transport, group));
                producers.push(Producer { id, kind: track_kind(group.kind) });
            }
        }
        let declared_pt =
            |audio: bool| tracks.iter().find(|t| (t.kind == MediaKind::Audio) == audio).map(|t| t.payload_type);
        let audio_pt = declared_pt(true).unwrap_or(MediaTrack::DEFAULT_OPUS_PT);
        let vp8_pt = declared_pt(false).unwrap_or(MediaTrack::DEFAULT_VP8_PT);
        let slots = receive_slots(receive);
        if let Ok(mut numberings) = self.numberings.lock() {
            // Forwarded video carries the client's VP8 payload type and no header extensions.
            for slot in slots.iter().filter(|s| s.kind != TrackKind::Audio) {
                let numbering = Numbering { codecs: vec![(vp8_pt, Codec::Vp8)], extensions: ExtensionMap::default() };
                numberings.insert(slot.ssrc, numbering);
            }
        }
        let answer = attached_tracks(&slots, audio_pt, vp8_pt);
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
        // A participant with video slots is told what they carry (`media.slots`), like a browser after its offer.
        let fresh = (!receive.is_audio_only()).then_some(session.participant_id.as_str());
        let plan = plan_slots(room, sharing, fresh, &mut state.next_id);
        self.apply(&session.conversation_id, room, plan)?;
        drop(guard);
        path.set_route(Some(Route { pool: self.pool.clone(), worker, transport, link }));
        tracing::info!(conversation = %session.conversation_id, participant = %session.participant_id,
            transport = transport.0, producers = groups.len(), video_slots = receive.video, screen_slot = receive.screen,
            "QUIC media attached");
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(tracks: &[MediaTrack]) -> Vec<SentTrackGroup<'_>> {
        group_sent_tracks(tracks).unwrap()
    }

    #[test]
    fn single_tracks_become_single_layer_producers() {
        let tracks = [MediaTrack::opus(77), MediaTrack::vp8(MediaKind::Screen, 5)];
        let groups = group(&tracks);
        let audio = producer_spec(ProducerId(3), TransportId(2), &groups[0]);
        assert_eq!(audio.kind, TrackKind::Audio);
        assert_eq!(audio.codecs, vec![(111, Codec::Opus)]);
        assert_eq!(audio.layers.len(), 1);
        assert_eq!(audio.layers[0].ssrc, Some(77));
        assert_eq!(audio.extensions.audio_level, QUIC_AUDIO_LEVEL_ID);
        let screen = producer_spec(ProducerId(4), TransportId(2), &groups[1]);
        assert_eq!((screen.kind, screen.codecs[0]), (TrackKind::Screen, (96, Codec::Vp8)));
        assert_eq!((screen.layers[0].width, screen.layers[0].height), FULL_SIZE);
        assert_eq!(screen.extensions, ExtensionMap::default());
    }

    #[test]
    fn rid_layers_become_one_simulcast_producer_with_sizes() {
        let tracks = [
            MediaTrack::vp8_layer(MediaKind::Video, 10, "f"),
            MediaTrack::vp8_layer(MediaKind::Video, 11, "q"),
            MediaTrack::vp8_layer(MediaKind::Video, 12, "h").with_size(480, 270),
        ];
        let groups = group(&tracks);
        assert_eq!(groups.len(), 1);
        let spec = producer_spec(ProducerId(1), TransportId(2), &groups[0]);
        let layers: Vec<(Option<u32>, u16, u16, Option<ShortId>)> =
            spec.layers.iter().map(|l| (l.ssrc, l.width, l.height, l.rid)).collect();
        let rid = |r: &str| ShortId::new(r.as_bytes());
        assert_eq!(
            layers,
            vec![(Some(10), 1280, 720, rid("f")), (Some(11), 320, 180, rid("q")), (Some(12), 480, 270, rid("h"))]
        );
        assert_eq!(spec.layers[0].max_bitrate_bps, FULL_BITRATE_BPS);
        assert!(spec.layers[1].max_bitrate_bps < spec.layers[2].max_bitrate_bps);
        // Other rids: declaration order, smallest first, as browsers send them.
        let other = [MediaTrack::vp8_layer(MediaKind::Video, 1, "a"), MediaTrack::vp8_layer(MediaKind::Video, 2, "b")];
        let spec = producer_spec(ProducerId(1), TransportId(2), &group(&other)[0]);
        assert_eq!((spec.layers[0].height, spec.layers[1].height), (360, 720));
    }

    #[test]
    fn receive_request_makes_named_slots_and_attached_tracks() {
        let slots = receive_slots(MediaReceive { video: 2, screen: true });
        let shape: Vec<(&str, TrackKind)> = slots.iter().map(|s| (s.mid.as_str(), s.kind)).collect();
        assert_eq!(
            shape,
            vec![
                ("quic-audio", TrackKind::Audio),
                ("quic-video-0", TrackKind::Video),
                ("quic-video-1", TrackKind::Video),
                ("quic-screen", TrackKind::Screen),
            ]
        );
        let tracks = attached_tracks(&slots, 109, 100);
        assert_eq!(tracks[0], MediaTrack { payload_type: 109, ..MediaTrack::opus(slots[0].ssrc) });
        assert_eq!(tracks[1].mid.as_deref(), Some("quic-video-0"));
        assert_eq!((tracks[1].kind, tracks[1].ssrc, tracks[1].payload_type), (MediaKind::Video, slots[1].ssrc, 100));
        assert_eq!((tracks[3].kind, tracks[3].mid.as_deref()), (MediaKind::Screen, Some("quic-screen")));
        assert_eq!(receive_slots(MediaReceive::default()).len(), 1);
    }
}
