//! Measurement arithmetic: sample sets with percentiles, and per-stream RTP receive statistics
//! (loss from sequence numbers, RFC 3550 interarrival jitter).

use serde::Serialize;

/// A bounded set of samples (milliseconds) with exact percentiles. Past `capacity` it keeps a
/// deterministic 1-in-k subsample so memory stays bounded on long runs.
#[derive(Debug, Clone)]
pub struct Samples {
    values: Vec<f64>,
    capacity: usize,
    seen: u64,
    stride: u64,
}

/// Summary of a sample set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Default for Samples {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl Samples {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { values: Vec::new(), capacity: capacity.max(2), seen: 0, stride: 1 }
    }

    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.seen += 1;
        if !self.seen.is_multiple_of(self.stride) {
            return;
        }
        if self.values.len() == self.capacity {
            // Halve: keep every other sample, take every other one from now on.
            let mut i = 0;
            self.values.retain(|_| {
                i += 1;
                i % 2 == 0
            });
            self.stride *= 2;
        }
        self.values.push(value);
    }

    pub fn extend(&mut self, other: &Samples) {
        for &v in &other.values {
            self.push(v);
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Percentiles by nearest rank; `None` when empty.
    pub fn summary(&self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Some(Summary {
            count: self.seen,
            min: sorted[0],
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
            mean,
        })
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Receive statistics of one RTP stream (one SSRC), as RFC 3550 A.1/A.8 compute them.
#[derive(Debug, Clone, Default)]
pub struct RtpReceiveStats {
    started: bool,
    base_seq: u32,
    /// Extended highest sequence number.
    max_seq: u32,
    cycles: u32,
    received: u64,
    duplicates_or_late: u64,
    /// RFC 3550 jitter estimate, in RTP clock units.
    jitter: f64,
    /// Arrival (in RTP clock units) and RTP timestamp of the previous packet.
    last: Option<(f64, u32)>,
}

impl RtpReceiveStats {
    /// Record a packet: its sequence number, RTP timestamp, and arrival time in seconds
    /// (any fixed origin), with the stream's RTP clock rate.
    pub fn record(&mut self, seq: u16, rtp_timestamp: u32, arrival_secs: f64, clock_rate: u32) {
        let seq = u32::from(seq);
        if !self.started {
            self.started = true;
            self.base_seq = seq;
            self.max_seq = seq;
            self.received = 1;
            self.last = Some((arrival_secs * f64::from(clock_rate), rtp_timestamp));
            return;
        }
        let max_low = self.max_seq & 0xffff;
        let delta = seq.wrapping_sub(max_low) & 0xffff;
        if delta != 0 && delta < 0x8000 {
            if seq < max_low {
                self.cycles += 1;
            }
            self.max_seq = (self.cycles << 16) | seq;
            self.received += 1;
        } else {
            // A duplicate or a reordered (late) packet: it does not extend the range. A late
            // packet still counts as received (it was lost only if it never arrives).
            if delta != 0 {
                self.received += 1;
            } else {
                self.duplicates_or_late += 1;
            }
        }
        // D(i-1, i) of RFC 3550 from differences, so a timestamp that wraps past 2^32 is a
        // step of one frame, not of 2^32 units.
        let arrival = arrival_secs * f64::from(clock_rate);
        if let Some((last_arrival, last_timestamp)) = self.last {
            let timestamp_step = f64::from(rtp_timestamp.wrapping_sub(last_timestamp) as i32);
            let d = ((arrival - last_arrival) - timestamp_step).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last = Some((arrival, rtp_timestamp));
    }

    /// Packets the sequence range says were sent.
    pub fn expected(&self) -> u64 {
        if !self.started { 0 } else { u64::from(self.max_seq.wrapping_sub(self.base_seq)) + 1 }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets never received (never negative: duplicates don't make up for losses).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        if clock_rate == 0 { 0.0 } else { self.jitter * 1_000.0 / f64::from(clock_rate) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Samples::default();
        for v in 1..=100 {
            s.push(f64::from(v));
        }
        let sum = s.summary().unwrap();
        assert_eq!((sum.min, sum.p50, sum.p90, sum.p99, sum.max), (1.0, 50.0, 90.0, 99.0, 100.0));
        assert_eq!(sum.mean, 50.5);
        assert_eq!(sum.count, 100);
        assert!(Samples::default().summary().is_none());
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn samples_stay_bounded_and_representative() {
        let mut s = Samples::with_capacity(1_000);
        for v in 0..100_000 {
            s.push(f64::from(v % 1_000));
        }
        assert!(s.len() <= 1_000);
        let sum = s.summary().unwrap();
        assert_eq!(sum.count, 100_000);
        assert!((sum.p50 - 500.0).abs() < 30.0, "p50 {}", sum.p50);
        s.push(f64::NAN);
        assert_eq!(s.summary().unwrap().count, 100_000);
    }

    #[test]
    fn loss_counts_gaps_and_survives_wraparound() {
        let mut st = RtpReceiveStats::default();
        let mut seq: u16 = 65_530;
        let mut ts: u32 = 0;
        for i in 0..100 {
            if i != 10 && i != 11 {
                st.record(seq, ts, f64::from(i) * 0.02, 48_000);
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(960);
        }
        assert_eq!(st.expected(), 100);
        assert_eq!(st.received(), 98);
        assert_eq!(st.lost(), 2);
        // Perfectly paced: no jitter.
        assert!(st.jitter_ms(48_000) < 1e-6);
    }

    #[test]
    fn duplicates_do_not_hide_loss_and_late_packets_count() {
        let mut st = RtpReceiveStats::default();
        st.record(1, 0, 0.0, 48_000);
        st.record(3, 1920, 0.04, 48_000);
        st.record(3, 1920, 0.04, 48_000);
        assert_eq!((st.expected(), st.lost()), (3, 1));
        st.record(2, 960, 0.05, 48_000);
        assert_eq!((st.expected(), st.lost()), (3, 0));
    }

    #[test]
    fn a_timestamp_wrapping_past_2_pow_32_is_not_jitter() {
        let mut st = RtpReceiveStats::default();
        let start = u32::MAX - 5 * 960;
        for i in 0..20u32 {
            st.record(i as u16, start.wrapping_add(i * 960), f64::from(i) * 0.02, 48_000);
        }
        assert!(st.jitter_ms(48_000) < 1e-6, "{}", st.jitter_ms(48_000));
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let mut st = RtpReceiveStats::default();
        // Alternate 0 and 10 ms extra delay: |D| = 10 ms each step; jitter converges to 10 ms.
        for i in 0..2_000u32 {
            let extra = if i % 2 == 0 { 0.0 } else { 0.010 };
            st.record(i as u16, i * 960, f64::from(i) * 0.02 + extra, 48_000);
        }
        assert!((st.jitter_ms(48_000) - 10.0).abs() < 0.1, "{}", st.jitter_ms(48_000));
    }
}
