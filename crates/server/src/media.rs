//! The media plane's adapter in `palaver run`: implements the gateway's media port over the
//! sans-IO controller [`Conferences`] (`palaver_sfu::control`). Each call takes the lock, asks
//! the controller, sends the commands it returns to the workers (still under the lock, so
//! workers see them in the order they were planned) and queues its `media.slots` frames; the
//! event relay feeds worker events back to the controller and hands frames and active
//! speakers to the gateway. QUIC participants also get their connection's datagram path
//! pointed at the worker that now owns their transport.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::quic::paths::{QuicPaths, Route};
use bytes::Bytes;
use palaver_core::ErrorCode;
use palaver_core::MediaPathId;
use palaver_core::protocol::{IceCandidate, MediaReceive, MediaTrack, SlotSubscription, UdpMedia};
use palaver_legs::{LegConfig, LegHandle, LegTransport};
use palaver_sfu::control::sip::reseat::Reseat;
use palaver_sfu::control::sip::{TrunkPolicy, codec_name};
use palaver_sfu::control::{Conferences, ControlConfig, ControlError, Output, SlotFrame, Speakers, TransportKind};
use palaver_sfu::engine::SourceTap;
use palaver_sfu::net::{DEFAULT_EGRESS_CAPACITY, DirectLink, WorkerPool};
use palaver_sfu::router::TransportId;
use palaver_sfu::srtp::SrtpKeys;
use palaver_sfu::webrtc::dtls::DtlsIdentity;
use palaver_signaling::gateway::ServerLeg;
use palaver_signaling::gateway::media::MediaFuture;
use palaver_signaling::gateway::{
    AttachedMedia, Gateway, MediaError, MediaPlane, MediaSession, TrunkAnswer, TrunkReseat,
};
use tokio::sync::mpsc;

/// The media controller of the process: the worker pool and every conversation's media.
pub struct MediaController {
    pool: Arc<WorkerPool>,
    conferences: Mutex<Conferences>,
    frames: mpsc::UnboundedSender<SlotFrame>,
    /// Taken by the event relay, which sends the frames in order.
    frame_rx: Mutex<Option<mpsc::UnboundedReceiver<SlotFrame>>>,
    /// Datagram paths of QUIC connections, for `media.attach`.
    quic_paths: Arc<QuicPaths>,
    /// Server-side legs (Call Automation) by conversation; `None` config: legs refused.
    legs: Mutex<HashMap<String, Vec<Weak<LegHandle>>>>,
    leg_config: OnceLock<LegConfig>,
    myself: Weak<MediaController>,
}

/// A leg's way into its worker: RTP into the worker's ingress queue, the mix out of its link.
struct LegRoute {
    pool: Arc<WorkerPool>,
    worker: usize,
    transport: TransportId,
    link: Arc<DirectLink>,
    controller: Weak<MediaController>,
    session: MediaSession,
}

impl LegTransport for LegRoute {
    fn send(&self, packet: Bytes) -> bool {
        self.pool.workers()[self.worker].push_ingress(self.transport, packet).is_ok()
    }
    fn link(&self) -> &Arc<DirectLink> {
        &self.link
    }
    fn detach(&self) {
        if let Some(controller) = self.controller.upgrade() {
            controller.leave_leg(&self.session, self.transport);
        }
    }
    fn set_audience(&self, ssrc: u32, listeners: Option<Vec<String>>) {
        let (conversation, leg) = (&self.session.conversation_id, &self.session.participant_id);
        self.with_conferences("leg audience", |c| c.set_audience(conversation, leg, ssrc, listeners));
    }
    fn set_muted(&self, target: &str, muted: bool) {
        let conversation = &self.session.conversation_id;
        self.with_conferences("mute", |c| c.set_muted(conversation, target, muted));
    }
    fn set_held(&self, target: &str, held: bool) {
        let conversation = &self.session.conversation_id;
        self.with_conferences("hold", |c| c.set_held(conversation, target, held));
    }
    fn set_source_tap(&self, tap: Option<Arc<SourceTap>>) {
        let (conversation, leg) = (&self.session.conversation_id, &self.session.participant_id);
        self.with_conferences("source tap", |c| c.set_source_tap(conversation, leg, tap));
    }
    fn source_name(&self, source: TransportId) -> Option<String> {
        let controller = self.controller.upgrade()?;
        let conferences = controller.conferences.lock().ok()?;
        conferences.participant_of_transport(&self.session.conversation_id, source)
    }
}

impl LegRoute {
    /// Per-participant audio of the leg's conversation through the controller.
    fn with_conferences(&self, what: &str, f: impl FnOnce(&mut Conferences) -> Output) {
        if let Some(controller) = self.controller.upgrade() {
            controller.call_logged(what, &self.session, f);
        }
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> MediaError {
    MediaError { code, message: message.into() }
}

fn rejected(error: ControlError) -> MediaError {
    let code = match error {
        ControlError::BadOffer(_) => ErrorCode::BadRequest,
        ControlError::InvalidTracks(_) => ErrorCode::InvalidParameter,
    };
    refused(code, error.to_string())
}

impl MediaController {
    /// A controller over `pool`; browsers reach worker `i` at `announced_ip` and its port.
    pub fn new(pool: Arc<WorkerPool>, identity: DtlsIdentity, announced_ip: IpAddr) -> Arc<Self> {
        let candidates = pool.workers().iter().map(|w| SocketAddr::new(announced_ip, w.local_addr.port())).collect();
        let conferences = Conferences::new(ControlConfig { candidates, identity }, rand::random());
        let (frames, rx) = mpsc::unbounded_channel();
        Arc::new_cyclic(|myself| Self {
            pool,
            conferences: Mutex::new(conferences),
            frames,
            frame_rx: Mutex::new(Some(rx)),
            quic_paths: Arc::default(),
            legs: Mutex::default(),
            leg_config: OnceLock::new(),
            myself: myself.clone(),
        })
    }

    /// Lets Call Automation seat server-side legs (recordings go under `config`'s directory).
    pub fn enable_legs(&self, config: LegConfig) {
        let _ = self.leg_config.set(config);
    }

    /// A leg finished: its media is released (unless its participant joined again since).
    fn leave_leg(&self, session: &MediaSession, transport: TransportId) {
        if let Ok(mut legs) = self.legs.lock()
            && let Some(list) = legs.get_mut(&session.conversation_id)
        {
            list.retain(|leg| leg.upgrade().is_some_and(|l| l.session() != session));
            if list.is_empty() {
                legs.remove(&session.conversation_id);
            }
        }
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        self.call_logged("leg leave", session, |c| {
            let still_ours = c
                .conference(conversation)
                .and_then(|conference| conference.transport_of(participant))
                .is_some_and(|t| t == transport);
            if still_ours { c.leave(conversation, participant) } else { Output::default() }
        });
        tracing::info!(%conversation, %participant, "server leg detached");
    }

    /// Hands DTMF tones to the legs of their conversation.
    fn deliver_tones(&self, tones: &[palaver_sfu::control::Tone]) {
        if tones.is_empty() {
            return;
        }
        let Ok(legs) = self.legs.lock() else { return };
        for tone in tones {
            tracing::debug!(conversation = %tone.conversation, participant = %tone.participant, event = tone.event, "DTMF tone");
            for leg in legs.get(&tone.conversation).into_iter().flatten().filter_map(Weak::upgrade) {
                leg.on_tone(&tone.participant, tone.event);
            }
        }
    }

    /// The registry of QUIC connections' datagram paths (shared with the QUIC endpoint).
    pub fn quic_paths(&self) -> Arc<QuicPaths> {
        self.quic_paths.clone()
    }

    /// Hold audio (read at start, `crate::hold_audio`) playable to phone legs under `name`.
    pub fn register_hold_audio(&self, name: &str, tone: Arc<palaver_sfu::engine::early_media::ToneLoop>) {
        if let Ok(mut conferences) = self.conferences.lock() {
            conferences.register_hold_audio(name, tone);
        }
    }

    /// Runs `f` on the controller and carries out its output under the lock: commands to the
    /// workers (the first refused one fails the call), frames to the relay.
    fn call<T>(&self, f: impl FnOnce(&mut Conferences) -> Result<(T, Output), MediaError>) -> Result<T, MediaError> {
        let mut conferences =
            self.conferences.lock().map_err(|_| refused(ErrorCode::InternalError, "media state poisoned"))?;
        let (value, out) = f(&mut conferences)?;
        for (worker, command) in out.commands {
            self.pool.workers()[worker]
                .send(command)
                .map_err(|c| refused(ErrorCode::MediaUnavailable, format!("media worker busy ({})", c.name())))?;
        }
        self.deliver_tones(&out.tones);
        for frame in out.frames {
            let _ = self.frames.send(frame);
        }
        Ok(value)
    }

    /// A call whose failure only gets logged (the gateway's fire-and-forget port methods).
    fn call_logged(&self, what: &str, session: &MediaSession, f: impl FnOnce(&mut Conferences) -> Output) {
        if let Err(error) = self.call(|c| Ok(((), f(c)))) {
            tracing::warn!(conversation = %session.conversation_id, participant = %session.participant_id,
                %error, "media {what} not carried out");
        }
    }

    /// Relays worker events through the controller as the workers push them: active speakers
    /// to the gateway (roster delta, ≤ every 300 ms), and `media.slots` frames to their
    /// participants in plan order.
    pub fn spawn_event_relay(self: &Arc<Self>, gateway: Gateway) -> tokio::task::JoinHandle<()> {
        let media = self.clone();
        let mut frames = self.frame_rx.lock().ok().and_then(|mut rx| rx.take());
        tokio::spawn(async move {
            // Woken by the workers when they queue events (no polling interval).
            let events_ready = || std::future::poll_fn(|cx| media.pool.poll_event_ready(cx));
            loop {
                if let Some(rx) = frames.as_mut() {
                    tokio::select! {
                        _ = events_ready() => {}
                        frame = rx.recv() => {
                            match frame {
                                Some(f) => {
                                    let delivered = gateway.send_media_slots(&f.conversation, &f.participant, f.slots).await;
                                    tracing::debug!(conversation = %f.conversation, participant = %f.participant, delivered, "media.slots sent");
                                }
                                None => frames = None,
                            }
                            continue;
                        }
                    }
                } else {
                    events_ready().await;
                }
                for Speakers { conversation, participants } in media.drain_events() {
                    gateway.active_speakers(&conversation, participants).await;
                }
            }
        })
    }

    /// Feeds the workers' pending events to the controller; returns the speaker updates.
    fn drain_events(&self) -> Vec<Speakers> {
        let result = self.call(|conferences| {
            let mut out = Output::default();
            self.pool.drain_events(|worker, event| out.extend(conferences.on_event(worker, event)));
            Ok((std::mem::take(&mut out.speakers), out))
        });
        result.unwrap_or_else(|error| {
            tracing::warn!(%error, "slot changes after worker events not carried out");
            Vec::new()
        })
    }
}

impl MediaPlane for MediaController {
    fn offer(&self, session: MediaSession, sdp: String) -> MediaFuture<String> {
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        let result =
            self.call(|c| c.join_offer(conversation, participant, session.may_send_media, &sdp).map_err(rejected));
        if result.is_ok() {
            tracing::info!(%conversation, %participant, "media offer answered");
        }
        Box::pin(async move { result })
    }

    fn ice_candidate(&self, _session: MediaSession, _candidate: IceCandidate) -> MediaFuture<()> {
        // ICE-lite: the server learns the peer's address from its STUN checks.
        Box::pin(async { Ok(()) })
    }

    fn leave(&self, session: MediaSession) {
        self.call_logged("leave", &session, |c| c.leave(&session.conversation_id, &session.participant_id));
    }

    fn screen_share(&self, session: MediaSession, active: bool) {
        self.call_logged("screen share", &session, |c| {
            c.share(&session.conversation_id, &session.participant_id, active)
        });
    }

    fn subscribe(&self, session: MediaSession, slots: Vec<SlotSubscription>) {
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        self.call_logged("subscribe", &session, |c| c.subscribe(conversation, participant, &slots));
    }

    fn colocate(&self, conversation: &str, with: &str) {
        let _ = self.call(|c| {
            c.colocate(conversation, with);
            Ok(((), Output::default()))
        });
    }

    fn trunk_offer(&self, session: MediaSession, codecs: Vec<String>) -> MediaFuture<String> {
        let policy = TrunkPolicy::from_names(&codecs);
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        let result = self.call(|c| Ok((c.offer_sip(conversation, participant, &policy), Output::default())));
        Box::pin(async move { result })
    }

    /// A SIP trunk leg: RTP/AVP or SDES-SRTP to the address of the trunk's SDP, the mix
    /// encoded in the agreed codec (see `palaver_sfu::control::sip`).
    fn attach_trunk(&self, session: MediaSession, peer_sdp: String, codecs: Vec<String>) -> MediaFuture<TrunkAnswer> {
        let policy = TrunkPolicy::from_names(&codecs);
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        let result = self.call(|c| {
            let early = palaver_sfu::control::sip::legs::EarlyMedia::from_names(&codecs);
            let (media, sdp, mut out) =
                c.join_sip_early(conversation, participant, &peer_sdp, &policy, early).map_err(rejected)?;
            if let Some(signaling) = palaver_sfu::control::sip::latching::from_names(&codecs) {
                out.extend(c.latch_sip(conversation, participant, &signaling));
            }
            Ok((TrunkAnswer { sdp, codec: codec_name(media.codec).to_owned() }, out))
        });
        if let Ok(answer) = &result {
            tracing::info!(%conversation, %participant, codec = %answer.codec, "trunk leg attached");
        }
        Box::pin(async move { result })
    }

    /// A phone leg moved into another conversation: its trunk transport is re-seated there
    /// (`palaver_sfu::control::sip::reseat`), or the caller must re-offer another socket.
    fn reseat_trunk(
        &self,
        from: MediaSession,
        to: MediaSession,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkReseat> {
        let policy = TrunkPolicy::from_names(&codecs);
        let result = self.call(|c| {
            let (reseat, out) = c
                .reseat_sip(
                    &from.conversation_id,
                    &from.participant_id,
                    &to.conversation_id,
                    &to.participant_id,
                    &peer_sdp,
                    &policy,
                )
                .map_err(|e| refused(ErrorCode::InvalidState, e.to_string()))?;
            Ok((reseat, out))
        });
        let (from_conversation, to_conversation) = (&from.conversation_id, &to.conversation_id);
        let result = result.map(|reseat| match reseat {
            Reseat::Moved(joined) => {
                tracing::info!(%from_conversation, %to_conversation, worker = joined.worker, "trunk leg re-seated");
                TrunkReseat::Moved
            }
            Reseat::OtherWorker { address } => {
                tracing::info!(%from_conversation, %to_conversation, %address, "trunk leg must be re-offered");
                TrunkReseat::Reoffer
            }
        });
        Box::pin(async move { result })
    }

    /// `media.attach`: (re)creates the participant's direct transport, producers and receive
    /// slots, routes the connection's datagrams to it, and returns the tracks the server sends.
    fn attach(
        &self,
        session: MediaSession,
        path: MediaPathId,
        tracks: Vec<MediaTrack>,
        receive: MediaReceive,
    ) -> MediaFuture<AttachedMedia> {
        let result =
            self.quic_paths.get(path).ok_or_else(|| refused(ErrorCode::InvalidState, "the QUIC connection has closed"));
        let result = result.and_then(|path| {
            let (conversation, participant) = (&session.conversation_id, &session.participant_id);
            let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
            let may_send = session.may_send_media;
            let keying = path.srtp_keying();
            let (joined, attached, udp) = self.call(|c| {
                let (transport, credentials) = match keying {
                    Some(keying) => {
                        let (ice_ufrag, ice_pwd) = c.ice_credentials();
                        let keys = SrtpKeys::quic_server(keying);
                        (
                            TransportKind::IceSrtp { ice_ufrag: ice_ufrag.clone(), ice_pwd: ice_pwd.clone(), keys },
                            Some((ice_ufrag, ice_pwd)),
                        )
                    }
                    None => (TransportKind::Direct { link: link.clone() }, None),
                };
                let (joined, attached, out) =
                    c.join_quic(conversation, participant, may_send, transport, &tracks, receive).map_err(rejected)?;
                let udp = credentials.map(|(ice_ufrag, ice_pwd)| UdpMedia {
                    address: c.worker_address(joined.worker),
                    ice_ufrag,
                    ice_pwd,
                });
                Ok(((joined, attached, udp), out))
            })?;
            // An SRTP carrier's media goes straight to the worker's socket: no datagram route.
            let route = udp.is_none().then(|| Route {
                pool: self.pool.clone(),
                worker: joined.worker,
                transport: joined.transport,
                link,
            });
            path.set_route(route);
            tracing::info!(%conversation, %participant, transport = joined.transport.0, video_slots = receive.video,
                screen_slot = receive.screen, srtp = udp.is_some(), "QUIC media attached");
            Ok(AttachedMedia { tracks: attached, udp })
        });
        Box::pin(async move { result })
    }

    /// A server-side leg: a Direct transport with an Opus producer and the mix, driven by a
    /// `palaver-legs` task (see `sfu::control::leg` and `docs/call-automation.md`).
    fn attach_leg(&self, session: MediaSession) -> MediaFuture<Arc<dyn ServerLeg>> {
        let result = self.attach_leg_now(session);
        Box::pin(async move { result })
    }
}

impl MediaController {
    fn attach_leg_now(&self, session: MediaSession) -> Result<Arc<dyn ServerLeg>, MediaError> {
        let config = self
            .leg_config
            .get()
            .cloned()
            .ok_or_else(|| refused(ErrorCode::MediaUnavailable, "server-side legs are not enabled"))?;
        let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
        let (conversation, participant) = (&session.conversation_id, &session.participant_id);
        let (joined, streams) = self.call(|c| {
            let (joined, streams, out) = c.join_leg(conversation, participant, link.clone());
            Ok(((joined, streams), out))
        })?;
        let route = LegRoute {
            pool: self.pool.clone(),
            worker: joined.worker,
            transport: joined.transport,
            link,
            controller: self.myself.clone(),
            session: session.clone(),
        };
        let leg = LegHandle::spawn(session.clone(), streams, Arc::new(route), config);
        if let Ok(mut legs) = self.legs.lock() {
            let list = legs.entry(conversation.clone()).or_default();
            list.retain(|l| l.upgrade().is_some_and(|l| l.session() != &session));
            list.push(Arc::downgrade(&leg));
        }
        tracing::info!(%conversation, %participant, transport = joined.transport.0, "server leg attached");
        Ok(leg)
    }
}
