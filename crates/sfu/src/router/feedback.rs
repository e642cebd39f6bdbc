//! RTCP from subscribers and publishers: keyframe requests (PLI/FIR) relayed to the publisher
//! with a per-layer rate limit, NACKs answered from the packet cache (as RTX when negotiated),
//! and bandwidth estimates (REMB, transport-cc) that drive layer choice.

use std::time::Instant;

use super::layers::Layer;
use super::room::Router;
use super::{RouterConfig, RouterNote, RouterOutput, RtpRewrite, TransportId};
use crate::rtp::rtcp::{Compound, RtcpPacket, write_pli};
use crate::rtp::{Extensions, RtpHeader};

/// Sends a PLI for `layer` to its publisher unless one went out within the configured interval.
pub(super) fn request_keyframe(
    layer: &mut Layer,
    publisher: TransportId,
    server_ssrc: u32,
    config: &RouterConfig,
    now: Instant,
    scratch: &mut [u8; 64],
    out: &mut impl RouterOutput,
) {
    let Some(media_ssrc) = layer.ssrc else { return };
    if layer
        .last_keyframe_request
        .is_some_and(|at| now.saturating_duration_since(at) < config.keyframe_request_interval)
    {
        return out.note(RouterNote::KeyframeRequestSuppressed);
    }
    layer.last_keyframe_request = Some(now);
    if let Ok(n) = write_pli(scratch, server_ssrc, media_ssrc) {
        out.send_rtcp(publisher, &scratch[..n]);
        out.note(RouterNote::KeyframeRequestSent);
    }
}

impl Router {
    /// Handles one plaintext compound RTCP packet from a transport of this room.
    pub fn handle_rtcp(&mut self, now: Instant, from: TransportId, packet: &[u8], out: &mut impl RouterOutput) {
        if Compound::validate(packet).is_err() {
            return out.note(RouterNote::MalformedRtcp);
        }
        let mut bandwidth_changed = false;
        for item in Compound::new(packet) {
            let Ok(item) = item else { break };
            match item {
                RtcpPacket::Pli { media_ssrc, .. } => self.keyframe_for_consumer(now, from, media_ssrc, out),
                RtcpPacket::Fir { entries, .. } => {
                    for (ssrc, _) in RtcpPacket::fir_entries(entries) {
                        self.keyframe_for_consumer(now, from, ssrc, out);
                    }
                }
                RtcpPacket::Nack(nack) => {
                    out.note(RouterNote::NackReceived);
                    let Some(&index) = self.feedback_routes.get(&(from, nack.media_ssrc)) else { continue };
                    for seq in nack.lost().take(self.config.max_nack_resends) {
                        self.resend(index, seq, out);
                    }
                }
                RtcpPacket::Remb { bitrate_bps, .. } => {
                    if let Some(sub) = self.subscribers.get_mut(&from) {
                        sub.remb_bps = Some(bitrate_bps);
                        bandwidth_changed = true;
                    }
                }
                RtcpPacket::TransportCc(feedback) => {
                    if let Some(sub) = self.subscribers.get_mut(&from) {
                        bandwidth_changed |= sub.twcc.on_feedback(now, &feedback).is_some();
                    }
                }
                _ => {}
            }
        }
        if bandwidth_changed {
            self.review_transport(now, from, out);
        }
    }

    /// A subscriber lost a picture: ask the publisher of what it currently watches.
    fn keyframe_for_consumer(&mut self, now: Instant, from: TransportId, ssrc: u32, out: &mut impl RouterOutput) {
        let Some(&index) = self.feedback_routes.get(&(from, ssrc)) else { return out.note(RouterNote::UnknownSsrc) };
        let Router { producers, consumers, config, server_ssrc, scratch, .. } = self;
        let Some(c) = consumers[index].as_ref() else { return };
        let Some(layer) = c.current_layer.or(c.target_layer) else { return };
        let Some(producer) = producers[c.producer].as_mut() else { return };
        if let Some(layer) = producer.layers.get_mut(layer as usize) {
            request_keyframe(layer, producer.transport, *server_ssrc, config, now, scratch, out);
        }
    }

    /// Resends one packet the subscriber reported lost, if the cache still has it.
    fn resend(&mut self, index: usize, out_seq: u16, out: &mut impl RouterOutput) {
        let Router { producers, consumers, subscribers, .. } = self;
        let Some(c) = consumers[index].as_mut() else { return };
        let cached = c.out.origin(out_seq).and_then(|origin| {
            let producer = producers.get(origin.source as usize)?.as_ref()?;
            let packet = producer.layers.get(origin.layer as usize)?.cache.get(origin.source_sequence)?;
            Some((producer, packet, origin))
        });
        let Some((producer, packet, origin)) = cached else { return out.note(RouterNote::NackMissed) };
        let Ok(header) = RtpHeader::parse(packet) else { return out.note(RouterNote::NackMissed) };
        let twcc_offset = Extensions::parse(packet, &header, &producer.extensions).ok().and_then(|e| e.transport_cc);
        let transport_cc = match (twcc_offset, subscribers.get_mut(&c.transport)) {
            (Some((_, offset)), Some(sub)) => Some((offset, sub.twcc.on_send(packet.len() + 2))),
            _ => None,
        };
        let rewrite = RtpRewrite {
            ssrc: c.ssrc,
            sequence: out_seq,
            timestamp: header.timestamp.wrapping_add(origin.ts_offset),
            rtx: c.rtx.map(|(ssrc, pt)| (ssrc, pt, c.out.next_rtx_sequence())),
            transport_cc,
        };
        out.forward_rtp(c.transport, packet, &rewrite);
        out.note(RouterNote::NackResent);
    }
}
