//! libopus set-up for the mixer: encoder settings, the per-talker codec slots (a decoder,
//! an encoder and their frame buffers, allocated once per room), and the pre-encoded
//! silence packet sent to a lone talker and to idle rooms.

use opus::{Application, Bitrate, Channels, Decoder, Encoder, Signal};

use super::opus_toc::{DTX_MAX_BYTES, FRAME_SAMPLES};

/// Output channel layout of the mix (inputs of either layout are decoded into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputChannels {
    #[default]
    Mono,
    Stereo,
}

impl OutputChannels {
    pub fn count(self) -> usize {
        match self {
            OutputChannels::Mono => 1,
            OutputChannels::Stereo => 2,
        }
    }

    fn opus(self) -> Channels {
        match self {
            OutputChannels::Mono => Channels::Mono,
            OutputChannels::Stereo => Channels::Stereo,
        }
    }
}

/// Opus encoder settings used for every mix output of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub bitrate_bps: i32,
    /// libopus complexity 0..=10 (cost per encode measured in docs/mixer.md).
    pub complexity: i32,
    /// In-band FEC (LBRR) so receivers can recover single losses.
    pub inband_fec: bool,
    /// Expected loss the encoder provisions FEC for, in percent.
    pub expected_loss_percent: i32,
    pub dtx: bool,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self { bitrate_bps: 32_000, complexity: 5, inband_fec: true, expected_loss_percent: 5, dtx: false }
    }
}

/// libopus failed to create or configure a codec.
#[derive(Debug, thiserror::Error)]
#[error("Opus codec set-up failed: {0}")]
pub struct CodecError(#[from] pub opus::Error);

/// Creates an encoder configured with `settings` (VoIP application, 48 kHz, VBR).
pub fn new_encoder(settings: &EncoderSettings, channels: OutputChannels) -> Result<Encoder, CodecError> {
    let mut encoder = Encoder::new(48_000, channels.opus(), Application::Voip)?;
    encoder.set_bitrate(Bitrate::Bits(settings.bitrate_bps))?;
    encoder.set_complexity(settings.complexity.clamp(0, 10))?;
    encoder.set_inband_fec(settings.inband_fec)?;
    encoder.set_packet_loss_perc(settings.expected_loss_percent.clamp(0, 100))?;
    encoder.set_dtx(settings.dtx)?;
    encoder.set_vbr(true)?;
    // The mixer carries conversation: fix the mode decision to voice (SILK/hybrid, which
    // is also where in-band FEC exists) rather than letting the analysis flip modes.
    encoder.set_signal(Signal::Voice)?;
    if channels == OutputChannels::Stereo {
        // Receivers that play stereo streams in mono would cancel phase-inverted bands.
        encoder.set_phase_inversion_disabled(true)?;
    }
    Ok(encoder)
}

pub fn new_decoder(channels: OutputChannels) -> Result<Decoder, CodecError> {
    Ok(Decoder::new(48_000, channels.opus())?)
}

/// Encodes one frame of digital silence with a fresh encoder: a tiny, self-contained
/// packet any receiver decodes to silence.
pub fn silence_packet(settings: &EncoderSettings, channels: OutputChannels) -> Result<Vec<u8>, CodecError> {
    let mut encoder = new_encoder(settings, channels)?;
    let pcm = vec![0i16; FRAME_SAMPLES * channels.count()];
    let mut out = vec![0u8; 1500];
    let len = encoder.encode(&pcm, &mut out)?;
    out.truncate(len);
    Ok(out)
}

/// An Opus DTX frame (≤ 2 bytes, the TOC alone or with one byte): what a DTX encoder sends
/// every 400 ms while its input is silent. Made by feeding digital silence to an encoder with
/// DTX on until it starts DTX (libopus does after about 10 silent frames); `None` if it never
/// does within a second.
pub fn dtx_packet(settings: &EncoderSettings, channels: OutputChannels) -> Result<Option<Vec<u8>>, CodecError> {
    let mut encoder = new_encoder(&EncoderSettings { dtx: true, ..*settings }, channels)?;
    let pcm = vec![0i16; FRAME_SAMPLES * channels.count()];
    let mut out = vec![0u8; 1500];
    for _ in 0..50 {
        let len = encoder.encode(&pcm, &mut out)?;
        if (1..=DTX_MAX_BYTES).contains(&len) {
            out.truncate(len);
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// One talker's codec state: its decoder (input side) and encoder (its mix-minus output),
/// with frame buffers. A room makes up to 2·K of these as talkers first need them. The encoder
/// is made on the first mix-minus encode: a talker of a pair (pair passthrough) or a phone
/// never uses it, and an Opus encoder is most of a slot's ~60 KB.
pub struct CodecSlot {
    pub decoder: Decoder,
    encoder: Option<Encoder>,
    settings: EncoderSettings,
    channels: OutputChannels,
    /// Decoded frame of the talker (interleaved, output channels).
    pub pcm: Vec<i16>,
    /// The talker's faded contribution to the sum, kept for the mix-minus subtraction.
    pub contribution: Vec<i32>,
    pub in_use: bool,
    /// The encoder still holds a previous stream's state: reset it before its next encode
    /// ([`Self::fresh_encoder`]). Deferred because a talker of a pair (pair passthrough) gets
    /// the other's packets and never encodes, and a reset (plus the set-up the next encode then
    /// redoes) is a tenth of an encode's cost.
    encoder_stale: bool,
}

impl CodecSlot {
    pub fn new(settings: &EncoderSettings, channels: OutputChannels) -> Result<Self, CodecError> {
        let samples = FRAME_SAMPLES * channels.count();
        Ok(Self {
            decoder: new_decoder(channels)?,
            encoder: None,
            settings: *settings,
            channels,
            pcm: vec![0; samples],
            contribution: vec![0; samples],
            in_use: false,
            encoder_stale: false,
        })
    }

    /// Prepares the slot for a new talker: the decoder starts from a clean state now, the
    /// encoder before its first encode ([`Self::fresh_encoder`]).
    pub fn acquire(&mut self) -> Result<(), CodecError> {
        self.decoder.reset_state()?;
        self.encoder_stale = true;
        // G.711 concealment replays this frame: never a previous talker's.
        self.pcm.fill(0);
        self.in_use = true;
        Ok(())
    }
}

impl CodecSlot {
    /// Marks the encoder's stream as ended: the next [`Self::fresh_encoder`] starts it clean.
    pub fn restart_encoder(&mut self) {
        self.encoder_stale = true;
    }

    /// The encoder, made on first use or reset if its last stream ended; the flag is true when
    /// its stream starts clean here (made or reset).
    pub fn fresh_encoder(&mut self) -> Result<(&mut Encoder, bool), CodecError> {
        let stale = std::mem::replace(&mut self.encoder_stale, false);
        match &mut self.encoder {
            Some(encoder) => {
                if stale && let Err(e) = encoder.reset_state() {
                    self.encoder_stale = true;
                    return Err(e.into());
                }
                Ok((encoder, stale))
            }
            slot @ None => Ok((slot.insert(new_encoder(&self.settings, self.channels)?), true)),
        }
    }
}

impl std::fmt::Debug for CodecSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecSlot").field("in_use", &self.in_use).finish_non_exhaustive()
    }
}
