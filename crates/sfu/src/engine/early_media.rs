//! Early media for a phone leg that is not yet in the conversation: the ringback tone, or
//! the hold audio of a call queue or a meeting's lobby (a configured WAV file,
//! [`ToneLoop::from_pcm`]), a trunk hears on its early dialog (183 Session Progress) while
//! the callee rings or the caller waits.
//!
//! The waiting leg is a normal member of its router's mix, **held** (it is heard by nobody
//! and hears only audio addressed to it), and an [`EarlyPlayer`] is an addressed mixer input
//! heard by that leg alone: each tick the player pushes the next 20 ms Opus frame of a
//! [`ToneLoop`] into it, and the mixer encodes the leg's personal stream in the leg's own
//! codec on its mix output. When the callee answers the player is removed and the hold
//! lifted: the same transport, SSRC and sequence numbers carry the conversation from then on
//! (the 200 continues on the early session, RFC 3261 §13.3.1.1).
//!
//! A [`ToneLoop`] is encoded once when it is built (the control plane keeps one per tone);
//! playing it reads a slice per tick and allocates nothing.

use std::sync::Arc;

use opus::{Application, Channels, Encoder};

use crate::mixer::{FRAME_SAMPLES, MixerInput, RtpAudioIn};
use crate::router::TransportId;

/// Samples of one 20 ms frame at 48 kHz.
const FRAME: usize = FRAME_SAMPLES;

/// A national ringback (or hold) cadence: the frequencies played together and the on/off
/// pattern, in milliseconds, repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ringback {
    /// North America (ANSI T1.401): 440 + 480 Hz, 2 s on, 4 s off.
    Us,
    /// Most of Europe (ETSI TR 101 041, CEPT): 425 Hz, 1 s on, 4 s off.
    Eu,
    /// United Kingdom (BT SIN 350): 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off.
    Uk,
}

impl Ringback {
    /// Reads `us`, `eu` or `uk` (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "us" => Some(Ringback::Us),
            "eu" => Some(Ringback::Eu),
            "uk" => Some(Ringback::Uk),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ringback::Us => "us",
            Ringback::Eu => "eu",
            Ringback::Uk => "uk",
        }
    }

    /// The tone's frequencies in Hz.
    pub fn frequencies(self) -> &'static [f32] {
        match self {
            Ringback::Us => &[440.0, 480.0],
            Ringback::Eu => &[425.0],
            Ringback::Uk => &[400.0, 450.0],
        }
    }

    /// On, off, on, off … in milliseconds (multiples of 20).
    pub fn cadence(self) -> &'static [u32] {
        match self {
            Ringback::Us => &[2000, 4000],
            Ringback::Eu => &[1000, 4000],
            Ringback::Uk => &[400, 200, 400, 2000],
        }
    }
}

/// Peak amplitude of each frequency of a ringback tone (about −19 dBm0 for one tone, the
/// level of ITU-T E.180 ringing tones).
pub const RINGBACK_AMPLITUDE: f32 = 3000.0;

/// Longest hold audio loop accepted (10 minutes; about 2.4 MB of Opus at 32 kbit/s).
pub const MAX_HOLD_AUDIO_SECS: u32 = 600;

/// Why PCM cannot be made into a hold audio loop.
#[derive(Debug, thiserror::Error)]
pub enum HoldAudioError {
    #[error("the audio is empty (at least 20 ms are needed)")]
    Empty,
    #[error("the audio lasts {0} s, more than {MAX_HOLD_AUDIO_SECS} s")]
    TooLong(u32),
    #[error("Opus encoder: {0}")]
    Opus(#[from] opus::Error),
}

/// A looped tone, encoded once as 20 ms Opus frames (mono, 48 kHz).
pub struct ToneLoop {
    bytes: Vec<u8>,
    /// Offset and length of each frame in `bytes`.
    frames: Vec<(u32, u16)>,
}

impl std::fmt::Debug for ToneLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToneLoop").field("frames", &self.frames.len()).finish_non_exhaustive()
    }
}

impl ToneLoop {
    /// One whole cadence of `tone`, ready to loop (it ends in silence, so the loop's seam is
    /// inaudible).
    pub fn ringback(tone: Ringback) -> Result<Self, opus::Error> {
        let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Voip)?;
        let mut pcm = [0i16; FRAME];
        let mut packet = [0u8; 400];
        let (mut bytes, mut frames) = (Vec::new(), Vec::new());
        let mut sample = 0u64;
        for (i, &ms) in tone.cadence().iter().enumerate() {
            let on = i % 2 == 0;
            for _ in 0..ms / 20 {
                for slot in pcm.iter_mut() {
                    let t = sample as f32 / 48_000.0;
                    let value: f32 = if on {
                        tone.frequencies().iter().map(|f| (std::f32::consts::TAU * f * t).sin()).sum::<f32>()
                            * RINGBACK_AMPLITUDE
                    } else {
                        0.0
                    };
                    *slot = value as i16;
                    sample += 1;
                }
                let n = encoder.encode(&pcm, &mut packet)?;
                frames.push((bytes.len() as u32, n as u16));
                bytes.extend_from_slice(&packet[..n]);
            }
        }
        Ok(Self { bytes, frames })
    }

    /// A loop of `pcm` (mono, 48 kHz: music or an announcement on hold, read from a WAV
    /// file at start), encoded once as 20 ms Opus frames for music (`Application::Audio`);
    /// the last partial frame is padded with silence.
    pub fn from_pcm(pcm: &[i16]) -> Result<Self, HoldAudioError> {
        if pcm.len() < FRAME {
            return Err(HoldAudioError::Empty);
        }
        let secs = (pcm.len() / 48_000) as u32;
        if secs > MAX_HOLD_AUDIO_SECS {
            return Err(HoldAudioError::TooLong(secs));
        }
        let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Audio)?;
        let mut frame = [0i16; FRAME];
        let mut packet = [0u8; 1000];
        let (mut bytes, mut frames) = (Vec::new(), Vec::with_capacity(pcm.len().div_ceil(FRAME)));
        for chunk in pcm.chunks(FRAME) {
            frame[..chunk.len()].copy_from_slice(chunk);
            frame[chunk.len()..].fill(0);
            let n = encoder.encode(&frame, &mut packet)?;
            frames.push((bytes.len() as u32, n as u16));
            bytes.extend_from_slice(&packet[..n]);
        }
        Ok(Self { bytes, frames })
    }

    /// Frames in one loop.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The `index`-th frame (modulo the loop).
    pub fn frame(&self, index: usize) -> &[u8] {
        let (start, len) = self.frames[index % self.frames.len()];
        &self.bytes[start as usize..start as usize + usize::from(len)]
    }
}

/// A [`ToneLoop`] playing into a mixer input addressed to one waiting leg.
#[derive(Debug)]
pub(super) struct EarlyPlayer {
    /// The waiting leg that hears it.
    pub listener: TransportId,
    /// The addressed mixer input the frames go into.
    pub input: MixerInput,
    tone: Arc<ToneLoop>,
    next: usize,
    sequence: u16,
    timestamp: u32,
}

impl EarlyPlayer {
    pub fn new(listener: TransportId, input: MixerInput, tone: Arc<ToneLoop>) -> Self {
        Self { listener, input, tone, next: 0, sequence: 0, timestamp: 0 }
    }

    /// The next frame, as the mixer takes it from a sender.
    pub fn next_frame(&mut self) -> RtpAudioIn<'_> {
        let frame = RtpAudioIn {
            seq: self.sequence,
            timestamp: self.timestamp,
            audio_level: None,
            marker: self.next == 0 && self.sequence == 0,
            payload: self.tone.frame(self.next),
        };
        self.next = (self.next + 1) % self.tone.len().max(1);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ringback_loop_is_one_cadence_of_twenty_ms_frames_ending_in_silence() {
        let us = ToneLoop::ringback(Ringback::Us).unwrap();
        assert_eq!(us.len(), 300, "6 s of 20 ms frames");
        let eu = ToneLoop::ringback(Ringback::Eu).unwrap();
        assert_eq!(eu.len(), 250);
        assert_eq!(ToneLoop::ringback(Ringback::Uk).unwrap().len(), 150);
        // A tone frame carries far more bits than a silent one.
        assert!(us.frame(10).len() > 3 * us.frame(200).len(), "{} vs {}", us.frame(10).len(), us.frame(200).len());
        assert_eq!(us.frame(300), us.frame(0), "the loop wraps");
        let mut player = EarlyPlayer::new(TransportId(1), MixerInput { index: 0, generation: 0 }, Arc::new(eu));
        let first = player.next_frame();
        assert!(first.marker);
        let (seq, ts) = (first.seq, first.timestamp);
        let second = player.next_frame();
        assert_eq!((second.seq, second.timestamp), (seq + 1, ts + 960));
        assert_eq!(Ringback::from_name("EU"), Some(Ringback::Eu));
        assert_eq!(Ringback::from_name(Ringback::Uk.name()), Some(Ringback::Uk));
    }

    #[test]
    fn hold_audio_pcm_becomes_a_loop_of_twenty_ms_frames() {
        // 1.01 s of a 600 Hz tone: 51 frames, the last one padded.
        let pcm: Vec<i16> = (0..48_480)
            .map(|i| ((std::f32::consts::TAU * 600.0 * i as f32 / 48_000.0).sin() * 8000.0) as i16)
            .collect();
        let tone = ToneLoop::from_pcm(&pcm).unwrap();
        assert_eq!(tone.len(), 51);
        assert_eq!(tone.frame(51), tone.frame(0), "the loop wraps");
        assert!(matches!(ToneLoop::from_pcm(&pcm[..100]), Err(HoldAudioError::Empty)));
        let long = vec![0i16; 48_000 * (MAX_HOLD_AUDIO_SECS as usize + 1)];
        assert!(matches!(ToneLoop::from_pcm(&long), Err(HoldAudioError::TooLong(601))));
    }
}
