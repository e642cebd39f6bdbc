//! The RTCP a QUIC participant needs for video: composing a PLI (RFC 4585) to ask the server
//! for a keyframe on a received slot, and finding the keyframe requests (PLI, FIR of RFC 5104)
//! in a compound packet the server sent, so a publisher can answer with a keyframe.

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Instant;

/// RTCP packet type of payload-specific feedback (PLI, FIR).
const PSFB: u8 = 206;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// What the server asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeKind {
    /// Picture Loss Indication.
    Pli,
    /// Full Intra Request.
    Fir,
}

/// A keyframe request for one of the streams this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeRequest {
    /// When the datagram was read from the connection.
    pub arrival: Instant,
    /// The SSRC of the stream that needs a keyframe (one of the client's video layers).
    pub media_ssrc: u32,
    pub kind: KeyframeKind,
}

/// A PLI from `sender_ssrc` (any SSRC of this client; 0 is fine) about the received stream
/// `media_ssrc` (e.g. a video slot's SSRC from `media.attached`).
pub fn pli(sender_ssrc: u32, media_ssrc: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(12);
    out.put_u8(0x80 | FMT_PLI);
    out.put_u8(PSFB);
    out.put_u16(2); // length in 32-bit words minus one
    out.put_u32(sender_ssrc);
    out.put_u32(media_ssrc);
    out.freeze()
}

/// The keyframe requests in one compound RTCP packet (reports and other feedback are skipped;
/// a malformed tail ends the scan).
pub fn keyframe_requests(packet: &[u8], arrival: Instant) -> Vec<KeyframeRequest> {
    let mut found = Vec::new();
    let mut rest = packet;
    while rest.len() >= 4 {
        let (first, packet_type) = (rest[0], rest[1]);
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if first >> 6 != 2 || len > rest.len() {
            break;
        }
        let body = &rest[..len];
        let fmt = first & 0x1f;
        let word = |at: usize| body.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if packet_type == PSFB && fmt == FMT_PLI {
            if let Some(media_ssrc) = word(8) {
                found.push(KeyframeRequest { arrival, media_ssrc, kind: KeyframeKind::Pli });
            }
        } else if packet_type == PSFB && fmt == FMT_FIR {
            // FCI entries of 8 bytes after the 12-byte header: SSRC, sequence number, reserved.
            let mut at = 12;
            while let Some(media_ssrc) = word(at).filter(|_| at + 8 <= body.len()) {
                found.push(KeyframeRequest { arrival, media_ssrc, kind: KeyframeKind::Fir });
                at += 8;
            }
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pli_round_trips() {
        let now = Instant::now();
        let packet = pli(7, 0xDEAD_BEEF);
        assert_eq!(&packet[..], &[0x81, 206, 0, 2, 0, 0, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF]);
        assert!(crate::rtp::is_rtcp(&packet));
        let found = keyframe_requests(&packet, now);
        assert_eq!(found, vec![KeyframeRequest { arrival: now, media_ssrc: 0xDEAD_BEEF, kind: KeyframeKind::Pli }]);
    }

    #[test]
    fn requests_are_found_in_a_compound_with_reports_and_firs() {
        let now = Instant::now();
        // RR with no blocks, then a FIR with two entries, then a PLI.
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        compound.extend_from_slice(&[0x84, 206, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0]);
        compound.extend_from_slice(&[0, 0, 0, 5, 1, 0, 0, 0, 0, 0, 0, 6, 1, 0, 0, 0]);
        compound.extend_from_slice(&pli(9, 4));
        let ssrcs: Vec<(u32, KeyframeKind)> =
            keyframe_requests(&compound, now).iter().map(|r| (r.media_ssrc, r.kind)).collect();
        assert_eq!(ssrcs, vec![(5, KeyframeKind::Fir), (6, KeyframeKind::Fir), (4, KeyframeKind::Pli)]);
    }

    #[test]
    fn malformed_rtcp_yields_nothing_and_never_panics() {
        let now = Instant::now();
        assert!(keyframe_requests(&[], now).is_empty());
        assert!(keyframe_requests(&[0x81, 206, 0, 9, 0, 0], now).is_empty(), "length past the end");
        assert!(keyframe_requests(&[0x41, 206, 0, 0], now).is_empty(), "version 1");
        assert!(keyframe_requests(&[0x81, 206, 0, 0], now).is_empty(), "PLI without SSRCs");
        let mut truncated = pli(1, 2).to_vec();
        truncated.extend_from_slice(&[0x81, 206, 0, 2, 0]);
        assert_eq!(keyframe_requests(&truncated, now).len(), 1);
    }
}
