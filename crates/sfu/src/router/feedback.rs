//! RTCP from subscribers and publishers: keyframe requests (PLI/FIR) relayed to the publisher
//! with a per-layer rate limit, NACKs answered from the packet cache (as RTX when negotiated),
//! and bandwidth estimates (REMB, transport-cc) that drive layer choice.

use std::time::Instant;

use super::layers::Layer;
use super::router::Router;
use super::{Remap, RouterConfig, RouterNote, RouterOutput, RtpRewrite, TransportId};
use crate::rtp::rtcp::{Compound, ReportBlock, RtcpPacket, write_pli};
use crate::rtp::{Extensions, RtpHeader};
use palaver_core::MediaKind;

const AUDIO_CLOCK_RATE: u64 = 48_000;
const VIDEO_CLOCK_RATE: u64 = 90_000;
/// The cumulative lost field is a 24-bit signed count.
const LOST_MASK: u32 = 0x00FF_FFFF;
const LOST_SIGN: u32 = 0x0080_0000;

/// How much the 24-bit cumulative lost count grew since `previous` (modulo 2^24, so a wrap
/// counts as growth). A decrease (duplicates make the count go down) or a negative first value
/// counts as 0; the first block of a stream counts its whole positive value.
fn lost_increase(previous: Option<u32>, current: u32) -> u32 {
    let delta = match previous {
        Some(previous) => current.wrapping_sub(previous) & LOST_MASK,
        None => current,
    };
    if delta & LOST_SIGN != 0 { 0 } else { delta }
}

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
                RtcpPacket::ReceiverReport { reports, .. } => {
                    for block in reports.iter() {
                        self.reception_report(from, &block, out);
                        self.round_trip(now, &block, out);
                    }
                }
                RtcpPacket::SenderReport { ssrc, ntp_time, reports, .. } => {
                    self.on_sender_report(now, from, ssrc, ntp_time);
                    for block in reports.iter() {
                        self.reception_report(from, &block, out);
                        self.round_trip(now, &block, out);
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

    /// A report block about a stream this room sends to `from`: loss since the previous block
    /// and jitter in time units. Blocks about other SSRCs (e.g. a publisher reporting on our
    /// sender reports) are ignored.
    fn reception_report(&mut self, from: TransportId, block: &ReportBlock, out: &mut impl RouterOutput) {
        let Some(&index) = self.feedback_routes.get(&(from, block.ssrc)) else { return };
        let Router { producers, consumers, .. } = self;
        let Some(c) = consumers[index].as_mut() else { return };
        let clock_rate = match producers[c.producer].as_ref().map(|p| p.kind) {
            Some(MediaKind::Audio) => AUDIO_CLOCK_RATE,
            _ => VIDEO_CLOCK_RATE,
        };
        let lost = block.cumulative_lost & LOST_MASK;
        let lost_increase = lost_increase(c.reported_lost.replace(lost), lost);
        let jitter_ns = u64::from(block.jitter) * 1_000_000_000 / clock_rate;
        out.note(RouterNote::ReceptionReport { lost_increase, fraction_lost: block.fraction_lost, jitter_ns });
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
        let remap = c.remap.as_deref();
        let keeps_twcc = remap.is_none_or(|r| r.keeps_extension(producer.extensions.transport_cc));
        let transport_cc = match (twcc_offset, subscribers.get_mut(&c.transport)) {
            (Some((_, offset)), Some(sub)) if keeps_twcc => Some((offset, sub.twcc.on_send(packet.len() + 2))),
            _ => None,
        };
        let rewrite = RtpRewrite {
            ssrc: c.ssrc,
            sequence: out_seq,
            timestamp: header.timestamp.wrapping_add(origin.ts_offset),
            rtx: c.rtx.map(|(ssrc, pt)| (ssrc, pt, c.out.next_rtx_sequence())),
            transport_cc,
            payload_type: remap.map(|r| r.payload_type(header.payload_type)),
            extension_ids: remap.map(Remap::extension_ids),
        };
        out.forward_rtp(c.transport, packet, &rewrite);
        out.note(RouterNote::NackResent);
    }
}

#[cfg(test)]
mod tests {
    use super::lost_increase;

    #[test]
    fn lost_increase_is_wrap_safe_and_ignores_decreases() {
        assert_eq!(lost_increase(None, 7), 7);
        assert_eq!(lost_increase(None, 0xFF_FFFF), 0); // -1 as a first value
        assert_eq!(lost_increase(Some(7), 10), 3);
        assert_eq!(lost_increase(Some(10), 8), 0); // duplicates lowered the count
        assert_eq!(lost_increase(Some(0x7F_FFFE), 0x80_0001), 3); // crosses the sign bit
        assert_eq!(lost_increase(Some(0xFF_FFFE), 2), 4); // wraps past 2^24
    }
}
