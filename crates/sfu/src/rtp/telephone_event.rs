//! RFC 4733 telephone-events (DTMF over RTP): the 4-byte payload view and writer, and the
//! sender's packet plan for one tone. Nothing here allocates.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```
//! A tone is one RTP timestamp (the tone's start) carried by several packets: the first
//! with the marker bit, updates with a growing duration, and the end (E bit), sent three
//! times. A receiver reports a tone once, on the first end packet of its timestamp.

use super::RtpError;

/// Payload bytes of one event.
pub const PAYLOAD_LEN: usize = 4;
/// The clock rate telephone-event is negotiated at (`telephone-event/8000`).
pub const CLOCK_RATE: u32 = 8000;
/// The highest DTMF event code (0–9, `*` 10, `#` 11, A–D 12–15).
pub const MAX_DTMF_EVENT: u8 = 15;

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 for DTMF).
    pub event: u8,
    /// The E bit: the tone has ended.
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in timestamp units (8 kHz).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a telephone-event RTP payload (a redundant block of several
    /// events is read as its first one).
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        let Some(bytes) = payload.get(..PAYLOAD_LEN) else { return Err(RtpError::Truncated) };
        Ok(Self {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    /// Writes the payload into `out` (at least [`PAYLOAD_LEN`] bytes); returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        let Some(bytes) = out.get_mut(..PAYLOAD_LEN) else { return Err(RtpError::BufferTooSmall) };
        bytes[0] = self.event;
        bytes[1] = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F);
        bytes[2..4].copy_from_slice(&self.duration.to_be_bytes());
        Ok(PAYLOAD_LEN)
    }

    /// True for the 16 DTMF events.
    pub fn is_dtmf(&self) -> bool {
        self.event <= MAX_DTMF_EVENT
    }
}

/// Writes a whole RTP packet (12-byte header, no CSRC or extension) carrying `event`.
pub fn write_packet(
    out: &mut [u8],
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    event: &TelephoneEvent,
) -> Result<usize, RtpError> {
    let Some(header) = out.get_mut(..12 + PAYLOAD_LEN) else { return Err(RtpError::BufferTooSmall) };
    header[0] = 0x80;
    header[1] = (payload_type & 0x7F) | if marker { 0x80 } else { 0 };
    header[2..4].copy_from_slice(&sequence.to_be_bytes());
    header[4..8].copy_from_slice(&timestamp.to_be_bytes());
    header[8..12].copy_from_slice(&ssrc.to_be_bytes());
    event.write(&mut header[12..])?;
    Ok(12 + PAYLOAD_LEN)
}

/// Recognizes each tone once from a stream of telephone-event packets of one sender: the
/// first end packet of a timestamp is the tone; its retransmissions and later updates of the
/// same timestamp are not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToneDetector {
    last_ended: Option<u32>,
}

impl ToneDetector {
    /// The tone `event` (of the packet with RTP `timestamp`) completes, if it is a new one.
    pub fn on_packet(&mut self, timestamp: u32, event: &TelephoneEvent) -> Option<TelephoneEvent> {
        if !event.end || self.last_ended == Some(timestamp) {
            return None;
        }
        self.last_ended = Some(timestamp);
        Some(*event)
    }
}

/// The packets a sender emits for one tone of `duration` timestamp units (8 kHz), one per
/// 20 ms packet time: updates with the marker on the first, then the end packet three times.
/// Yields `(marker, payload)`; every packet of the tone carries the same RTP timestamp.
pub fn tone_packets(event: u8, volume: u8, duration: u16) -> impl Iterator<Item = (bool, TelephoneEvent)> {
    const STEP: u16 = 160; // 20 ms at 8 kHz
    let updates = duration.div_ceil(STEP).max(1);
    (1..=updates)
        .map(move |i| {
            let so_far = (i * STEP).min(duration);
            (i == 1, TelephoneEvent { event, end: false, volume, duration: so_far })
        })
        .chain((0..3).map(move |_| (false, TelephoneEvent { event, end: true, volume, duration })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_the_rfc_layout() {
        // '5', end, volume 10, duration 800 (100 ms)
        let bytes = [5, 0x8A, 0x03, 0x20];
        let event = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(event, TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 });
        let mut out = [0u8; 4];
        assert_eq!(event.write(&mut out).unwrap(), 4);
        assert_eq!(out, bytes);
        // The reserved bit is ignored on read.
        assert_eq!(TelephoneEvent::parse(&[1, 0x40 | 7, 0, 160]).unwrap().volume, 7);
    }

    #[test]
    fn short_input_and_output_are_errors() {
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(RtpError::Truncated));
        let event = TelephoneEvent { event: 1, end: false, volume: 0, duration: 0 };
        assert_eq!(event.write(&mut [0u8; 3]), Err(RtpError::BufferTooSmall));
        assert_eq!(write_packet(&mut [0u8; 15], 101, true, 1, 2, 3, &event), Err(RtpError::BufferTooSmall));
    }

    #[test]
    fn a_written_packet_parses_as_rtp_with_the_event() {
        let mut buf = [0u8; 64];
        let event = TelephoneEvent { event: 11, end: false, volume: 10, duration: 160 };
        let n = write_packet(&mut buf, 101, true, 7, 16_000, 0xABCD, &event).unwrap();
        let header = crate::rtp::RtpHeader::parse(&buf[..n]).unwrap();
        assert_eq!((header.payload_type, header.marker, header.sequence), (101, true, 7));
        assert_eq!((header.timestamp, header.ssrc), (16_000, 0xABCD));
        let payload = &buf[header.payload_offset..header.payload_offset + header.payload_len];
        assert_eq!(TelephoneEvent::parse(payload).unwrap(), event);
    }

    #[test]
    fn the_detector_reports_each_tone_once() {
        let mut detector = ToneDetector::default();
        let mut seen = Vec::new();
        for (ts, event) in [(100u32, 1u8), (900, 2)] {
            for (_, packet) in tone_packets(event, 10, 800) {
                seen.extend(detector.on_packet(ts, &packet).map(|e| e.event));
            }
        }
        assert_eq!(seen, [1, 2]);
        // The same digit pressed twice has two timestamps: two tones.
        let end = TelephoneEvent { event: 1, end: true, volume: 10, duration: 800 };
        assert!(detector.on_packet(1700, &end).is_some());
        assert!(detector.on_packet(2500, &end).is_some());
    }

    #[test]
    fn tone_packets_mark_the_first_and_end_three_times() {
        let packets: Vec<_> = tone_packets(3, 10, 800).collect();
        assert_eq!(packets.len(), 5 + 3);
        assert!(packets[0].0 && packets.iter().skip(1).all(|(m, _)| !m));
        assert_eq!(packets[4].1.duration, 800);
        assert!(packets[..5].iter().all(|(_, e)| !e.end));
        assert!(packets[5..].iter().all(|(_, e)| e.end && e.duration == 800));
        assert!(!TelephoneEvent { event: 16, end: false, volume: 0, duration: 0 }.is_dtmf());
    }
}
