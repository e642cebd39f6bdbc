//! 32-bit mixing helpers: gain ramps for fades, accumulation, and the soft limiter that
//! turns an i32 sum into i16 samples without wrap-around or hard clipping.

/// Samples below this magnitude pass unchanged; above it the soft knee compresses.
const KNEE: i32 = 24_576; // -2.5 dBFS
const CEILING: f32 = 32_767.0;

/// Linear fade gain for sample `index` of `len`, from `from` to `to` (0.0..=1.0), on a
/// raised-cosine curve so the start and end of the fade have zero slope.
#[inline]
fn ramp_gain(from: f32, to: f32, index: usize, len: usize) -> f32 {
    if index >= len {
        return to;
    }
    let x = (index as f32 + 0.5) / len as f32;
    let shape = 0.5 - 0.5 * (std::f32::consts::PI * x).cos();
    from + (to - from) * shape
}

/// How a source's gain moves over one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fade {
    pub from: f32,
    pub to: f32,
    /// Samples per channel over which the fade completes (the rest of the frame holds `to`).
    pub length: usize,
}

impl Fade {
    pub const UNITY: Fade = Fade { from: 1.0, to: 1.0, length: 0 };

    pub fn is_unity(&self) -> bool {
        self.from == 1.0 && self.to == 1.0
    }
}

/// Adds `source` (interleaved, `channels` per frame) into the 32-bit accumulator `sum`,
/// applying `fade` per sample frame.
pub fn accumulate(sum: &mut [i32], source: &[i16], channels: usize, fade: Fade) {
    if fade.is_unity() {
        for (acc, &s) in sum.iter_mut().zip(source) {
            *acc += i32::from(s);
        }
        return;
    }
    for (frame, (acc, src)) in sum.chunks_exact_mut(channels).zip(source.chunks_exact(channels)).enumerate() {
        let gain = ramp_gain(fade.from, fade.to, frame, fade.length);
        for (a, &s) in acc.iter_mut().zip(src) {
            *a += (f32::from(s) * gain) as i32;
        }
    }
}

/// Applies `fade` in place to interleaved i16 samples.
pub fn apply_fade(samples: &mut [i16], channels: usize, fade: Fade) {
    if fade.is_unity() {
        return;
    }
    for (frame, chunk) in samples.chunks_exact_mut(channels).enumerate() {
        let gain = ramp_gain(fade.from, fade.to, frame, fade.length);
        for s in chunk {
            *s = (f32::from(*s) * gain) as i16;
        }
    }
}

/// Soft limiter: linear below the knee, a smooth tanh-shaped curve above it that
/// approaches full scale but never reaches or wraps past it.
#[inline]
pub fn soft_limit(sample: i32) -> i16 {
    let magnitude = sample.unsigned_abs() as i32;
    if magnitude <= KNEE {
        return sample as i16;
    }
    let headroom = CEILING - KNEE as f32;
    let over = (magnitude - KNEE) as f32 / headroom;
    // rational tanh approximation, exact enough for a limiter and monotonic on [0, 3]
    let shaped = if over >= 3.0 { 1.0 } else { over * (27.0 + over * over) / (27.0 + 9.0 * over * over) };
    let limited = (KNEE as f32 + headroom * shaped.min(1.0)) as i32;
    let limited = limited.min(CEILING as i32);
    if sample < 0 { -limited as i16 } else { limited as i16 }
}

/// Writes `sum - minus` (when given) through the soft limiter into `out`.
pub fn limit_into(out: &mut [i16], sum: &[i32], minus: Option<&[i32]>) {
    match minus {
        None => {
            for (o, &s) in out.iter_mut().zip(sum) {
                *o = soft_limit(s);
            }
        }
        Some(own) => {
            for ((o, &s), &m) in out.iter_mut().zip(sum).zip(own) {
                *o = soft_limit(s - m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_is_transparent_below_the_knee_and_never_wraps() {
        for s in [-KNEE, -1000, 0, 1, 1000, KNEE] {
            assert_eq!(i32::from(soft_limit(s)), s);
        }
        let mut previous = soft_limit(0);
        for s in (0..400_000).step_by(37) {
            let y = soft_limit(s);
            assert!(y >= previous, "monotonic at {s}");
            assert!(y > 0 || s == 0);
            previous = y;
            assert_eq!(soft_limit(-s), -y);
        }
        assert_eq!(soft_limit(i32::MAX), 32_767);
        assert_eq!(soft_limit(i32::MIN + 1), -32_767);
        // three full-scale sources summed stay positive and near full scale
        assert!(soft_limit(3 * 32_767) > 32_000);
    }

    #[test]
    fn fades_start_and_end_where_asked() {
        let mut sum = vec![0i32; 960];
        accumulate(&mut sum, &[10_000i16; 960], 1, Fade { from: 0.0, to: 1.0, length: 960 });
        assert!(sum[0] < 10, "starts near zero: {}", sum[0]);
        assert!(sum[959] > 9_990, "ends near full: {}", sum[959]);
        let mut samples = vec![10_000i16; 960];
        apply_fade(&mut samples, 1, Fade { from: 1.0, to: 0.0, length: 480 });
        assert!(samples[0] > 9_990);
        assert_eq!(samples[600], 0);
        // stereo: both channels of a frame get the same gain
        let mut st = vec![10_000i16; 8];
        apply_fade(&mut st, 2, Fade { from: 0.0, to: 1.0, length: 4 });
        assert_eq!(st[0], st[1]);
        assert_eq!(st[6], st[7]);
    }
}
