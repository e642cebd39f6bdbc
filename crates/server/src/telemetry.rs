//! Prometheus mapping of the media plane: the workers' counters summed and grouped into the
//! metrics crate's snapshot (read at scrape time). Worker drop reasons are grouped into the
//! exported ones here; the latency and mixer-tick buckets share their bounds with the export.

/// The workers' counters summed into the metrics crate's snapshot (read at scrape time).
pub fn media_snapshot(pool: &palaver_sfu::net::WorkerPool) -> palaver_metrics::MediaSnapshot {
    use palaver_metrics::prom::DropReason as Metric;
    use palaver_sfu::engine::DropReason as Worker;
    let c = pool.counters();
    let mut dropped = [0u64; 6];
    let groups: [(Metric, &[Worker]); 4] = [
        (
            Metric::Malformed,
            &[
                Worker::NotMedia,
                Worker::MalformedRtp,
                Worker::MalformedRtcp,
                Worker::StunInvalid,
                Worker::StunBadIntegrity,
                Worker::Dtls,
                Worker::ProtectFailed,
            ],
        ),
        (Metric::SrtpAuth, &[Worker::SrtpAuthFailed, Worker::SrtpReplayed]),
        (
            Metric::UnknownSource,
            &[Worker::UnknownSource, Worker::UnknownSsrc, Worker::StunUnknownUfrag, Worker::NoRemoteAddress],
        ),
        (
            Metric::QueueFull,
            &[Worker::SendFailed, Worker::EventQueueFull, Worker::EgressQueueFull, Worker::IngressQueueFull],
        ),
    ];
    for (metric, reasons) in groups {
        dropped[metric.index()] = reasons.iter().map(|r| c.dropped(*r)).sum();
    }
    palaver_metrics::MediaSnapshot {
        packets_received: c.packets_in,
        packets_sent: c.packets_out,
        bytes_received: c.bytes_in,
        bytes_sent: c.bytes_out,
        packets_dropped: dropped,
        nacks_received: c.nack_received,
        plis_sent: c.keyframe_requests,
        packets_lost: c.reception.packets_lost,
        loss_ratio: c.reception.loss_ratio(),
        jitter_seconds: c.reception.jitter_seconds(),
        rtt_seconds: c.reception.rtt_seconds(),
        forwarding_latency: forwarding_latency(&c.forwarding_latency),
        mixer_tick: histogram(&c.mixer_tick, &palaver_sfu::engine::MIXER_TICK_BOUNDS_NS),
        mixer_overruns: c.mixer_overruns,
    }
}

/// The workers' forwarding-latency buckets as the metrics crate's histogram (same bounds).
fn forwarding_latency(h: &palaver_sfu::engine::LatencySnapshot) -> palaver_metrics::prom::HistogramSnapshot {
    histogram(h, &palaver_sfu::engine::LATENCY_BOUNDS_NS)
}

/// Worker histogram buckets (upper bounds `bounds_ns`) as the metrics crate's histogram.
fn histogram(h: &palaver_sfu::engine::LatencySnapshot, bounds_ns: &[u64]) -> palaver_metrics::prom::HistogramSnapshot {
    palaver_metrics::prom::HistogramSnapshot {
        upper_bounds_seconds: bounds_ns.iter().map(|ns| *ns as f64 / 1e9).collect(),
        cumulative_counts: h.cumulative().to_vec(),
        count: h.count(),
        sum_seconds: h.sum_ns as f64 / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::forwarding_latency;
    use palaver_metrics::prom::media::FORWARDING_LATENCY_BOUNDS;
    use palaver_sfu::engine::{LATENCY_BOUNDS_NS, LatencyHistogram};

    #[test]
    fn worker_latency_buckets_match_the_exported_bounds() {
        let worker: Vec<u64> = LATENCY_BOUNDS_NS.to_vec();
        let exported: Vec<u64> = FORWARDING_LATENCY_BOUNDS.iter().map(|s| (s * 1e9).round() as u64).collect();
        assert_eq!(worker, exported);
    }

    #[test]
    fn mixer_tick_buckets_match_the_exported_bounds() {
        use palaver_metrics::prom::media::MIXER_TICK_BOUNDS;
        let exported: Vec<u64> = MIXER_TICK_BOUNDS.iter().map(|s| (s * 1e9).round() as u64).collect();
        assert_eq!(palaver_sfu::engine::MIXER_TICK_BOUNDS_NS.to_vec(), exported);
    }

    #[test]
    fn worker_latency_maps_to_a_cumulative_histogram_in_seconds() {
        let h = LatencyHistogram::default();
        h.observe(8_000, 4); // le=10µs
        h.observe(20_000_000, 1); // +Inf
        let out = forwarding_latency(&h.snapshot());
        assert_eq!(out.count, 5);
        assert_eq!(out.cumulative_counts, vec![0, 4, 4, 4, 4, 4, 4, 4, 4, 4]);
        assert!((out.sum_seconds - 0.020_032).abs() < 1e-12, "{}", out.sum_seconds);
        assert_eq!(out.upper_bounds_seconds.len(), FORWARDING_LATENCY_BOUNDS.len());
    }
}
