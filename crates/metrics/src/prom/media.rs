//! Media-plane metrics read at scrape time from a snapshot the media plane provides.
//!
//! The media workers keep plain per-worker atomics (no locks, nothing on the hot path
//! but relaxed increments); at scrape time a closure sums them into a [`MediaSnapshot`],
//! and [`MediaCollector`] turns that into Prometheus families. [`AtomicHistogram`] is a
//! fixed-bucket, lock-free histogram a worker can own for latencies.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Why the media plane dropped a packet (a closed set: bounded label cardinality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Could not be parsed (RTP/RTCP/STUN).
    Malformed,
    /// SRTP authentication or replay check failed.
    SrtpAuth,
    /// No session owns the source address / SSRC.
    UnknownSource,
    /// A queue or buffer was full.
    QueueFull,
    /// Over a rate limit.
    RateLimited,
    /// Arrived too late to be played out (jitter buffer).
    TooLate,
}

impl DropReason {
    pub const ALL: [DropReason; 6] =
        [Self::Malformed, Self::SrtpAuth, Self::UnknownSource, Self::QueueFull, Self::RateLimited, Self::TooLate];

    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SrtpAuth => "srtp_auth",
            Self::UnknownSource => "unknown_source",
            Self::QueueFull => "queue_full",
            Self::RateLimited => "rate_limited",
            Self::TooLate => "too_late",
        }
    }
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A histogram as cumulative bucket counts (Prometheus semantics), values in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds, ascending (the `+Inf` bucket is implied by `count`).
    pub upper_bounds_seconds: Vec<f64>,
    /// Cumulative count of observations `<=` each bound.
    pub cumulative_counts: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Add another snapshot with the same bounds (summing workers). Mismatched bounds are
    /// ignored rather than corrupting the result.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.upper_bounds_seconds.is_empty() && self.count == 0 {
            *self = other.clone();
            return;
        }
        if self.upper_bounds_seconds != other.upper_bounds_seconds {
            return;
        }
        for (a, b) in self.cumulative_counts.iter_mut().zip(&other.cumulative_counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }
}

/// Totals across all media workers at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaSnapshot {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Indexed by [`DropReason::index`].
    pub packets_dropped: [u64; 6],
    pub nacks_received: u64,
    pub plis_sent: u64,
    /// Packets reported lost by receivers (RTCP), cumulative.
    pub packets_lost: u64,
    /// Mean fraction lost over the last report interval, 0..=1.
    pub loss_ratio: f64,
    /// Mean interarrival jitter, seconds.
    pub jitter_seconds: f64,
    /// Mean round-trip time, seconds.
    pub rtt_seconds: f64,
    /// Receive-to-send time of forwarded packets.
    pub forwarding_latency: HistogramSnapshot,
    /// Wall time of one mixer tick (budget: 20 ms).
    pub mixer_tick: HistogramSnapshot,
    /// Mixer ticks that overran their 20 ms budget.
    pub mixer_overruns: u64,
}

/// A lock-free fixed-bucket histogram of nanosecond durations.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds_ns: Vec<u64>,
    /// Non-cumulative per-bucket counts; the last slot is `+Inf`.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    /// `bounds_seconds` ascending, e.g. `[0.000_005, 0.000_01, ...]`.
    pub fn new(bounds_seconds: &[f64]) -> Self {
        let bounds_ns: Vec<u64> = bounds_seconds.iter().map(|s| (s * 1e9).round() as u64).collect();
        let buckets = (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds_ns, buckets, count: AtomicU64::new(0), sum_ns: AtomicU64::new(0) }
    }

    pub fn observe_ns(&self, ns: u64) {
        let slot = self.bounds_ns.partition_point(|b| *b < ns);
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let cumulative_counts = self.bounds_ns.iter().enumerate().map(|(i, _)| {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            cumulative
        });
        let cumulative_counts: Vec<u64> = cumulative_counts.collect();
        let in_buckets = cumulative + self.buckets.last().map_or(0, |b| b.load(Ordering::Relaxed));
        HistogramSnapshot {
            upper_bounds_seconds: self.bounds_ns.iter().map(|b| *b as f64 / 1e9).collect(),
            cumulative_counts,
            count: in_buckets,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Default buckets for forwarding latency: 5 µs .. 10 ms.
pub const FORWARDING_LATENCY_BOUNDS: [f64; 10] =
    [0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01];
/// Default buckets for the mixer tick: 50 µs .. 40 ms (budget 20 ms).
pub const MIXER_TICK_BOUNDS: [f64; 10] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.02, 0.04];

pub type MediaSource = Box<dyn Fn() -> MediaSnapshot + Send + Sync>;

/// Collects the media families from the installed source (zeros until one is installed).
pub struct MediaCollector {
    descs: Vec<Desc>,
    source: Arc<RwLock<Option<MediaSource>>>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
}

const FAMILIES: [Family; 14] = [
    Family {
        name: "palaver_media_packets_received_total",
        help: "RTP/RTCP packets received by the media plane.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_packets_sent_total",
        help: "RTP/RTCP packets sent by the media plane.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_received_bytes_total",
        help: "Bytes received by the media plane.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_sent_bytes_total",
        help: "Bytes sent by the media plane.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_packets_dropped_total",
        help: "Packets dropped, by reason.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_nacks_received_total",
        help: "NACK requests received from subscribers.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_plis_sent_total",
        help: "Picture loss indications sent to publishers.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_packets_lost_total",
        help: "Packets reported lost by receivers (RTCP).",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_media_loss_ratio",
        help: "Mean fraction of packets lost in the last report interval.",
        kind: MetricType::GAUGE,
    },
    Family { name: "palaver_media_jitter_seconds", help: "Mean interarrival jitter.", kind: MetricType::GAUGE },
    Family { name: "palaver_media_rtt_seconds", help: "Mean round-trip time.", kind: MetricType::GAUGE },
    Family {
        name: "palaver_media_forwarding_latency_seconds",
        help: "Receive-to-send time of forwarded packets.",
        kind: MetricType::HISTOGRAM,
    },
    Family {
        name: "palaver_mixer_tick_duration_seconds",
        help: "Wall time of one 20 ms mixer tick.",
        kind: MetricType::HISTOGRAM,
    },
    Family {
        name: "palaver_mixer_overruns_total",
        help: "Mixer ticks that overran their 20 ms budget.",
        kind: MetricType::COUNTER,
    },
];

fn counter(v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_counter(c);
    m
}

fn gauge(v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    Metric::from_gauge(g)
}

fn histogram(h: &HistogramSnapshot) -> Metric {
    let mut out = Histogram::default();
    out.set_sample_count(h.count);
    out.set_sample_sum(h.sum_seconds);
    let buckets = h
        .upper_bounds_seconds
        .iter()
        .zip(&h.cumulative_counts)
        .map(|(bound, count)| {
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(*count);
            b
        })
        .collect();
    out.set_bucket(buckets);
    let mut m = Metric::default();
    m.set_histogram(out);
    m
}

fn empty_histogram(bounds: &[f64]) -> HistogramSnapshot {
    HistogramSnapshot {
        upper_bounds_seconds: bounds.to_vec(),
        cumulative_counts: vec![0; bounds.len()],
        count: 0,
        sum_seconds: 0.0,
    }
}

impl MediaCollector {
    pub fn new(source: Arc<RwLock<Option<MediaSource>>>) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let labels =
                    if f.name == "palaver_media_packets_dropped_total" { vec!["reason".to_string()] } else { vec![] };
                Desc::new(f.name.to_string(), f.help.to_string(), labels, HashMap::new())
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(Self { descs, source })
    }

    fn snapshot(&self) -> MediaSnapshot {
        let guard = self.source.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut snap = guard.as_ref().map(|f| f()).unwrap_or_default();
        if snap.forwarding_latency.upper_bounds_seconds.is_empty() {
            snap.forwarding_latency = empty_histogram(&FORWARDING_LATENCY_BOUNDS);
        }
        if snap.mixer_tick.upper_bounds_seconds.is_empty() {
            snap.mixer_tick = empty_histogram(&MIXER_TICK_BOUNDS);
        }
        snap
    }
}

impl Collector for MediaCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.snapshot();
        let drops: Vec<Metric> = DropReason::ALL
            .iter()
            .map(|r| {
                let mut label = LabelPair::default();
                label.set_name("reason".into());
                label.set_value(r.label().into());
                let mut m = counter(s.packets_dropped[r.index()] as f64);
                m.set_label(vec![label]);
                m
            })
            .collect();
        let values: [Vec<Metric>; 14] = [
            vec![counter(s.packets_received as f64)],
            vec![counter(s.packets_sent as f64)],
            vec![counter(s.bytes_received as f64)],
            vec![counter(s.bytes_sent as f64)],
            drops,
            vec![counter(s.nacks_received as f64)],
            vec![counter(s.plis_sent as f64)],
            vec![counter(s.packets_lost as f64)],
            vec![gauge(s.loss_ratio)],
            vec![gauge(s.jitter_seconds)],
            vec![gauge(s.rtt_seconds)],
            vec![histogram(&s.forwarding_latency)],
            vec![histogram(&s.mixer_tick)],
            vec![counter(s.mixer_overruns as f64)],
        ];
        FAMILIES
            .iter()
            .zip(values)
            .map(|(f, metrics)| {
                let mut family = MetricFamily::default();
                family.set_name(f.name.to_string());
                family.set_help(f.help.to_string());
                family.set_field_type(f.kind);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_histogram_is_cumulative_and_merges() {
        let h = AtomicHistogram::new(&[0.000_01, 0.001]);
        h.observe_ns(5_000); // 5 µs -> first bucket
        h.observe_ns(10_000); // exactly on the bound -> first bucket (le)
        h.observe_ns(500_000); // 0.5 ms -> second
        h.observe_ns(5_000_000); // 5 ms -> +Inf
        let s = h.snapshot();
        assert_eq!(s.cumulative_counts, vec![2, 3]);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 0.005_515).abs() < 1e-12);
        let mut total = HistogramSnapshot::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!((total.cumulative_counts.clone(), total.count), (vec![4, 6], 8));
        let other = AtomicHistogram::new(&[1.0]).snapshot();
        total.merge(&other); // different bounds: ignored
        assert_eq!(total.count, 8);
    }
}
