//! Simulcast layer state on the producer side (learned SSRC, packet cache, activity, measured
//! rate, keyframe-request rate limit) and the layer choice for one consumer.

use std::time::{Duration, Instant};

use super::LayerSpec;
use super::packet_cache::PacketCache;
use super::reports::ReceiveStats;
use super::upstream::UpstreamLoss;

/// Bytes-per-second meter over one-second windows.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    rate_bps: u64,
}

impl RateMeter {
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.rate_bps = self.bytes * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64;
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
    }

    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }
}

/// One simulcast layer of a producer.
#[derive(Debug)]
pub struct Layer {
    pub spec: LayerSpec,
    pub ssrc: Option<u32>,
    pub cache: PacketCache,
    pub last_packet_at: Option<Instant>,
    pub meter: RateMeter,
    pub last_keyframe_request: Option<Instant>,
    /// Reception statistics for the RRs sent to the publisher.
    pub received: ReceiveStats,
    /// Sequence gaps to NACK upstream (video).
    pub upstream: UpstreamLoss,
    /// Payload type of the newest original packet (what an RTX packet restores).
    pub last_payload_type: Option<u8>,
}

impl Layer {
    pub fn new(spec: LayerSpec, cache_packets: usize) -> Self {
        Self {
            ssrc: spec.ssrc,
            spec,
            cache: PacketCache::new(cache_packets),
            last_packet_at: None,
            meter: RateMeter::default(),
            last_keyframe_request: None,
            received: ReceiveStats::default(),
            upstream: UpstreamLoss::default(),
            last_payload_type: None,
        }
    }

    pub fn is_active(&self, now: Instant, timeout: Duration) -> bool {
        self.last_packet_at.is_some_and(|at| now.saturating_duration_since(at) < timeout)
    }

    /// The rate used for layer choice: the larger of the signalled and the measured rate.
    pub fn bitrate_bps(&self) -> u64 {
        self.spec.max_bitrate_bps.max(self.meter.rate_bps())
    }
}

/// Picks the layer for a consumer: the highest active layer whose height fits `max_height`
/// and whose rate fits `budget_bps`; the lowest active layer if none fits. `layers` are sorted
/// by ascending height. `None` when no layer is active.
pub fn choose_layer(
    layers: &[Layer],
    now: Instant,
    timeout: Duration,
    max_height: u16,
    budget_bps: Option<u64>,
) -> Option<u8> {
    let mut lowest_active = None;
    let mut best = None;
    for (i, layer) in layers.iter().enumerate() {
        if !layer.is_active(now, timeout) {
            continue;
        }
        lowest_active.get_or_insert(i as u8);
        let fits_size = layer.spec.height <= max_height;
        let fits_rate = budget_bps.is_none_or(|b| layer.bitrate_bps() <= b);
        if fits_size && fits_rate {
            best = Some(i as u8);
        }
    }
    best.or(lowest_active)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(height: u16, bps: u64, active_at: Option<Instant>) -> Layer {
        let spec =
            LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: height * 16 / 9, height, max_bitrate_bps: bps };
        let mut l = Layer::new(spec, 0);
        l.last_packet_at = active_at;
        l
    }

    #[test]
    fn picks_by_size_then_budget_then_activity() {
        let now = Instant::now();
        let t = Duration::from_secs(2);
        let layers = [layer(180, 150_000, Some(now)), layer(360, 500_000, Some(now)), layer(720, 1_500_000, Some(now))];
        assert_eq!(choose_layer(&layers, now, t, u16::MAX, None), Some(2));
        assert_eq!(choose_layer(&layers, now, t, 400, None), Some(1));
        assert_eq!(choose_layer(&layers, now, t, 100, None), Some(0));
        assert_eq!(choose_layer(&layers, now, t, u16::MAX, Some(600_000)), Some(1));
        assert_eq!(choose_layer(&layers, now, t, u16::MAX, Some(10_000)), Some(0));
        let stale = [layer(180, 1, None), layer(360, 1, Some(now)), layer(720, 1, Some(now - 3 * t))];
        assert_eq!(choose_layer(&stale, now, t, u16::MAX, None), Some(1));
        assert_eq!(choose_layer(&stale[..1], now, t, u16::MAX, None), None);
    }

    #[test]
    fn meter_measures_one_second_windows() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..=100 {
            m.add(t0 + Duration::from_millis(10 * i), 1250);
        }
        assert_eq!(m.rate_bps(), 1_000_000);
    }
}
