//! The room audio mixer (sans-IO): per-input jitter buffers, top-K talker selection,
//! mix-minus for talkers, one shared encode for every listener, passthrough of a lone
//! talker's own packets, active-speaker updates and a recording tap.
//!
//! A room's worker thread owns one [`Mixer`]. It calls [`Mixer::push`] for every audio
//! RTP packet (already parsed by the transport plane) and [`Mixer::tick`] every 20 ms;
//! the tick fills a reusable [`MixOutputs`] with one Opus payload plus RTP sequence
//! number and timestamp per receiving participant. Time is passed in; nothing here reads
//! the clock, opens a socket or allocates per packet or per tick in steady state.
//!
//! Layout: [`jitter`] (adaptive jitter buffer), [`talker`] (selection with hysteresis),
//! [`limiter`] (32-bit accumulation, fades, soft limiter), [`codec`] (libopus set-up),
//! [`opus_toc`] (packet inspection without decoding), [`mixer`] (the `Mixer` itself),
//! [`ogg`] (Ogg Opus writer/reader for the recording tap), [`g711`] (PCMU/PCMA phone legs:
//! companding, 8 ↔ 48 kHz resampling, frame levels), [`g722`] (G.722 phone legs on the
//! `audio-codec` crate: 16 ↔ 48 kHz, a decoder per phone and an encoder per stream).
//!
//! A selected talker that has sent only quiet frames (voice flag off at a low level, or
//! nothing) for a few ticks is *released* from the mix while it keeps its place in the
//! active-speaker list: with browsers that send noise between talk spurts, two selected talkers
//! of whom one is pausing are a lone audible talker (passthrough, no codec work), and three of
//! whom one pauses are a pair (pair passthrough, one encode).
//!
//! Participants speak and hear Opus by default; [`Mixer::set_codecs`] makes one a G.711 leg.
//! While a room has any G.711 participant, lone-talker and pair passthrough are off (a phone
//! cannot decode Opus packets, nor a browser G.711 ones), and each tick's shared mix is
//! encoded **once per codec** its listeners use (Opus once, PCMU once, PCMA once), never once
//! per listener; a talker's mix-minus is encoded in its own codec.

pub mod codec;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod limiter;
#[allow(clippy::module_inception)]
pub mod mixer;
pub mod ogg;
pub mod opus_toc;
pub mod talker;
pub mod transcode_clock;

#[cfg(test)]
pub(crate) mod tests;

pub use codec::{CodecError, EncoderSettings, OutputChannels};
pub use jitter::{AudioLevel, JitterConfig, JitterStats, PacketDrop};
pub use mixer::{MixMode, Mixer, MixerStats, ParticipantStats, TAP_FRAME_SAMPLES};
pub use ogg::{OggError, OggOpusReader, OggOpusWriter};
pub use opus_toc::{FRAME_SAMPLES, TocError};
pub use talker::TalkerConfig;

/// The codec a participant sends or receives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AudioCodec {
    #[default]
    Opus,
    /// G.711 µ-law, 8 kHz, 20 ms frames of 160 bytes.
    Pcmu,
    /// G.711 A-law, 8 kHz, 20 ms frames of 160 bytes.
    Pcma,
    /// G.722, 16 kHz audio on an 8 kHz RTP clock, 20 ms frames of 160 bytes (`g722`).
    G722,
}

impl AudioCodec {
    /// The G.711 law of a phone codec (`None` for Opus).
    pub fn g711(self) -> Option<g711::Law> {
        match self {
            AudioCodec::Opus | AudioCodec::G722 => None,
            AudioCodec::Pcmu => Some(g711::Law::Mu),
            AudioCodec::Pcma => Some(g711::Law::A),
        }
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn frame_ticks(self) -> u32 {
        match self {
            AudioCodec::Opus => FRAME_SAMPLES as u32,
            AudioCodec::Pcmu | AudioCodec::Pcma => g711::G711_FRAME_BYTES as u32,
            AudioCodec::G722 => g722::G722_FRAME_TICKS,
        }
    }
}

/// One parsed RTP audio packet handed to the mixer by the transport plane.
#[derive(Debug, Clone, Copy)]
pub struct RtpAudioIn<'a> {
    pub seq: u16,
    pub timestamp: u32,
    /// RFC 6464 audio level: (level in -dBov, voice-activity flag), when the sender has it.
    pub audio_level: Option<AudioLevel>,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// Handle of a participant inside one mixer (index plus generation, so a stale handle of
/// a removed participant is rejected instead of reaching its successor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MixerInput {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Room mixer configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerConfig {
    pub talkers: TalkerConfig,
    pub jitter: JitterConfig,
    /// Encoder of the shared mix every listener receives (and the recording tap hears).
    pub encoder: EncoderSettings,
    /// Encoders of the talkers' mix-minus streams. Cheaper by default: each is heard by one
    /// person who is talking over it, and there are up to K of them per tick.
    pub talker_encoder: EncoderSettings,
    pub output_channels: OutputChannels,
    /// With exactly one talker, forward its packets to listeners instead of re-encoding.
    pub passthrough: bool,
    /// With exactly two talkers, give each the other's packets instead of encoding.
    pub pair_passthrough: bool,
    /// Minimum spacing of active-speaker updates.
    pub speaker_update_interval_ms: u32,
    /// Packet-size fallback VAD: 20 ms packets smaller than this are background noise.
    pub fallback_quiet_bytes: usize,
    /// Upper bound on participants in one mixer.
    pub max_participants: usize,
    /// Silence packets (lone talker, idle room) are repeated this often, like Opus DTX.
    pub silence_repeat_ticks: u32,
    /// How many silence packets an Opus stream gets at the DTX cadence
    /// (`silence_repeat_ticks`) after it falls silent; the last one is an Opus DTX frame
    /// (≤ 2 bytes), so a WebRTC receiver's NetEq treats the pause that follows as DTX comfort
    /// noise, as between a DTX sender's updates. The repeats cover the loss of one of them.
    pub silence_repeats: u32,
    /// After those, an Opus stream that stays silent gets one DTX frame this often (ticks;
    /// `u32::MAX`: never): a keep-alive for receivers that watch for RTP (an SBC's media
    /// timeout is 30–60 s). Phone legs in G.711/G.722 get a frame every tick regardless.
    pub silence_keepalive_ticks: u32,
    /// A frame is *quiet* when its RFC 6464 level has the voice flag off and is at or below
    /// this many −dBov (a browser without DTX marks its background noise so), or when nothing
    /// was sent (DTX).
    pub quiet_dbov: u8,
    /// A selected talker whose last this-many frames were all quiet is left out of the mix
    /// (and out of the mode choice) until it sends a frame that is not: it keeps its place
    /// among the active speakers for the hang-over, but a room whose other talkers are quiet
    /// passes the one audible talker's packets through instead of decoding and encoding
    /// (`u32::MAX`: never).
    pub quiet_release_frames: u32,
    /// Skip the ticks of a silent room that would send nothing, in O(1) each, and catch its
    /// participants up when something happens (`mixer/mixer/rest.rs`). The output is the same
    /// packet for packet; `false` runs every tick in full (the tests compare both).
    pub rest_when_silent: bool,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            talkers: TalkerConfig::default(),
            jitter: JitterConfig::default(),
            encoder: EncoderSettings::default(),
            talker_encoder: EncoderSettings { complexity: 1, ..EncoderSettings::default() },
            output_channels: OutputChannels::Mono,
            passthrough: true,
            pair_passthrough: true,
            speaker_update_interval_ms: 300,
            fallback_quiet_bytes: 20,
            max_participants: 2_000,
            silence_repeat_ticks: 20,
            silence_repeats: 3,
            silence_keepalive_ticks: 250,
            quiet_dbov: 60,
            quiet_release_frames: 5,
            rest_when_silent: true,
        }
    }
}

/// Errors from mixer commands and packet input. Packet errors are also counted.
#[derive(Debug, thiserror::Error)]
pub enum MixerError {
    #[error("the mixer is full ({0} participants)")]
    Full(usize),
    #[error("unknown or removed mixer input")]
    UnknownInput,
    #[error("talker count must be between 1 and 16, got {0}")]
    InvalidTalkerCount(usize),
    #[error("invalid Opus payload: {0}")]
    InvalidPayload(#[from] TocError),
    #[error("packet dropped: {0}")]
    Dropped(#[from] PacketDrop),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// What produced an output payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixPacketKind {
    /// The room mix, encoded once and shared by every listener.
    SharedMix,
    /// A talker's own mix of the other talkers.
    MixMinus,
    /// The lone talker's own packet, forwarded without decode or encode.
    Passthrough,
    /// A pre-encoded silence frame.
    Silence,
    /// A listener's own stream: its conversation plus audio addressed to it (playTo, music on
    /// hold), or that audio alone while it is held.
    Personal,
}

/// Where a payload sits in [`MixOutputs`]' byte arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadRef {
    start: u32,
    len: u32,
}

/// One packet to send to one participant this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixPacket {
    pub to: MixerInput,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub kind: MixPacketKind,
    pub payload: PayloadRef,
}

/// Everything one tick produces. Reuse one instance across ticks: its buffers are kept.
#[derive(Debug, Default)]
pub struct MixOutputs {
    bytes: Vec<u8>,
    packets: Vec<MixPacket>,
    speakers: Vec<MixerInput>,
    speakers_changed: bool,
    recording: Option<PayloadRef>,
    /// Per-source tap frames of this tick: (participant, start in `tap_pcm`).
    taps: Vec<(MixerInput, u32)>,
    tap_pcm: Vec<i16>,
    tap_samples: usize,
}

impl MixOutputs {
    pub fn new() -> Self {
        Self { bytes: Vec::with_capacity(32 * 1024), ..Self::default() }
    }

    /// Packets to send this tick, one per receiving participant at most.
    pub fn packets(&self) -> &[MixPacket] {
        &self.packets
    }

    /// The Opus payload of `packet` (listeners of the shared mix all point at the same bytes).
    pub fn payload(&self, payload: PayloadRef) -> &[u8] {
        &self.bytes[payload.start as usize..(payload.start + payload.len) as usize]
    }

    /// The current active speakers, loudest first, when they changed this tick.
    pub fn active_speakers(&self) -> Option<&[MixerInput]> {
        self.speakers_changed.then_some(&self.speakers[..])
    }

    /// The room mix of this tick for the recording tap (20 ms Opus), when the tap is on.
    pub fn recording(&self) -> Option<&[u8]> {
        self.recording.map(|r| self.payload(r))
    }

    /// Each tapped participant's decoded 20 ms of this tick (48 kHz, the mix's channel layout,
    /// interleaved), while [`Mixer::set_source_taps`] is on. Participants that sent nothing
    /// to play this tick, muted, held and addressed ones are absent.
    pub fn source_frames(&self) -> impl Iterator<Item = (MixerInput, &[i16])> + '_ {
        self.taps.iter().map(|&(input, start)| {
            let start = start as usize;
            (input, &self.tap_pcm[start..start + self.tap_samples])
        })
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.packets.clear();
        self.speakers_changed = false;
        self.recording = None;
        self.taps.clear();
        self.tap_pcm.clear();
    }

    /// A zeroed frame of `samples` for `input`'s tap (the arena keeps its capacity).
    fn tap_frame(&mut self, input: MixerInput, samples: usize) -> &mut [i16] {
        let start = self.tap_pcm.len();
        self.tap_pcm.resize(start + samples, 0);
        self.taps.push((input, start as u32));
        self.tap_samples = samples;
        &mut self.tap_pcm[start..]
    }

    /// Takes back the last [`Self::tap_frame`] (nothing was decoded into it).
    fn drop_tap_frame(&mut self, samples: usize) {
        self.taps.pop();
        self.tap_pcm.truncate(self.tap_pcm.len() - samples);
    }

    fn push_bytes(&mut self, data: &[u8]) -> PayloadRef {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        PayloadRef { start, len: data.len() as u32 }
    }

    /// Encodes straight into the arena with `encode(buffer) -> written`.
    fn encode_into<E>(&mut self, encode: impl FnOnce(&mut [u8]) -> Result<usize, E>) -> Result<PayloadRef, E> {
        let start = self.bytes.len();
        self.bytes.resize(start + jitter::MAX_PAYLOAD, 0);
        match encode(&mut self.bytes[start..]) {
            Ok(len) => {
                self.bytes.truncate(start + len);
                Ok(PayloadRef { start: start as u32, len: len as u32 })
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }
}
