//! The sans-IO heart of a media worker: its routers (one [`Router`] each), its transports
//! (ICE credentials, remote address, inbound/outbound SRTP contexts), the demultiplexer
//! (STUN by ufrag, everything else by source address) and control commands. Driven with
//! `(now, datagram)`; it writes replies through a [`Transmit`] and never touches a socket, a
//! queue, a waker or a clock (quinn-proto's shape):
//!
//! - in: [`Engine::handle_datagram`] (UDP), [`Engine::handle_direct`] (direct transports:
//!   plain RTP/RTCP, no SRTP), [`Engine::handle_command`], [`Engine::handle_timeout`];
//! - out: the [`Transmit`] sink (datagrams, and packets for a direct transport's
//!   [`DirectLink`], which the shell delivers), [`Engine::poll_event`] (a bounded queue the
//!   engine owns) and [`Engine::poll_timeout`], the next instant it has timed work (mixer ticks,
//!   DTLS retransmits, RTCP reports, upstream NACKs, layer review); `None` when idle.
//!
//! Each router also has a mixer (see [`RouterMix`]): audio producers feed it and every
//! transport with a mix output receives one mixed stream, ticked from [`Engine::handle_timeout`].

mod latching;
mod transports;

pub use latching::RtpLatch;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::counters::{DropReason, WorkerCounters};
use super::router_mix::{Pushed, RouterMix, write_mix_rtp};
use super::trunk_stats::TrunkReception;
use super::{Command, CommandError, DtlsRtpTransportSpec, EngineEvent, RouterId, TransportSpec, WebRtcTransportSpec};
use crate::mixer::{MixerConfig, MixerError};
use crate::net::DirectLink;
use crate::router::{FastMap, Router, RouterConfig, RouterNote, RouterOutput, RtpRewrite, TransportId, apply_rewrite};
use crate::rtp::telephone_event::{TelephoneEvent, ToneDetector};
use crate::rtp::{RtpHeader, is_rtcp, is_rtp_or_rtcp};
use crate::srtp::{Profile, SrtpContext, SrtpError, SrtpKeys};
use crate::webrtc::dtls::DtlsSession;
use crate::webrtc::stun::{BindingRequest, StunError, is_stun, write_binding_success};

/// Largest datagram the worker sends (RTP up to the cache slot size plus SRTP/RTX overhead).
pub const MAX_DATAGRAM: usize = 1500;

/// Where the worker core puts outgoing datagrams (the socket shell batches them).
pub trait Transmit {
    /// Scratch space for the next datagram, at least [`MAX_DATAGRAM`] bytes.
    fn buffer(&mut self) -> &mut [u8];
    /// The first `len` bytes of the last [`buffer`](Self::buffer) go to `to`.
    fn commit(&mut self, len: usize, to: SocketAddr);
    /// The first `len` bytes of the last [`buffer`](Self::buffer) go to a direct transport's
    /// link (plain RTP/RTCP); false when the link's queue is full (the packet is dropped).
    fn commit_direct(&mut self, len: usize, to: &DirectLink) -> bool;
}

/// Events waiting for [`Engine::poll_event`] by default (more are counted as
/// `EventQueueFull` drops; the shell drains after every round).
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

struct Transport {
    router_id: RouterId,
    path: Path,
}

/// How a transport's packets enter and leave the worker.
enum Path {
    /// The worker's UDP socket, SRTP-protected (WebRTC, or a peer with signalled keys).
    Udp(Box<UdpPath>),
    /// A direct link to another task (plain RTP/RTCP; the carrier encrypts).
    Direct(Arc<DirectLink>),
}

struct UdpPath {
    ice_ufrag: String,
    ice_pwd: String,
    remote: Option<SocketAddr>,
    srtp_in: SrtpContext,
    srtp_out: SrtpContext,
    /// WebRTC transports: the DTLS association that yields the SRTP keys.
    dtls: Option<Box<DtlsSession>>,
    /// False until the SRTP contexts hold real keys (DTLS done): no media in or out before.
    keyed: bool,
    /// Plain RTP/AVP (a SIP trunk leg without SRTP): packets pass without crypto and the
    /// contexts stay unused.
    plain: bool,
    /// A plain peer's RTCP address when it does not multiplex (RTP port + 1).
    rtcp_remote: Option<SocketAddr>,
    /// A SIP trunk leg: its RTP reception is measured per trunk (`trunk_stats`).
    trunk: Option<Box<TrunkReception>>,
    /// A SIP trunk leg that latches to the source it sees (`latching`).
    latch: Option<Box<latching::LatchState>>,
}

/// One worker's state; see the module docs.
pub struct Engine {
    routers: FastMap<RouterId, Router>,
    /// One mixer per router (same keys as `routers`).
    mixes: FastMap<RouterId, RouterMix>,
    /// The instant every mixer's 20 ms ticks are aligned to (the first router's creation).
    mix_grid: Option<Instant>,
    mixer_config: MixerConfig,
    transports: FastMap<TransportId, Transport>,
    /// Keyed by attacker-chosen addresses, so it keeps the DoS-resistant default hasher.
    by_addr: HashMap<SocketAddr, TransportId>,
    by_ufrag: HashMap<String, TransportId>,
    /// WebRTC transports whose DTLS handshake has not finished (the only ones with DTLS timers).
    handshaking: Vec<TransportId>,
    counters: Arc<WorkerCounters>,
    /// Preallocated; bounded by `event_capacity`.
    events: VecDeque<EngineEvent>,
    event_capacity: usize,
    router_config: RouterConfig,
    server_ssrc: u32,
    /// Transports whose telephone-event payload type is known, with each one's tone detector.
    telephone_events: FastMap<TransportId, (u8, ToneDetector)>,
    /// Trunk legs that latch to the source they see, by source IP (`latching`).
    latching: latching::Latching,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("routers", &self.routers.len())
            .field("transports", &self.transports.len())
            .finish()
    }
}

/// Adapts the router's outputs to this worker's transports, crypto and counters.
struct Sink<'a, T> {
    transports: &'a mut FastMap<TransportId, Transport>,
    tx: &'a mut T,
    counters: &'a WorkerCounters,
}

/// Which SRTP transform an outgoing packet needs on a UDP path.
#[derive(Clone, Copy)]
enum Protect {
    Rtp,
    Rtcp,
}

impl<T: Transmit> Sink<'_, T> {
    /// Sends one packet `fill` writes (plain) into a scratch buffer: SRTP-protected to a UDP
    /// transport's address, or as is to a direct transport's link.
    fn send(&mut self, to: TransportId, protect: Protect, fill: impl FnOnce(&mut [u8]) -> Option<usize>) {
        let Some(transport) = self.transports.get_mut(&to) else {
            return self.counters.count_drop(DropReason::NoRemoteAddress);
        };
        let len = match &mut transport.path {
            Path::Udp(udp) => {
                let Some(remote) = udp.remote.filter(|_| udp.keyed) else {
                    return self.counters.count_drop(DropReason::NoRemoteAddress);
                };
                let buf = self.tx.buffer();
                let protected = fill(buf).and_then(|len| match protect {
                    _ if udp.plain => Some(len),
                    Protect::Rtp => udp.srtp_out.protect_rtp(buf, len).ok(),
                    Protect::Rtcp => udp.srtp_out.protect_rtcp(buf, len).ok(),
                });
                let Some(len) = protected else { return self.counters.count_drop(DropReason::ProtectFailed) };
                self.tx.commit(len, remote);
                len
            }
            Path::Direct(link) => {
                let buf = self.tx.buffer();
                let Some(len) = fill(buf) else { return self.counters.count_drop(DropReason::ProtectFailed) };
                if !self.tx.commit_direct(len, link) {
                    return self.counters.count_drop(DropReason::EgressQueueFull);
                }
                len
            }
        };
        WorkerCounters::inc(&self.counters.packets_out);
        WorkerCounters::add(&self.counters.bytes_out, len as u64);
    }
}

impl<T: Transmit> RouterOutput for Sink<'_, T> {
    fn forward_rtp(&mut self, to: TransportId, packet: &[u8], rewrite: &RtpRewrite<'_>) {
        self.send(to, Protect::Rtp, |buf| apply_rewrite(packet, buf, rewrite).ok());
        WorkerCounters::inc(&self.counters.rtp_forwarded);
    }

    fn send_rtcp(&mut self, to: TransportId, packet: &[u8]) {
        self.send(to, Protect::Rtcp, |buf| {
            buf.get_mut(..packet.len())?.copy_from_slice(packet);
            Some(packet.len())
        });
    }

    fn note(&mut self, note: RouterNote) {
        let c = self.counters;
        match note {
            RouterNote::UnknownSsrc => c.count_drop(DropReason::UnknownSsrc),
            RouterNote::MalformedRtp => c.count_drop(DropReason::MalformedRtp),
            RouterNote::MalformedRtcp => c.count_drop(DropReason::MalformedRtcp),
            RouterNote::NackReceived => WorkerCounters::inc(&c.nack_received),
            RouterNote::NackResent => WorkerCounters::inc(&c.nack_resent),
            RouterNote::NackMissed => WorkerCounters::inc(&c.nack_missed),
            RouterNote::KeyframeRequestSent => WorkerCounters::inc(&c.keyframe_requests),
            RouterNote::KeyframeRequestSuppressed => WorkerCounters::inc(&c.keyframe_requests_suppressed),
            RouterNote::LayerSwitched => WorkerCounters::inc(&c.layer_switches),
            RouterNote::ReceptionReport { lost_increase, fraction_lost, jitter_ns } => {
                c.reception.record(u64::from(lost_increase), fraction_lost, jitter_ns)
            }
            RouterNote::RoundTrip { rtt_ns } => c.reception.record_rtt(rtt_ns),
        }
    }
}

fn srtp_drop(error: SrtpError, rtcp: bool) -> DropReason {
    match error {
        SrtpError::AuthFailed => DropReason::SrtpAuthFailed,
        SrtpError::Replayed => DropReason::SrtpReplayed,
        _ if rtcp => DropReason::MalformedRtcp,
        _ => DropReason::MalformedRtp,
    }
}

impl Engine {
    pub fn new(router_config: RouterConfig, server_ssrc: u32, counters: Arc<WorkerCounters>) -> Self {
        Self {
            routers: FastMap::default(),
            mixes: FastMap::default(),
            mix_grid: None,
            mixer_config: MixerConfig::default(),
            transports: FastMap::default(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            handshaking: Vec::new(),
            counters,
            events: VecDeque::with_capacity(DEFAULT_EVENT_CAPACITY),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            router_config,
            server_ssrc,
            telephone_events: FastMap::default(),
            latching: latching::Latching::default(),
        }
    }

    /// Sets the configuration of the mixers of routers created from now on.
    pub fn with_mixer_config(mut self, config: MixerConfig) -> Self {
        self.mixer_config = config;
        self
    }

    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// Sets how many events wait for [`Self::poll_event`] before new ones are dropped.
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self.events = VecDeque::with_capacity(self.event_capacity);
        self
    }

    /// The next event for the control plane, oldest first.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Self::handle_timeout`] has work: a mixer tick, a DTLS retransmit, an
    /// RTCP report, an upstream NACK or a layer review. `None` when nothing is timed (no
    /// router has members and no handshake runs): the shell may sleep until a packet or a
    /// command arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let routers = self.routers.values().filter_map(Router::poll_timeout);
        let mixes = self.mixes.values().filter_map(RouterMix::poll_timeout);
        let handshakes = self.handshaking.iter().filter_map(|id| match self.transports.get(id) {
            Some(Transport { path: Path::Udp(udp), .. }) if !udp.keyed => {
                udp.dtls.as_ref().zip(udp.remote).and_then(|(dtls, remote)| dtls.poll_timeout(remote))
            }
            _ => None,
        });
        routers.chain(mixes).chain(handshakes).min()
    }

    /// True when nothing done with a received datagram is wanted before the next mixer tick:
    /// a mixer ticks, no router forwards anything (no consumer: every stream goes through its
    /// mixer, which only plays packets at its ticks) and no DTLS handshake runs. The shell may
    /// then leave datagrams in the socket until that tick and receive them together, one
    /// wake-up per tick instead of one per packet or burst. A STUN consent check waits at most
    /// a tick (20 ms), and a mixer's jitter buffer stamps each packet with when it was received.
    pub fn receive_waits_for_tick(&self) -> bool {
        // A mixer with members ticks every 20 ms, so `poll_timeout` is at most a tick away.
        self.mixes.values().any(|m| m.poll_timeout().is_some())
            && self.handshaking.is_empty()
            && self.routers.values().all(|r| r.consumer_count() == 0)
    }

    pub fn router_count(&self) -> usize {
        self.routers.len()
    }

    /// Participants of a router.s mixer (inputs and outputs), for tests.
    #[cfg(test)]
    pub(crate) fn mix_member_count(&self, router_id: RouterId) -> Option<usize> {
        self.mixes.get(&router_id).map(RouterMix::member_count)
    }

    /// Handles one received datagram. `buf` is the datagram; it is decrypted in place.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], tx: &mut impl Transmit) {
        WorkerCounters::inc(&self.counters.packets_in);
        WorkerCounters::add(&self.counters.bytes_in, buf.len() as u64);
        match buf.first() {
            Some(0..=3) if is_stun(buf) => self.handle_stun(from, buf, tx),
            Some(20..=63) => self.handle_dtls(now, from, buf, tx),
            Some(128..=191) if is_rtp_or_rtcp(buf) => self.handle_media(now, from, buf, tx),
            _ => self.counters.count_drop(DropReason::NotMedia),
        }
    }

    fn handle_stun(&mut self, from: SocketAddr, buf: &[u8], tx: &mut impl Transmit) {
        let request = match BindingRequest::parse(buf) {
            Ok(r) => r,
            Err(StunError::BadIntegrity) => return self.counters.count_drop(DropReason::StunBadIntegrity),
            Err(_) => return self.counters.count_drop(DropReason::StunInvalid),
        };
        let Some(&id) = self.by_ufrag.get(request.local_ufrag) else {
            return self.counters.count_drop(DropReason::StunUnknownUfrag);
        };
        let Some(Path::Udp(transport)) = self.transports.get_mut(&id).map(|t| &mut t.path) else { return };
        if request.verify(transport.ice_pwd.as_bytes()).is_err() {
            return self.counters.count_drop(DropReason::StunBadIntegrity);
        }
        if transport.remote != Some(from) {
            if let Some(old) = transport.remote {
                self.by_addr.remove(&old);
            }
            transport.remote = Some(from);
            self.by_addr.insert(from, id);
            push_event(
                &mut self.events,
                self.event_capacity,
                &self.counters,
                EngineEvent::TransportConnected { transport: id, remote: from },
            );
        }
        match write_binding_success(tx.buffer(), &request.transaction_id, from, transport.ice_pwd.as_bytes()) {
            Ok(n) => {
                tx.commit(n, from);
                WorkerCounters::inc(&self.counters.stun_answered);
                WorkerCounters::inc(&self.counters.packets_out);
                WorkerCounters::add(&self.counters.bytes_out, n as u64);
            }
            Err(_) => self.counters.count_drop(DropReason::SendFailed),
        }
    }

    fn handle_media(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], tx: &mut impl Transmit) {
        let Some(&id) = self.by_addr.get(&from) else { return self.handle_unknown_source(now, from, buf, tx) };
        let Some(Transport { router_id, path: Path::Udp(transport) }) = self.transports.get_mut(&id) else {
            return self.counters.count_drop(DropReason::UnknownSource);
        };
        if !transport.keyed {
            return self.counters.count_drop(DropReason::Dtls);
        }
        let rtcp = is_rtcp(buf);
        if transport.plain {
            let router_id = *router_id;
            if let (false, Some(trunk), Ok(h)) = (rtcp, transport.trunk.as_deref_mut(), RtpHeader::parse(buf)) {
                trunk.on_rtp(now, h.sequence, h.timestamp, &self.counters);
            }
            if !rtcp
                && transport.latch.is_some()
                && let Ok(h) = RtpHeader::parse(buf)
            {
                transport.note_latch_ssrc(h.ssrc);
            }
            return self.route(now, router_id, id, rtcp, buf, tx);
        }
        let result = if rtcp { transport.srtp_in.unprotect_rtcp(buf) } else { transport.srtp_in.unprotect_rtp(buf) };
        let len = match result {
            Ok(len) => len,
            Err(e) => return self.counters.count_drop(srtp_drop(e, rtcp)),
        };
        if let (false, Some(trunk), Ok(h)) = (rtcp, transport.trunk.as_deref_mut(), RtpHeader::parse(&buf[..len])) {
            trunk.on_rtp(now, h.sequence, h.timestamp, &self.counters);
        }
        let router_id = *router_id;
        self.route(now, router_id, id, rtcp, &buf[..len], tx);
    }

    /// Handles one packet a queue-attached transport sent (plain RTP or RTCP, no SRTP).
    pub fn handle_direct(&mut self, now: Instant, from: TransportId, packet: &[u8], tx: &mut impl Transmit) {
        WorkerCounters::inc(&self.counters.packets_in);
        WorkerCounters::add(&self.counters.bytes_in, packet.len() as u64);
        if !is_rtp_or_rtcp(packet) {
            return self.counters.count_drop(DropReason::NotMedia);
        }
        let Some(Transport { router_id, path: Path::Direct(_) }) = self.transports.get(&from) else {
            return self.counters.count_drop(DropReason::UnknownSource);
        };
        let router_id = *router_id;
        self.route(now, router_id, from, is_rtcp(packet), packet, tx);
    }

    /// Hands a decrypted packet of `from` to its router (and audio to its mixer; the
    /// router still sees it for reception statistics and reports).
    fn route(
        &mut self,
        now: Instant,
        router_id: RouterId,
        from: TransportId,
        rtcp: bool,
        packet: &[u8],
        tx: &mut impl Transmit,
    ) {
        if !rtcp && !self.telephone_events.is_empty() && self.telephone_event(router_id, from, packet) {
            return;
        }
        if !rtcp
            && let Some(mix) = self.mixes.get_mut(&router_id)
            && mix.push(now, from, packet) == Pushed::Addressed
        {
            return; // audio addressed to chosen listeners: the mixer's alone
        }
        let Some(router) = self.routers.get_mut(&router_id) else {
            return self.counters.count_drop(DropReason::UnknownSource);
        };
        let mut sink = Sink { transports: &mut self.transports, tx, counters: &self.counters };
        if rtcp {
            router.handle_rtcp(now, from, packet, &mut sink);
        } else {
            router.handle_rtp(now, from, packet, &mut sink);
        }
    }

    /// True when `packet` is a telephone-event of `from` (consumed here): a tone it ends is
    /// queued as [`EngineEvent::Dtmf`], and every packet is relayed to the phones of the
    /// router that take tones (`tone_relay`).
    fn telephone_event(&mut self, router_id: RouterId, from: TransportId, packet: &[u8]) -> bool {
        let Some((payload_type, detector)) = self.telephone_events.get_mut(&from) else { return false };
        if packet.get(1).map(|b| b & 0x7F) != Some(*payload_type) {
            return false;
        }
        let Ok(header) = RtpHeader::parse(packet) else { return true };
        let payload = &packet[header.payload_offset..header.payload_offset + header.payload_len];
        let Ok(event) = TelephoneEvent::parse(payload) else { return true };
        if let Some(mix) = self.mixes.get_mut(&router_id) {
            mix.relay_tone(from, header.ssrc, header.timestamp, &event);
        }
        if let Some(tone) = detector.on_packet(header.timestamp, &event).filter(TelephoneEvent::is_dtmf) {
            let event = EngineEvent::Dtmf { transport: from, event: tone.event, duration: tone.duration };
            push_event(&mut self.events, self.event_capacity, &self.counters, event);
        }
        true
    }

    /// A DTLS datagram from a peer that passed ICE: advances its handshake; on completion the
    /// exported keys replace the transport's SRTP contexts.
    fn handle_dtls(&mut self, now: Instant, from: SocketAddr, buf: &[u8], tx: &mut impl Transmit) {
        let Some(&id) = self.by_addr.get(&from) else { return self.counters.count_drop(DropReason::UnknownSource) };
        let Some(Transport { router_id, path: Path::Udp(transport) }) = self.transports.get_mut(&id) else {
            return self.counters.count_drop(DropReason::UnknownSource);
        };
        let router_id = *router_id;
        let Some(dtls) = transport.dtls.as_mut() else { return self.counters.count_drop(DropReason::Dtls) };
        let output = match dtls.handle(now, from, buf) {
            Ok(output) => output,
            Err(error) => {
                tracing::debug!(%from, %error, "DTLS datagram refused");
                return self.counters.count_drop(DropReason::Dtls);
            }
        };
        for datagram in &output.transmit {
            send_raw(tx, &self.counters, datagram, from);
        }
        if let Some(keys) = output.keys {
            match keyed_contexts(&keys) {
                Ok((srtp_in, srtp_out)) => {
                    transport.srtp_in = srtp_in;
                    transport.srtp_out = srtp_out;
                    transport.keyed = true;
                    tracing::info!(%from, profile = ?keys.profile, "DTLS-SRTP established");
                    if let Some(router) = self.routers.get_mut(&router_id) {
                        let mut sink = Sink { transports: &mut self.transports, tx, counters: &self.counters };
                        router.transport_ready(now, id, &mut sink);
                    }
                }
                Err(error) => tracing::warn!(%from, %error, "DTLS exported unusable SRTP keys"),
            }
        }
    }

    /// Runs every timer that is due at `now` (DTLS retransmits, reports, NACKs, layer review,
    /// the 20 ms mixer ticks); see [`Self::poll_timeout`]. Calling it early is harmless.
    /// Returns how many router mixers ticked (the shell times those rounds).
    pub fn handle_timeout(&mut self, now: Instant, tx: &mut impl Transmit) -> u32 {
        if !self.handshaking.is_empty() {
            // Only transports still in their DTLS handshake have DTLS timers: polling every
            // transport each round cost O(participants) per received batch.
            let transports = &mut self.transports;
            self.handshaking.retain(|id| {
                let Some(Transport { path: Path::Udp(transport), .. }) = transports.get_mut(id) else { return false };
                let (false, Some(dtls)) = (transport.keyed, transport.dtls.as_mut()) else { return false };
                if let Some(remote) = transport.remote {
                    for datagram in dtls.poll(now, remote) {
                        send_raw(tx, &self.counters, &datagram, remote);
                    }
                }
                true
            });
        }
        for router in self.routers.values_mut() {
            let mut sink = Sink { transports: &mut self.transports, tx: &mut *tx, counters: &self.counters };
            router.poll(now, &mut sink);
        }
        self.tick_mixers(now, tx)
    }

    /// True if a router mixer is due at `now` (lets the shell time only rounds that mix).
    pub fn mix_due(&self, now: Instant) -> bool {
        self.mixes.values().any(|m| m.due(now))
    }

    fn tick_mixers(&mut self, now: Instant, tx: &mut impl Transmit) -> u32 {
        let mut ticked = 0;
        let (events, capacity, counters) = (&mut self.events, self.event_capacity, &*self.counters);
        for (&router_id, mix) in self.mixes.iter_mut() {
            let mut sink = Sink { transports: &mut self.transports, tx: &mut *tx, counters };
            let report = mix.tick(
                now,
                |to, output, packet, payload| {
                    sink.send(to, Protect::Rtp, |buf| write_mix_rtp(buf, output, packet, payload));
                },
                |speakers| {
                    let event = EngineEvent::ActiveSpeakers { router: router_id, speakers };
                    push_event(events, capacity, counters, event);
                },
            );
            ticked += u32::from(report.ran);
            WorkerCounters::add(&counters.transcode_ns, crate::mixer::transcode_clock::take_ns());
            if report.late {
                WorkerCounters::inc(&counters.mixer_overruns);
            }
            if mix.reports_due(now)
                && let Some(router) = self.routers.get_mut(&router_id)
            {
                mix.sender_reports(now, router.ntp_time(now), |to, packet| sink.send_rtcp(to, packet));
            }
        }
        ticked
    }

    /// Applies one control command. Nothing changes when it fails; a refusal is also queued
    /// as [`EngineEvent::CommandFailed`] for the control plane.
    pub fn handle_command(
        &mut self,
        now: Instant,
        command: Command,
        tx: &mut impl Transmit,
    ) -> Result<(), CommandError> {
        WorkerCounters::inc(&self.counters.commands);
        let name = command.name();
        let result = self.apply(now, command, tx);
        if let Err(error) = result {
            WorkerCounters::inc(&self.counters.commands_failed);
            tracing::warn!(command = name, %error, "media command refused");
            let event = EngineEvent::CommandFailed { command: name, error };
            push_event(&mut self.events, self.event_capacity, &self.counters, event);
        }
        result
    }

    fn router(&mut self, router_id: RouterId) -> Result<&mut Router, CommandError> {
        self.routers.get_mut(&router_id).ok_or(CommandError::UnknownRouter)
    }

    fn apply(&mut self, now: Instant, command: Command, tx: &mut impl Transmit) -> Result<(), CommandError> {
        macro_rules! with_router {
            ($router_id:expr, |$router:ident, $sink:ident| $body:expr) => {{
                let router_id = $router_id;
                let Self { routers, transports, counters, .. } = self;
                let $router = routers.get_mut(&router_id).ok_or(CommandError::UnknownRouter)?;
                let mut $sink = Sink { transports, tx, counters };
                $body.map_err(CommandError::Router)
            }};
        }
        match command {
            Command::CreateRouter { router: router_id } => {
                if self.routers.contains_key(&router_id) {
                    return Err(CommandError::RouterExists);
                }
                let grid = *self.mix_grid.get_or_insert(now);
                let mix = RouterMix::new(now, grid, self.mixer_config).map_err(mixer_error)?;
                let ssrc = self.server_ssrc;
                self.routers.insert(router_id, Router::new(self.router_config, ssrc));
                self.mixes.insert(router_id, mix);
                Ok(())
            }
            Command::CloseRouter { router: router_id } => {
                self.routers.remove(&router_id).ok_or(CommandError::UnknownRouter)?;
                self.mixes.remove(&router_id);
                let gone: Vec<_> =
                    self.transports.iter().filter(|(_, t)| t.router_id == router_id).map(|(id, _)| *id).collect();
                for id in gone {
                    self.remove_transport(id);
                }
                Ok(())
            }
            Command::AddTransport(spec) => self.add_transport(*spec),
            Command::AddWebRtcTransport(spec) => self.add_webrtc_transport(*spec),
            Command::AddDtlsRtpTransport(spec) => self.add_dtls_rtp_transport(now, *spec, tx),
            Command::AddDirectTransport { id, router: router_id, link } => {
                if !self.routers.contains_key(&router_id) {
                    return Err(CommandError::UnknownRouter);
                }
                if self.transports.contains_key(&id) {
                    return Err(CommandError::TransportExists);
                }
                self.transports.insert(id, Transport { router_id, path: Path::Direct(link) });
                Ok(())
            }
            Command::AddRtpTransport { id, router, remote } => self.add_rtp_transport(id, router, remote),
            Command::RemoveTransport { transport } => {
                let router_id = self.transports.get(&transport).ok_or(CommandError::UnknownTransport)?.router_id;
                if let Some(router) = self.routers.get_mut(&router_id) {
                    router.remove_transport(transport);
                }
                if let Some(mix) = self.mixes.get_mut(&router_id) {
                    mix.remove_transport(transport);
                }
                self.remove_transport(transport);
                Ok(())
            }
            Command::MoveTransport { transport, router: to } => {
                if !self.routers.contains_key(&to) {
                    return Err(CommandError::UnknownRouter);
                }
                let from = self.transports.get(&transport).ok_or(CommandError::UnknownTransport)?.router_id;
                if let Some(router) = self.routers.get_mut(&from) {
                    router.remove_transport(transport);
                }
                if let Some(mix) = self.mixes.get_mut(&from) {
                    mix.remove_transport(transport);
                }
                if let Some(moved) = self.transports.get_mut(&transport) {
                    moved.router_id = to;
                }
                Ok(())
            }
            Command::SetMixOutput { router: router_id, transport, output } => {
                if self.transports.get(&transport).is_none_or(|t| t.router_id != router_id) {
                    return Err(CommandError::UnknownTransport);
                }
                let mix = self.mixes.get_mut(&router_id).ok_or(CommandError::UnknownRouter)?;
                mix.set_output(now, transport, output).map_err(mixer_error)
            }
            Command::AddProducer { router: router_id, spec } => {
                if self.transports.get(&spec.transport).is_none_or(|t| t.router_id != router_id) {
                    return Err(CommandError::UnknownTransport);
                }
                let (id, audio) = (spec.id, spec.kind == palaver_core::MediaKind::Audio);
                let mixed = audio.then(|| spec.clone());
                self.router(router_id)?.add_producer(spec).map_err(CommandError::Router)?;
                let (Some(spec), Some(mix)) = (mixed, self.mixes.get_mut(&router_id)) else { return Ok(()) };
                if let Err(error) = mix.add_source(now, &spec) {
                    // Nothing changes when a command fails: take the producer back out.
                    let _ = self.router(router_id)?.remove_producer(id);
                    return Err(mixer_error(error));
                }
                Ok(())
            }
            Command::RemoveProducer { router: router_id, producer } => {
                self.router(router_id)?.remove_producer(producer).map_err(CommandError::Router)?;
                if let Some(mix) = self.mixes.get_mut(&router_id) {
                    mix.remove_source(producer);
                }
                Ok(())
            }
            Command::AddConsumer { router: router_id, spec } => {
                if self.transports.get(&spec.transport).is_none_or(|t| t.router_id != router_id) {
                    return Err(CommandError::UnknownTransport);
                }
                with_router!(router_id, |router, sink| router.add_consumer(now, spec, &mut sink))
            }
            Command::RemoveConsumer { router: router_id, consumer } => {
                self.router(router_id)?.remove_consumer(consumer).map_err(CommandError::Router)
            }
            Command::SetConsumerPaused { router: router_id, consumer, paused } => {
                with_router!(router_id, |router, sink| router.set_consumer_paused(now, consumer, paused, &mut sink))
            }
            Command::SetConsumerMaxHeight { router: router_id, consumer, max_height } => {
                with_router!(router_id, |router, sink| router
                    .set_consumer_max_height(now, consumer, max_height, &mut sink))
            }
            Command::RepointConsumer { router: router_id, consumer, producer } => {
                with_router!(router_id, |router, sink| router.repoint_consumer(now, consumer, producer, &mut sink))
            }
            Command::SetConsumerNumbering { router: router_id, consumer, numbering } => {
                self.router(router_id)?.set_consumer_numbering(consumer, numbering).map_err(CommandError::Router)
            }
            Command::SetMixAudio { router: router_id, audio } => {
                let mix = self.mixes.get_mut(&router_id).ok_or(CommandError::UnknownRouter)?;
                mix.set_audio(now, audio)
            }
            Command::SetTelephoneEvent { transport, payload_type } => {
                if !self.transports.contains_key(&transport) {
                    return Err(CommandError::UnknownTransport);
                }
                match payload_type {
                    Some(pt) => {
                        self.telephone_events.insert(transport, (pt, ToneDetector::default()));
                    }
                    None => {
                        self.telephone_events.remove(&transport);
                    }
                }
                Ok(())
            }
            Command::SetTrunkStats { transport, slot, clock_rate } => {
                let Some(Transport { path: Path::Udp(udp), .. }) = self.transports.get_mut(&transport) else {
                    return Err(CommandError::UnknownTransport);
                };
                udp.trunk = Some(Box::new(TrunkReception::new(slot, clock_rate)));
                Ok(())
            }
            Command::SetRtpLatching { transport, latch } => self.set_rtp_latching(transport, latch),
            Command::Shutdown => Ok(()),
        }
    }
}

fn mixer_error(error: MixerError) -> CommandError {
    CommandError::Mixer(match error {
        MixerError::Full(_) => "the router mixer is full",
        MixerError::InvalidTalkerCount(_) => "talker count must be between 1 and 16",
        MixerError::Codec(_) => "Opus codec set-up failed",
        _ => "mixer input refused",
    })
}

fn keyed_contexts(keys: &SrtpKeys) -> Result<(SrtpContext, SrtpContext), SrtpError> {
    let srtp_in = SrtpContext::new(keys.profile, &keys.remote_master_key, &keys.remote_master_salt)?;
    let srtp_out = SrtpContext::new(keys.profile, &keys.local_master_key, &keys.local_master_salt)?;
    Ok((srtp_in, srtp_out))
}

/// Queues an event unless `capacity` are already waiting (then it is counted as dropped).
fn push_event(events: &mut VecDeque<EngineEvent>, capacity: usize, counters: &WorkerCounters, event: EngineEvent) {
    if events.len() >= capacity {
        return counters.count_drop(DropReason::EventQueueFull);
    }
    events.push_back(event);
}

fn send_raw(tx: &mut impl Transmit, counters: &WorkerCounters, datagram: &[u8], to: SocketAddr) {
    let buf = tx.buffer();
    let Some(slot) = buf.get_mut(..datagram.len()) else { return counters.count_drop(DropReason::SendFailed) };
    slot.copy_from_slice(datagram);
    tx.commit(datagram.len(), to);
    WorkerCounters::inc(&counters.packets_out);
    WorkerCounters::add(&counters.bytes_out, datagram.len() as u64);
}
