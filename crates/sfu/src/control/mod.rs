//! The media controller, sans-IO: maps conversations to routers (each pinned to one worker)
//! and participants to transports, producers and receive slots, and answers every call with
//! the worker commands and `media.slots` frames that carry it out ([`Output`]). No threads, no
//! clock, no sockets: the binary's adapter takes a lock, calls [`Conferences`], sends the
//! commands to the workers and relays the frames and speaker updates to the gateway.
//!
//! Every kind of participant joins through one path, [`Conferences::join`], described by an
//! [`Attach`]: how its media reaches the router ([`TransportKind`]), the tracks it publishes
//! and the slots it receives on. [`offer`] builds one from a browser's SDP offer, [`attach`]
//! from a QUIC `media.attach`; a server-side leg (player/recorder) or a SIP trunk leg is one
//! more way to build an `Attach`, not another join path (see `docs/architecture.md`).
//!
//! Policy: video is forwarded into receive slots planned last-N ([`slots`]: recent speakers
//! first; a leaver's slot is repointed), only the active screen share fills screen slots,
//! and audio is mixed: every audio producer feeds the conference's mixer and the first audio
//! slot carries the participant's mix. Simulcast layer defaults live in [`layers`].

pub mod attach;
pub mod audio;
mod conference;
pub mod layers;
pub mod leg;
pub mod offer;
pub mod sip;
mod slots;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use palaver_core::protocol::{MediaReceive, MediaSlot, MediaTrack, SlotSubscription, group_sent_tracks};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use conference::{Conference, DEFAULT_MAX_HEIGHT, DEFAULT_MIX_PT};

use crate::engine::{Command, DtlsRtpTransportSpec, EngineEvent, RouterId, TransportSpec, WebRtcTransportSpec};
use crate::net::DirectLink;
use crate::router::{Numbering, ProducerId, ProducerSpec, TransportId};
use crate::srtp::SrtpKeys;
use crate::webrtc::dtls::DtlsIdentity;
use crate::webrtc::sdp::{AnswerParams, Offer, SdpError, write_answer};
use conference::{Producer, Slot, mix_output};
use palaver_core::MediaKind;

/// How a participant's media reaches its conference's router.
#[derive(Debug, Clone)]
pub enum TransportKind {
    /// A browser: ICE-lite with these server credentials, then DTLS-SRTP with the peer whose
    /// certificate has `remote_fingerprint`.
    WebRtc { ice_ufrag: String, ice_pwd: String, remote_fingerprint: String },
    /// Plain RTP/RTCP through a lock-free link, no ICE and no SRTP (the carrier encrypts): a
    /// QUIC connection's datagrams, or an in-process server leg (player, recorder).
    Direct { link: Arc<DirectLink> },
    /// SRTP over the worker's UDP socket to a known address with signalled keys (SDES), as a
    /// SIP trunk leg would use. The server ICE credentials are random and unused by the peer.
    Srtp { remote: SocketAddr, keys: SrtpKeys },
    /// SRTP over the worker's UDP socket from an address learned by ICE-lite (the peer's STUN
    /// binding request with these server credentials), keys given by the control plane: a
    /// QUIC participant whose media carrier is SRTP (keys exported from its TLS session).
    IceSrtp { ice_ufrag: String, ice_pwd: String, keys: SrtpKeys },
    /// Plain RTP/AVP over the worker's UDP socket to a known address, no crypto: a SIP trunk
    /// leg without SRTP (trunks on a private interconnect commonly run so). See [`sip`].
    Rtp { remote: SocketAddr },
    /// DTLS-SRTP over the worker's UDP socket to a known address, without ICE: a SIP trunk
    /// leg whose SDP said `UDP/TLS/RTP/SAVP` (RFC 5763/5764). `client`: the server starts the
    /// handshake (the trunk answered or offered `a=setup:passive`).
    DtlsRtp { remote: SocketAddr, remote_fingerprint: String, client: bool },
}

/// A stream the server sends to a participant: the first audio slot carries its mix, video
/// and screen slots are filled by the last-N planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveSlot {
    /// The name `media.slots` and `media.subscribe` use (an SDP mid, or a fixed QUIC name).
    pub mid: String,
    pub kind: MediaKind,
    /// The server's SSRC on this slot.
    pub ssrc: u32,
    /// How the receiver numbers payload types and extensions here (`None`: as the publisher).
    pub numbering: Option<Numbering>,
}

/// Everything the media plane needs to seat one participant in a conference.
#[derive(Debug, Clone)]
pub struct Attach {
    pub transport: TransportKind,
    /// The tracks the participant publishes; [`Conferences::join`] assigns their `id` and
    /// `transport` (builders leave them at 0).
    pub publish: Vec<ProducerSpec>,
    pub receive: Vec<ReceiveSlot>,
    /// The Opus payload type of the mix on the first audio receive slot.
    pub mix_payload_type: u8,
    /// Send the participant a `media.slots` frame on joining even if no slot changed.
    pub announce_slots: bool,
}

/// What a participant brings to its conference besides its transport (an [`Attach`] without
/// its [`TransportKind`]).
struct Seating {
    publish: Vec<ProducerSpec>,
    receive: Vec<ReceiveSlot>,
    mix_payload_type: u8,
    announce_slots: bool,
}

impl Attach {
    fn split(self) -> (TransportKind, Seating) {
        let Attach { transport, publish, receive, mix_payload_type, announce_slots } = self;
        (transport, Seating { publish, receive, mix_payload_type, announce_slots })
    }
}

/// Where a joined participant's media lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub worker: usize,
    pub router: RouterId,
    pub transport: TransportId,
}

/// A `media.slots` frame for one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFrame {
    pub conversation: String,
    pub participant: String,
    pub slots: Vec<MediaSlot>,
}

/// The loudest talkers of a conversation, most active first (for the roster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speakers {
    pub conversation: String,
    pub participants: Vec<String>,
}

/// A DTMF tone a participant sent (RFC 4733 event code 0–15), for the server legs of its
/// conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tone {
    pub conversation: String,
    pub participant: String,
    pub event: u8,
    /// In 8 kHz timestamp units.
    pub duration: u16,
}

/// What a call asks of the outside world, in order: commands for the workers (by index), frames
/// for participants, speaker updates for the roster, DTMF tones for server legs.
#[derive(Debug, Default)]
pub struct Output {
    pub commands: Vec<(usize, Command)>,
    pub frames: Vec<SlotFrame>,
    pub speakers: Vec<Speakers>,
    pub tones: Vec<Tone>,
}

impl Output {
    /// Appends `other` (after what is already here).
    pub fn extend(&mut self, other: Output) {
        self.commands.extend(other.commands);
        self.frames.extend(other.frames);
        self.speakers.extend(other.speakers);
        self.tones.extend(other.tones);
    }
}

/// Why a participant could not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("bad SDP offer: {0}")]
    BadOffer(#[from] SdpError),
    /// The tracks or receive request of a `media.attach` (the text says what is wrong).
    #[error("{0}")]
    InvalidTracks(String),
}

/// What the controller knows of the media plane it drives.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Each worker's host candidate (the address browsers reach its socket on), by index.
    pub candidates: Vec<SocketAddr>,
    /// The DTLS certificate WebRTC transports present.
    pub identity: DtlsIdentity,
}

/// Every conversation's media, and the ids and randomness they are built from.
pub struct Conferences {
    config: ControlConfig,
    conferences: HashMap<String, Conference>,
    /// The participant sharing its screen, per conversation (roster `screenShare`).
    sharing: HashMap<String, String>,
    /// The last transport, producer or consumer id given out (one sequence for all three).
    next_id: u32,
    next_router: u64,
    rng: StdRng,
    /// Per-participant audio (mute, hold, addressed streams, taps), by conversation.
    audio: audio::AudioStates,
    /// The SDES keys of SDP offers sent to trunks, by (conversation, participant), until
    /// their answer joins (see [`Self::offer_sip`]).
    sip_offers: HashMap<(String, String), Vec<sip::SdesCrypto>>,
    /// Joined trunk legs by (conversation, participant): a later SDP of the same media
    /// session changes them in place (early media → answer, hold → resume; `sip::legs`).
    trunk_legs: HashMap<(String, String), sip::legs::TrunkLeg>,
    tone_loops: sip::legs::ToneLoops,
    /// Conversations to be placed on the worker of another one when they get media (a phone
    /// rung into a group call: see [`Self::colocate`]).
    colocated: HashMap<String, String>,
}

impl std::fmt::Debug for Conferences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conferences").field("conferences", &self.conferences.len()).finish_non_exhaustive()
    }
}

impl Conferences {
    /// A controller with no conferences. `seed` seeds the ICE credentials and SSRCs (take it
    /// from the OS in production; fixed in tests). `config.candidates` must not be empty.
    pub fn new(config: ControlConfig, seed: [u8; 32]) -> Self {
        assert!(!config.candidates.is_empty(), "the media plane has at least one worker");
        let rng = StdRng::from_seed(seed);
        let audio = audio::AudioStates::new();
        Self {
            config,
            conferences: HashMap::new(),
            sharing: HashMap::new(),
            next_id: 0,
            next_router: 0,
            rng,
            audio,
            sip_offers: HashMap::new(),
            trunk_legs: HashMap::new(),
            tone_loops: sip::legs::ToneLoops::default(),
            colocated: HashMap::new(),
        }
    }

    /// The conversation's conference, while anyone is in it.
    pub fn conference(&self, conversation: &str) -> Option<&Conference> {
        self.conferences.get(conversation)
    }

    /// The conversations with media now.
    pub fn len(&self) -> usize {
        self.conferences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conferences.is_empty()
    }

    fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// A browser's SDP offer: joins the participant (replacing an earlier session) and
    /// returns the SDP answer with the worker's host candidate.
    pub fn join_offer(
        &mut self,
        conversation: &str,
        participant: &str,
        may_send: bool,
        sdp: &str,
    ) -> Result<(String, Output), ControlError> {
        let offer = Offer::parse(sdp)?;
        let telephone_event = offer.media.iter().find(|m| m.client_sends()).and_then(|m| m.telephone_event_pt());
        let offered = offer::offer_attach(&offer, may_send, &mut self.rng);
        let (ice_ufrag, ice_pwd) = match &offered.attach.transport {
            TransportKind::WebRtc { ice_ufrag, ice_pwd, .. } => (ice_ufrag.clone(), ice_pwd.clone()),
            _ => unreachable!("an offer makes a WebRTC transport"),
        };
        let (joined, mut output) = self.join(conversation, participant, offered.attach);
        if may_send && let Some(payload_type) = telephone_event {
            let command = Command::SetTelephoneEvent { transport: joined.transport, payload_type: Some(payload_type) };
            output.commands.push((joined.worker, command));
        }
        let answer = write_answer(
            &offer,
            &AnswerParams {
                ice_ufrag: &ice_ufrag,
                ice_pwd: &ice_pwd,
                fingerprint: self.config.identity.fingerprint(),
                candidate: self.config.candidates[joined.worker],
                session_id: u64::from(joined.transport.0),
                send: &offered.answer_tracks,
            },
        );
        Ok((answer, output))
    }

    /// A QUIC `media.attach`: joins the participant with a direct transport over `link`
    /// (replacing an earlier session); returns where it lives and the `media.attached` tracks.
    pub fn join_direct(
        &mut self,
        conversation: &str,
        participant: &str,
        may_send: bool,
        link: Arc<DirectLink>,
        tracks: &[MediaTrack],
        receive: MediaReceive,
    ) -> Result<(Joined, Vec<MediaTrack>, Output), ControlError> {
        self.join_quic(conversation, participant, may_send, TransportKind::Direct { link }, tracks, receive)
    }

    /// A QUIC participant's `media.attach` over any carrier: `transport` is a
    /// [`TransportKind::Direct`] (datagrams) or a [`TransportKind::IceSrtp`] (SRTP over the
    /// worker's socket); the rest is [`Self::join_direct`].
    pub fn join_quic(
        &mut self,
        conversation: &str,
        participant: &str,
        may_send: bool,
        transport: TransportKind,
        tracks: &[MediaTrack],
        receive: MediaReceive,
    ) -> Result<(Joined, Vec<MediaTrack>, Output), ControlError> {
        let groups = group_sent_tracks(tracks).map_err(ControlError::InvalidTracks)?;
        receive.check().map_err(ControlError::InvalidTracks)?;
        let attach = attach::quic_attach(transport, tracks, &groups, receive, may_send, &mut self.rng);
        let attached = attach::attached_tracks(&attach);
        let (joined, mut output) = self.join(conversation, participant, attach);
        if may_send {
            // A QUIC participant's DTMF: RFC 4733 on the fixed payload type.
            let payload_type = Some(palaver_core::protocol::quic::TELEPHONE_EVENT_PT);
            output
                .commands
                .push((joined.worker, Command::SetTelephoneEvent { transport: joined.transport, payload_type }));
        }
        Ok((joined, attached, output))
    }

    /// A SIP trunk leg: joins the participant with the media agreed from the trunk's SDP
    /// `peer` (codec and SRTP by `policy`) and returns what was agreed and the server's SDP
    /// answer (the hosting worker's socket, the agreed codec, telephone-events if offered,
    /// `a=crypto` with the server's fresh key when SDES-SRTP is agreed). When the server
    /// offered first ([`Self::offer_sip`]), `peer` is the answer and the keys of that offer
    /// are used (the returned SDP is then only informative).
    pub fn join_sip(
        &mut self,
        conversation: &str,
        participant: &str,
        peer: &str,
        policy: &sip::TrunkPolicy,
    ) -> Result<(sip::TrunkMedia, String, Output), ControlError> {
        self.join_sip_early(conversation, participant, peer, policy, None)
    }

    /// [`Self::join_sip`], and while `early` is set the leg waits for its callee: it is held
    /// (nobody hears it, it hears nothing of the conversation) and hears `early` (ringback or hold audio)
    /// instead. A later call for the same leg with an SDP of the same media session (the
    /// answer after early media; a hold or resume re-INVITE) changes the leg in place on the
    /// same transport and returns the same SDP with the direction of the moment
    /// (`sip::legs`).
    pub fn join_sip_early(
        &mut self,
        conversation: &str,
        participant: &str,
        peer: &str,
        policy: &sip::TrunkPolicy,
        early: Option<sip::legs::EarlyMedia>,
    ) -> Result<(sip::TrunkMedia, String, Output), ControlError> {
        let description = crate::webrtc::sdp::Description::parse(peer)?;
        let tone = self.tone_loops.resolve(early.as_ref())?;
        let key = (conversation.to_owned(), participant.to_owned());
        let offered = self.sip_offers.remove(&key);
        let media = sip::negotiate(&description, policy).map_err(|e| ControlError::InvalidTracks(e.to_string()))?;
        let peer_holds = sip::legs::peer_holds(&media.direction);
        let seated = |c: &Conferences, transport| {
            c.conferences.get(conversation).and_then(|c| c.transport_of(participant)) == Some(transport)
        };
        if offered.is_none()
            && let Some(leg) = self.trunk_legs.get(&key)
            && leg.continues_with(&media)
            && seated(self, leg.joined.transport)
        {
            let also_held = self.is_held(conversation, participant);
            let leg = self.trunk_legs.get_mut(&key).expect("found above");
            let output = sip::legs::change_in_place(leg, tone, peer_holds, also_held);
            leg.media = media.clone();
            let answer = sip::legs::with_direction(&leg.answer, sip::answer_direction(&media.direction));
            return Ok((media, answer, output));
        }
        let local = media.crypto.as_ref().map(|remote| {
            offered
                .into_iter()
                .flatten()
                .find(|ours| ours.tag == remote.tag && ours.profile == remote.profile)
                .unwrap_or_else(|| sip::SdesCrypto::generate(remote.tag, remote.profile, &mut self.rng))
        });
        let keys = local.as_ref().zip(media.crypto.as_ref()).map(|(l, r)| sip::SdesCrypto::keys(l, r));
        let may_send = media.direction != "inactive";
        let attach = sip::sip_attach(&media, may_send, keys, &mut self.rng);
        let mix_ssrc = attach.receive.first().map_or(0, |slot| slot.ssrc);
        let (joined, mut output) = self.join(conversation, participant, attach);
        if may_send && let Some(payload_type) = media.telephone_event {
            // The trunk's RFC 4733 DTMF, reported once per tone like a QUIC participant's.
            let command = Command::SetTelephoneEvent { transport: joined.transport, payload_type: Some(payload_type) };
            output.commands.push((joined.worker, command));
        }
        if let Some(payload_type) = media.telephone_event {
            // Tones the others send (Call Automation, a user's keypad) go out to the trunk as
            // RFC 4733 in the mix stream, on the mix's timestamps, with durations in the
            // events' clock (`negotiate` agreed /8000, /48000 for Opus, or /8000 on an Opus
            // leg whose trunk knows no other).
            let audio = crate::engine::MixAudio::TelephoneEventsOut {
                transport: joined.transport,
                payload_type: Some(payload_type),
                clock_rate: media.telephone_event_clock,
            };
            output.commands.push((joined.worker, Command::SetMixAudio { router: joined.router, audio }));
        }
        if let Some(slot) = policy.trunk.as_deref().and_then(crate::engine::trunk_stats::trunk_slot) {
            let clock_rate = sip::rtp_clock(media.codec);
            let command = Command::SetTrunkStats { transport: joined.transport, slot, clock_rate };
            output.commands.push((joined.worker, command));
        }
        let fingerprint = self.config.identity.fingerprint().to_owned();
        let answer = sip::write_sdp(&sip::LocalSdp {
            address: self.config.candidates[joined.worker],
            session_id: u64::from(joined.transport.0),
            codecs: &[(media.payload_type, media.codec)],
            telephone_event: media.telephone_event,
            telephone_event_clock: Some(media.telephone_event_clock),
            direction: sip::answer_direction(&media.direction),
            // The answer repeats the offer's profile (RFC 3264 §6).
            protocol: description
                .media
                .iter()
                .find(|m| m.kind == Some(MediaKind::Audio) && m.port != 0)
                .map_or("RTP/AVP", |m| m.protocol.as_str()),
            crypto: local.as_slice(),
            dtls: media.dtls.as_ref().map(|d| sip::LocalDtls { fingerprint: &fingerprint, setup: d.local_setup() }),
        });
        let output_spec = crate::engine::MixOutputSpec { ssrc: mix_ssrc, payload_type: media.payload_type };
        let mut leg = sip::legs::TrunkLeg {
            joined,
            media: media.clone(),
            answer: answer.clone(),
            output: output_spec,
            early: false,
            peer_holds: false,
            publishes: may_send,
        };
        let also_held = self.is_held(conversation, participant);
        output.extend(sip::legs::change_in_place(&mut leg, tone, peer_holds, also_held));
        self.trunk_legs.insert(key, leg);
        Ok((media, answer, output))
    }

    /// The server's SDP offer for a phone leg of `participant` in `conversation` (a call out
    /// to a trunk, or an INVITE without an offer): the worker that hosts (or would host)
    /// `conversation`, the policy's codecs (PCMU 0, PCMA 8, G.722 9, Opus 111), telephone-events
    /// (101) and, unless SRTP is off, one `a=crypto` per offered suite (RTP/SAVP when SRTP is
    /// required, RTP/AVP with keys when optional). The keys are kept until the answer joins
    /// through [`Self::join_sip`].
    pub fn offer_sip(&mut self, conversation: &str, participant: &str, policy: &sip::TrunkPolicy) -> String {
        use crate::mixer::AudioCodec;
        let codecs: Vec<(u8, AudioCodec)> = policy
            .codecs
            .iter()
            .map(|c| match c {
                AudioCodec::Pcmu => (0, *c),
                AudioCodec::Pcma => (8, *c),
                AudioCodec::G722 => (9, *c),
                AudioCodec::Opus => (111, *c),
            })
            .collect();
        let crypto: Vec<sip::SdesCrypto> = match policy.srtp {
            sip::SrtpPolicy::Off | sip::SrtpPolicy::Dtls => Vec::new(),
            _ => (1..)
                .zip(sip::sdes::OFFERED_SUITES)
                .map(|(tag, profile)| sip::SdesCrypto::generate(tag, profile, &mut self.rng))
                .collect(),
        };
        let sdp = sip::write_sdp(&sip::LocalSdp {
            address: self.candidate_for(conversation),
            session_id: u64::from(self.next_id) + 1,
            codecs: &codecs,
            telephone_event: Some(101),
            telephone_event_clock: None,
            direction: "sendrecv",
            protocol: match policy.srtp {
                sip::SrtpPolicy::Required => "RTP/SAVP",
                sip::SrtpPolicy::Dtls => "UDP/TLS/RTP/SAVP",
                _ => "RTP/AVP",
            },
            crypto: &crypto,
            dtls: (policy.srtp == sip::SrtpPolicy::Dtls)
                .then(|| sip::LocalDtls { fingerprint: self.config.identity.fingerprint(), setup: "actpass" }),
        });
        let key = (conversation.to_owned(), participant.to_owned());
        if crypto.is_empty() {
            self.sip_offers.remove(&key);
        } else {
            self.sip_offers.insert(key, crypto);
        }
        sdp
    }

    /// The address of media worker `worker`'s socket as peers reach it (its host candidate).
    pub fn worker_address(&self, worker: usize) -> SocketAddr {
        self.config.candidates[worker]
    }

    /// Fresh server ICE-lite credentials (ufrag, password) for a [`TransportKind::IceSrtp`].
    pub fn ice_credentials(&mut self) -> (String, String) {
        (
            offer::random_token(&mut self.rng, offer::ICE_UFRAG_LEN),
            offer::random_token(&mut self.rng, offer::ICE_PWD_LEN),
        )
    }

    /// The worker address a new conference would get next (for the server's SDP offer to a
    /// trunk before its answer is known): the one hosting `conversation`, or where it would be
    /// placed ([`Self::colocate`], else the least loaded).
    pub fn candidate_for(&self, conversation: &str) -> SocketAddr {
        if let Some(c) = self.conferences.get(conversation) {
            return self.config.candidates[c.worker];
        }
        self.config.candidates[self.placement(conversation)]
    }

    /// `conversation` (that has no media yet) is to be created on the worker that hosts
    /// `with` when it gets media: the ring of a phone dialled into a group call or a room,
    /// whose answered leg then moves into that conference in place — its SDP offer already
    /// named that worker's socket, so the trunk needs no re-INVITE. Forgotten once the
    /// conference exists or its participant leaves; `with` gone by then: the least loaded.
    pub fn colocate(&mut self, conversation: &str, with: &str) {
        if conversation != with && !self.conferences.contains_key(conversation) {
            self.colocated.insert(conversation.to_owned(), with.to_owned());
        }
    }

    /// The worker a new conference for `conversation` goes to.
    fn placement(&self, conversation: &str) -> usize {
        if let Some(host) = self.colocated.get(conversation).and_then(|with| self.conferences.get(with)) {
            return host.worker;
        }
        let mut load = vec![0usize; self.config.candidates.len()];
        for c in self.conferences.values() {
            load[c.worker] += 1;
        }
        (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0)
    }

    /// The one join path: ends the participant's earlier session, creates the conference (and
    /// its router) on first use, adds the transport, its producers and its mix, seats it, and
    /// replans everyone's slots.
    pub fn join(&mut self, conversation: &str, participant: &str, attach: Attach) -> (Joined, Output) {
        let mut out = self.release(conversation, participant, false);
        let (router, worker) = self.ensure_conference(conversation, &mut out);
        let transport = TransportId(self.next_id());
        let (kind, seating) = attach.split();
        let command = match kind {
            TransportKind::WebRtc { ice_ufrag, ice_pwd, remote_fingerprint } => {
                let dtls = self.config.identity.clone();
                let spec = WebRtcTransportSpec { id: transport, router, ice_ufrag, ice_pwd, dtls, remote_fingerprint };
                Command::AddWebRtcTransport(Box::new(spec))
            }
            TransportKind::Direct { link } => Command::AddDirectTransport { id: transport, router, link },
            TransportKind::Srtp { remote, keys } => {
                let (ice_ufrag, ice_pwd) =
                    (format!("leg{}", transport.0), format!("{:032x}", rand::Rng::r#gen::<u128>(&mut self.rng)));
                let spec =
                    TransportSpec { id: transport, router, ice_ufrag, ice_pwd, remote: Some(remote), srtp: keys };
                Command::AddTransport(Box::new(spec))
            }
            TransportKind::IceSrtp { ice_ufrag, ice_pwd, keys } => {
                let spec = TransportSpec { id: transport, router, ice_ufrag, ice_pwd, remote: None, srtp: keys };
                Command::AddTransport(Box::new(spec))
            }
            TransportKind::Rtp { remote } => Command::AddRtpTransport { id: transport, router, remote },
            TransportKind::DtlsRtp { remote, remote_fingerprint, client } => {
                let dtls = self.config.identity.clone();
                let spec = DtlsRtpTransportSpec { id: transport, router, remote, dtls, remote_fingerprint, client };
                Command::AddDtlsRtpTransport(Box::new(spec))
            }
        };
        out.commands.push((worker, command));
        out.extend(self.seat(conversation, participant, transport, seating));
        (Joined { worker, router, transport }, out)
    }

    /// Seats `participant` with `transport` (already in the conference's router) in the
    /// conversation's conference: its producers and mix output, then everyone's slots are
    /// replanned and its per-participant audio applied.
    fn seat(&mut self, conversation: &str, participant: &str, transport: TransportId, seating: Seating) -> Output {
        let mut out = Output::default();
        let Some(conference) = self.conferences.get(conversation) else { return out };
        let (router, worker) = (conference.router, conference.worker);
        let Seating { publish, receive, mix_payload_type, announce_slots } = seating;
        let mut producers = Vec::with_capacity(publish.len());
        for spec in publish {
            let spec = ProducerSpec { id: ProducerId(self.next_id()), transport, ..spec };
            producers.push(Producer { id: spec.id, kind: spec.kind });
            out.commands.push((worker, Command::AddProducer { router, spec }));
        }
        let slots: Vec<Slot> = receive
            .into_iter()
            .map(|r| Slot { mid: r.mid, kind: r.kind, ssrc: r.ssrc, numbering: r.numbering, consumer: None })
            .collect();
        if let Some(command) = mix_output(router, transport, &slots, mix_payload_type) {
            out.commands.push((worker, command));
        }
        let conference = self.conferences.get_mut(conversation).expect("looked up above");
        conference.admit(participant, transport, producers, slots);
        let fresh = announce_slots.then_some(participant);
        out.extend(self.replan(conversation, fresh));
        out.extend(self.reapply_audio(conversation, participant, transport));
        out
    }

    /// The participant left the conversation: its media is released, and a share of its ends.
    pub fn leave(&mut self, conversation: &str, participant: &str) -> Output {
        // A phone leg that leaves before its trunk answered drops the keys it offered.
        self.sip_offers.remove(&(conversation.to_owned(), participant.to_owned()));
        self.colocated.remove(conversation);
        self.release(conversation, participant, true)
    }

    /// The roster's screen-share flag: only the active share fills the others' screen slots.
    pub fn share(&mut self, conversation: &str, participant: &str, active: bool) -> Output {
        if active {
            self.sharing.insert(conversation.to_owned(), participant.to_owned());
        } else if self.sharing.get(conversation).map(String::as_str) == Some(participant) {
            self.sharing.remove(conversation);
        } else {
            return Output::default();
        }
        self.replan(conversation, None)
    }

    /// `media.subscribe`: pause/resume or cap the picture height of the participant's video
    /// slots that carry a track now (the client sends its whole wish list again after each
    /// `media.slots`, so a slot filled later gets it too). Unknown mids and audio slots are
    /// ignored.
    pub fn subscribe(&mut self, conversation: &str, participant: &str, wishes: &[SlotSubscription]) -> Output {
        let mut out = Output::default();
        let Some(conference) = self.conferences.get(conversation) else { return out };
        let Some(member) = conference.participants.get(participant) else { return out };
        let (router, worker) = (conference.router, conference.worker);
        for wish in wishes {
            let slot = member.slots.iter().find(|s| s.mid == wish.mid && s.kind != MediaKind::Audio);
            let Some((consumer, _)) = slot.and_then(|s| s.consumer) else { continue };
            if let Some(paused) = wish.paused {
                out.commands.push((worker, Command::SetConsumerPaused { router, consumer, paused }));
            }
            if let Some(max_height) = wish.max_height {
                out.commands.push((worker, Command::SetConsumerMaxHeight { router, consumer, max_height }));
            }
        }
        out
    }

    /// An event of worker `worker`: active speakers move to the front of everyone's camera
    /// slots and are reported for the roster; the rest is logged.
    pub fn on_event(&mut self, worker: usize, event: EngineEvent) -> Output {
        match event {
            EngineEvent::ActiveSpeakers { router, speakers } => self.on_speakers(router, &speakers),
            EngineEvent::TransportConnected { transport, remote } => {
                tracing::info!(worker, transport = transport.0, %remote, "media transport connected");
                Output::default()
            }
            EngineEvent::Dtmf { transport, event, duration } => {
                let mut out = Output::default();
                let found = self.conferences.iter().find_map(|(conversation, c)| {
                    let name = c.participants.iter().find(|(_, p)| p.transport == transport)?.0;
                    Some((conversation.clone(), name.clone()))
                });
                if let Some((conversation, participant)) = found {
                    out.tones.push(Tone { conversation, participant, event, duration });
                }
                out
            }
            EngineEvent::CommandFailed { command, error } => {
                tracing::warn!(worker, command, %error, "media command failed");
                Output::default()
            }
        }
    }

    /// The router's loudest talkers (dominant first) as participant names; replans slots.
    fn on_speakers(&mut self, router: RouterId, speakers: &[Option<TransportId>]) -> Output {
        let Some((conversation, conference)) = self.conferences.iter_mut().find(|(_, c)| c.router == router) else {
            return Output::default();
        };
        let conversation = conversation.clone();
        let names = conference.names_of(speakers);
        conference.note_speakers(&names);
        let mut out = self.replan(&conversation, None);
        out.speakers.push(Speakers { conversation, participants: names });
        out
    }

    /// Creates the conversation's conference and router on first use, on the worker with the
    /// fewest conferences; returns its router and worker.
    fn ensure_conference(&mut self, conversation: &str, out: &mut Output) -> (RouterId, usize) {
        if let Some(c) = self.conferences.get(conversation) {
            return (c.router, c.worker);
        }
        let worker = self.placement(conversation);
        self.colocated.remove(conversation);
        (self.conference_on(conversation, worker, out), worker)
    }

    /// The router of `conversation`'s conference, created on `worker` when it has none yet.
    fn conference_on(&mut self, conversation: &str, worker: usize, out: &mut Output) -> RouterId {
        if let Some(c) = self.conferences.get(conversation) {
            return c.router;
        }
        self.next_router += 1;
        let router = RouterId(self.next_router);
        out.commands.push((worker, Command::CreateRouter { router }));
        self.conferences.insert(conversation.to_owned(), Conference::new(router, worker));
        router
    }

    /// Plans every slot of the conversation's conference; `fresh` always gets a frame.
    fn replan(&mut self, conversation: &str, fresh: Option<&str>) -> Output {
        let mut out = Output::default();
        let Some(conference) = self.conferences.get_mut(conversation) else { return out };
        let sharing = self.sharing.get(conversation).map(String::as_str);
        let plan = conference.plan_slots(sharing, fresh, &mut self.next_id);
        let worker = conference.worker;
        out.commands.extend(plan.commands.into_iter().map(|c| (worker, c)));
        out.frames.extend(plan.frames.into_iter().map(|(participant, slots)| SlotFrame {
            conversation: conversation.to_owned(),
            participant,
            slots,
        }));
        out
    }

    /// Ends a participant's media session (`leaving`: it left the conversation; otherwise it
    /// joins again). The others' slots that showed its tracks are repointed first, so the
    /// worker never routes to a removed producer; the last one out closes the router.
    fn release(&mut self, conversation: &str, participant: &str, leaving: bool) -> Output {
        if leaving && self.sharing.get(conversation).map(String::as_str) == Some(participant) {
            self.sharing.remove(conversation);
        }
        let Some(conference) = self.conferences.get_mut(conversation) else { return Output::default() };
        let Some(gone) = conference.participants.remove(participant) else { return Output::default() };
        self.trunk_legs.remove(&(conversation.to_owned(), participant.to_owned()));
        if leaving {
            conference.spoke.remove(participant);
        }
        let (router, worker, empty) = (conference.router, conference.worker, conference.participants.is_empty());
        let mut out = if empty { Output::default() } else { self.replan(conversation, None) };
        if leaving || empty {
            out.extend(self.forget_audio(conversation, participant, empty));
        }
        // Removes the transport's producers and consumers too.
        out.commands.push((worker, Command::RemoveTransport { transport: gone.transport }));
        if empty {
            out.commands.push((worker, Command::CloseRouter { router }));
            self.conferences.remove(conversation);
        }
        out
    }
}

#[cfg(test)]
mod tests;
