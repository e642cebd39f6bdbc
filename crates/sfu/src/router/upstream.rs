//! Repair of what publishers send: sequence gaps on a video layer become NACKs to the publisher
//! (after a short reordering grace, retried a few times), and retransmissions that come back as
//! RTX (RFC 4588: own SSRC and payload type, original sequence number in the first two payload
//! bytes) are unwrapped into the original packet, which then takes the normal path: packet
//! cache, then every consumer of the layer (a late packet fills the subscriber's gap).
//!
//! State is a fixed array per layer and unwrapping uses a stack buffer: nothing allocates.

use std::time::{Duration, Instant};

use super::router::{Route, Router};
use super::{RouterOutput, TransportId};
use crate::rtp::packet::{self, RtpHeader};
use crate::rtp::rtcp::write_nack;
use palaver_core::MediaKind;

/// Missing packets tracked per layer (older gaps are not worth repairing anyway).
const TRACKED: usize = 32;
/// A jump of more than this many sequence numbers is a restart or a layer pause, not loss.
const MAX_GAP: u16 = 64;
/// Wait this long for a reordered packet before asking for it.
pub(super) const REORDER_GRACE: Duration = Duration::from_millis(10);
/// Time between two NACKs for the same packet, and how many are sent.
const RETRY_INTERVAL: Duration = Duration::from_millis(60);
const MAX_TRIES: u8 = 3;
/// Largest RTP packet unwrapped from RTX.
const MAX_PACKET: usize = 1500;

#[derive(Debug, Clone, Copy, Default)]
struct Missing {
    sequence: u16,
    since: Option<Instant>,
    last_nack: Option<Instant>,
    tries: u8,
}

/// Sequence gaps of one incoming video layer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct UpstreamLoss {
    highest: Option<u16>,
    missing: [Missing; TRACKED],
}

impl UpstreamLoss {
    /// Folds one received sequence number in: a gap marks the skipped numbers missing, a late
    /// packet (reordered or retransmitted) clears its entry. True when a gap was recorded (a
    /// NACK falls due after [`REORDER_GRACE`]).
    pub fn on_packet(&mut self, now: Instant, sequence: u16) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(sequence);
            return false;
        };
        let ahead = sequence.wrapping_sub(highest);
        if ahead == 0 {
            return false;
        }
        if ahead >= 0x8000 {
            if let Some(m) = self.missing.iter_mut().find(|m| m.since.is_some() && m.sequence == sequence) {
                *m = Missing::default();
            }
            return false;
        }
        let mut gap = false;
        if ahead <= MAX_GAP {
            for skipped in 1..ahead {
                let Some(slot) = self.missing.iter_mut().find(|m| m.since.is_none()) else { break };
                *slot =
                    Missing { sequence: highest.wrapping_add(skipped), since: Some(now), last_nack: None, tries: 0 };
                gap = true;
            }
        } else {
            self.missing = [Missing::default(); TRACKED];
        }
        self.highest = Some(sequence);
        gap
    }

    /// When the next NACK of a tracked gap falls due (after its grace, or its retry interval).
    pub fn next_due(&self) -> Option<Instant> {
        self.missing
            .iter()
            .filter_map(|m| match (m.since, m.last_nack) {
                (Some(_), Some(at)) => Some(at + RETRY_INTERVAL),
                (Some(since), None) => Some(since + REORDER_GRACE),
                _ => None,
            })
            .min()
    }

    /// The sequence numbers to NACK now (written to `due`, count returned); entries past their
    /// last try are dropped.
    pub fn due(&mut self, now: Instant, due: &mut [u16; TRACKED]) -> usize {
        let mut count = 0;
        for m in self.missing.iter_mut() {
            let Some(since) = m.since else { continue };
            if now.saturating_duration_since(since) < REORDER_GRACE {
                continue;
            }
            if m.last_nack.is_some_and(|at| now.saturating_duration_since(at) < RETRY_INTERVAL) {
                continue;
            }
            if m.tries >= MAX_TRIES {
                *m = Missing::default();
                continue;
            }
            m.tries += 1;
            m.last_nack = Some(now);
            due[count] = m.sequence;
            count += 1;
        }
        count
    }

    #[cfg(test)]
    fn missing(&self) -> Vec<u16> {
        self.missing.iter().filter(|m| m.since.is_some()).map(|m| m.sequence).collect()
    }
}

/// Rebuilds the original packet from an RTX packet into `out`; `None` for padding-only RTX
/// (bandwidth probes) or a packet too large for `out`.
pub(super) fn unwrap_rtx(rtx: &[u8], header: &RtpHeader, ssrc: u32, payload_type: u8, out: &mut [u8]) -> Option<usize> {
    if header.payload_len < 2 {
        return None;
    }
    let payload = header.payload(rtx);
    let original_sequence = u16::from_be_bytes([payload[0], payload[1]]);
    let head = header.payload_offset;
    let len = head + header.payload_len - 2;
    let dst = out.get_mut(..len)?;
    dst[..head].copy_from_slice(&rtx[..head]);
    dst[0] &= !0x20; // the original's padding is not carried
    dst[head..].copy_from_slice(&payload[2..]);
    packet::set_sequence(dst, original_sequence);
    packet::set_ssrc(dst, ssrc);
    packet::set_payload_type(dst, payload_type);
    Some(len)
}

impl Router {
    /// An RTX packet from a publisher: unwrapped and routed like the original.
    pub(super) fn handle_rtx(
        &mut self,
        now: Instant,
        from: TransportId,
        route: Route,
        rtx: &[u8],
        header: &RtpHeader,
        out: &mut impl RouterOutput,
    ) {
        let Some(layer) = self.producers[route.producer].as_ref().and_then(|p| p.layers.get(route.layer as usize))
        else {
            return;
        };
        // The original payload type is the one the layer is sending now (RTX answers recent
        // NACKs); before any original packet there is nothing to repair.
        let (Some(ssrc), Some(payload_type)) = (layer.ssrc, layer.last_payload_type) else { return };
        let mut original = [0u8; MAX_PACKET];
        if let Some(len) = unwrap_rtx(rtx, header, ssrc, payload_type, &mut original) {
            self.handle_rtp(now, from, &original[..len], out);
        }
    }

    /// NACKs to publishers for video packets that did not arrive. Called from `poll`.
    pub(super) fn send_upstream_nacks(&mut self, now: Instant, out: &mut impl RouterOutput) {
        let Router { producers, report_buf, server_ssrc, next_nack, .. } = self;
        *next_nack = None;
        for producer in producers.iter_mut().flatten().filter(|p| p.kind != MediaKind::Audio) {
            for layer in producer.layers.iter_mut() {
                let Some(ssrc) = layer.ssrc else { continue };
                let mut due = [0u16; TRACKED];
                let count = layer.upstream.due(now, &mut due);
                if let Some(at) = layer.upstream.next_due() {
                    *next_nack = Some(next_nack.map_or(at, |next| next.min(at)));
                }
                if count == 0 {
                    continue;
                }
                if let Ok(n) = write_nack(&mut report_buf[..], *server_ssrc, ssrc, &due[..count]) {
                    out.send_rtcp(producer.transport, &report_buf[..n]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_nacked_after_a_grace_retried_and_cleared_by_late_packets() {
        let t0 = Instant::now();
        let mut loss = UpstreamLoss::default();
        for seq in [65_534u16, 65_535, 2, 3] {
            loss.on_packet(t0, seq); // 0 and 1 are missing across the wrap
        }
        assert_eq!(loss.missing(), vec![0, 1]);
        let mut due = [0u16; TRACKED];
        assert_eq!(loss.due(t0 + Duration::from_millis(5), &mut due), 0, "reordering grace");
        loss.on_packet(t0 + Duration::from_millis(6), 1); // reordered, not lost
        assert_eq!(loss.due(t0 + REORDER_GRACE, &mut due), 1);
        assert_eq!(due[0], 0);
        assert_eq!(loss.due(t0 + REORDER_GRACE + Duration::from_millis(10), &mut due), 0, "retry interval");
        let mut sent = 1;
        let mut at = t0 + REORDER_GRACE;
        for _ in 0..5 {
            at += RETRY_INTERVAL;
            sent += loss.due(at, &mut due);
        }
        assert_eq!(sent, MAX_TRIES as usize, "given up after {MAX_TRIES} tries");
        assert!(loss.missing().is_empty());
        // a retransmission that arrives clears its entry
        loss.on_packet(at, 5);
        loss.on_packet(at, 4);
        assert!(loss.missing().is_empty());
        // a jump beyond MAX_GAP is a restart, not 1000 losses
        loss.on_packet(at, 1005);
        assert!(loss.missing().is_empty());
    }

    #[test]
    fn rtx_unwraps_to_the_original_and_padding_is_ignored() {
        // RTX: pt 97, ssrc 0x77, seq 9, ext present, payload = OSN 0x1234 + "abc", padded
        let mut rtx = vec![0xB0, 97, 0, 9, 0, 0, 0, 50, 0, 0, 0, 0x77, 0xBE, 0xDE, 0, 1, 0x10, 5, 0, 0];
        rtx.extend_from_slice(&[0x12, 0x34, b'a', b'b', b'c', 0, 0, 3]);
        let header = RtpHeader::parse(&rtx).unwrap();
        let mut out = [0u8; 64];
        let n = unwrap_rtx(&rtx, &header, 0x55, 96, &mut out).unwrap();
        let original = RtpHeader::parse(&out[..n]).unwrap();
        assert_eq!((original.ssrc, original.sequence, original.payload_type), (0x55, 0x1234, 96));
        assert_eq!((original.timestamp, original.padding_len), (50, 0));
        assert_eq!(original.payload(&out[..n]), b"abc");
        assert_eq!(&out[12..20], &rtx[12..20], "extensions are kept");
        // padding-only probe
        let probe = [0xA0, 97, 0, 10, 0, 0, 0, 50, 0, 0, 0, 0x77, 0, 0, 0, 4];
        let header = RtpHeader::parse(&probe).unwrap();
        assert_eq!(unwrap_rtx(&probe, &header, 0x55, 96, &mut out), None);
        assert_eq!(unwrap_rtx(&rtx, &RtpHeader::parse(&rtx).unwrap(), 0x55, 96, &mut [0u8; 10]), None);
    }
}
