//! Bench input audio shared by the mixer benches: one second (50 × 20 ms) of Opus frames of a
//! tone, or of faint background noise like a muted-but-open microphone.

use opus::{Application, Bitrate, Channels, Encoder};

/// 50 encoded 20 ms mono frames at 32 kb/s of a `frequency` Hz tone (`None`: near-silence).
pub fn encoded_second(frequency: Option<f32>, inband_fec: bool) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
    encoder.set_bitrate(Bitrate::Bits(32_000)).unwrap();
    encoder.set_inband_fec(inband_fec).unwrap();
    let (mut phase, mut noise) = (0.0f32, 12_345u32);
    (0..50)
        .map(|_| {
            let pcm: Vec<i16> = (0..960)
                .map(|_| match frequency {
                    Some(f) => {
                        phase = (phase + std::f32::consts::TAU * f / 48_000.0) % std::f32::consts::TAU;
                        (8_000.0 * phase.sin()) as i16
                    }
                    None => {
                        noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        ((noise >> 16) % 64) as i16 - 32
                    }
                })
                .collect();
            encoder.encode_vec(&pcm, 1500).unwrap()
        })
        .collect()
}
