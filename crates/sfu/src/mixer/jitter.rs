//! Adaptive jitter buffer for one mixer input (sans-IO, virtual time in 48 kHz samples).
//!
//! Packets are stored by RTP timestamp in a fixed ring of 20 ms slots whose payload bytes sit
//! in one arena of `capacity × stride` bytes. The arena is allocated on the first packet (an
//! input that never sends costs no payload memory) with a stride of 256 bytes (a 20 ms Opus
//! frame up to ~100 kb/s, or a G.711/G.722 frame) and only grows, to the next power of two, when
//! a larger packet comes (at most [`MAX_PAYLOAD`]): steady state allocates nothing. A stride of
//! `MAX_PAYLOAD` for every slot was 36 KB per participant, most of a mixed participant's memory. Each tick the mixer asks for the frame at the playout cursor. The cursor
//! follows `now - base_transit - jitter`, where `base_transit` is the recent minimum of
//! `arrival - timestamp` (it follows sender clock drift) and `jitter` the recent maximum
//! excess over it. When the cursor runs ahead of that the buffer stalls one frame (builds
//! delay); when it lags by more than 1.5 frames it drops one frame, preferably a quiet one
//! (sheds delay). So ±200 ppm drift costs an occasional dropped or concealed frame and the
//! buffer stays bounded. A missing frame is *lost* (PLC, or FEC from the next packet) when
//! the sequence numbers show a gap, and *silence* (DTX) when they do not.

use super::opus_toc::{DTX_MAX_BYTES, FRAME_SAMPLES};

const FRAME: i64 = FRAME_SAMPLES as i64;
/// Largest Opus packet for one 20 ms frame (RFC 6716: 1275 bytes per frame, two 10 ms
/// frames may carry a little more; we cap at 1500, an Ethernet MTU).
pub const MAX_PAYLOAD: usize = 1500;
/// Smallest payload stride of the arena (see the module docs).
const MIN_STRIDE: usize = 256;
/// Length of one statistics window; estimates use the current and the previous window.
const STATS_WINDOW: i64 = 2 * 48_000;
/// A timestamp jump larger than this (either way) is a sender restart: the buffer resyncs.
const RESYNC_DISTANCE: i64 = 50 * FRAME;
/// Frames quieter than this (-dBov) count as silence for skip and DTX decisions.
const QUIET_DBOV: u8 = 60;
/// After this many frames without any packet an input is treated as silent, not lost.
const LOSS_TO_SILENCE_FRAMES: u32 = 5;

/// Jitter-buffer tuning. Delays are in milliseconds of 48 kHz audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Lowest extra delay kept above the measured minimum transit.
    pub min_delay_ms: u32,
    /// Highest extra delay the buffer will build, whatever the jitter.
    pub max_delay_ms: u32,
    /// Ring size in 20 ms frames; packets further ahead of the cursor are dropped.
    pub capacity_frames: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self { min_delay_ms: 0, max_delay_ms: 200, capacity_frames: 24 }
    }
}

/// RFC 6464 audio level: (level in -dBov, 0 = loudest, 127 = silence; voice-activity flag).
pub type AudioLevel = (u8, bool);

/// Why a packet was not stored. Each is counted in [`JitterStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketDrop {
    #[error("packet arrived after its playout time")]
    Late,
    #[error("duplicate packet")]
    Duplicate,
    #[error("packet too far ahead of the playout point")]
    TooEarly,
    #[error("payload larger than {MAX_PAYLOAD} bytes")]
    TooLarge,
}

/// Counters and gauges of one input's buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub late: u64,
    pub duplicates: u64,
    pub too_early: u64,
    pub too_large: u64,
    pub resyncs: u64,
    pub played: u64,
    pub lost: u64,
    pub fec_available: u64,
    pub dtx_frames: u64,
    pub stalls: u64,
    pub skips: u64,
}

/// What the input contributes to the current tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout {
    /// A packet is due: read it with [`JitterBuffer::payload`].
    Packet { slot: usize },
    /// The frame is missing: conceal it, with FEC from `fec_slot`'s packet when present.
    Lost { fec_slot: Option<usize> },
    /// Nothing to play: the sender is in DTX, has not started, or has stopped.
    Silent,
}

#[derive(Debug)]
struct Slot {
    filled: bool,
    ext_ts: i64,
    arrival: i64,
    seq: u16,
    len: u16,
    level: Option<AudioLevel>,
}

/// Windowed minimum of transit and maximum of excess transit, in samples.
#[derive(Debug, Clone, Copy)]
struct TransitWindows {
    window_id: i64,
    min_cur: i64,
    min_prev: i64,
    excess_cur: i64,
    excess_prev: i64,
}

impl TransitWindows {
    const EMPTY: Self =
        Self { window_id: i64::MIN, min_cur: i64::MAX, min_prev: i64::MAX, excess_cur: 0, excess_prev: 0 };

    fn roll(&mut self, now: i64) {
        let id = now.div_euclid(STATS_WINDOW);
        if id != self.window_id {
            let adjacent = self.window_id != i64::MIN && id == self.window_id + 1;
            self.min_prev = if adjacent { self.min_cur } else { i64::MAX };
            self.excess_prev = if adjacent { self.excess_cur } else { 0 };
            self.min_cur = i64::MAX;
            self.excess_cur = 0;
            self.window_id = id;
        }
    }

    fn base(&self) -> Option<i64> {
        let base = self.min_cur.min(self.min_prev);
        (base != i64::MAX).then_some(base)
    }

    fn observe(&mut self, now: i64, transit: i64) {
        self.roll(now);
        self.min_cur = self.min_cur.min(transit);
        if let Some(base) = self.base() {
            self.excess_cur = self.excess_cur.max(transit - base);
        }
    }

    fn jitter(&self) -> i64 {
        self.excess_cur.max(self.excess_prev)
    }
}

/// The adaptive jitter buffer of one input.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Box<[Slot]>,
    /// Payload bytes: slot `i` at `i * stride` (empty until the first packet).
    arena: Vec<u8>,
    stride: usize,
    /// Last accepted RTP timestamp and its unwrapped value.
    newest: Option<(u32, i64)>,
    cursor: Option<i64>,
    last_played_seq: Option<u16>,
    last_played_quiet: bool,
    frames_without_packet: u32,
    last_playout_delay: Option<i64>,
    transit: TransitWindows,
    stats: JitterStats,
    /// Slots holding a packet (so [`Self::rests`] needs no scan).
    filled: usize,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        let capacity = config.capacity_frames.max(4);
        let slots =
            (0..capacity).map(|_| Slot { filled: false, ext_ts: 0, arrival: 0, seq: 0, len: 0, level: None }).collect();
        Self {
            config,
            slots,
            arena: Vec::new(),
            stride: 0,
            newest: None,
            cursor: None,
            last_played_seq: None,
            last_played_quiet: true,
            frames_without_packet: 0,
            last_playout_delay: None,
            transit: TransitWindows::EMPTY,
            stats: JitterStats::default(),
            filled: 0,
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Audio buffered ahead of the playout cursor, in samples (0 before playout starts).
    pub fn buffered_samples(&self) -> i64 {
        let Some(cursor) = self.cursor else { return 0 };
        let newest = self.slots.iter().filter(|s| s.filled).map(|s| s.ext_ts + FRAME).max();
        newest.map_or(0, |n| (n - cursor).max(0))
    }

    /// Current target extra delay over the minimum transit, in samples.
    pub fn target_delay_samples(&self) -> i64 {
        let min = i64::from(self.config.min_delay_ms) * 48;
        let max = i64::from(self.config.max_delay_ms) * 48;
        self.transit.jitter().clamp(min, max.max(min))
    }

    /// How long the last played packet waited between arrival and playout, in samples.
    pub fn last_playout_delay(&self) -> Option<i64> {
        self.last_playout_delay
    }

    fn slot_index(&self, ext_ts: i64) -> usize {
        (ext_ts + FRAME / 2).div_euclid(FRAME).rem_euclid(self.slots.len() as i64) as usize
    }

    fn unwrap_timestamp(&mut self, ts: u32) -> i64 {
        match self.newest {
            None => {
                let ext = i64::from(ts);
                self.newest = Some((ts, ext));
                ext
            }
            Some((last_ts, last_ext)) => {
                let ext = last_ext + i64::from(ts.wrapping_sub(last_ts) as i32);
                if ext > last_ext {
                    self.newest = Some((ts, ext));
                }
                ext
            }
        }
    }

    fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.filled = false;
        }
        self.filled = 0;
        self.newest = None;
        self.cursor = None;
        self.last_played_seq = None;
        self.last_played_quiet = true;
        self.transit = TransitWindows::EMPTY;
    }

    /// Stores a packet that arrived at `now` (samples since the mixer epoch).
    pub fn push(
        &mut self,
        now: i64,
        seq: u16,
        timestamp: u32,
        level: Option<AudioLevel>,
        payload: &[u8],
    ) -> Result<(), PacketDrop> {
        self.stats.received += 1;
        if payload.len() > MAX_PAYLOAD {
            self.stats.too_large += 1;
            return Err(PacketDrop::TooLarge);
        }
        let mut ext = self.unwrap_timestamp(timestamp);
        if let Some(cursor) = self.cursor
            && ((ext - cursor).abs() > RESYNC_DISTANCE)
        {
            self.stats.resyncs += 1;
            self.clear();
            ext = self.unwrap_timestamp(timestamp);
        }
        self.transit.observe(now, now - ext);
        if let Some(cursor) = self.cursor {
            if ext < cursor - FRAME / 2 {
                self.stats.late += 1;
                return Err(PacketDrop::Late);
            }
            if ext >= cursor + FRAME * self.slots.len() as i64 - FRAME / 2 {
                self.stats.too_early += 1;
                return Err(PacketDrop::TooEarly);
            }
        }
        let index = self.slot_index(ext);
        let slot = &mut self.slots[index];
        if slot.filled && slot.ext_ts == ext {
            self.stats.duplicates += 1;
            return Err(PacketDrop::Duplicate);
        }
        if !slot.filled {
            self.filled += 1;
        }
        slot.filled = true;
        slot.ext_ts = ext;
        slot.arrival = now;
        slot.seq = seq;
        slot.len = payload.len() as u16;
        slot.level = level;
        if payload.len() > self.stride {
            self.grow(payload.len());
        }
        let start = index * self.stride;
        self.arena[start..start + payload.len()].copy_from_slice(payload);
        Ok(())
    }

    /// Re-lays the arena out with a stride that holds `len` bytes, keeping stored payloads.
    fn grow(&mut self, len: usize) {
        let stride = len.next_power_of_two().clamp(MIN_STRIDE, MAX_PAYLOAD);
        let mut arena = vec![0; self.slots.len() * stride];
        if self.stride > 0 {
            for (i, slot) in self.slots.iter().enumerate() {
                let (from, to, n) = (i * self.stride, i * stride, usize::from(slot.len).min(self.stride));
                arena[to..to + n].copy_from_slice(&self.arena[from..from + n]);
            }
        }
        self.arena = arena;
        self.stride = stride;
    }

    /// Bytes of payload storage this buffer holds (0 before its first packet).
    pub fn payload_capacity(&self) -> usize {
        self.arena.len()
    }

    /// The payload stored in `slot` (valid until the next `push`).
    pub fn payload(&self, slot: usize) -> &[u8] {
        let start = slot * self.stride;
        &self.arena[start..start + usize::from(self.slots[slot].len)]
    }

    /// The RFC 6464 level sent with the packet in `slot`, if any.
    pub fn level(&self, slot: usize) -> Option<AudioLevel> {
        self.slots[slot].level
    }

    fn filled_at(&self, ext_ts: i64) -> Option<usize> {
        let index = self.slot_index(ext_ts);
        let slot = &self.slots[index];
        (slot.filled && (slot.ext_ts - ext_ts).abs() < FRAME / 2).then_some(index)
    }

    fn earliest_filled(&self) -> Option<i64> {
        self.slots.iter().filter(|s| s.filled).map(|s| s.ext_ts).min()
    }

    fn next_filled_after(&self, ext_ts: i64) -> Option<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].filled && self.slots[i].ext_ts > ext_ts)
            .min_by_key(|&i| self.slots[i].ext_ts)
    }

    /// A DTX frame, or a frame whose audio level says there is no voice.
    fn slot_is_quiet(&self, index: usize) -> bool {
        let slot = &self.slots[index];
        usize::from(slot.len) <= DTX_MAX_BYTES || slot.level.is_some_and(|(dbov, voice)| !voice || dbov > QUIET_DBOV)
    }

    fn is_quiet(&self, cursor: i64) -> bool {
        self.filled_at(cursor).is_none_or(|index| self.slot_is_quiet(index))
    }

    /// Decides what this input plays in the tick at `now` and advances the cursor.
    pub fn next_frame(&mut self, now: i64) -> Playout {
        self.last_playout_delay = None;
        if self.newest.is_none() {
            // Nothing ever arrived (a listener) or a resync emptied the buffer: no slot is filled.
            return Playout::Silent;
        }
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => match self.earliest_filled() {
                Some(first) => first,
                None => return Playout::Silent,
            },
        };
        let Some(base) = self.transit.base() else { return Playout::Silent };
        let desired = now - base - self.target_delay_samples();
        let lag = desired - cursor;
        self.cursor = Some(cursor);
        if lag < 0 {
            // Running ahead of the safe playout point: hold one frame to build delay.
            self.stats.stalls += 1;
            return self.missing_frame_without_advance();
        }
        let max_lag = i64::from(self.config.max_delay_ms) * 48 + 2 * FRAME;
        if lag >= FRAME + FRAME / 2 && (self.is_quiet(cursor) || lag >= 3 * FRAME || lag >= max_lag) {
            // Too much delay buffered: drop one frame, preferably a quiet one.
            if let Some(index) = self.filled_at(cursor) {
                self.slots[index].filled = false;
                self.filled -= 1;
                self.last_played_seq = Some(self.slots[index].seq);
                self.last_played_quiet = self.slot_is_quiet(index);
            }
            self.stats.skips += 1;
            self.cursor = Some(cursor + FRAME);
        }
        self.play_at_cursor(now)
    }

    /// True when every [`Self::next_frame`] until the next push plays [`Playout::Silent`]: no
    /// packet is stored, and a missing frame counts as silence (the last one played was quiet,
    /// or packets stopped a while ago), never as loss. O(1).
    pub fn rests(&self) -> bool {
        self.filled == 0 && (self.last_played_quiet || self.frames_without_packet >= LOSS_TO_SILENCE_FRAMES)
    }

    /// [`Self::next_frame`] of a buffer that [`Self::rests`]: the same state changes (cursor,
    /// counters) without looking at any slot; the frame is [`Playout::Silent`]. A mixer whose
    /// room is silent catches its inputs up with it after ticks it skipped.
    pub fn next_frame_at_rest(&mut self, now: i64) {
        debug_assert!(self.rests());
        self.last_playout_delay = None;
        // No packet ever, or no cursor yet with nothing stored: `next_frame` returns at once.
        let (Some(_), Some(mut cursor), Some(base)) = (self.newest, self.cursor, self.transit.base()) else { return };
        let lag = now - base - self.target_delay_samples() - cursor;
        if lag < 0 {
            self.stats.stalls += 1;
            return;
        }
        // An empty cursor slot is quiet: a lag of 1.5 frames drops it (as `next_frame` does).
        if lag >= FRAME + FRAME / 2 {
            self.stats.skips += 1;
            cursor += FRAME;
        }
        self.cursor = Some(cursor + FRAME);
        self.frames_without_packet = self.frames_without_packet.saturating_add(1);
        self.stats.dtx_frames += 1;
    }

    fn missing_frame_without_advance(&mut self) -> Playout {
        if self.last_played_quiet || self.frames_without_packet >= LOSS_TO_SILENCE_FRAMES {
            Playout::Silent
        } else {
            Playout::Lost { fec_slot: None }
        }
    }

    fn play_at_cursor(&mut self, now: i64) -> Playout {
        let cursor = self.cursor.unwrap_or_default();
        self.cursor = Some(cursor + FRAME);
        if let Some(index) = self.filled_at(cursor) {
            let slot = &mut self.slots[index];
            slot.filled = false;
            self.filled -= 1;
            // Re-align to the sender's grid if it drifted within the half-frame tolerance.
            self.cursor = Some(slot.ext_ts + FRAME);
            self.last_played_seq = Some(slot.seq);
            self.last_played_quiet = usize::from(slot.len) <= DTX_MAX_BYTES
                || slot.level.is_some_and(|(dbov, voice)| !voice || dbov > QUIET_DBOV);
            self.frames_without_packet = 0;
            self.last_playout_delay = Some(now - slot.arrival);
            self.stats.played += 1;
            return Playout::Packet { slot: index };
        }
        self.frames_without_packet = self.frames_without_packet.saturating_add(1);
        let outcome = match self.next_filled_after(cursor) {
            Some(next) => {
                let next_slot = &self.slots[next];
                let no_gap = self.last_played_seq.is_none_or(|s| s.wrapping_add(1) == next_slot.seq);
                if no_gap {
                    Playout::Silent
                } else {
                    let adjacent = (next_slot.ext_ts - cursor - FRAME).abs() < FRAME / 2;
                    let fec = adjacent && usize::from(next_slot.len) > DTX_MAX_BYTES;
                    Playout::Lost { fec_slot: fec.then_some(next) }
                }
            }
            None => self.missing_frame_without_advance(),
        };
        match outcome {
            Playout::Silent => self.stats.dtx_frames += 1,
            Playout::Lost { fec_slot } => {
                self.stats.lost += 1;
                self.stats.fec_available += u64::from(fec_slot.is_some());
            }
            Playout::Packet { .. } => {}
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKT: [u8; 40] = [0x78; 40];

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(JitterConfig::default())
    }

    #[test]
    fn in_order_packets_play_in_order_with_small_delay() {
        let mut jb = buffer();
        let mut played = 0;
        for n in 0..100i64 {
            let arrival = n * FRAME + 100;
            jb.push(arrival, n as u16, (n * FRAME) as u32, None, &PKT).unwrap();
            // tick 5 ms after arrival
            match jb.next_frame(arrival + 240) {
                Playout::Packet { .. } => played += 1,
                other => panic!("tick {n}: {other:?}"),
            }
            assert!(jb.last_playout_delay().unwrap() < FRAME);
        }
        assert_eq!(played, 100);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn payloads_survive_the_arena_growing_and_memory_follows_the_largest_packet() {
        let mut jb = buffer();
        assert_eq!(jb.payload_capacity(), 0, "no payload memory before the first packet");
        // Small, then a 600-byte packet (the arena grows to a 1,024-byte stride), then 1,500.
        let sizes = [80usize, 200, 600, 90, 1500];
        for (n, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|b| (b + n) as u8).collect();
            jb.push(n as i64 * FRAME, n as u16, (n as i64 * FRAME) as u32, None, &payload).unwrap();
            if n == 1 {
                assert_eq!(jb.payload_capacity(), jb.slots.len() * MIN_STRIDE);
            }
        }
        assert_eq!(jb.payload_capacity(), jb.slots.len() * MAX_PAYLOAD);
        let mut played = Vec::new();
        for t in 0..sizes.len() as i64 {
            if let Playout::Packet { slot } = jb.next_frame(2000 + t * FRAME) {
                played.push(jb.payload(slot).to_vec());
            }
        }
        assert_eq!(played.len(), sizes.len());
        for (n, payload) in played.iter().enumerate() {
            let expected: Vec<u8> = (0..sizes[n]).map(|b| (b + n) as u8).collect();
            assert_eq!(payload, &expected, "packet {n}");
        }
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let mut jb = buffer();
        // 0, 2, 1, 3 arrive within the first 30 ms; playout starts at 40 ms.
        for (i, n) in [0i64, 2, 1, 3].into_iter().enumerate() {
            jb.push(i as i64 * 480, n as u16, (n * FRAME) as u32, None, &PKT).unwrap();
        }
        let mut order = Vec::new();
        for t in 0..4 {
            if let Playout::Packet { slot } = jb.next_frame(2000 + t * FRAME) {
                order.push(jb.slots[slot].seq);
            }
        }
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn sequence_gap_is_loss_with_fec_and_no_gap_is_dtx() {
        let mut jb = buffer();
        jb.push(0, 10, 0, None, &PKT).unwrap();
        // seq 11 lost; seq 12 carries timestamp 2*FRAME
        jb.push(2 * FRAME, 12, 2 * FRAME as u32, None, &PKT).unwrap();
        assert!(matches!(jb.next_frame(10), Playout::Packet { .. }));
        assert!(matches!(jb.next_frame(FRAME + 10 + FRAME), Playout::Lost { fec_slot: Some(_) }));
        assert!(matches!(jb.next_frame(2 * FRAME + 10 + FRAME), Playout::Packet { .. }));
        // DTX: seq 13 arrives 10 frames later with no sequence gap.
        jb.push(12 * FRAME, 13, 12 * FRAME as u32, None, &PKT).unwrap();
        assert_eq!(jb.next_frame(3 * FRAME + 10 + FRAME), Playout::Silent);
        assert_eq!(jb.stats().lost, 1);
        assert_eq!(jb.stats().fec_available, 1);
    }

    #[test]
    fn late_and_duplicate_packets_are_counted_and_dropped() {
        let mut jb = buffer();
        jb.push(0, 0, 0, None, &PKT).unwrap();
        assert_eq!(jb.push(1, 0, 0, None, &PKT), Err(PacketDrop::Duplicate));
        jb.next_frame(100);
        jb.next_frame(100 + FRAME);
        assert_eq!(jb.push(FRAME + 200, 1, FRAME as u32, None, &PKT), Err(PacketDrop::Late));
        assert_eq!(jb.push(0, 2, 0, None, &[0; MAX_PAYLOAD + 1]), Err(PacketDrop::TooLarge));
        let stats = jb.stats();
        assert_eq!((stats.late, stats.duplicates, stats.too_large), (1, 1, 1));
    }

    #[test]
    fn jitter_raises_the_target_delay_and_calm_lowers_it() {
        let mut jb = buffer();
        let mut late = 0;
        for n in 0..200i64 {
            // every 4th packet is 30 ms late
            let extra = if n % 4 == 3 { 30 * 48 } else { 0 };
            if jb.push(n * FRAME + extra, n as u16, (n * FRAME) as u32, None, &PKT).is_err() {
                late += 1;
            }
            jb.next_frame(n * FRAME + 480);
        }
        assert!(jb.target_delay_samples() >= 30 * 48, "target {}", jb.target_delay_samples());
        assert!(late <= 3, "only the first spikes may be late, got {late}");
        for n in 200..600i64 {
            jb.push(n * FRAME, n as u16, (n * FRAME) as u32, None, &PKT).unwrap();
            jb.next_frame(n * FRAME + 480);
        }
        assert_eq!(jb.target_delay_samples(), 0);
        assert!(jb.buffered_samples() <= 2 * FRAME);
    }

    #[test]
    fn timestamp_wraparound_is_continuous() {
        let mut jb = buffer();
        let start = u32::MAX - 2 * FRAME as u32;
        for n in 0..6i64 {
            let ts = start.wrapping_add((n * FRAME) as u32);
            jb.push(n * FRAME, n as u16, ts, None, &PKT).unwrap();
            assert!(matches!(jb.next_frame(n * FRAME + 100), Playout::Packet { .. }));
        }
        assert_eq!(jb.stats().resyncs, 0);
    }
}
