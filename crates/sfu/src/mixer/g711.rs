//! G.711 (ITU-T G.711 µ-law and A-law) for phone legs in the mixer: sample companding, the
//! 8 kHz ↔ 48 kHz resampling around it, and the audio level of a frame (phone senders carry no
//! RFC 6464 level, and every G.711 packet has the same size, so the level is measured from
//! the samples; decoding is a few bit operations per sample). Nothing here allocates; the
//! time spent is added to the thread's transcoding clock (`transcode_clock`).

use super::opus_toc::FRAME_SAMPLES;

/// Samples (= bytes) of one 20 ms G.711 frame at 8 kHz.
pub const G711_FRAME_BYTES: usize = 160;

/// 48 kHz samples per 8 kHz sample.
pub const UPSAMPLE: usize = FRAME_SAMPLES / G711_FRAME_BYTES;

/// Which G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (PCMU, static payload type 0).
    Mu,
    /// A-law (PCMA, static payload type 8).
    A,
}

impl Law {
    /// The byte that decodes to (near) zero: what a silent frame is filled with.
    pub fn silence_byte(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Law::Mu => ulaw_decode(byte),
            Law::A => alaw_decode(byte),
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => ulaw_encode(sample),
            Law::A => alaw_encode(sample),
        }
    }
}

fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let t = ((i32::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

fn alaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3; // 13-bit magnitude domain
    let mask = if s >= 0 {
        0xD5
    } else {
        s = -s - 1;
        0x55
    };
    let s = s.min(0x0FFF);
    let seg = (32 - (s as u32).leading_zeros()).saturating_sub(5).min(7) as i32;
    let mantissa = if seg < 2 { (s >> 1) & 0x0F } else { (s >> seg) & 0x0F };
    (((seg << 4) | mantissa) as u8) ^ mask
}

/// Decodes one 8 kHz frame and upsamples it ×6 into `out` (48 kHz, `channels` interleaved)
/// by linear interpolation from `prev`, the last sample of the previous frame (updated).
pub fn decode_upsample(law: Law, payload: &[u8], prev: &mut i16, out: &mut [i16], channels: usize) {
    super::transcode_clock::timed(|| decode_upsample_untimed(law, payload, prev, out, channels))
}

fn decode_upsample_untimed(law: Law, payload: &[u8], prev: &mut i16, out: &mut [i16], channels: usize) {
    let mut at = 0;
    for &byte in payload.iter().take(G711_FRAME_BYTES) {
        let x = i32::from(law.decode(byte));
        let p = i32::from(*prev);
        for k in 1..=UPSAMPLE as i32 {
            let v = (p + (x - p) * k / UPSAMPLE as i32) as i16;
            for c in 0..channels {
                if let Some(slot) = out.get_mut(at + c) {
                    *slot = v;
                }
            }
            at += channels;
        }
        *prev = x as i16;
    }
}

/// Downsamples one 48 kHz frame (`channels` interleaved; the first channel is used) to
/// 8 kHz by averaging each group of six samples (a boxcar low-pass, stateless so one frame
/// never depends on another) and encodes it into `out`; returns the bytes written.
pub fn downsample_encode(law: Law, pcm: &[i16], channels: usize, out: &mut [u8]) -> usize {
    super::transcode_clock::timed(|| downsample_encode_untimed(law, pcm, channels, out))
}

fn downsample_encode_untimed(law: Law, pcm: &[i16], channels: usize, out: &mut [u8]) -> usize {
    let n = G711_FRAME_BYTES.min(out.len());
    for (i, byte) in out.iter_mut().take(n).enumerate() {
        let base = i * UPSAMPLE * channels;
        let mut sum = 0i32;
        for k in 0..UPSAMPLE {
            sum += i32::from(pcm.get(base + k * channels).copied().unwrap_or(0));
        }
        *byte = law.encode((sum / UPSAMPLE as i32) as i16);
    }
    n
}

/// The frame's level in -dBov (0 = full scale, 127 = silence), the RFC 6464 scale the
/// talker selection reads.
pub fn frame_level(law: Law, payload: &[u8]) -> u8 {
    if payload.is_empty() {
        return 127;
    }
    let energy: f64 = payload.iter().map(|&b| f64::from(law.decode(b)).powi(2)).sum();
    let rms = (energy / payload.len() as f64).sqrt();
    if rms < 1.0 {
        return 127;
    }
    (-20.0 * (rms / 32_768.0).log10()).clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_laws_round_trip_within_their_quantisation_step() {
        for law in [Law::Mu, Law::A] {
            for s in (-32_000i32..32_000).step_by(37) {
                let back = i32::from(law.decode(law.encode(s as i16)));
                // G.711 keeps about 12 bits relative precision: the step grows with the level.
                let tolerance = (s.abs() / 16).max(16);
                assert!((back - s).abs() <= tolerance, "{law:?} {s} -> {back}");
            }
            assert!(law.decode(law.silence_byte()).abs() <= 8, "{law:?} silence decodes to ~0");
        }
    }

    #[test]
    fn known_code_points() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
    }

    #[test]
    fn a_tone_survives_up_and_down_sampling() {
        let law = Law::Mu;
        let tone: Vec<u8> = (0..G711_FRAME_BYTES)
            .map(|n| law.encode((8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 8000.0).sin()) as i16))
            .collect();
        let mut wide = vec![0i16; FRAME_SAMPLES];
        let mut prev = 0;
        decode_upsample(law, &tone, &mut prev, &mut wide, 1);
        let mut narrow = [0u8; G711_FRAME_BYTES];
        assert_eq!(downsample_encode(law, &wide, 1, &mut narrow), G711_FRAME_BYTES);
        let level_in = frame_level(law, &tone);
        let level_out = frame_level(law, &narrow);
        assert!(level_in.abs_diff(level_out) <= 2, "level {level_in} -> {level_out}");
        assert_eq!(frame_level(law, &[law.silence_byte(); G711_FRAME_BYTES]), 127);
    }
}
