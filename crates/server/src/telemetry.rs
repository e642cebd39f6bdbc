//! Prometheus mapping of the media plane: the workers' counters summed into telemetry's
//! [`MediaSnapshot`] (read at scrape time). The drop reasons and the histogram bounds are the
//! media plane's own (`palaver_sfu::engine::counters`): the snapshot carries them, so they are
//! defined once.

use palaver_sfu::engine::{DropReason, LATENCY_BOUNDS_NS, LatencySnapshot, MIXER_TICK_BOUNDS_NS};
use palaver_telemetry::{HistogramSnapshot, MediaSnapshot, TrunkRtpSnapshot};

/// The workers' counters summed into telemetry's snapshot (read at scrape time).
pub fn media_snapshot(pool: &palaver_sfu::net::WorkerPool) -> MediaSnapshot {
    let c = pool.counters();
    MediaSnapshot {
        packets_received: c.packets_in,
        packets_sent: c.packets_out,
        bytes_received: c.bytes_in,
        bytes_sent: c.bytes_out,
        packets_dropped: DropReason::ALL.iter().map(|r| (r.as_str(), c.dropped(*r))).collect(),
        nacks_received: c.nack_received,
        plis_sent: c.keyframe_requests,
        packets_lost: c.reception.packets_lost,
        loss_ratio: c.reception.loss_ratio(),
        jitter_seconds: c.reception.jitter_seconds(),
        rtt_seconds: c.reception.rtt_seconds(),
        forwarding_latency: histogram(&c.forwarding_latency, &LATENCY_BOUNDS_NS),
        mixer_tick: histogram(&c.mixer_tick, &MIXER_TICK_BOUNDS_NS),
        mixer_overruns: c.mixer_overruns,
        trunks: palaver_sfu::engine::trunk_stats::trunk_names()
            .into_iter()
            .zip(c.trunks)
            .map(|(trunk, (packets, r))| TrunkRtpSnapshot {
                trunk,
                packets,
                packets_lost: r.packets_lost,
                loss_ratio: r.loss_ratio(),
                jitter_seconds: r.jitter_seconds(),
            })
            .collect(),
        transcode_seconds: c.transcode_ns as f64 / 1e9,
    }
}

/// Worker histogram buckets (upper bounds `bounds_ns`) as telemetry's histogram, in seconds.
fn histogram(h: &LatencySnapshot, bounds_ns: &[u64]) -> HistogramSnapshot {
    HistogramSnapshot {
        upper_bounds_seconds: bounds_ns.iter().map(|ns| *ns as f64 / 1e9).collect(),
        cumulative_counts: h.cumulative().to_vec(),
        count: h.count(),
        sum_seconds: h.sum_ns as f64 / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::histogram;
    use palaver_sfu::engine::{LATENCY_BOUNDS_NS, LatencyHistogram};

    #[test]
    fn worker_latency_maps_to_a_cumulative_histogram_in_seconds() {
        let h = LatencyHistogram::default();
        h.observe(8_000, 4); // le=10µs
        h.observe(20_000_000, 1); // +Inf
        let out = histogram(&h.snapshot(), &LATENCY_BOUNDS_NS);
        assert_eq!(out.count, 5);
        assert_eq!(out.cumulative_counts, vec![0, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
        assert!((out.sum_seconds - 0.020_032).abs() < 1e-12, "{}", out.sum_seconds);
        assert_eq!(out.upper_bounds_seconds[0], 0.000_005);
        assert_eq!(out.upper_bounds_seconds.len(), LATENCY_BOUNDS_NS.len());
    }
}
