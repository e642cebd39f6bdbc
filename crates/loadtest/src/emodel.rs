//! E-model (ITU-T G.107) estimate of conversational quality: R factor and MOS from one-way
//! delay and packet loss. This is the usual simplified form (Cole & Rosenbluth's delay term,
//! G.107's effective equipment impairment for random loss); it is an estimate, not a listening
//! test, and is reported as such.

use serde::Serialize;

/// Default R for a clean narrowband-scale connection (G.107 default parameters).
const R0_MINUS_IS: f64 = 93.2;

/// Codec constants for the equipment impairment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CodecImpairment {
    /// Ie: impairment with no loss.
    pub ie: f64,
    /// Bpl: packet-loss robustness (higher = more robust).
    pub bpl: f64,
}

/// Opus at speech bitrates with PLC. G.113 has no Opus entry; we use Ie = 0 (Opus ≥ 24 kb/s
/// is at least as good as G.711) and G.711-with-PLC's Bpl = 25.1, a conservative choice since
/// Opus also has in-band FEC.
pub const OPUS_WITH_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 25.1 };

/// The estimate for one set of conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityEstimate {
    pub r_factor: f64,
    pub mos: f64,
}

/// Delay impairment Id for a one-way mouth-to-ear delay in ms.
pub fn delay_impairment(one_way_ms: f64) -> f64 {
    let d = one_way_ms.max(0.0);
    0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 }
}

/// Effective equipment impairment Ie-eff for random packet loss `loss_percent` (0..=100).
pub fn loss_impairment(codec: CodecImpairment, loss_percent: f64) -> f64 {
    let ppl = loss_percent.clamp(0.0, 100.0);
    codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl)
}

/// R → MOS (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// R and MOS for a one-way delay (ms) and random loss (%).
pub fn estimate(codec: CodecImpairment, one_way_ms: f64, loss_percent: f64) -> QualityEstimate {
    let r = (R0_MINUS_IS - delay_impairment(one_way_ms) - loss_impairment(codec, loss_percent)).clamp(0.0, 100.0);
    QualityEstimate { r_factor: r, mos: mos_from_r(r) }
}

/// Mouth-to-ear delay assumed for the estimate: the measured network+mixer latency, plus one
/// 20 ms packetization frame, plus a receiver jitter buffer of max(20 ms, 2 × jitter).
pub fn mouth_to_ear_ms(measured_latency_ms: f64, jitter_ms: f64) -> f64 {
    measured_latency_ms + 20.0 + (2.0 * jitter_ms).max(20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_short_path_is_best_quality() {
        let q = estimate(OPUS_WITH_PLC, 0.0, 0.0);
        assert!((q.r_factor - 93.2).abs() < 1e-9);
        assert!((q.mos - 4.41).abs() < 0.01, "{}", q.mos);
    }

    #[test]
    fn g107_reference_points() {
        // MOS(R) anchors from G.107: R=50 → ~2.58, R=70 → ~3.60, R=80 → ~4.02.
        assert!((mos_from_r(50.0) - 2.575).abs() < 0.01);
        assert!((mos_from_r(70.0) - 3.597).abs() < 0.01);
        assert!((mos_from_r(80.0) - 4.024).abs() < 0.01);
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
    }

    #[test]
    fn delay_knee_at_177ms() {
        assert!((delay_impairment(100.0) - 2.4).abs() < 1e-9);
        assert!((delay_impairment(277.3) - (0.024 * 277.3 + 11.0)).abs() < 1e-9);
    }

    #[test]
    fn loss_lowers_mos_monotonically() {
        let mut last = 5.0;
        for loss in [0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0] {
            let mos = estimate(OPUS_WITH_PLC, 50.0, loss).mos;
            assert!(mos < last, "loss {loss}: {mos} !< {last}");
            last = mos;
        }
        // 5 % random loss with PLC: "fair-to-good", not catastrophic.
        let five = estimate(OPUS_WITH_PLC, 50.0, 5.0).mos;
        assert!(five > 3.3 && five < 4.0, "{five}");
    }

    #[test]
    fn mouth_to_ear_adds_packetization_and_buffer() {
        assert_eq!(mouth_to_ear_ms(10.0, 2.0), 50.0);
        assert_eq!(mouth_to_ear_ms(10.0, 30.0), 90.0);
    }
}
