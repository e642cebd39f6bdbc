//! Per-consumer sequence number and timestamp rewriting. The subscriber sees one continuous
//! stream: on a layer or publisher switch the next packet gets the next sequence number and a
//! timestamp advanced by the wall-clock gap, and packets from before the switch point are
//! dropped. A ring of recent mappings turns the subscriber's NACKed sequence numbers back into
//! (source, layer, source sequence) for the packet cache.

use std::time::Instant;

/// How many recent out→source mappings are kept for NACK answering.
const HISTORY: usize = 1024;
/// How far past a switch point the stream must get before the "older than the switch" check
/// is dropped (reordering is never this deep).
const GUARD_SPAN: i16 = 2048;

/// One forwarded packet's origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub out_sequence: u16,
    pub source: u32,
    pub layer: u8,
    pub source_sequence: u16,
    pub ts_offset: u32,
    valid: bool,
}

/// The rewriting state of one consumer.
pub struct OutStream {
    started: bool,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    switch_source_seq: u16,
    /// While set, packets older than `switch_source_seq` are dropped; cleared once the stream
    /// is well past the switch point (so a long stream never wraps into "before the switch").
    switch_guard: bool,
    next_rtx_seq: u16,
    history: Vec<Origin>,
}

impl std::fmt::Debug for OutStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutStream").field("last_seq", &self.last_seq).field("last_ts", &self.last_ts).finish()
    }
}

impl OutStream {
    /// `seed` picks the initial sequence number and timestamp (use the consumer's SSRC).
    pub fn new(seed: u32) -> Self {
        Self {
            started: false,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: (seed as u16).wrapping_sub(1),
            last_ts: seed.rotate_left(16),
            last_at: None,
            switch_source_seq: 0,
            switch_guard: false,
            next_rtx_seq: (seed >> 16) as u16,
            history: vec![Origin::default(); HISTORY],
        }
    }

    /// Re-bases the mapping so that the source packet (`seq`, `ts`) becomes the next packet of
    /// the output stream. Call on the first packet and on every switch.
    pub fn switch_to(&mut self, now: Instant, seq: u16, ts: u32, clock_rate: u32) {
        let next_seq = self.last_seq.wrapping_add(1);
        let next_ts = match self.last_at {
            Some(at) if self.started => {
                let elapsed = now.saturating_duration_since(at).as_micros() as u64;
                let ticks = (elapsed * clock_rate as u64 / 1_000_000).clamp(1, u32::MAX as u64) as u32;
                self.last_ts.wrapping_add(ticks)
            }
            _ => self.last_ts,
        };
        self.seq_offset = next_seq.wrapping_sub(seq);
        self.ts_offset = next_ts.wrapping_sub(ts);
        self.switch_source_seq = seq;
        self.switch_guard = true;
        self.started = true;
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// Maps a source packet of the current source/layer; `None` if it predates the switch.
    pub fn map(&mut self, now: Instant, seq: u16, ts: u32, source: u32, layer: u8) -> Option<(u16, u32)> {
        if !self.started {
            return None;
        }
        if self.switch_guard {
            let since_switch = seq.wrapping_sub(self.switch_source_seq) as i16;
            if since_switch < 0 {
                return None;
            }
            if since_switch > GUARD_SPAN {
                self.switch_guard = false;
            }
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if (out_seq.wrapping_sub(self.last_seq) as i16) > 0 {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(now);
        }
        self.history[out_seq as usize % HISTORY] = Origin {
            out_sequence: out_seq,
            source,
            layer,
            source_sequence: seq,
            ts_offset: self.ts_offset,
            valid: true,
        };
        Some((out_seq, out_ts))
    }

    /// The newest output timestamp and when it was sent (for sender reports).
    pub fn last_sent(&self) -> Option<(u32, Instant)> {
        self.last_at.filter(|_| self.started).map(|at| (self.last_ts, at))
    }

    /// Where a previously forwarded output sequence number came from.
    pub fn origin(&self, out_seq: u16) -> Option<Origin> {
        let o = self.history[out_seq as usize % HISTORY];
        (o.valid && o.out_sequence == out_seq).then_some(o)
    }

    /// Next RTX sequence number (RTX streams have their own numbering).
    pub fn next_rtx_sequence(&mut self) -> u16 {
        let s = self.next_rtx_seq;
        self.next_rtx_seq = s.wrapping_add(1);
        s
    }

    #[cfg(test)]
    pub fn last_sequence(&self) -> u16 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn switch_keeps_sequence_continuous_and_timestamp_monotonic() {
        let t0 = Instant::now();
        let mut s = OutStream::new(0x0001_0100);
        s.switch_to(t0, 5000, 90_000, 90_000);
        let (a, ta) = s.map(t0, 5000, 90_000, 0, 0).unwrap();
        let (b, tb) = s.map(t0, 5001, 93_000, 0, 0).unwrap();
        assert_eq!(b, a.wrapping_add(1));
        assert_eq!(tb.wrapping_sub(ta), 3000);
        // switch to another layer with unrelated numbering 33 ms later
        let t1 = t0 + Duration::from_millis(33);
        s.switch_to(t1, 100, 7, 90_000);
        assert_eq!(s.map(t1, 99, 4, 0, 1), None, "packet before the switch point");
        let (c, tc) = s.map(t1, 100, 7, 0, 1).unwrap();
        assert_eq!(c, b.wrapping_add(1));
        assert_eq!(tc.wrapping_sub(tb), 33 * 90);
        let origin = s.origin(c).unwrap();
        assert_eq!((origin.layer, origin.source_sequence), (1, 100));
        assert_eq!(s.origin(c.wrapping_add(5)), None);
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7);
        s.switch_to(t0, 65_534, 0, 48_000);
        let first = s.map(t0, 65_534, 0, 0, 0).unwrap().0;
        let third = s.map(t0, 0, 1920, 0, 0).unwrap().0;
        let second = s.map(t0, 65_535, 960, 0, 0).unwrap().0;
        assert_eq!((second, third), (first.wrapping_add(1), first.wrapping_add(2)));
        assert_eq!(s.last_sequence(), third);
    }

    #[test]
    fn long_streams_survive_sequence_wrap() {
        let t0 = Instant::now();
        let mut s = OutStream::new(1);
        s.switch_to(t0, 0, 0, 48_000);
        let mut last = None;
        for i in 0..200_000u32 {
            let (seq, _) = s.map(t0, i as u16, 960 * i, 0, 0).expect("every packet maps");
            if let Some(prev) = last {
                assert_eq!(seq, u16::wrapping_add(prev, 1));
            }
            last = Some(seq);
        }
    }
}
