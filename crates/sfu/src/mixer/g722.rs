//! G.722 (ITU-T G.722, 64 kbit/s sub-band ADPCM, 16 kHz audio) for phone legs in the mixer,
//! on the `audio-codec` crate's pure-Rust codec (restsend, the authors of the SIP stack
//! palaver uses): the 16 kHz ↔ 48 kHz resampling around it and a frame level for the talker
//! selection. Unlike G.711 the codec has state (adaptive predictors), so a phone's decoder
//! ([`G722Input`]) and every encoded stream ([`G722Output`]: the shared mix of a conversation,
//! or one talker's mix-minus) keep their own. RTP: static payload type 9, an 8 kHz clock
//! (RFC 3551 §4.5.2: the clock runs at 8000 though the audio is 16 kHz), 160 bytes per 20 ms.
//! Nothing here allocates after construction.

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};

use super::opus_toc::FRAME_SAMPLES;

/// Bytes of one 20 ms G.722 frame at 64 kbit/s (one byte per two 16 kHz samples).
pub const G722_FRAME_BYTES: usize = 160;
/// 16 kHz samples in 20 ms.
pub const G722_FRAME_SAMPLES: usize = 320;
/// 48 kHz samples per 16 kHz sample.
pub const UPSAMPLE: usize = FRAME_SAMPLES / G722_FRAME_SAMPLES;
/// RTP timestamp units (8 kHz clock) per 20 ms frame.
pub const G722_FRAME_TICKS: u32 = 160;

/// A phone's G.722 decoder: decodes in order (the jitter buffer's playout), upsamples to
/// 48 kHz, and remembers the last frame's level for the talker selection. A frame is decoded
/// once per mixer tick ([`Self::decode_tick`]): the mix and the per-source tap both read it,
/// and decoding twice would advance the predictors twice.
pub struct G722Input {
    decoder: G722Decoder,
    pcm: [i16; G722_FRAME_SAMPLES],
    /// The last 16 kHz sample of the previous frame (upsampler history).
    prev: i16,
    level: u8,
    /// The tick whose frame `wide` holds (48 kHz, up to two channels).
    decoded_tick: Option<u64>,
    wide: Box<[i16; 2 * FRAME_SAMPLES]>,
}

impl std::fmt::Debug for G722Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Input").field("level", &self.level).finish_non_exhaustive()
    }
}

impl Default for G722Input {
    fn default() -> Self {
        Self {
            decoder: G722Decoder::new(),
            pcm: [0; G722_FRAME_SAMPLES],
            prev: 0,
            level: 127,
            decoded_tick: None,
            wide: Box::new([0; 2 * FRAME_SAMPLES]),
        }
    }
}

impl G722Input {
    /// The frame of mixer tick `tick` into `out` (48 kHz, `channels` interleaved): decoded on
    /// the first call of the tick, copied on the next ones.
    pub fn decode_tick(&mut self, tick: u64, payload: &[u8], out: &mut [i16], channels: usize) {
        let samples = self.advance(tick, payload, channels).min(out.len());
        out[..samples].copy_from_slice(&self.wide[..samples]);
    }

    /// Decodes the frame of mixer tick `tick` unless done already; returns the samples held.
    /// The mixer calls it for every G.722 phone every tick, talker or not: the predictors
    /// must see every frame, and the level the talker selection reads comes from here.
    pub fn advance(&mut self, tick: u64, payload: &[u8], channels: usize) -> usize {
        let samples = (FRAME_SAMPLES * channels).min(self.wide.len());
        if self.decoded_tick != Some(tick) {
            let wide = &mut self.wide[..samples];
            let (decoder, pcm, prev) = (&mut self.decoder, &mut self.pcm, &mut self.prev);
            self.level = super::transcode_clock::timed(|| decode_frame(decoder, pcm, prev, payload, wide, channels));
            self.decoded_tick = Some(tick);
        }
        samples
    }

    /// Decodes one frame into `out` (48 kHz, `channels` interleaved) by linear interpolation;
    /// a short or long payload decodes what it holds (the rest of the frame is silence).
    pub fn decode_upsample(&mut self, payload: &[u8], out: &mut [i16], channels: usize) {
        self.level = decode_frame(&mut self.decoder, &mut self.pcm, &mut self.prev, payload, out, channels);
    }

    /// The level of the last decoded frame in -dBov (127: silence). The mixer reads it when
    /// the next packet arrives: a phone sends no RFC 6464 level, and decoding must follow the
    /// playout order, so the level lags one frame.
    pub fn level(&self) -> u8 {
        self.level
    }
}

/// One encoded G.722 stream: downsamples the 48 kHz mix and encodes it with its own state.
pub struct G722Output {
    encoder: G722Encoder,
    pcm: [i16; G722_FRAME_SAMPLES],
}

impl std::fmt::Debug for G722Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Output").finish_non_exhaustive()
    }
}

impl Default for G722Output {
    fn default() -> Self {
        Self { encoder: G722Encoder::new(), pcm: [0; G722_FRAME_SAMPLES] }
    }
}

impl G722Output {
    /// Downsamples one 48 kHz frame (`channels` interleaved; the first channel is used) to
    /// 16 kHz by averaging each group of three samples and encodes it into `out`; returns the
    /// bytes written (0 when `out` is too small).
    pub fn downsample_encode(&mut self, pcm: &[i16], channels: usize, out: &mut [u8]) -> usize {
        for (i, sample) in self.pcm.iter_mut().enumerate() {
            let base = i * UPSAMPLE * channels;
            let mut sum = 0i32;
            for k in 0..UPSAMPLE {
                sum += i32::from(pcm.get(base + k * channels).copied().unwrap_or(0));
            }
            *sample = (sum / UPSAMPLE as i32) as i16;
        }
        let (encoder, pcm) = (&mut self.encoder, &self.pcm);
        super::transcode_clock::timed(|| encoder.encode_into(pcm, out).unwrap_or(0))
    }

    /// A steady-state frame of encoded silence (for phone legs that must get a frame every
    /// tick while nobody talks): silence encoded until the predictors settle.
    pub fn silence_frame() -> [u8; G722_FRAME_BYTES] {
        let mut output = G722Output::default();
        let mut frame = [0u8; G722_FRAME_BYTES];
        let zeros = [0i16; FRAME_SAMPLES];
        for _ in 0..10 {
            output.downsample_encode(&zeros, 1, &mut frame);
        }
        frame
    }
}

/// Decodes `payload` with `decoder` into `pcm` (16 kHz) and upsamples it into `out` from
/// `prev`, the previous frame's last sample (updated); returns the frame's level.
fn decode_frame(
    decoder: &mut G722Decoder,
    pcm: &mut [i16; G722_FRAME_SAMPLES],
    prev: &mut i16,
    payload: &[u8],
    out: &mut [i16],
    channels: usize,
) -> u8 {
    let payload = &payload[..payload.len().min(G722_FRAME_BYTES)];
    let n = decoder.decode_into(payload, pcm).unwrap_or(0);
    pcm[n..].fill(0);
    let mut at = 0;
    let mut energy = 0f64;
    for &x in pcm.iter() {
        let (x, p) = (i32::from(x), i32::from(*prev));
        energy += f64::from(x * x);
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
    level_of(energy / G722_FRAME_SAMPLES as f64)
}

fn level_of(mean_square: f64) -> u8 {
    let rms = mean_square.sqrt();
    if rms < 1.0 {
        return 127;
    }
    (-20.0 * (rms / 32_768.0).log10()).clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goertzel amplitude of `frequency` in 48 kHz `samples`.
    fn amplitude(samples: &[i16], frequency: f64) -> f64 {
        let w = std::f64::consts::TAU * frequency / 48_000.0;
        let (mut s1, mut s2) = (0f64, 0f64);
        for &x in samples {
            let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        2.0 * (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() / samples.len() as f64
    }

    fn tone(frequency: f64, frames: usize) -> Vec<i16> {
        (0..frames * FRAME_SAMPLES)
            .map(|n| (8000.0 * (std::f64::consts::TAU * frequency * n as f64 / 48_000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_wideband_tone_survives_encode_and_decode_with_its_level() {
        // 5 kHz is above G.711's band: it shows G.722 carries wideband audio. The boxcar
        // downsampler and linear upsampler (plus the codec's QMF) cost about 4 dB there.
        for (frequency, at_least) in [(1000.0, 6000.0), (5000.0, 4000.0)] {
            let input = tone(frequency, 25);
            let (mut encoder, mut decoder) = (G722Output::default(), G722Input::default());
            let mut decoded = Vec::new();
            for frame in input.chunks(FRAME_SAMPLES) {
                let mut bytes = [0u8; G722_FRAME_BYTES];
                assert_eq!(encoder.downsample_encode(frame, 1, &mut bytes), G722_FRAME_BYTES);
                let mut wide = [0i16; FRAME_SAMPLES];
                decoder.decode_upsample(&bytes, &mut wide, 1);
                decoded.extend_from_slice(&wide);
            }
            let tail = &decoded[decoded.len() / 2..];
            let heard = amplitude(tail, frequency);
            assert!(heard > at_least && heard < 9000.0, "{frequency} Hz decoded at amplitude {heard:.0}");
            assert!(decoder.level() < 20, "level {} -dBov", decoder.level());
            assert!(amplitude(tail, 2500.0) < 200.0, "no energy where there was no tone");
        }
    }

    #[test]
    fn encoded_silence_decodes_to_silence() {
        let silence = G722Output::silence_frame();
        let mut decoder = G722Input::default();
        let mut wide = [0i16; FRAME_SAMPLES];
        for _ in 0..5 {
            decoder.decode_upsample(&silence, &mut wide, 1);
        }
        assert!(wide.iter().all(|s| s.abs() < 64), "{:?}", &wide[..16]);
        assert!(decoder.level() > 60);
    }
}
