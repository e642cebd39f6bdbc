//! Generated test audio: a speech-like talker (talk spurts and pauses, voiced harmonics under a
//! syllable envelope) with marker tone bursts at scheduled frames, and the Goertzel detector
//! listeners use to find a marker's onset in decoded audio.
//!
//! Everything is sample-exact and deterministic for a seed, so tests can check it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::f32::consts::TAU;

/// Sample rate of every generated and decoded signal.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;
/// Length of a marker burst, in frames (200 ms).
pub const MARKER_FRAMES: u32 = 10;
/// Marker burst amplitude (linear, of full scale).
const MARKER_AMPLITUDE: f32 = 0.5;
/// Speech amplitude at the envelope's peak.
const SPEECH_AMPLITUDE: f32 = 0.3;

/// Marker frequency of talker slot `index` (each talker of a room gets its own, so a listener
/// can tell whose marker it hears). Chosen between speech harmonics' bulk and the 8 kHz edge.
pub fn marker_frequency(index: usize) -> f32 {
    const FREQS: [f32; 6] = [2_400.0, 3_000.0, 3_600.0, 4_200.0, 4_800.0, 5_400.0];
    FREQS[index % FREQS.len()]
}

/// Talk-spurt and pause lengths, in frames (ITU-T P.59 means: ~1.0 s talk, ~1.6 s pause).
#[derive(Debug, Clone, Copy)]
pub struct SpeechPattern {
    pub mean_talk_frames: f32,
    pub mean_pause_frames: f32,
}

impl Default for SpeechPattern {
    fn default() -> Self {
        Self { mean_talk_frames: 50.0, mean_pause_frames: 80.0 }
    }
}

/// What [`SpeechSource::next_frame`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Digital silence (a pause, or the talker is not speaking): the encoder goes DTX.
    Silence,
    Speech,
    /// The first frame of a marker burst (its onset is the frame's first sample).
    MarkerStart,
    /// A later frame of a marker burst.
    Marker,
}

/// A speech-like talker. `speaking` gates it (a talker's turn); markers are requested with
/// [`SpeechSource::start_marker`] and override speech for [`MARKER_FRAMES`] frames.
pub struct SpeechSource {
    rng: StdRng,
    pattern: SpeechPattern,
    marker_freq: f32,
    /// Frames left in the current talk spurt (`talking`) or pause.
    frames_left: u32,
    talking: bool,
    marker_frames_left: u32,
    marker_phase: f32,
    f0: f32,
    phase: [f32; 12],
    envelope_phase: f32,
    sample_index: u64,
}

impl SpeechSource {
    pub fn new(seed: u64, pattern: SpeechPattern, marker_freq: f32) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let f0 = rng.gen_range(100.0..230.0);
        Self {
            rng,
            pattern,
            marker_freq,
            frames_left: 0,
            talking: false,
            marker_frames_left: 0,
            marker_phase: 0.0,
            f0,
            phase: [0.0; 12],
            envelope_phase: 0.0,
            sample_index: 0,
        }
    }

    /// Begin a marker burst with the next frame. Ignored while one is running.
    pub fn start_marker(&mut self) -> bool {
        if self.marker_frames_left > 0 {
            return false;
        }
        self.marker_frames_left = MARKER_FRAMES;
        self.marker_phase = 0.0;
        true
    }

    /// Whether a marker burst is running (its frames are still to come).
    pub fn marker_running(&self) -> bool {
        self.marker_frames_left > 0
    }

    fn exp_frames(&mut self, mean: f32) -> u32 {
        let u: f32 = self.rng.gen_range(1e-4..1.0);
        ((-u.ln() * mean) as u32).clamp(5, (mean * 6.0) as u32)
    }

    /// Fill `out` (one frame) with the next 20 ms. `speaking`: whether it is this talker's turn.
    pub fn next_frame(&mut self, speaking: bool, out: &mut [i16; FRAME_SAMPLES]) -> FrameKind {
        self.sample_index += FRAME_SAMPLES as u64;
        if self.marker_frames_left > 0 {
            let kind =
                if self.marker_frames_left == MARKER_FRAMES { FrameKind::MarkerStart } else { FrameKind::Marker };
            self.marker_frames_left -= 1;
            let step = TAU * self.marker_freq / SAMPLE_RATE as f32;
            for s in out.iter_mut() {
                *s = (self.marker_phase.sin() * MARKER_AMPLITUDE * 32_767.0) as i16;
                self.marker_phase = (self.marker_phase + step) % TAU;
            }
            return kind;
        }
        if self.frames_left == 0 {
            self.talking = !self.talking;
            let mean = if self.talking { self.pattern.mean_talk_frames } else { self.pattern.mean_pause_frames };
            self.frames_left = self.exp_frames(mean);
            if self.talking {
                self.f0 = (self.f0 * self.rng.gen_range(0.9..1.1)).clamp(90.0, 250.0);
            }
        }
        self.frames_left -= 1;
        if !speaking || !self.talking {
            out.fill(0);
            return FrameKind::Silence;
        }
        // Voiced speech: harmonics of f0 falling off 1/k, under a ~4 Hz syllable envelope,
        // plus a little noise for the unvoiced part.
        let env_step = TAU * 4.0 / SAMPLE_RATE as f32;
        for s in out.iter_mut() {
            let envelope = 0.5 * (1.0 - self.envelope_phase.cos());
            self.envelope_phase = (self.envelope_phase + env_step) % TAU;
            let mut v = 0.0;
            for (k, phase) in self.phase.iter_mut().enumerate() {
                let harmonic = (k + 1) as f32;
                v += phase.sin() / harmonic;
                *phase = (*phase + TAU * self.f0 * harmonic / SAMPLE_RATE as f32) % TAU;
            }
            let noise: f32 = self.rng.gen_range(-0.15..0.15);
            *s = ((v * 0.35 + noise) * envelope * SPEECH_AMPLITUDE * 32_767.0).clamp(-32_767.0, 32_767.0) as i16;
        }
        FrameKind::Speech
    }
}

/// RFC 6464 level of a frame: -dBov, 0 = loudest, 127 = silence.
pub fn audio_level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64;
    let rms = energy.sqrt() / 32_768.0;
    if rms <= 1e-7 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

/// Goertzel power of `freq` in `block`, normalised to the block's total energy: ~1 for a pure
/// tone at `freq`, ~0 when the block holds none of it.
pub fn tone_fraction(block: &[i16], freq: f32) -> f32 {
    let n = block.len();
    if n == 0 {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * freq / SAMPLE_RATE as f32).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    let mut energy = 0.0f32;
    for &x in block {
        let x = f32::from(x) / 32_768.0;
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy <= 1e-9 {
        return 0.0;
    }
    // A pure tone of energy E over n samples has Goertzel power ~ E * n / 2.
    (power / (energy * n as f32 / 2.0)).min(1.0)
}

/// Block size for onset detection: 2.5 ms at 48 kHz (onset resolution).
pub const ONSET_BLOCK: usize = 120;
/// Tone fraction that counts as "the marker is present" (mixing with other talkers lowers it).
const ONSET_FRACTION: f32 = 0.35;
/// Minimum block RMS (of full scale) for an onset: the mix must actually carry the burst.
const ONSET_MIN_RMS: f32 = 0.02;
/// Blocks of silence-of-marker needed before a new onset may be reported (re-arm).
const REARM_BLOCKS: u32 = 40;
/// Consecutive blocks (10 ms) the tone must hold before its first block counts as an onset.
/// Opus rings for a block or two after a burst ends, and that ring can carry enough energy at
/// a neighbouring talker's marker frequency to pass the fraction test once: the tail of talker
/// *t+1*'s burst, 1 s after talker *t*'s marker, then read as *t*'s onset 1.2 s late.
const SUSTAIN_BLOCKS: u32 = 4;

/// Where an onset was found: `frames_back` frames before the one just scanned (0 = that
/// frame, 1 = the frame before it), at sample `offset` of that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onset {
    pub frames_back: usize,
    pub offset: usize,
}

/// A run of tone blocks not yet long enough to be an onset.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    blocks: u32,
    frames_back: usize,
    offset: usize,
    /// The detector was re-armed when the run started.
    armed: bool,
}

/// Finds onsets of one marker frequency in a stream of decoded frames.
#[derive(Debug, Clone)]
pub struct OnsetDetector {
    freq: f32,
    in_burst: bool,
    quiet_blocks: u32,
    candidate: Option<Candidate>,
}

impl OnsetDetector {
    pub fn new(freq: f32) -> Self {
        Self { freq, in_burst: false, quiet_blocks: REARM_BLOCKS, candidate: None }
    }

    /// Scan one decoded frame; returns a new onset confirmed in it, if any. The onset is the
    /// first block of a run of [`SUSTAIN_BLOCKS`] tone blocks, so it may lie in the frame before.
    pub fn scan(&mut self, frame: &[i16]) -> Option<Onset> {
        let mut found = None;
        for (i, block) in frame.chunks(ONSET_BLOCK).enumerate() {
            let rms =
                (block.iter().map(|&s| (f32::from(s) / 32_768.0).powi(2)).sum::<f32>() / block.len() as f32).sqrt();
            let present = rms >= ONSET_MIN_RMS && tone_fraction(block, self.freq) >= ONSET_FRACTION;
            if present && self.in_burst {
                self.quiet_blocks = 0;
            } else if present {
                let armed = self.quiet_blocks >= REARM_BLOCKS;
                let candidate = self.candidate.get_or_insert(Candidate {
                    blocks: 0,
                    frames_back: 0,
                    offset: i * ONSET_BLOCK,
                    armed,
                });
                candidate.blocks += 1;
                if candidate.blocks >= SUSTAIN_BLOCKS {
                    let confirmed = *candidate;
                    self.candidate = None;
                    self.in_burst = true;
                    self.quiet_blocks = 0;
                    if confirmed.armed && found.is_none() {
                        found = Some(Onset { frames_back: confirmed.frames_back, offset: confirmed.offset });
                    }
                }
            } else {
                // A shorter run was a blip (e.g. codec ringing), not an onset.
                self.candidate = None;
                self.quiet_blocks = self.quiet_blocks.saturating_add(1);
                if self.quiet_blocks >= 4 {
                    self.in_burst = false;
                }
            }
        }
        if let Some(candidate) = self.candidate.as_mut() {
            candidate.frames_back += 1;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, n: usize, amp: f32) -> Vec<i16> {
        (0..n).map(|i| ((TAU * freq * i as f32 / SAMPLE_RATE as f32).sin() * amp * 32_767.0) as i16).collect()
    }

    #[test]
    fn goertzel_tells_a_tone_from_other_frequencies() {
        let block = tone(3_000.0, ONSET_BLOCK * 4, 0.5);
        assert!(tone_fraction(&block, 3_000.0) > 0.9);
        assert!(tone_fraction(&block, 2_400.0) < 0.05);
        assert_eq!(tone_fraction(&[0; 120], 3_000.0), 0.0);
    }

    #[test]
    fn one_talkers_marker_does_not_trigger_another_talkers_detector() {
        for a in 0..6 {
            let burst = tone(marker_frequency(a), FRAME_SAMPLES * 2, 0.5);
            for b in (0..6).filter(|b| *b != a) {
                let mut detector = OnsetDetector::new(marker_frequency(b));
                assert_eq!(detector.scan(&burst), None, "marker {a} seen by detector {b}");
                let worst =
                    burst.chunks(ONSET_BLOCK).map(|c| tone_fraction(c, marker_frequency(b))).fold(0.0, f32::max);
                assert!(worst < ONSET_FRACTION / 2.0, "{a} -> {b}: {worst}");
            }
        }
    }

    #[test]
    fn speech_has_spurts_pauses_and_no_marker_energy() {
        let mut source = SpeechSource::new(7, SpeechPattern::default(), marker_frequency(0));
        let mut frame = [0i16; FRAME_SAMPLES];
        let (mut speech, mut silence) = (0, 0);
        let mut marker_like = 0;
        for _ in 0..3_000 {
            match source.next_frame(true, &mut frame) {
                FrameKind::Speech => {
                    speech += 1;
                    if frame.chunks(ONSET_BLOCK).any(|b| tone_fraction(b, marker_frequency(0)) >= ONSET_FRACTION) {
                        marker_like += 1;
                    }
                }
                FrameKind::Silence => silence += 1,
                other => panic!("no marker was requested, got {other:?}"),
            }
        }
        // Roughly 40 % activity (P.59 style); both states occur many times.
        assert!(speech > 600 && silence > 600, "speech {speech}, silence {silence}");
        assert_eq!(marker_like, 0, "speech must not look like a marker");
    }

    #[test]
    fn not_speaking_is_silence() {
        let mut source = SpeechSource::new(1, SpeechPattern::default(), 2_400.0);
        let mut frame = [1i16; FRAME_SAMPLES];
        for _ in 0..200 {
            assert_eq!(source.next_frame(false, &mut frame), FrameKind::Silence);
            assert!(frame.iter().all(|&s| s == 0));
        }
        assert_eq!(audio_level_dbov(&frame), 127);
    }

    #[test]
    fn marker_burst_is_found_at_its_onset_once() {
        let freq = marker_frequency(1);
        let mut source = SpeechSource::new(3, SpeechPattern::default(), freq);
        let mut detector = OnsetDetector::new(freq);
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut onsets = Vec::new();
        for i in 0..400u32 {
            if i % 100 == 50 {
                assert!(source.start_marker());
                assert!(!source.start_marker(), "one burst at a time");
            }
            let kind = source.next_frame(true, &mut frame);
            if i % 100 == 50 {
                assert_eq!(kind, FrameKind::MarkerStart);
            }
            if let Some(onset) = detector.scan(&frame) {
                onsets.push((i - onset.frames_back as u32, onset.offset));
            }
        }
        assert_eq!(onsets, vec![(50, 0), (150, 0), (250, 0), (350, 0)]);
    }

    #[test]
    fn onset_offset_inside_a_frame_is_block_accurate() {
        let freq = marker_frequency(2);
        let mut detector = OnsetDetector::new(freq);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        frame[240..].copy_from_slice(&tone(freq, FRAME_SAMPLES - 240, 0.4));
        assert_eq!(detector.scan(&frame), Some(Onset { frames_back: 0, offset: 240 }));
        // Still in the burst: no second onset.
        assert_eq!(detector.scan(&tone(freq, FRAME_SAMPLES, 0.4)), None);
    }

    #[test]
    fn onset_late_in_a_frame_is_confirmed_in_the_next() {
        let freq = marker_frequency(2);
        let mut detector = OnsetDetector::new(freq);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        frame[720..].copy_from_slice(&tone(freq, FRAME_SAMPLES - 720, 0.4));
        // Two tone blocks are not yet an onset; the next frame confirms it where it began.
        assert_eq!(detector.scan(&frame), None);
        assert_eq!(detector.scan(&tone(freq, FRAME_SAMPLES, 0.4)), Some(Onset { frames_back: 1, offset: 720 }));
    }

    #[test]
    fn a_blip_shorter_than_the_sustain_time_is_not_an_onset() {
        let freq = marker_frequency(1);
        let mut detector = OnsetDetector::new(freq);
        let mut frame = vec![0i16; FRAME_SAMPLES];
        let blip = (SUSTAIN_BLOCKS as usize - 1) * ONSET_BLOCK;
        frame[360..360 + blip].copy_from_slice(&tone(freq, blip, 0.4));
        assert_eq!(detector.scan(&frame), None);
        assert_eq!(detector.scan(&[0; FRAME_SAMPLES]), None);
    }

    #[test]
    fn levels_follow_rfc6464_scale() {
        assert_eq!(audio_level_dbov(&tone(1_000.0, 960, 1.0)), 3);
        assert!(audio_level_dbov(&tone(1_000.0, 960, 0.01)) >= 42);
    }
}
