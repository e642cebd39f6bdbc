//! The WebRTC media negotiator of `palaver run`: maps conversations to media rooms (pinned to
//! a worker of the [`WorkerPool`]) and participants to WebRTC transports. An offer creates the
//! transport and a producer per sent track, answers with the worker's host candidate, and
//! subscribes every participant to the others' camera and screen: one remote track per video
//! receive m-section ("slot") of the client's offer, planned by [`slots`] (last-N: recent
//! speakers first; a leaver's slot is repointed to another track). Each participant is told
//! whose track each video slot carries (`media.slots`). Audio is mixed: every audio producer
//! feeds the room's mixer and the first audio slot carries the participant's mix
//! ([`mix_output`]); further audio slots stay silent. Active-speaker events of the workers
//! (from the mixer's talker selection) go to the gateway.

mod quic;
mod slots;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_core::ErrorCode;
use palaver_core::MediaPathId;
use palaver_core::protocol::{IceCandidate, MediaReceive, MediaSlot, MediaTrack, SlotSubscription};
use palaver_sfu::router::{
    ConsumerId, ConsumerSpec, LayerSpec, Numbering, ProducerId, ProducerSpec, TrackKind, TransportId,
};
use palaver_sfu::rtp::Codec;
use palaver_sfu::rtp::ShortId;
use palaver_sfu::webrtc::dtls::DtlsIdentity;
use palaver_sfu::webrtc::sdp::{AnswerParams, AnswerTrack, Offer, write_answer};
use palaver_sfu::worker::{Command, MixOutputSpec, RoomId, WebRtcTransportSpec, WorkerEvent, WorkerPool};
use palaver_signaling::gateway::media::MediaFuture;
use palaver_signaling::gateway::{Gateway, MediaError, MediaPlane, MediaSession};
use rand::Rng;
use slots::{Candidate, SlotAction};
use tokio::sync::mpsc;

struct Producer {
    id: ProducerId,
    kind: TrackKind,
}

/// A m-section on which the server sends one remote track to this participant.
struct Slot {
    mid: String,
    kind: TrackKind,
    ssrc: u32,
    consumer: Option<(ConsumerId, ProducerId)>,
}

struct Participant {
    transport: TransportId,
    producers: Vec<Producer>,
    slots: Vec<Slot>,
    /// Order of arrival in the room (earlier arrivals are preferred among silent people).
    joined: u64,
}

struct Room {
    id: RoomId,
    worker: usize,
    participants: HashMap<String, Participant>,
    next_join: u64,
    /// When each participant last was among the active speakers (a counter, higher = later).
    spoke: HashMap<String, u64>,
    speaker_round: u64,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Room>,
    next_id: u32,
    next_room: u64,
    /// The participant sharing its screen, per conversation (roster `screenShare`).
    sharing: HashMap<String, String>,
}

/// A `media.slots` frame for one participant.
struct SlotUpdate {
    conversation: String,
    participant: String,
    slots: Vec<MediaSlot>,
}

impl State {
    fn next(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }
}

/// WebRTC media through the shared-nothing worker pool.
pub struct WebRtcMedia {
    pool: Arc<WorkerPool>,
    identity: DtlsIdentity,
    announced_ip: IpAddr,
    state: Mutex<State>,
    slot_updates: mpsc::UnboundedSender<SlotUpdate>,
    /// Taken by the event relay, which sends the frames in order.
    slot_update_rx: Mutex<Option<mpsc::UnboundedReceiver<SlotUpdate>>>,
    /// How each receive slot's m-section numbers payload types and extensions, by slot SSRC
    /// (sent to the worker with every consumer filling that slot). Locked after `state`.
    numberings: Mutex<HashMap<u32, Numbering>>,
    /// Datagram paths of QUIC connections, for `media.attach` (see `quic.rs`).
    quic_paths: Arc<crate::quic::paths::QuicPaths>,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> MediaError {
    MediaError { code, message: message.into() }
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

impl WebRtcMedia {
    pub fn new(pool: Arc<WorkerPool>, identity: DtlsIdentity, announced_ip: IpAddr) -> Arc<Self> {
        let (slot_updates, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            pool,
            identity,
            announced_ip,
            state: Mutex::new(State::default()),
            slot_updates,
            slot_update_rx: Mutex::new(Some(rx)),
            numberings: Mutex::default(),
            quic_paths: Arc::default(),
        })
    }

    fn send(&self, worker: usize, command: Command) -> Result<(), MediaError> {
        self.pool.workers()[worker]
            .send(command)
            .map_err(|c| refused(ErrorCode::MediaUnavailable, format!("media worker busy ({})", c.name())))
    }

    /// Relays worker events: active speakers to the gateway (roster delta, ≤ every 300 ms),
    /// and `media.slots` frames to their participants (in the order they were planned).
    pub fn spawn_event_relay(self: &Arc<Self>, gateway: Gateway) -> tokio::task::JoinHandle<()> {
        let media = self.clone();
        let mut slot_updates = self.slot_update_rx.lock().ok().and_then(|mut rx| rx.take());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                if let Some(rx) = slot_updates.as_mut() {
                    tokio::select! {
                        _ = tick.tick() => {}
                        update = rx.recv() => {
                            match update {
                                Some(u) => {
                                    let delivered = gateway.send_media_slots(&u.conversation, &u.participant, u.slots).await;
                                    tracing::debug!(conversation = %u.conversation, participant = %u.participant, delivered, "media.slots sent");
                                }
                                None => slot_updates = None,
                            }
                            continue;
                        }
                    }
                } else {
                    tick.tick().await;
                }
                let mut speakers = Vec::new();
                media.pool.drain_events(|worker, event| match event {
                    WorkerEvent::ActiveSpeakers { room, speakers: ids } => speakers.push((room, ids)),
                    WorkerEvent::TransportConnected { transport, remote } => {
                        tracing::info!(worker, transport = transport.0, %remote, "media transport connected")
                    }
                    WorkerEvent::CommandFailed { command, error } => {
                        tracing::warn!(worker, command, %error, "media command failed")
                    }
                });
                for (room, ids) in speakers {
                    let resolved = media.speaker_names(room, &ids);
                    if let Some((conversation, names)) = resolved {
                        media.note_speakers(&conversation, &names);
                        gateway.active_speakers(&conversation, names).await;
                    }
                }
            }
        })
    }

    fn speaker_names(&self, room: RoomId, ids: &[Option<TransportId>; 3]) -> Option<(String, Vec<String>)> {
        let state = self.state.lock().ok()?;
        let (conversation, r) = state.rooms.iter().find(|(_, r)| r.id == room)?;
        let names = ids
            .iter()
            .flatten()
            .filter_map(|t| r.participants.iter().find(|(_, p)| p.transport == *t).map(|(name, _)| name.clone()))
            .collect();
        Some((conversation.clone(), names))
    }

    fn negotiate(&self, session: &MediaSession, sdp: &str) -> Result<String, MediaError> {
        let offer = Offer::parse(sdp).map_err(|e| refused(ErrorCode::BadRequest, e.to_string()))?;
        self.release(session, false);
        let mut guard = self.state.lock().map_err(|_| refused(ErrorCode::InternalError, "media state poisoned"))?;
        let state = &mut *guard;
        if !state.rooms.contains_key(&session.conversation_id) {
            state.next_room += 1;
            let id = RoomId(state.next_room);
            let worker = self.pool.worker_for_room(id).index;
            self.send(worker, Command::CreateRoom { room: id })?;
            state.rooms.insert(
                session.conversation_id.clone(),
                Room {
                    id,
                    worker,
                    participants: HashMap::new(),
                    next_join: 0,
                    spoke: HashMap::new(),
                    speaker_round: 0,
                },
            );
        }
        let transport = TransportId(state.next());
        let (ice_ufrag, ice_pwd) = (random_token(8), random_token(24));
        let mut producers = Vec::new();
        let mut producer_specs = Vec::new();
        let mut slots = Vec::new();
        let mut answer_tracks = Vec::new();
        // The Opus payload type of the first audio section the client receives on (the mix).
        let mut mix_pt = None;
        for (index, m) in offer.media.iter().enumerate() {
            let codecs: Vec<_> =
                m.accepted_codecs().iter().filter_map(|c| Some((c.payload_type, c.codec()?))).collect();
            if codecs.is_empty() {
                answer_tracks.push(None);
                continue;
            }
            let kind = slots::section_kind(&offer, index);
            let opus_pt = codecs.iter().find(|(_, c)| *c == Codec::Opus).map(|(pt, _)| *pt);
            let primary = m.fid_groups.first().map(|g| g.0).or(m.ssrcs.first().copied());
            if session.may_send_media && m.client_sends() && (primary.is_some() || !m.send_rids.is_empty()) {
                let layers = if m.send_rids.is_empty() {
                    let rtx = m.fid_groups.first().map(|g| g.1);
                    vec![LayerSpec {
                        rid: None,
                        ssrc: primary,
                        rtx_ssrc: rtx,
                        width: 1280,
                        height: 720,
                        max_bitrate_bps: 2_500_000,
                    }]
                } else {
                    let n = m.send_rids.len() as u16;
                    m.send_rids
                        .iter()
                        .enumerate()
                        .map(|(i, rid)| {
                            let scale = 1u16 << (n - 1 - i as u16);
                            LayerSpec {
                                rid: ShortId::new(rid.as_bytes()),
                                ssrc: None,
                                rtx_ssrc: None,
                                width: 1280 / scale,
                                height: 720 / scale,
                                max_bitrate_bps: 2_500_000 / u64::from(scale * scale),
                            }
                        })
                        .collect()
                };
                let id = ProducerId(state.next());
                producer_specs.push(ProducerSpec {
                    id,
                    transport,
                    kind,
                    mid: ShortId::new(m.mid.as_bytes()),
                    codecs,
                    layers,
                    extensions: m.extension_map(),
                });
                producers.push(Producer { id, kind });
            }
            if m.client_receives() {
                if kind == TrackKind::Audio && mix_pt.is_none() {
                    mix_pt = Some(opus_pt);
                }
                let ssrc = rand::thread_rng().gen_range(1..u32::MAX);
                let name = match kind {
                    TrackKind::Audio => "audio",
                    TrackKind::Video => "video",
                    TrackKind::Screen => "screen",
                };
                answer_tracks.push(Some(AnswerTrack {
                    ssrc,
                    stream_id: format!("palaver-{name}-{index}"),
                    track_id: format!("palaver-{name}-{index}-{ssrc}"),
                }));
                if let Ok(mut numberings) = self.numberings.lock() {
                    let codecs =
                        m.accepted_codecs().iter().filter_map(|c| Some((c.payload_type, c.codec()?))).collect();
                    numberings.insert(ssrc, Numbering { codecs, extensions: m.extension_map() });
                }
                slots.push(Slot { mid: m.mid.clone(), kind, ssrc, consumer: None });
            } else {
                answer_tracks.push(None);
            }
        }
        let room = state.rooms.get_mut(&session.conversation_id).expect("room inserted above");
        let (room_id, worker) = (room.id, room.worker);
        self.send(
            worker,
            Command::AddWebRtcTransport(Box::new(WebRtcTransportSpec {
                id: transport,
                room: room_id,
                ice_ufrag: ice_ufrag.clone(),
                ice_pwd: ice_pwd.clone(),
                dtls: self.identity.clone(),
                remote_fingerprint: offer.fingerprint.clone(),
            })),
        )?;
        for spec in producer_specs {
            self.send(worker, Command::AddProducer { room: room_id, spec })?;
        }
        if let Some(command) = mix_output(room_id, transport, &slots, mix_pt.flatten()) {
            self.send(worker, command)?;
        }
        room.next_join += 1;
        let joined = room.next_join;
        room.participants.insert(session.participant_id.clone(), Participant { transport, producers, slots, joined });
        let sharing = state.sharing.get(&session.conversation_id).map(String::as_str);
        let plan = plan_slots(room, sharing, Some(&session.participant_id), &mut state.next_id);
        self.apply(&session.conversation_id, room, plan)?;
        let candidate = SocketAddr::new(self.announced_ip, self.pool.workers()[worker].local_addr.port());
        let fingerprint = self.identity.fingerprint().to_owned();
        drop(guard);
        tracing::info!(conversation = %session.conversation_id, participant = %session.participant_id, transport = transport.0, "media offer answered");
        Ok(write_answer(
            &offer,
            &AnswerParams {
                ice_ufrag: &ice_ufrag,
                ice_pwd: &ice_pwd,
                fingerprint: &fingerprint,
                candidate,
                session_id: u64::from(transport.0),
                send: &answer_tracks,
            },
        ))
    }

    /// Sends a plan's worker commands and queues its `media.slots` frames.
    fn apply(&self, conversation: &str, room: &Room, plan: Plan) -> Result<(), MediaError> {
        for command in plan.commands {
            let numbering = match &command {
                Command::AddConsumer { room, spec } => self.numberings.lock().ok().and_then(|n| {
                    let numbering = n.get(&spec.ssrc)?.clone();
                    Some(Command::SetConsumerNumbering { room: *room, consumer: spec.id, numbering })
                }),
                _ => None,
            };
            self.send(room.worker, command)?;
            if let Some(numbering) = numbering {
                self.send(room.worker, numbering)?;
            }
        }
        for (participant, slots) in plan.frames {
            let update = SlotUpdate { conversation: conversation.to_owned(), participant, slots };
            let _ = self.slot_updates.send(update);
        }
        Ok(())
    }

    /// Recent speakers move to the front of everyone's camera slots (last-N).
    fn note_speakers(&self, conversation: &str, names: &[String]) {
        let Ok(mut guard) = self.state.lock() else { return };
        let state = &mut *guard;
        let Some(room) = state.rooms.get_mut(conversation) else { return };
        room.speaker_round += 1;
        // Most active first: the first name gets the highest mark.
        for (rank, name) in names.iter().enumerate() {
            room.spoke.insert(name.clone(), room.speaker_round * 16 + (15 - rank.min(15) as u64));
        }
        let sharing = state.sharing.get(conversation).map(String::as_str);
        let plan = plan_slots(room, sharing, None, &mut state.next_id);
        if let Err(e) = self.apply(conversation, room, plan) {
            tracing::warn!(conversation, error = %e, "slot change after a speaker change failed");
        }
    }

    /// Ends a participant's media session (`leaving`: it left the conversation; otherwise it
    /// renegotiates). The others' slots that showed its tracks are repointed first, so the
    /// worker never routes to a removed producer.
    fn release(&self, session: &MediaSession, leaving: bool) {
        let Ok(mut guard) = self.state.lock() else { return };
        let state = &mut *guard;
        if leaving && state.sharing.get(&session.conversation_id) == Some(&session.participant_id) {
            state.sharing.remove(&session.conversation_id);
        }
        let Some(room) = state.rooms.get_mut(&session.conversation_id) else { return };
        let Some(gone) = room.participants.remove(&session.participant_id) else { return };
        if let Ok(mut numberings) = self.numberings.lock() {
            for slot in &gone.slots {
                numberings.remove(&slot.ssrc);
            }
        }
        if leaving {
            room.spoke.remove(&session.participant_id);
        }
        let sharing = state.sharing.get(&session.conversation_id).map(String::as_str);
        if !room.participants.is_empty() {
            let plan = plan_slots(room, sharing, None, &mut state.next_id);
            if let Err(e) = self.apply(&session.conversation_id, room, plan) {
                tracing::warn!(participant = %session.participant_id, error = %e, "refilling slots failed");
            }
        }
        let (room_id, worker) = (room.id, room.worker);
        // Removes the transport's producers and consumers too.
        let _ = self.send(worker, Command::RemoveTransport { transport: gone.transport });
        if room.participants.is_empty() {
            let _ = self.send(worker, Command::CloseRoom { room: room_id });
            state.rooms.remove(&session.conversation_id);
        }
    }

    /// `media.subscribe`: pause/resume or cap the picture height of the participant's video
    /// slots that carry a track now (the client sends its whole wish list again after each
    /// `media.slots`, so a slot filled later gets it too). Unknown or empty mids are ignored.
    fn set_subscriptions(&self, session: &MediaSession, wishes: &[SlotSubscription]) {
        let Ok(guard) = self.state.lock() else { return };
        let Some(room) = guard.rooms.get(&session.conversation_id) else { return };
        let Some(participant) = room.participants.get(&session.participant_id) else { return };
        for wish in wishes {
            let slot = participant.slots.iter().find(|s| s.mid == wish.mid && s.kind != TrackKind::Audio);
            let Some((consumer, _)) = slot.and_then(|s| s.consumer) else { continue };
            let room_id = room.id;
            let mut commands = Vec::new();
            if let Some(paused) = wish.paused {
                commands.push(Command::SetConsumerPaused { room: room_id, consumer, paused });
            }
            if let Some(max_height) = wish.max_height {
                commands.push(Command::SetConsumerMaxHeight { room: room_id, consumer, max_height });
            }
            for command in commands {
                if let Err(e) = self.send(room.worker, command) {
                    let participant = &session.participant_id;
                    tracing::warn!(%participant, mid = %wish.mid, error = %e, "slot subscription not applied");
                }
            }
        }
    }

    /// The roster's screen-share flag: only the active share fills the others' screen slots.
    fn set_sharing(&self, session: &MediaSession, active: bool) {
        let Ok(mut guard) = self.state.lock() else { return };
        let state = &mut *guard;
        let conversation = &session.conversation_id;
        if active {
            state.sharing.insert(conversation.clone(), session.participant_id.clone());
        } else if state.sharing.get(conversation) == Some(&session.participant_id) {
            state.sharing.remove(conversation);
        } else {
            return;
        }
        let Some(room) = state.rooms.get_mut(conversation) else { return };
        let sharing = state.sharing.get(conversation).map(String::as_str);
        let plan = plan_slots(room, sharing, None, &mut state.next_id);
        if let Err(e) = self.apply(conversation, room, plan) {
            tracing::warn!(conversation = %conversation, error = %e, "screen slots could not follow the share");
        }
    }
}

/// The command that makes the room mix flow to a participant: on its first audio receive slot
/// (that slot's SSRC), with the Opus payload type it negotiated (111 when unknown). `None`
/// when it receives no audio.
fn mix_output(room: RoomId, transport: TransportId, slots: &[Slot], opus_pt: Option<u8>) -> Option<Command> {
    let slot = slots.iter().find(|s| s.kind == TrackKind::Audio)?;
    let output = MixOutputSpec { ssrc: slot.ssrc, payload_type: opus_pt.unwrap_or(111) };
    Some(Command::SetMixOutput { room, transport, output: Some(output) })
}

/// Worker commands and `media.slots` frames that carry out a slot plan.
#[derive(Default)]
struct Plan {
    commands: Vec<Command>,
    frames: Vec<(String, Vec<MediaSlot>)>,
}

/// Plans every participant's slots in `room` (see [`slots::plan`]) and updates the room's
/// record of them. Candidates: cameras of recent speakers first, then by arrival; only the
/// screen of `sharing`; every audio track. A frame goes to each participant whose video slots
/// changed, and always to `fresh` (just negotiated).
fn plan_slots(room: &mut Room, sharing: Option<&str>, fresh: Option<&str>, next_id: &mut u32) -> Plan {
    let mut owners: Vec<(&str, &Participant)> = room.participants.iter().map(|(n, p)| (n.as_str(), p)).collect();
    owners.sort_by_key(|(name, p)| (std::cmp::Reverse(room.spoke.get(*name).copied().unwrap_or(0)), p.joined));
    let mut candidates: Vec<(String, ProducerId, TrackKind)> = Vec::new();
    for (name, p) in &owners {
        for producer in &p.producers {
            if producer.kind != TrackKind::Screen || sharing == Some(*name) {
                candidates.push(((*name).to_owned(), producer.id, producer.kind));
            }
        }
    }
    let owner_of = |producer: ProducerId| candidates.iter().find(|c| c.1 == producer).map(|c| c.0.clone());
    let view: Vec<Candidate> = candidates
        .iter()
        .map(|(owner, producer, kind)| Candidate { owner, producer: *producer, kind: *kind })
        .collect();
    let mut plan = Plan::default();
    let room_id = room.id;
    let mut names: Vec<&String> = room.participants.keys().collect();
    names.sort();
    let names: Vec<String> = names.into_iter().cloned().collect();
    for name in names {
        let Some(participant) = room.participants.get_mut(&name) else { continue };
        let current: Vec<(TrackKind, Option<ProducerId>)> =
            participant.slots.iter().map(|s| (s.kind, s.consumer.map(|c| c.1))).collect();
        let actions = slots::plan(&name, &current, &view);
        let video_changed = actions.iter().any(|a| {
            let (SlotAction::Fill { slot, .. } | SlotAction::Repoint { slot, .. } | SlotAction::Empty { slot }) = *a;
            participant.slots[slot].kind != TrackKind::Audio
        });
        for action in actions {
            match action {
                SlotAction::Fill { slot, producer } => {
                    *next_id += 1;
                    let consumer = ConsumerId(*next_id);
                    let s = &mut participant.slots[slot];
                    s.consumer = Some((consumer, producer));
                    let spec = ConsumerSpec {
                        id: consumer,
                        transport: participant.transport,
                        producer,
                        ssrc: s.ssrc,
                        rtx: None,
                        paused: false,
                        max_height: 1080,
                    };
                    plan.commands.push(Command::AddConsumer { room: room_id, spec });
                }
                SlotAction::Repoint { slot, producer } => {
                    let s = &mut participant.slots[slot];
                    if let Some((consumer, _)) = s.consumer {
                        s.consumer = Some((consumer, producer));
                        plan.commands.push(Command::RepointConsumer { room: room_id, consumer, producer });
                    }
                }
                SlotAction::Empty { slot } => {
                    if let Some((consumer, _)) = participant.slots[slot].consumer.take() {
                        plan.commands.push(Command::RemoveConsumer { room: room_id, consumer });
                    }
                }
            }
        }
        if video_changed || fresh == Some(name.as_str()) {
            let frame = participant
                .slots
                .iter()
                .filter_map(|s| {
                    Some(MediaSlot {
                        mid: s.mid.clone(),
                        kind: slots::slot_kind(s.kind)?,
                        participant_id: s.consumer.and_then(|(_, producer)| owner_of(producer)),
                    })
                })
                .collect();
            plan.frames.push((name, frame));
        }
    }
    plan
}

/// The workers' counters summed into the metrics crate's snapshot (read at scrape time).
pub fn media_snapshot(pool: &WorkerPool) -> palaver_metrics::MediaSnapshot {
    use palaver_metrics::prom::DropReason as Metric;
    use palaver_sfu::worker::DropReason as Worker;
    let c = pool.counters();
    let mut dropped = [0u64; 6];
    let groups: [(Metric, &[Worker]); 4] = [
        (
            Metric::Malformed,
            &[
                Worker::NotMedia,
                Worker::MalformedRtp,
                Worker::MalformedRtcp,
                Worker::StunInvalid,
                Worker::StunBadIntegrity,
                Worker::Dtls,
                Worker::ProtectFailed,
            ],
        ),
        (Metric::SrtpAuth, &[Worker::SrtpAuthFailed, Worker::SrtpReplayed]),
        (
            Metric::UnknownSource,
            &[Worker::UnknownSource, Worker::UnknownSsrc, Worker::StunUnknownUfrag, Worker::NoRemoteAddress],
        ),
        (
            Metric::QueueFull,
            &[Worker::SendFailed, Worker::EventQueueFull, Worker::EgressQueueFull, Worker::IngressQueueFull],
        ),
    ];
    for (metric, reasons) in groups {
        dropped[metric.index()] = reasons.iter().map(|r| c.dropped(*r)).sum();
    }
    palaver_metrics::MediaSnapshot {
        packets_received: c.packets_in,
        packets_sent: c.packets_out,
        bytes_received: c.bytes_in,
        bytes_sent: c.bytes_out,
        packets_dropped: dropped,
        nacks_received: c.nack_received,
        plis_sent: c.keyframe_requests,
        packets_lost: c.reception.packets_lost,
        loss_ratio: c.reception.loss_ratio(),
        jitter_seconds: c.reception.jitter_seconds(),
        rtt_seconds: c.reception.rtt_seconds(),
        forwarding_latency: forwarding_latency(&c.forwarding_latency),
        mixer_tick: histogram(&c.mixer_tick, &palaver_sfu::worker::MIXER_TICK_BOUNDS_NS),
        mixer_overruns: c.mixer_overruns,
    }
}

/// The workers' forwarding-latency buckets as the metrics crate's histogram (same bounds).
fn forwarding_latency(h: &palaver_sfu::worker::LatencySnapshot) -> palaver_metrics::prom::HistogramSnapshot {
    histogram(h, &palaver_sfu::worker::LATENCY_BOUNDS_NS)
}

/// Worker histogram buckets (upper bounds `bounds_ns`) as the metrics crate's histogram.
fn histogram(h: &palaver_sfu::worker::LatencySnapshot, bounds_ns: &[u64]) -> palaver_metrics::prom::HistogramSnapshot {
    palaver_metrics::prom::HistogramSnapshot {
        upper_bounds_seconds: bounds_ns.iter().map(|ns| *ns as f64 / 1e9).collect(),
        cumulative_counts: h.cumulative().to_vec(),
        count: h.count(),
        sum_seconds: h.sum_ns as f64 / 1e9,
    }
}

impl MediaPlane for WebRtcMedia {
    fn offer(&self, session: MediaSession, sdp: String) -> MediaFuture<String> {
        let result = self.negotiate(&session, &sdp);
        Box::pin(async move { result })
    }

    fn ice_candidate(&self, _session: MediaSession, _candidate: IceCandidate) -> MediaFuture<()> {
        // ICE-lite: the server learns the peer's address from its STUN checks.
        Box::pin(async { Ok(()) })
    }

    fn leave(&self, session: MediaSession) {
        self.release(&session, true);
    }

    fn screen_share(&self, session: MediaSession, active: bool) {
        self.set_sharing(&session, active);
    }

    fn subscribe(&self, session: MediaSession, slots: Vec<SlotSubscription>) {
        self.set_subscriptions(&session, &slots);
    }

    fn attach(
        &self,
        session: MediaSession,
        path: MediaPathId,
        tracks: Vec<MediaTrack>,
        receive: MediaReceive,
    ) -> MediaFuture<Vec<MediaTrack>> {
        let result = self.attach_quic(&session, path, &tracks, receive);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::forwarding_latency;
    use palaver_metrics::prom::media::FORWARDING_LATENCY_BOUNDS;
    use palaver_sfu::worker::{LATENCY_BOUNDS_NS, LatencyHistogram};

    #[test]
    fn worker_latency_buckets_match_the_exported_bounds() {
        let worker: Vec<u64> = LATENCY_BOUNDS_NS.to_vec();
        let exported: Vec<u64> = FORWARDING_LATENCY_BOUNDS.iter().map(|s| (s * 1e9).round() as u64).collect();
        assert_eq!(worker, exported);
    }

    #[test]
    fn mixer_tick_buckets_match_the_exported_bounds() {
        use palaver_metrics::prom::media::MIXER_TICK_BOUNDS;
        let exported: Vec<u64> = MIXER_TICK_BOUNDS.iter().map(|s| (s * 1e9).round() as u64).collect();
        assert_eq!(palaver_sfu::worker::MIXER_TICK_BOUNDS_NS.to_vec(), exported);
    }

    #[test]
    fn the_first_audio_slot_carries_the_mix() {
        use super::{Slot, mix_output};
        use palaver_sfu::router::{TrackKind, TransportId};
        use palaver_sfu::worker::{Command, MixOutputSpec, RoomId};
        let slot = |kind, ssrc| Slot { mid: String::new(), kind, ssrc, consumer: None };
        let slots = [slot(TrackKind::Video, 1), slot(TrackKind::Audio, 2), slot(TrackKind::Audio, 3)];
        let command = mix_output(RoomId(4), TransportId(5), &slots, Some(109));
        let expected = Some(MixOutputSpec { ssrc: 2, payload_type: 109 });
        assert!(matches!(command, Some(Command::SetMixOutput { room: RoomId(4), transport: TransportId(5), output })
            if output == expected));
        assert!(mix_output(RoomId(4), TransportId(5), &slots[..1], Some(109)).is_none());
    }

    #[test]
    fn worker_latency_maps_to_a_cumulative_histogram_in_seconds() {
        let h = LatencyHistogram::default();
        h.observe(8_000, 4); // le=10µs
        h.observe(20_000_000, 1); // +Inf
        let out = forwarding_latency(&h.snapshot());
        assert_eq!(out.count, 5);
        assert_eq!(out.cumulative_counts, vec![0, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
        assert!((out.sum_seconds - 0.020_032).abs() < 1e-12, "{}", out.sum_seconds);
        assert_eq!(out.upper_bounds_seconds.len(), FORWARDING_LATENCY_BOUNDS.len());
    }
}
