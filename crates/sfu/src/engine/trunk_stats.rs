//! RTP reception from SIP trunk legs, per trunk: what palaver measures on the packets a trunk
//! sends (RFC 3550 A.3 loss over each interval of [`REPORT_EVERY`] packets, A.8 interarrival
//! jitter), folded into one [`ReceptionCounters`] per trunk slot of the worker's counters —
//! the same EWMAs as the RTCP reception figures. Trunks get slots by name in the order they
//! are first seen ([`trunk_slot`], at most [`TRUNK_SLOTS`] trunks per process; more trunks are
//! not measured). Nothing here allocates per packet.

use std::sync::Mutex;
use std::time::Instant;

use super::counters::{ReceptionCounters, WorkerCounters};

/// Trunks measured per process.
pub const TRUNK_SLOTS: usize = 16;
/// Packets per loss interval (about a second of 20 ms packets).
pub const REPORT_EVERY: u32 = 50;

static TRUNK_NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The slot of trunk `name` (given on first use), `None` once every slot is taken.
pub fn trunk_slot(name: &str) -> Option<u8> {
    let mut names = TRUNK_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = names.iter().position(|n| n == name) {
        return Some(i as u8);
    }
    if names.len() >= TRUNK_SLOTS {
        return None;
    }
    names.push(name.to_owned());
    Some((names.len() - 1) as u8)
}

/// The trunk names by slot.
pub fn trunk_names() -> Vec<String> {
    TRUNK_NAMES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One trunk leg's receive statistics (a transport's, on its worker).
#[derive(Debug)]
pub(crate) struct TrunkReception {
    slot: usize,
    clock_rate: u64,
    epoch: Option<Instant>,
    /// Extended highest sequence number seen, and the first one.
    highest: u64,
    base: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_transit: Option<i64>,
    /// Interarrival jitter in RTP units, times 16 (RFC 3550 A.8).
    jitter_q4: u64,
    since_report: u32,
}

impl TrunkReception {
    pub(crate) fn new(slot: u8, clock_rate: u32) -> Self {
        Self {
            slot: usize::from(slot).min(TRUNK_SLOTS - 1),
            clock_rate: u64::from(clock_rate.max(1)),
            epoch: None,
            highest: 0,
            base: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter_q4: 0,
            since_report: 0,
        }
    }

    /// One RTP packet (already authenticated) with sequence `seq` and timestamp `timestamp`
    /// arrived at `now`; every [`REPORT_EVERY`] packets the interval goes into `counters`.
    pub(crate) fn on_rtp(&mut self, now: Instant, seq: u16, timestamp: u32, counters: &WorkerCounters) {
        let epoch = *self.epoch.get_or_insert(now);
        let seq = u64::from(seq);
        if self.received == 0 {
            self.highest = seq + (1 << 16);
            self.base = self.highest;
        } else {
            // The extended sequence closest to the highest seen (wraps both ways).
            let cycle = self.highest & !0xFFFF;
            let candidates = [cycle + seq, cycle + seq + (1 << 16), (cycle + seq).saturating_sub(1 << 16)];
            let extended = candidates.into_iter().min_by_key(|c| c.abs_diff(self.highest)).expect("three candidates");
            self.highest = self.highest.max(extended);
        }
        self.received += 1;
        let arrival = (now.duration_since(epoch).as_nanos() as u64).saturating_mul(self.clock_rate) / 1_000_000_000;
        let transit = arrival as i64 - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = transit.wrapping_sub(last).unsigned_abs().min(1 << 32);
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        WorkerCounters::inc(&counters.trunks[self.slot].packets);
        self.since_report += 1;
        if self.since_report < REPORT_EVERY {
            return;
        }
        self.since_report = 0;
        let expected = self.highest - self.base + 1;
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost = expected_interval.saturating_sub(received_interval);
        let fraction = (lost * 256).checked_div(expected_interval).map_or(0, |f| f.min(255) as u8);
        let jitter_ns = (self.jitter_q4 >> 4) * 1_000_000_000 / self.clock_rate;
        counters.trunks[self.slot].reception.record(lost, fraction, jitter_ns);
    }
}

/// One trunk slot's counters.
#[derive(Debug, Default)]
pub struct TrunkCounters {
    /// RTP packets received from the trunk's legs (after SRTP authentication).
    pub packets: std::sync::atomic::AtomicU64,
    /// Loss and jitter of those packets, measured by palaver.
    pub reception: ReceptionCounters,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn loss_and_jitter_of_a_trunk_stream_are_measured() {
        let counters = WorkerCounters::default();
        let mut rx = TrunkReception::new(2, 8000);
        let t0 = Instant::now();
        // 150 packets, every tenth lost; odd packets 2 ms late (jitter ~ 16 RTP units).
        let mut sent = 0u64;
        for n in 0..150u64 {
            if n % 10 == 9 {
                continue;
            }
            let late = if n % 2 == 1 { Duration::from_millis(2) } else { Duration::ZERO };
            let at = t0 + Duration::from_millis(20 * n) + late;
            rx.on_rtp(at, (65_500 + n) as u16, (n * 160) as u32, &counters);
            sent += 1;
        }
        let slot = counters.trunks[2].reception.snapshot();
        assert_eq!(counters.trunks[2].packets.load(std::sync::atomic::Ordering::Relaxed), sent);
        assert_eq!(slot.report_blocks, sent / u64::from(REPORT_EVERY));
        assert!(slot.packets_lost >= 9, "{slot:?}");
        assert!((slot.loss_ratio() - 0.1).abs() < 0.03, "{}", slot.loss_ratio());
        let jitter_ms = slot.jitter_seconds() * 1000.0;
        assert!((1.0..3.0).contains(&jitter_ms), "{jitter_ms} ms");
    }

    #[test]
    fn trunk_names_get_stable_slots() {
        let a = trunk_slot("tests-trunk-a").unwrap();
        let b = trunk_slot("tests-trunk-b").unwrap();
        assert_ne!(a, b);
        assert_eq!(trunk_slot("tests-trunk-a"), Some(a));
        assert_eq!(trunk_names()[usize::from(b)], "tests-trunk-b");
    }
}
