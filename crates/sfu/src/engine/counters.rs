//! Per-worker atomic counters and the plain snapshot the binary sums across workers at scrape
//! time for `palaver-telemetry`; the drop reasons and histogram bounds are defined here only.
//! Only the owning worker thread writes a worker's counters, so an increment is a relaxed load
//! plus a relaxed store (no locked read-modify-write on the packet path); readers on other
//! threads see every value whole.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! drop_reasons {
    ($( $variant:ident => $name:literal ),* $(,)?) => {
        /// Why an incoming or outgoing packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($variant),* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];
            /// Stable label for metrics (`reason="..."`).
            pub fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name),* }
            }
        }
    };
}

drop_reasons! {
    NotMedia => "not_media",
    MalformedRtp => "malformed_rtp",
    MalformedRtcp => "malformed_rtcp",
    UnknownSource => "unknown_source",
    UnknownSsrc => "unknown_ssrc",
    StunInvalid => "stun_invalid",
    StunUnknownUfrag => "stun_unknown_ufrag",
    StunBadIntegrity => "stun_bad_integrity",
    SrtpAuthFailed => "srtp_auth_failed",
    SrtpReplayed => "srtp_replayed",
    Dtls => "dtls_unhandled",
    NoRemoteAddress => "no_remote_address",
    ProtectFailed => "protect_failed",
    SendFailed => "send_failed",
    EventQueueFull => "event_queue_full",
    EgressQueueFull => "egress_queue_full",
    IngressQueueFull => "ingress_queue_full",
    RtpLatchRefused => "rtp_latch_refused",
}

const REASONS: usize = 18;

/// Upper bounds (ns) of the forwarding-latency buckets: 5 µs .. 10 ms (exported as the
/// `palaver_media_forwarding_latency_seconds` buckets).
pub const LATENCY_BOUNDS_NS: [u64; 10] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];
const LATENCY_SLOTS: usize = LATENCY_BOUNDS_NS.len() + 1;
/// Upper bounds (ns) of the mixer-tick buckets: 50 µs .. 40 ms (budget 20 ms), exported as the
/// `palaver_mixer_tick_duration_seconds` buckets.
pub const MIXER_TICK_BOUNDS_NS: [u64; 10] =
    [50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 20_000_000, 40_000_000];

/// A fixed-bucket histogram of nanosecond durations written by one thread (relaxed load +
/// store, no lock, no allocation). Each observation carries a weight (e.g. packets in a batch).
#[derive(Debug)]
pub struct LatencyHistogram {
    bounds: &'static [u64; LATENCY_SLOTS - 1],
    /// Non-cumulative per-bucket counts; the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_SLOTS],
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::with_bounds(&LATENCY_BOUNDS_NS)
    }
}

impl LatencyHistogram {
    /// A histogram with other upper bounds (e.g. [`MIXER_TICK_BOUNDS_NS`]).
    pub fn with_bounds(bounds: &'static [u64; LATENCY_SLOTS - 1]) -> Self {
        Self { bounds, buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }

    /// Single-writer: records `weight` observations of `ns` each.
    pub fn observe(&self, ns: u64, weight: u64) {
        let slot = self.bounds.partition_point(|bound| *bound < ns);
        WorkerCounters::add(&self.buckets[slot], weight);
        WorkerCounters::add(&self.sum_ns, ns.saturating_mul(weight));
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

/// Per-bucket (non-cumulative) counts of a [`LatencyHistogram`]; `+` sums workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `buckets[i]` counts values `<= LATENCY_BOUNDS_NS[i]` (and above the previous bound); the
    /// last slot counts values above every bound.
    pub buckets: [u64; LATENCY_SLOTS],
    pub sum_ns: u64,
}

impl LatencySnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Running totals per bound (Prometheus `le` semantics), without the `+Inf` slot.
    pub fn cumulative(&self) -> [u64; LATENCY_BOUNDS_NS.len()] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i];
            total
        })
    }
}

impl std::ops::Add for LatencySnapshot {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets) {
            *a += b;
        }
        self.sum_ns += o.sum_ns;
        self
    }
}

/// Reception quality subscribers report in RTCP report blocks (RR, and blocks in SR).
///
/// Loss is a cumulative count; fraction lost and jitter are exponentially weighted moving
/// averages per worker, updated once per report block with weight [`EWMA_WEIGHT`] (1/8): a
/// value holds roughly the last eight blocks. They keep their last value while no reports arrive.
#[derive(Debug, Default)]
pub struct ReceptionCounters {
    pub report_blocks: AtomicU64,
    pub packets_lost: AtomicU64,
    /// EWMA of the fraction lost, in millionths.
    loss_ppm: AtomicU64,
    /// EWMA of the interarrival jitter, ns.
    jitter_ns: AtomicU64,
    /// Round trips measured from report blocks echoing the router's sender reports.
    pub rtt_samples: AtomicU64,
    /// EWMA of those round trips, ns.
    rtt_ns: AtomicU64,
}

/// Weight of a new report block in the reception EWMAs (1 / 8).
pub const EWMA_WEIGHT: f64 = 0.125;

impl ReceptionCounters {
    /// Single-writer: one report block. `fraction_lost` is the RTCP 8-bit fixed-point fraction.
    pub fn record(&self, lost_increase: u64, fraction_lost: u8, jitter_ns: u64) {
        let loss_ppm = u64::from(fraction_lost) * 1_000_000 / 256;
        let first = self.report_blocks.load(Relaxed) == 0;
        let blend = |slot: &AtomicU64, value: u64| {
            let next = if first {
                value
            } else {
                let old = slot.load(Relaxed) as f64;
                (old + (value as f64 - old) * EWMA_WEIGHT).round() as u64
            };
            slot.store(next, Relaxed);
        };
        blend(&self.loss_ppm, loss_ppm);
        blend(&self.jitter_ns, jitter_ns);
        WorkerCounters::add(&self.packets_lost, lost_increase);
        WorkerCounters::inc(&self.report_blocks);
    }

    /// Single-writer: one round trip (EWMA with the same weight as loss and jitter).
    pub fn record_rtt(&self, rtt_ns: u64) {
        let next = if self.rtt_samples.load(Relaxed) == 0 {
            rtt_ns
        } else {
            let old = self.rtt_ns.load(Relaxed) as f64;
            (old + (rtt_ns as f64 - old) * EWMA_WEIGHT).round() as u64
        };
        self.rtt_ns.store(next, Relaxed);
        WorkerCounters::inc(&self.rtt_samples);
    }

    pub fn snapshot(&self) -> ReceptionSnapshot {
        let reporting = self.report_blocks.load(Relaxed) > 0;
        let measuring = self.rtt_samples.load(Relaxed) > 0;
        ReceptionSnapshot {
            rtt_samples: self.rtt_samples.load(Relaxed),
            rtt_workers: u64::from(measuring),
            rtt_ns_sum: if measuring { self.rtt_ns.load(Relaxed) } else { 0 },
            report_blocks: self.report_blocks.load(Relaxed),
            packets_lost: self.packets_lost.load(Relaxed),
            reporting_workers: u64::from(reporting),
            loss_ppm_sum: if reporting { self.loss_ppm.load(Relaxed) } else { 0 },
            jitter_ns_sum: if reporting { self.jitter_ns.load(Relaxed) } else { 0 },
        }
    }
}

/// Reception figures of one or more workers; `+` sums workers, the means divide by the
/// workers that have received at least one report block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceptionSnapshot {
    pub report_blocks: u64,
    pub packets_lost: u64,
    pub reporting_workers: u64,
    pub loss_ppm_sum: u64,
    pub jitter_ns_sum: u64,
    pub rtt_samples: u64,
    /// Workers that have measured at least one round trip.
    pub rtt_workers: u64,
    pub rtt_ns_sum: u64,
}

impl ReceptionSnapshot {
    /// Mean over reporting workers of their fraction-lost EWMA, 0..=1 (0 with no reports).
    pub fn loss_ratio(&self) -> f64 {
        if self.reporting_workers == 0 { 0.0 } else { self.loss_ppm_sum as f64 / 1e6 / self.reporting_workers as f64 }
    }

    /// Mean over measuring workers of their round-trip EWMA, seconds (0 with no measurement).
    pub fn rtt_seconds(&self) -> f64 {
        if self.rtt_workers == 0 { 0.0 } else { self.rtt_ns_sum as f64 / 1e9 / self.rtt_workers as f64 }
    }

    /// Mean over reporting workers of their jitter EWMA, seconds (0 with no reports).
    pub fn jitter_seconds(&self) -> f64 {
        if self.reporting_workers == 0 { 0.0 } else { self.jitter_ns_sum as f64 / 1e9 / self.reporting_workers as f64 }
    }
}

impl std::ops::Add for ReceptionSnapshot {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            report_blocks: self.report_blocks + o.report_blocks,
            packets_lost: self.packets_lost + o.packets_lost,
            reporting_workers: self.reporting_workers + o.reporting_workers,
            loss_ppm_sum: self.loss_ppm_sum + o.loss_ppm_sum,
            jitter_ns_sum: self.jitter_ns_sum + o.jitter_ns_sum,
            rtt_samples: self.rtt_samples + o.rtt_samples,
            rtt_workers: self.rtt_workers + o.rtt_workers,
            rtt_ns_sum: self.rtt_ns_sum + o.rtt_ns_sum,
        }
    }
}

/// Live counters of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rtp_forwarded: AtomicU64,
    pub nack_received: AtomicU64,
    pub nack_resent: AtomicU64,
    pub nack_missed: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub keyframe_requests_suppressed: AtomicU64,
    pub layer_switches: AtomicU64,
    pub stun_answered: AtomicU64,
    pub commands: AtomicU64,
    pub commands_failed: AtomicU64,
    /// Time from a receive batch to the send of the packets it produced, once per packet.
    pub forwarding_latency: LatencyHistogram,
    /// Wall time of the room mixer ticks of one worker round, per tick ([`MIXER_TICK_BOUNDS_NS`]).
    pub mixer_tick: LatencyHistogram,
    /// Mixer ticks that ran a period late, plus worker rounds whose ticks took over 20 ms.
    pub mixer_overruns: AtomicU64,
    pub reception: ReceptionCounters,
    /// RTP received from SIP trunk legs, by trunk slot (`trunk_stats`).
    pub trunks: [super::trunk_stats::TrunkCounters; super::trunk_stats::TRUNK_SLOTS],
    /// Time spent decoding and encoding phone codecs (G.711, G.722) in the mixer, ns.
    pub transcode_ns: AtomicU64,
    drops: [AtomicU64; REASONS],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        Self {
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            rtp_forwarded: AtomicU64::new(0),
            nack_received: AtomicU64::new(0),
            nack_resent: AtomicU64::new(0),
            nack_missed: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
            keyframe_requests_suppressed: AtomicU64::new(0),
            layer_switches: AtomicU64::new(0),
            stun_answered: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            commands_failed: AtomicU64::new(0),
            forwarding_latency: LatencyHistogram::default(),
            mixer_tick: LatencyHistogram::with_bounds(&MIXER_TICK_BOUNDS_NS),
            mixer_overruns: AtomicU64::new(0),
            reception: ReceptionCounters::default(),
            trunks: Default::default(),
            transcode_ns: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A point-in-time copy of the counters; `+` sums workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtp_forwarded: u64,
    pub nack_received: u64,
    pub nack_resent: u64,
    pub nack_missed: u64,
    pub keyframe_requests: u64,
    pub keyframe_requests_suppressed: u64,
    pub layer_switches: u64,
    pub stun_answered: u64,
    pub commands: u64,
    pub commands_failed: u64,
    pub forwarding_latency: LatencySnapshot,
    pub mixer_tick: LatencySnapshot,
    pub mixer_overruns: u64,
    pub reception: ReceptionSnapshot,
    /// Per trunk slot: RTP packets received and their reception figures.
    pub trunks: [(u64, ReceptionSnapshot); super::trunk_stats::TRUNK_SLOTS],
    pub transcode_ns: u64,
    pub drops: [u64; REASONS],
}

impl CountersSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

impl std::ops::Add for CountersSnapshot {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.rtp_forwarded += o.rtp_forwarded;
        self.nack_received += o.nack_received;
        self.nack_resent += o.nack_resent;
        self.nack_missed += o.nack_missed;
        self.keyframe_requests += o.keyframe_requests;
        self.keyframe_requests_suppressed += o.keyframe_requests_suppressed;
        self.layer_switches += o.layer_switches;
        self.stun_answered += o.stun_answered;
        self.commands += o.commands;
        self.commands_failed += o.commands_failed;
        self.forwarding_latency = self.forwarding_latency + o.forwarding_latency;
        self.mixer_tick = self.mixer_tick + o.mixer_tick;
        self.mixer_overruns += o.mixer_overruns;
        self.reception = self.reception + o.reception;
        for (a, b) in self.trunks.iter_mut().zip(o.trunks) {
            *a = (a.0 + b.0, a.1 + b.1);
        }
        self.transcode_ns += o.transcode_ns;
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        self
    }
}

impl WorkerCounters {
    /// Single-writer increment (call only from the worker that owns these counters).
    pub fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// Single-writer add (call only from the worker that owns these counters).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        Self::inc(&self.drops[reason as usize]);
    }

    /// Multi-writer drop count (atomic add) for reasons counted by other threads only, never by
    /// the worker itself (e.g. [`DropReason::IngressQueueFull`], counted by the pushing thread).
    pub fn count_drop_shared(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            packets_in: self.packets_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            packets_out: self.packets_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rtp_forwarded: self.rtp_forwarded.load(Relaxed),
            nack_received: self.nack_received.load(Relaxed),
            nack_resent: self.nack_resent.load(Relaxed),
            nack_missed: self.nack_missed.load(Relaxed),
            keyframe_requests: self.keyframe_requests.load(Relaxed),
            keyframe_requests_suppressed: self.keyframe_requests_suppressed.load(Relaxed),
            layer_switches: self.layer_switches.load(Relaxed),
            stun_answered: self.stun_answered.load(Relaxed),
            commands: self.commands.load(Relaxed),
            commands_failed: self.commands_failed.load(Relaxed),
            forwarding_latency: self.forwarding_latency.snapshot(),
            mixer_tick: self.mixer_tick.snapshot(),
            mixer_overruns: self.mixer_overruns.load(Relaxed),
            reception: self.reception.snapshot(),
            trunks: std::array::from_fn(|i| {
                (self.trunks[i].packets.load(Relaxed), self.trunks[i].reception.snapshot())
            }),
            transcode_ns: self.transcode_ns.load(Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_slot_and_snapshots_sum() {
        assert_eq!(DropReason::ALL.len(), REASONS);
        let a = WorkerCounters::default();
        a.count_drop(DropReason::EventQueueFull);
        WorkerCounters::inc(&a.packets_in);
        let b = WorkerCounters::default();
        b.count_drop(DropReason::EventQueueFull);
        let sum = a.snapshot() + b.snapshot();
        assert_eq!(sum.dropped(DropReason::EventQueueFull), 2);
        assert_eq!((sum.packets_in, sum.dropped_total()), (1, 2));
    }

    #[test]
    fn latency_lands_in_the_bucket_of_its_upper_bound_weighted_by_packets() {
        let h = LatencyHistogram::default();
        h.observe(5_000, 3); // exactly on the first bound: le=5µs
        h.observe(5_001, 1); // just above: le=10µs
        h.observe(700_000, 2); // le=1ms
        h.observe(50_000_000, 1); // above 10ms: +Inf only
        let s = h.snapshot() + LatencyHistogram::default().snapshot();
        assert_eq!(s.count(), 7);
        assert_eq!(s.sum_ns, 15_000 + 5_001 + 1_400_000 + 50_000_000);
        assert_eq!(s.cumulative(), [3, 4, 4, 4, 4, 4, 4, 6, 6, 6]);
        assert_eq!(s.buckets[LATENCY_BOUNDS_NS.len()], 1);
    }

    #[test]
    fn reception_means_are_ewmas_averaged_over_reporting_workers() {
        let a = ReceptionCounters::default();
        a.record(10, 64, 2_000_000); // first block sets the averages: 25 %, 2 ms
        assert_eq!(a.snapshot().loss_ratio(), 0.25);
        a.record(6, 0, 10_000_000); // 25 % + (0 - 25 %)/8 ; 2 ms + (10 - 2 ms)/8
        let s = a.snapshot();
        assert_eq!((s.report_blocks, s.packets_lost), (2, 16));
        assert!((s.loss_ratio() - 0.21875).abs() < 1e-6, "{}", s.loss_ratio());
        assert!((s.jitter_seconds() - 0.003).abs() < 1e-9, "{}", s.jitter_seconds());
        // A worker without reports does not dilute the mean.
        let sum = s + ReceptionCounters::default().snapshot();
        assert_eq!(sum.loss_ratio(), s.loss_ratio());
        let b = ReceptionCounters::default();
        b.record(0, 0, 1_000_000);
        let sum = s + b.snapshot();
        assert!((sum.jitter_seconds() - 0.002).abs() < 1e-9);
        assert_eq!(ReceptionSnapshot::default().loss_ratio(), 0.0);
    }

    #[test]
    fn rtt_is_an_ewma_averaged_over_measuring_workers() {
        let a = ReceptionCounters::default();
        a.record_rtt(40_000_000);
        a.record_rtt(80_000_000); // 40 ms + (80 - 40 ms)/8
        let s = a.snapshot();
        assert_eq!(s.rtt_samples, 2);
        assert!((s.rtt_seconds() - 0.045).abs() < 1e-9, "{}", s.rtt_seconds());
        assert_eq!(s.report_blocks, 0, "round trips are not report blocks");
        let b = ReceptionCounters::default();
        b.record_rtt(15_000_000);
        let sum = s + b.snapshot() + ReceptionCounters::default().snapshot();
        assert!((sum.rtt_seconds() - 0.030).abs() < 1e-9, "{}", sum.rtt_seconds());
        assert_eq!(ReceptionSnapshot::default().rtt_seconds(), 0.0);
    }
}
