//! RFC 4733 tones out to a phone: the telephone-events other participants send (Call
//! Automation's `sendDtmfTones`, a QUIC or browser user's keypad) are re-sent on a listener's
//! **mix output** — under the mix's SSRC, sequence numbers and RTP timestamp clock, with the
//! listener's own negotiated telephone-event payload type — and replace the mix packet of each
//! tick while the tone plays (a trunk sees one stream whose audio pauses for the tone, the way
//! an SBC or a phone sends DTMF itself).
//!
//! A [`ToneRelay`] belongs to one listener. [`ToneRelay::on_source`] takes every
//! telephone-event packet of a source (start, updates, end and its retransmissions); the
//! tone's timing is the listener's: the first relayed packet carries the marker and the RTP
//! timestamp the mix packet of that tick would have had, each tick adds one tick of duration
//! (in the units of the listener's negotiated `telephone-event` clock: an Opus output whose
//! trunk agreed `telephone-event/8000` keeps 48 kHz timestamps and counts 8 kHz durations),
//! and once the source's end arrives (or the source goes quiet for [`QUIET_TICKS`]) the end
//! packet is sent three times (RFC 4733 §2.5.1.4), each with its own sequence number. A tone
//! that starts while another plays ends the playing one. Nothing here allocates.

use crate::router::TransportId;
use crate::rtp::telephone_event::TelephoneEvent;

/// Ticks without a packet from the source after which a tone is ended anyway (its end
/// packets were lost): 200 ms.
pub const QUIET_TICKS: u8 = 10;
/// How many times the end packet is sent.
const END_PACKETS: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ToneOut {
    source: TransportId,
    /// The source's RTP timestamp of the tone (what tells its tones apart).
    source_timestamp: u32,
    event: u8,
    volume: u8,
    /// The listener's RTP timestamp of the tone, once its first packet went out.
    start: Option<u32>,
    /// Duration in the last packet sent (listener clock units).
    duration: u16,
    ended: bool,
    ends_sent: u8,
    quiet: u8,
}

/// One relayed packet: replaces the mix packet of this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedTone {
    /// Set on the tone's first packet.
    pub marker: bool,
    /// The tone's RTP timestamp (the same on every packet of the tone).
    pub timestamp: u32,
    pub event: TelephoneEvent,
}

/// One listener's relay (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToneRelay {
    /// The listener's telephone-event payload type.
    pub payload_type: u8,
    /// RTP timestamp units of one 20 ms tick in the listener's clock (160 at 8 kHz).
    tick_units: u32,
    /// Duration units of one tick in the listener's telephone-event clock (160 at `/8000`,
    /// 960 at `/48000`).
    duration_units: u32,
    current: Option<ToneOut>,
    next: Option<ToneOut>,
    /// The last tone relayed to its end, so late retransmissions of its end start nothing.
    finished: Option<(TransportId, u32)>,
}

impl ToneRelay {
    /// A relay for a listener whose mix ticks `tick_units` timestamp units and whose events
    /// count `duration_units` a tick (at most `tick_units`).
    pub fn new(payload_type: u8, tick_units: u32, duration_units: u32) -> Self {
        let duration_units = duration_units.clamp(1, tick_units.max(1));
        Self { payload_type, tick_units, duration_units, current: None, next: None, finished: None }
    }

    /// RTP timestamp units of one tick in the listener's clock.
    pub fn tick_units(&self) -> u32 {
        self.tick_units
    }

    /// A tone is being relayed (or waits to be).
    pub fn is_active(&self) -> bool {
        self.current.is_some()
    }

    /// A telephone-event packet of `source` (its RTP timestamp and payload).
    pub fn on_source(&mut self, source: TransportId, timestamp: u32, event: &TelephoneEvent) {
        let same = |t: &ToneOut| t.source == source && t.source_timestamp == timestamp;
        for tone in [self.current.as_mut(), self.next.as_mut()].into_iter().flatten() {
            if same(tone) {
                tone.quiet = 0;
                tone.ended |= event.end;
                return;
            }
        }
        if self.finished == Some((source, timestamp)) {
            return; // a retransmitted end of a tone already relayed
        }
        let tone = ToneOut {
            source,
            source_timestamp: timestamp,
            event: event.event,
            volume: event.volume,
            start: None,
            duration: 0,
            ended: event.end,
            ends_sent: 0,
            quiet: 0,
        };
        match self.current.as_mut() {
            None => self.current = Some(tone),
            Some(playing) => {
                playing.ended = true; // a new tone ends the one playing
                self.next = Some(tone);
            }
        }
    }

    /// The packet that replaces this tick's mix packet (whose RTP timestamp is
    /// `mix_timestamp`), if a tone is being relayed.
    pub fn on_tick(&mut self, mix_timestamp: u32) -> Option<RelayedTone> {
        let tone = self.current.as_mut()?;
        let marker = tone.start.is_none();
        let start = *tone.start.get_or_insert(mix_timestamp);
        let elapsed = mix_timestamp.wrapping_sub(start).saturating_add(self.tick_units);
        // Timestamp units to the events' clock (×1, or ÷6 for `/8000` on a 48 kHz output).
        let elapsed = u64::from(elapsed) * u64::from(self.duration_units) / u64::from(self.tick_units.max(1));
        let elapsed = u16::try_from(elapsed).unwrap_or(u16::MAX);
        if !tone.ended {
            tone.quiet = tone.quiet.saturating_add(1);
            tone.ended = tone.quiet > QUIET_TICKS;
        }
        if tone.ends_sent == 0 {
            tone.duration = tone.duration.max(elapsed);
        }
        let event = TelephoneEvent { event: tone.event, end: tone.ended, volume: tone.volume, duration: tone.duration };
        if tone.ended {
            tone.ends_sent += 1;
            if tone.ends_sent == END_PACKETS {
                self.finished = Some((tone.source, tone.source_timestamp));
                self.current = self.next.take();
            }
        }
        Some(RelayedTone { marker, timestamp: start, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::telephone_event::{ToneDetector, tone_packets};

    const LEG: TransportId = TransportId(7);

    /// Relays the source packets of `tones` (one per tick, as the leg sends them, a 3-tick gap
    /// between tones) and returns every packet the listener got, with its mix timestamp.
    fn relay(tones: &[u8]) -> Vec<RelayedTone> {
        let mut relay = ToneRelay::new(101, 160, 160);
        let mut sent = Vec::new();
        let mut mix_ts = 1_000u32;
        let mut source_ts = 50_000u32;
        let mut tick = |relay: &mut ToneRelay, sent: &mut Vec<RelayedTone>| {
            sent.extend(relay.on_tick(mix_ts));
            mix_ts = mix_ts.wrapping_add(160);
        };
        for &digit in tones {
            for (_, event) in tone_packets(digit, 10, 800) {
                relay.on_source(LEG, source_ts, &event);
                tick(&mut relay, &mut sent);
            }
            for _ in 0..3 {
                tick(&mut relay, &mut sent);
            }
            source_ts = source_ts.wrapping_add(8 * 960);
        }
        for _ in 0..20 {
            tick(&mut relay, &mut sent);
        }
        sent
    }

    #[test]
    fn a_tone_is_relayed_with_a_marker_growing_durations_and_three_ends() {
        let sent = relay(&[5]);
        assert_eq!(sent.len(), 5 + 3, "{sent:?}");
        assert!(sent[0].marker && sent[1..].iter().all(|p| !p.marker));
        assert!(sent.iter().all(|p| p.timestamp == 1_000 && p.event.event == 5 && p.event.volume == 10));
        let durations: Vec<u16> = sent.iter().map(|p| p.event.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 960, 960, 960]);
        assert!(sent[..5].iter().all(|p| !p.event.end) && sent[5..].iter().all(|p| p.event.end));
    }

    #[test]
    fn an_opus_output_with_8_khz_events_keeps_48_khz_timestamps_and_counts_8_khz_durations() {
        let mut relay = ToneRelay::new(101, 960, 160);
        relay.on_source(LEG, 7, &TelephoneEvent { event: 4, end: false, volume: 10, duration: 160 });
        let sent: Vec<RelayedTone> = (0..3u32).filter_map(|i| relay.on_tick(48_000 + i * 960)).collect();
        assert!(sent.iter().all(|p| p.timestamp == 48_000), "the stream's 48 kHz timestamp: {sent:?}");
        let durations: Vec<u16> = sent.iter().map(|p| p.event.duration).collect();
        assert_eq!(durations, [160, 320, 480], "20 ms a tick at 8 kHz");
        // At /48000 the same ticks count 960 each; a long tone saturates rather than wraps.
        let mut wide = ToneRelay::new(101, 960, 960);
        wide.on_source(LEG, 7, &TelephoneEvent { event: 4, end: false, volume: 10, duration: 960 });
        assert_eq!(wide.on_tick(0).unwrap().event.duration, 960);
        assert_eq!(wide.on_tick(200 * 960).unwrap().event.duration, u16::MAX);
    }

    #[test]
    fn consecutive_tones_each_get_their_own_timestamp_and_are_detected_once() {
        let sent = relay(&[1, 2, 3]);
        let mut detector = ToneDetector::default();
        let digits: Vec<u8> =
            sent.iter().filter_map(|p| detector.on_packet(p.timestamp, &p.event)).map(|e| e.event).collect();
        assert_eq!(digits, [1, 2, 3]);
        let mut starts: Vec<u32> = sent.iter().filter(|p| p.marker).map(|p| p.timestamp).collect();
        starts.dedup();
        assert_eq!(starts.len(), 3);
    }

    #[test]
    fn a_source_that_goes_quiet_is_ended_and_late_ends_start_nothing() {
        let mut relay = ToneRelay::new(101, 160, 160);
        let start = TelephoneEvent { event: 9, end: false, volume: 10, duration: 160 };
        relay.on_source(LEG, 3, &start);
        let sent: Vec<RelayedTone> = (0..40u32).filter_map(|i| relay.on_tick(i * 160)).collect();
        assert_eq!(sent.len(), QUIET_TICKS as usize + 3);
        assert!(sent.iter().rev().take(3).all(|p| p.event.end));
        assert!(!relay.is_active());
        relay.on_source(LEG, 3, &TelephoneEvent { end: true, ..start });
        assert!(!relay.is_active(), "a retransmitted end of the finished tone starts nothing");
        assert_eq!(relay.on_tick(0), None);
    }

    #[test]
    fn a_new_tone_ends_the_playing_one_first() {
        let mut relay = ToneRelay::new(101, 160, 160);
        let event = |e| TelephoneEvent { event: e, end: false, volume: 10, duration: 160 };
        relay.on_source(LEG, 100, &event(1));
        assert!(!relay.on_tick(0).unwrap().event.end);
        relay.on_source(TransportId(8), 900, &event(2));
        let sent: Vec<RelayedTone> = (1..6u32).filter_map(|i| relay.on_tick(i * 160)).collect();
        assert!(sent[..3].iter().all(|p| p.event.event == 1 && p.event.end));
        assert!(sent[3].marker && sent[3].event.event == 2 && sent[3].timestamp == 4 * 160);
    }
}
