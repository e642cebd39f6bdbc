//! RTP latching (symmetric RTP to the source actually seen) for SIP trunk legs whose SBC sits
//! behind NAT: its SDP names a private address, its packets arrive from the NAT's. A leg set
//! to latch ([`Command::SetRtpLatching`](super::Command::SetRtpLatching)) still accepts its
//! SDP's address; a packet from an address no transport has is offered to the latching legs
//! of the packet's source **IP** (the SDP's IP or one of the trunk's signaling addresses:
//! anything else stays an unknown source and costs one hash lookup), and one of them takes
//! it — its send address moves to the packet's source — when:
//!
//! - **SRTP / DTLS-SRTP leg**: the packet authenticates under the leg's keys (tried on a
//!   scratch copy, leg by leg; keys are per call, so another call's packet never passes);
//! - **plain RTP leg**: its payload type is one of the leg's and either its SSRC is the one
//!   the leg already receives (the same stream moved: NAT rebinding, re-latch), or the leg
//!   has received nothing yet and no latching leg of the IP has that SSRC (first latch) and
//!   it is the **only** such fresh leg — or, when several are, the only one whose SDP port
//!   is the packet's source port (a port-preserving NAT). Otherwise the packet is
//!   ambiguous: nobody takes it (a fresh leg is never given a stream that might be another
//!   call's).
//!
//! Packets no leg takes are dropped and counted (`rtp_latch_refused`). RTCP never latches
//! (it follows the RTP's address: symmetric RTP and RTCP multiplexing). Latching happens once
//! per new source, so the per-packet path stays a hash lookup; nothing is allocated per
//! packet (the scratch buffer is made when the first leg is set to latch).

use std::net::IpAddr;

use super::*;

/// What a latching leg accepts from a new source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpLatch {
    /// The source IPs it may latch to: its SDP's and the trunk's signaling addresses.
    pub ips: Vec<IpAddr>,
    /// The negotiated payload types (the codec's, telephone-event's): plain RTP from a new
    /// address must carry one of them.
    pub payload_types: Vec<u8>,
}

/// A latching leg's state (on its [`UdpPath`]).
#[derive(Debug)]
pub(super) struct LatchState {
    spec: RtpLatch,
    /// The SSRC the leg receives (plain legs: learned from its first packet).
    ssrc: Option<u32>,
}

/// The engine's latching index.
#[derive(Debug, Default)]
pub(super) struct Latching {
    /// Latching legs by the source IPs they may latch to (attacker-chosen keys: the default
    /// hasher).
    by_ip: HashMap<IpAddr, Vec<TransportId>>,
    /// Where SRTP candidates are tried without touching the packet.
    scratch: Vec<u8>,
}

/// What a packet from a new address matched among the plain legs of its IP.
#[derive(Default)]
struct PlainMatch {
    /// Legs already receiving this SSRC.
    same_stream: Option<TransportId>,
    streams: u32,
    /// Legs that received nothing yet.
    fresh: Option<TransportId>,
    fresh_legs: u32,
    /// Fresh legs whose SDP port is the packet's source port.
    same_port: Option<TransportId>,
    same_ports: u32,
}

impl UdpPath {
    /// A plain latching leg learns its SSRC from the first RTP packet it takes.
    pub(super) fn note_latch_ssrc(&mut self, ssrc: u32) {
        if let Some(latch) = self.latch.as_deref_mut()
            && latch.ssrc.is_none()
        {
            latch.ssrc = Some(ssrc);
        }
    }
}

impl Engine {
    /// `Command::SetRtpLatching`: `latch` set (or replaced, keeping what the leg learned), or
    /// cleared.
    pub(super) fn set_rtp_latching(&mut self, id: TransportId, latch: Option<RtpLatch>) -> Result<(), CommandError> {
        let Some(Transport { path: Path::Udp(udp), .. }) = self.transports.get_mut(&id) else {
            return Err(CommandError::UnknownTransport);
        };
        let old = udp.latch.take();
        let ssrc = old.as_ref().and_then(|o| o.ssrc);
        unindex(&mut self.latching.by_ip, id, old.as_deref());
        if let Some(spec) = latch {
            for ip in &spec.ips {
                let legs = self.latching.by_ip.entry(*ip).or_default();
                if !legs.contains(&id) {
                    legs.push(id);
                }
            }
            if self.latching.scratch.is_empty() {
                self.latching.scratch = vec![0; MAX_DATAGRAM];
            }
            udp.latch = Some(Box::new(LatchState { spec, ssrc }));
        }
        Ok(())
    }

    /// A removed transport leaves the index.
    pub(super) fn forget_latch(&mut self, id: TransportId, latch: Option<&LatchState>) {
        unindex(&mut self.latching.by_ip, id, latch);
    }

    /// RTP or RTCP from an address no transport has: latched by a leg (see the module docs)
    /// and handled as that leg's, or dropped and counted.
    pub(super) fn handle_unknown_source(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        tx: &mut impl Transmit,
    ) {
        let Some(legs) = self.latching.by_ip.get(&from.ip()) else {
            return self.counters.count_drop(DropReason::UnknownSource);
        };
        if is_rtcp(buf) || buf.len() > self.latching.scratch.len() {
            return self.counters.count_drop(DropReason::RtpLatchRefused);
        }
        let Ok(header) = RtpHeader::parse(buf) else { return self.counters.count_drop(DropReason::MalformedRtp) };
        let payload_type = buf[1] & 0x7F;
        let mut plain = PlainMatch::default();
        let mut secure = None;
        for id in legs {
            let Some(Transport { path: Path::Udp(udp), .. }) = self.transports.get_mut(id) else { continue };
            let Some(latch) = udp.latch.as_deref() else { continue };
            if !udp.plain {
                // SRTP: the packet must authenticate under this leg's keys.
                let scratch = &mut self.latching.scratch[..buf.len()];
                scratch.copy_from_slice(buf);
                if udp.keyed
                    && let Ok(len) = udp.srtp_in.unprotect_rtp(scratch)
                {
                    secure = Some((*id, len));
                    break;
                }
                continue;
            }
            if latch.ssrc == Some(header.ssrc) {
                plain.same_stream = Some(*id);
                plain.streams += 1;
            } else if latch.ssrc.is_none() && latch.spec.payload_types.contains(&payload_type) {
                plain.fresh = Some(*id);
                plain.fresh_legs += 1;
                if udp.remote.is_some_and(|r| r.port() == from.port()) {
                    plain.same_port = Some(*id);
                    plain.same_ports += 1;
                }
            }
        }
        if let Some((id, len)) = secure {
            // Already authenticated and decrypted (its replay window moved): route the clear copy.
            self.latch_to(id, from);
            buf[..len].copy_from_slice(&self.latching.scratch[..len]);
            return self.route_latched(now, id, &mut buf[..len], tx);
        }
        let taker = match plain {
            PlainMatch { same_stream: Some(id), streams: 1, .. } => {
                // The same stream is never also "fresh", so it needs the payload type too.
                let ok = self.plain_latch(id).is_some_and(|l| l.spec.payload_types.contains(&payload_type));
                ok.then_some(id)
            }
            PlainMatch { streams: 0, fresh: Some(id), fresh_legs: 1, .. } => Some(id),
            PlainMatch { streams: 0, same_port: Some(id), same_ports: 1, .. } => Some(id),
            _ => None,
        };
        let Some(id) = taker else { return self.counters.count_drop(DropReason::RtpLatchRefused) };
        self.latch_to(id, from);
        self.handle_media(now, from, buf, tx);
    }

    fn plain_latch(&self, id: TransportId) -> Option<&LatchState> {
        match self.transports.get(&id) {
            Some(Transport { path: Path::Udp(udp), .. }) => udp.latch.as_deref(),
            _ => None,
        }
    }

    /// Moves `id`'s send (and receive) address to `from`.
    fn latch_to(&mut self, id: TransportId, from: SocketAddr) {
        let Some(Transport { path: Path::Udp(udp), .. }) = self.transports.get_mut(&id) else { return };
        for addr in [udp.remote.take(), udp.rtcp_remote.take()].into_iter().flatten() {
            if self.by_addr.get(&addr) == Some(&id) {
                self.by_addr.remove(&addr);
            }
        }
        udp.remote = Some(from);
        self.by_addr.insert(from, id);
        // Debug, not info: a re-latch per packet (a stream hopping ports) must not flood the log.
        tracing::debug!(transport = id.0, %from, "RTP latched to the source seen");
    }

    /// A decrypted RTP packet of a leg that just latched: what `handle_media` does after SRTP.
    fn route_latched(&mut self, now: Instant, id: TransportId, clear: &mut [u8], tx: &mut impl Transmit) {
        let Some(Transport { router_id, path: Path::Udp(udp) }) = self.transports.get_mut(&id) else { return };
        if let (Some(trunk), Ok(h)) = (udp.trunk.as_deref_mut(), RtpHeader::parse(clear)) {
            trunk.on_rtp(now, h.sequence, h.timestamp, &self.counters);
        }
        let router_id = *router_id;
        self.route(now, router_id, id, false, clear, tx);
    }
}

fn unindex(by_ip: &mut HashMap<IpAddr, Vec<TransportId>>, id: TransportId, latch: Option<&LatchState>) {
    let Some(latch) = latch else { return };
    for ip in &latch.spec.ips {
        if let Some(legs) = by_ip.get_mut(ip) {
            legs.retain(|l| *l != id);
            if legs.is_empty() {
                by_ip.remove(ip);
            }
        }
    }
}
