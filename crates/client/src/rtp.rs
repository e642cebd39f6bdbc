//! RTP as a QUIC participant sends and receives it: [`RtpPacketizer`] builds packets for one
//! outgoing stream (sequence number, timestamp, SSRC, marker on the first packet of a talk
//! spurt, optional RFC 6464 audio level), [`ReceivedRtp::parse`] reads an incoming packet.
//! Plain RTP (no SRTP): QUIC already encrypts.

use bytes::{BufMut, Bytes, BytesMut};
use palaver_core::protocol::quic::AUDIO_LEVEL_EXTENSION_ID;
use std::time::Instant;

/// Header-extension ID of the RFC 6464 client-to-mixer audio level on QUIC (fixed, no SDP).
/// Fixed RTP header size (no CSRCs, no extension).
pub const RTP_HEADER_BYTES: usize = 12;

/// True if a datagram is RTCP rather than RTP (RFC 5761: payload type 64..=95 with the marker bit).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// Builds the packets of one outgoing RTP stream.
#[derive(Debug, Clone)]
pub struct RtpPacketizer {
    ssrc: u32,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    marker_next: bool,
}

impl RtpPacketizer {
    /// A stream with random initial sequence number and timestamp (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8) -> Self {
        Self::with_start(ssrc, payload_type, rand::random(), rand::random())
    }

    /// A stream starting at the given sequence number and timestamp (for tests).
    pub fn with_start(ssrc: u32, payload_type: u8, sequence: u16, timestamp: u32) -> Self {
        Self { ssrc, payload_type: payload_type & 0x7f, sequence, timestamp, marker_next: true }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet gets.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// RTP timestamp the next packet gets.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Set the marker bit on the next packet (first packet after a DTX pause).
    pub fn start_talk_spurt(&mut self) {
        self.marker_next = true;
    }

    /// Skip `samples` of timestamp without sending (a DTX pause); marks the next packet.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker_next = true;
    }

    /// The RFC 4733 packets of one DTMF tone (`event`: 0–9, 10 `*`, 11 `#`, 12–15 A–D) lasting
    /// `duration` 8 kHz units, on this stream's SSRC and sequence with `payload_type` (QUIC:
    /// `quic::TELEPHONE_EVENT_PT`): an update per 20 ms (marker on the first), then the end
    /// packet three times, all with the tone's start timestamp. The audio timestamp then
    /// advances past the tone (in 48 kHz units) and the next audio packet starts a talk spurt.
    pub fn telephone_event(&mut self, payload_type: u8, event: u8, duration: u16) -> Vec<Bytes> {
        const STEP: u16 = 160;
        let updates = duration.div_ceil(STEP).max(1);
        let timestamp = self.timestamp;
        let mut packets = Vec::with_capacity(usize::from(updates) + 3);
        for i in 0..updates + 3 {
            let end = i >= updates;
            let so_far = if end { duration } else { ((i + 1) * STEP).min(duration) };
            let mut b = BytesMut::with_capacity(16);
            b.put_u8(0x80);
            b.put_u8((payload_type & 0x7f) | if i == 0 { 0x80 } else { 0 });
            b.put_u16(self.sequence);
            b.put_u32(timestamp);
            b.put_u32(self.ssrc);
            b.put_u8(event);
            b.put_u8(if end { 0x80 | 10 } else { 10 });
            b.put_u16(so_far);
            self.sequence = self.sequence.wrapping_add(1);
            packets.push(b.freeze());
        }
        self.timestamp = self.timestamp.wrapping_add(u32::from(duration) * 6);
        self.marker_next = true;
        packets
    }

    /// The next packet carrying `payload` (`samples` = its duration in clock ticks, 960 for
    /// 20 ms of Opus), with the RFC 6464 level (0 = loudest, 127 = silence; `-dBov`) if given.
    /// A level below 127 sets the extension's voice-activity bit (the mixer's talker selection
    /// only counts frames flagged as voice); 127 marks silence.
    pub fn packetize(&mut self, payload: &[u8], samples: u32, level_dbov: Option<u8>) -> Bytes {
        self.packetize_level(payload, samples, level_dbov.map(|level| (level, level < 127)))
    }

    /// [`Self::packetize`] with the RFC 6464 voice-activity flag given explicitly: `level` is
    /// `(-dBov, voice)` (a browser without DTX sends its background noise with `voice` false).
    pub fn packetize_level(&mut self, payload: &[u8], samples: u32, level: Option<(u8, bool)>) -> Bytes {
        let level_dbov = level.map(|(dbov, _)| dbov);
        let voice = level.is_some_and(|(_, voice)| voice);
        let extension = level_dbov.is_some();
        let mut out = BytesMut::with_capacity(RTP_HEADER_BYTES + if extension { 8 } else { 0 } + payload.len());
        out.put_u8(0x80 | if extension { 0x10 } else { 0 });
        out.put_u8(self.payload_type | if self.marker_next { 0x80 } else { 0 });
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
        if let Some(level) = level_dbov {
            // One-byte header extension (RFC 8285): 0xBEDE, one 32-bit word: ID/len, level, padding.
            out.put_u16(0xBEDE);
            out.put_u16(1);
            out.put_u8(AUDIO_LEVEL_EXTENSION_ID << 4);
            out.put_u8(audio_level_byte(level, voice));
            out.put_u16(0);
        }
        out.put_slice(payload);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker_next = false;
        out.freeze()
    }

    /// The next packet of a video frame carrying `payload`, with the frame's timestamp; `last`
    /// sets the marker (the frame's last packet) and then advances the timestamp by `samples`.
    pub fn packetize_video(&mut self, payload: &[u8], last: bool, samples: u32) -> Bytes {
        self.marker_next = last;
        let packet = self.packetize(payload, 0, None);
        if last {
            self.timestamp = self.timestamp.wrapping_add(samples);
        }
        packet
    }
}

/// One RTP packet received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    /// When the datagram was read from the connection.
    pub arrival: Instant,
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub marker: bool,
    /// RFC 6464 audio level (`-dBov`) if the packet carries extension ID 1.
    pub audio_level: Option<u8>,
    /// The codec payload (padding removed).
    pub payload: Bytes,
}

/// The RFC 6464 byte: V (voice activity) for any level below 127, then the level.
fn audio_level_byte(level_dbov: u8, voice: bool) -> u8 {
    let level = level_dbov.min(127);
    if voice && level < 127 { 0x80 | level } else { level }
}

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpParseError {
    #[error("shorter than an RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list, extension or padding runs past the end")]
    Truncated,
}

impl ReceivedRtp {
    /// Parse one RTP packet (not RTCP: check [`is_rtcp`] first).
    pub fn parse(packet: Bytes, arrival: Instant) -> Result<Self, RtpParseError> {
        let b = &packet[..];
        if b.len() < RTP_HEADER_BYTES {
            return Err(RtpParseError::TooShort);
        }
        if b[0] >> 6 != 2 {
            return Err(RtpParseError::BadVersion);
        }
        let csrcs = usize::from(b[0] & 0x0f);
        let mut offset = RTP_HEADER_BYTES + 4 * csrcs;
        let mut audio_level = None;
        if b[0] & 0x10 != 0 {
            let header = b.get(offset..offset + 4).ok_or(RtpParseError::Truncated)?;
            let profile = u16::from_be_bytes([header[0], header[1]]);
            let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let body = b.get(offset + 4..offset + 4 + 4 * words).ok_or(RtpParseError::Truncated)?;
            if profile == 0xBEDE {
                audio_level = one_byte_extension(body, AUDIO_LEVEL_EXTENSION_ID).map(|v| v & 0x7f);
            }
            offset += 4 + 4 * words;
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            let pad = usize::from(*b.last().ok_or(RtpParseError::Truncated)?);
            end = end.checked_sub(pad).ok_or(RtpParseError::Truncated)?;
        }
        if offset > end {
            return Err(RtpParseError::Truncated);
        }
        Ok(Self {
            arrival,
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            payload_type: b[1] & 0x7f,
            marker: b[1] & 0x80 != 0,
            audio_level,
            payload: packet.slice(offset..end),
        })
    }
}

/// The first byte of element `id` in a one-byte-header extension block.
fn one_byte_extension(mut body: &[u8], id: u8) -> Option<u8> {
    while let Some((&first, rest)) = body.split_first() {
        if first == 0 {
            body = rest;
            continue;
        }
        let (element, len) = (first >> 4, usize::from(first & 0x0f) + 1);
        if element == 15 {
            return None;
        }
        let value = rest.get(..len)?;
        if element == id {
            return value.first().copied();
        }
        body = &rest[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dtmf_tone_is_rfc4733_updates_then_three_ends_on_one_timestamp() {
        let mut p = RtpPacketizer::with_start(77, 111, 10, 1000);
        let packets = p.telephone_event(101, 11, 800);
        assert_eq!(packets.len(), 5 + 3);
        for (i, packet) in packets.iter().enumerate() {
            assert_eq!(packet[1] & 0x7f, 101);
            assert_eq!((packet[1] & 0x80 != 0), i == 0, "marker on the first only");
            assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), 10 + i as u16);
            assert_eq!(u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]), 1000);
            assert_eq!(packet[12], 11);
            assert_eq!(packet[13] & 0x80 != 0, i >= 5, "end bit on the last three");
        }
        assert_eq!(u16::from_be_bytes([packets[7][14], packets[7][15]]), 800);
        assert_eq!((p.next_sequence(), p.next_timestamp()), (18, 1000 + 4800));
    }

    #[test]
    fn packets_advance_sequence_and_timestamp_and_mark_talk_spurts() {
        let mut p = RtpPacketizer::with_start(0xAABBCCDD, 111, 65_535, u32::MAX - 100);
        let now = Instant::now();
        let first = ReceivedRtp::parse(p.packetize(b"abc", 960, Some(30)), now).unwrap();
        assert_eq!((first.ssrc, first.sequence, first.timestamp), (0xAABBCCDD, 65_535, u32::MAX - 100));
        assert_eq!((first.payload_type, first.marker, first.audio_level), (111, true, Some(30)));
        assert_eq!(&first.payload[..], b"abc");
        let raw = p.packetize(b"", 960, Some(30));
        assert_eq!(raw[12..20], [0xBE, 0xDE, 0, 1, 0x10, 0x80 | 30, 0, 0], "voice bit and level");
        assert_eq!(p.packetize(b"", 960, Some(200))[17], 127, "silence has no voice bit");
        let second = ReceivedRtp::parse(p.packetize(b"de", 960, None), now).unwrap();
        assert_eq!(
            (second.sequence, second.timestamp, second.marker, second.audio_level),
            (2, 859 + 1920, false, None)
        );
        assert_eq!(&second.payload[..], b"de");
        p.skip(960 * 5);
        let third = ReceivedRtp::parse(p.packetize(b"f", 960, None), now).unwrap();
        assert_eq!((third.sequence, third.timestamp, third.marker), (3, 859 + 960 * 8, true));
    }

    #[test]
    fn video_frames_share_a_timestamp_and_mark_their_last_packet() {
        let mut p = RtpPacketizer::with_start(9, 96, 10, 1_000);
        let now = Instant::now();
        let parse = |b| ReceivedRtp::parse(b, now).unwrap();
        let a = parse(p.packetize_video(b"a", false, 0));
        let b = parse(p.packetize_video(b"b", true, 3_000));
        let c = parse(p.packetize_video(b"c", true, 3_000));
        let got: Vec<(u16, u32, bool)> = [a, b, c].iter().map(|x| (x.sequence, x.timestamp, x.marker)).collect();
        assert_eq!(got, vec![(10, 1_000, false), (11, 1_000, true), (12, 4_000, true)]);
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        let now = Instant::now();
        assert_eq!(ReceivedRtp::parse(Bytes::from_static(&[0x80; 5]), now), Err(RtpParseError::TooShort));
        assert_eq!(ReceivedRtp::parse(Bytes::from_static(&[0x40; 12]), now), Err(RtpParseError::BadVersion));
        let mut csrc = vec![0x8f, 111];
        csrc.resize(20, 0);
        assert_eq!(ReceivedRtp::parse(Bytes::from(csrc), now), Err(RtpParseError::Truncated));
        let mut ext = vec![0x90, 111];
        ext.resize(12, 0);
        ext.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x09]);
        assert_eq!(ReceivedRtp::parse(Bytes::from(ext), now), Err(RtpParseError::Truncated));
        let mut pad = vec![0xA0, 111];
        pad.resize(13, 0);
        pad[12] = 200;
        assert_eq!(ReceivedRtp::parse(Bytes::from(pad), now), Err(RtpParseError::Truncated));
    }

    #[test]
    fn rtcp_is_told_apart() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 111, 0, 6]));
        assert!(!is_rtcp(&[0x80]));
    }
}
