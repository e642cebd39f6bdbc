//! The WebRTC media negotiator of `palaver run`: maps conversations to media rooms (pinned to
//! a worker of the [`WorkerPool`]) and participants to WebRTC transports. An offer creates the
//! transport and a producer per sent track, answers with the worker's host candidate, and
//! subscribes every participant to the others' audio, camera and screen (one remote track per
//! m-section of the client's offer; when its publisher leaves the slot is refilled by another
//! participant's track). Active-speaker events of the workers go to the gateway.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_core::ErrorCode;
use palaver_core::protocol::IceCandidate;
use palaver_sfu::router::{ConsumerId, ConsumerSpec, LayerSpec, ProducerId, ProducerSpec, TrackKind, TransportId};
use palaver_sfu::rtp::ShortId;
use palaver_sfu::webrtc::dtls::DtlsIdentity;
use palaver_sfu::webrtc::sdp::{AnswerParams, AnswerTrack, Offer, track_kind, write_answer};
use palaver_sfu::worker::{Command, RoomId, WebRtcTransportSpec, WorkerEvent, WorkerPool};
use palaver_signaling::gateway::media::MediaFuture;
use palaver_signaling::gateway::{Gateway, MediaError, MediaNegotiator, MediaSession};
use rand::Rng;

struct Producer {
    id: ProducerId,
    kind: TrackKind,
}

/// A m-section on which the server sends one remote track to this participant.
struct Slot {
    kind: TrackKind,
    ssrc: u32,
    consumer: Option<(ConsumerId, ProducerId)>,
}

struct Participant {
    transport: TransportId,
    producers: Vec<Producer>,
    slots: Vec<Slot>,
}

struct Room {
    id: RoomId,
    worker: usize,
    participants: HashMap<String, Participant>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Room>,
    next_id: u32,
    next_room: u64,
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
        Arc::new(Self { pool, identity, announced_ip, state: Mutex::new(State::default()) })
    }

    fn send(&self, worker: usize, command: Command) -> Result<(), MediaError> {
        self.pool.workers()[worker]
            .send(command)
            .map_err(|c| refused(ErrorCode::MediaUnavailable, format!("media worker busy ({})", c.name())))
    }

    /// Relays worker events: active speakers to the gateway (roster delta, ≤ every 300 ms).
    pub fn spawn_event_relay(self: &Arc<Self>, gateway: Gateway) -> tokio::task::JoinHandle<()> {
        let media = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
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
        self.release(session);
        let mut guard = self.state.lock().map_err(|_| refused(ErrorCode::InternalError, "media state poisoned"))?;
        let state = &mut *guard;
        if !state.rooms.contains_key(&session.conversation_id) {
            state.next_room += 1;
            let id = RoomId(state.next_room);
            let worker = self.pool.worker_for_room(id).index;
            self.send(worker, Command::CreateRoom { room: id })?;
            state.rooms.insert(session.conversation_id.clone(), Room { id, worker, participants: HashMap::new() });
        }
        let transport = TransportId(state.next());
        let (ice_ufrag, ice_pwd) = (random_token(8), random_token(24));
        let mut producers = Vec::new();
        let mut producer_specs = Vec::new();
        let mut slots = Vec::new();
        let mut answer_tracks = Vec::new();
        for (index, m) in offer.media.iter().enumerate() {
            let codecs: Vec<_> =
                m.accepted_codecs().iter().filter_map(|c| Some((c.payload_type, c.codec()?))).collect();
            if codecs.is_empty() {
                answer_tracks.push(None);
                continue;
            }
            let kind = track_kind(&offer, index);
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
                slots.push(Slot { kind, ssrc, consumer: None });
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
        room.participants.insert(session.participant_id.clone(), Participant { transport, producers, slots });
        let mut next = state.next_id;
        self.fill_slots(room, &mut next)?;
        state.next_id = next;
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

    /// Gives every free slot a track of the same kind from another participant.
    fn fill_slots(&self, room: &mut Room, next_id: &mut u32) -> Result<(), MediaError> {
        let published: Vec<(String, ProducerId, TrackKind)> = room
            .participants
            .iter()
            .flat_map(|(name, p)| p.producers.iter().map(move |pr| (name.clone(), pr.id, pr.kind)))
            .collect();
        let mut commands = Vec::new();
        for (name, participant) in room.participants.iter_mut() {
            for slot in participant.slots.iter_mut().filter(|s| s.consumer.is_none()) {
                let taken: Vec<ProducerId> = Vec::new();
                let candidate = published
                    .iter()
                    .find(|(owner, id, kind)| owner != name && *kind == slot.kind && !taken.contains(id));
                if let Some((_, producer, _)) = candidate {
                    let already = participant_consumes(&participant.transport, *producer, &commands);
                    if already {
                        continue;
                    }
                    *next_id += 1;
                    let consumer = ConsumerId(*next_id);
                    slot.consumer = Some((consumer, *producer));
                    commands.push(ConsumerSpec {
                        id: consumer,
                        transport: participant.transport,
                        producer: *producer,
                        ssrc: slot.ssrc,
                        rtx: None,
                        paused: false,
                        max_height: 1080,
                    });
                }
            }
        }
        for spec in commands {
            self.send(room.worker, Command::AddConsumer { room: room.id, spec })?;
        }
        Ok(())
    }

    fn release(&self, session: &MediaSession) {
        let Ok(mut guard) = self.state.lock() else { return };
        let state = &mut *guard;
        let Some(room) = state.rooms.get_mut(&session.conversation_id) else { return };
        let Some(gone) = room.participants.remove(&session.participant_id) else { return };
        let (room_id, worker) = (room.id, room.worker);
        let _ = self.send(worker, Command::RemoveTransport { transport: gone.transport });
        for producer in &gone.producers {
            let _ = self.send(worker, Command::RemoveProducer { room: room_id, producer: producer.id });
            for p in room.participants.values_mut() {
                for slot in p.slots.iter_mut() {
                    if let Some((consumer, from)) = slot.consumer
                        && from == producer.id
                    {
                        let _ = self.send(worker, Command::RemoveConsumer { room: room_id, consumer });
                        slot.consumer = None;
                    }
                }
            }
        }
        if room.participants.is_empty() {
            let _ = self.send(worker, Command::CloseRoom { room: room_id });
            state.rooms.remove(&session.conversation_id);
        } else {
            let mut next = state.next_id;
            if let Some(room) = state.rooms.get_mut(&session.conversation_id) {
                let _ = self.fill_slots(room, &mut next);
            }
            state.next_id = next;
        }
    }
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
        (Metric::QueueFull, &[Worker::SendFailed, Worker::EventQueueFull]),
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
        forwarding_latency: forwarding_latency(&c.forwarding_latency),
        ..Default::default()
    }
}

/// The workers' forwarding-latency buckets as the metrics crate's histogram (same bounds).
fn forwarding_latency(h: &palaver_sfu::worker::LatencySnapshot) -> palaver_metrics::prom::HistogramSnapshot {
    palaver_metrics::prom::HistogramSnapshot {
        upper_bounds_seconds: palaver_sfu::worker::LATENCY_BOUNDS_NS.iter().map(|ns| *ns as f64 / 1e9).collect(),
        cumulative_counts: h.cumulative().to_vec(),
        count: h.count(),
        sum_seconds: h.sum_ns as f64 / 1e9,
    }
}

/// True if `commands` already subscribe `transport` to `producer` (one slot per track).
fn participant_consumes(transport: &TransportId, producer: ProducerId, commands: &[ConsumerSpec]) -> bool {
    commands.iter().any(|c| c.transport == *transport && c.producer == producer)
}

impl MediaNegotiator for WebRtcMedia {
    fn offer(&self, session: MediaSession, sdp: String) -> MediaFuture<String> {
        let result = self.negotiate(&session, &sdp);
        Box::pin(async move { result })
    }

    fn ice_candidate(&self, _session: MediaSession, _candidate: IceCandidate) -> MediaFuture<()> {
        // ICE-lite: the server learns the peer's address from its STUN checks.
        Box::pin(async { Ok(()) })
    }

    fn leave(&self, session: MediaSession) {
        self.release(&session);
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
