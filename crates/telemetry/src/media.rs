//! Media-plane metrics read at scrape time from a snapshot the media plane provides.
//!
//! The media workers keep plain per-worker atomics (no locks, nothing on the hot path
//! but relaxed increments); at scrape time a closure installed by the binary sums them into a
//! [`MediaSnapshot`], and [`MediaCollector`] turns that into Prometheus families. The drop
//! reasons and histogram bounds come with the snapshot from the media plane, which defines
//! them once (`palaver_sfu::engine::counters`); nothing here repeats them, so this crate needs
//! no dependency on the media crate. Until a source is installed (media disabled) the
//! counters read zero, the drop family has no series and the histograms have no buckets.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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

/// Totals across all media workers at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaSnapshot {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Dropped packets by reason: the media plane's own closed list of reasons
    /// (`palaver_sfu::engine::DropReason::ALL`, each with its `as_str` label), in its order.
    pub packets_dropped: Vec<(&'static str, u64)>,
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
    /// RTP received from SIP trunk legs, per trunk (measured by palaver).
    pub trunks: Vec<TrunkRtpSnapshot>,
    /// Time spent decoding and encoding phone codecs (G.711, G.722) in the mixers, seconds.
    pub transcode_seconds: f64,
}

/// One trunk's received RTP: packets, loss and interarrival jitter (RFC 3550), as palaver
/// measured them on the packets the trunk sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrunkRtpSnapshot {
    pub trunk: String,
    pub packets: u64,
    pub packets_lost: u64,
    pub loss_ratio: f64,
    pub jitter_seconds: f64,
}

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

const FAMILIES: [Family; 19] = [
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
    Family {
        name: "palaver_sip_rtp_packets_received_total",
        help: "RTP packets received from SIP trunk legs, by trunk.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_sip_rtp_packets_lost_total",
        help: "RTP packets of SIP trunk legs that never arrived (sequence gaps), by trunk.",
        kind: MetricType::COUNTER,
    },
    Family {
        name: "palaver_sip_rtp_loss_ratio",
        help: "Fraction of a trunk's RTP lost, moving average over ~1 s intervals, by trunk.",
        kind: MetricType::GAUGE,
    },
    Family {
        name: "palaver_sip_rtp_jitter_seconds",
        help: "Interarrival jitter of a trunk's RTP (RFC 3550), moving average, by trunk.",
        kind: MetricType::GAUGE,
    },
    Family {
        name: "palaver_media_transcode_seconds_total",
        help: "CPU time spent decoding and encoding phone audio (G.711, G.722) in the mixers.",
        kind: MetricType::COUNTER,
    },
];

/// One metric per trunk, labelled `trunk`.
fn per_trunk(trunks: &[TrunkRtpSnapshot], metric: impl Fn(&TrunkRtpSnapshot) -> Metric) -> Vec<Metric> {
    trunks
        .iter()
        .map(|t| {
            let mut m = metric(t);
            let mut label = LabelPair::default();
            label.set_name("trunk".into());
            label.set_value(t.trunk.clone());
            m.set_label(vec![label]);
            m
        })
        .collect()
}

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

impl MediaCollector {
    pub fn new(source: Arc<RwLock<Option<MediaSource>>>) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let labels = if f.name == "palaver_media_packets_dropped_total" {
                    vec!["reason".to_string()]
                } else if f.name.starts_with("palaver_sip_rtp_") {
                    vec!["trunk".to_string()]
                } else {
                    vec![]
                };
                Desc::new(f.name.to_string(), f.help.to_string(), labels, HashMap::new())
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(Self { descs, source })
    }

    fn snapshot(&self) -> MediaSnapshot {
        let guard = self.source.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.as_ref().map(|f| f()).unwrap_or_default()
    }
}

impl Collector for MediaCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.snapshot();
        let drops: Vec<Metric> = s
            .packets_dropped
            .iter()
            .map(|(reason, count)| {
                let mut label = LabelPair::default();
                label.set_name("reason".into());
                label.set_value(reason.to_string());
                let mut m = counter(*count as f64);
                m.set_label(vec![label]);
                m
            })
            .collect();
        let values: [Vec<Metric>; 19] = [
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
            per_trunk(&s.trunks, |t| counter(t.packets as f64)),
            per_trunk(&s.trunks, |t| counter(t.packets_lost as f64)),
            per_trunk(&s.trunks, |t| gauge(t.loss_ratio)),
            per_trunk(&s.trunks, |t| gauge(t.jitter_seconds)),
            vec![counter(s.transcode_seconds)],
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
