//! The room [`Mixer`]: participants, the per-tick playout → selection → mix/encode pipeline,
//! mode changes between silence, passthrough and mixed output, and active-speaker updates.
//!
//! Mode per tick: no talker → silence (a silence packet every `silence_repeat_ticks`, the third
//! an Opus DTX frame, then a DTX frame every `silence_keepalive_ticks`: `MixerConfig`);
//! one talker → passthrough (listeners get the talker's packet, re-sequenced; the talker
//! gets silence); two or more → mixed (decode each talker, sum in i32, encode the shared
//! mix once for every listener and one mix-minus per talker; with exactly two talkers each
//! gets the other's own packets instead, so only the listeners' mix is encoded). "Talker" here
//! is a selected talker that is not released for quiet (`MixerConfig::quiet_release_frames`):
//! one whose recent frames were all noise or nothing counts as no talker. Switching streams under a
//! listener's decoder is made click-free by fading: a talker entering the mix fades in
//! over the first frame (its decoder starts cold), and when mixed output ends the last
//! mixed frame fades every talker out so the encoded stream reaches silence inside that
//! packet (the fade finishes `lookahead` samples early) before passthrough resumes.

use std::time::{Duration, Instant};

use opus::Encoder;

use super::codec::new_decoder;
use super::codec::{CodecError, CodecSlot, dtx_packet, new_encoder, silence_packet};
use super::g711::{self, G711_FRAME_BYTES, Law};
use super::g722::{G722_FRAME_BYTES, G722Input, G722Output};
use super::jitter::{AudioLevel, JitterBuffer, JitterStats, Playout};
use super::limiter::{Fade, accumulate, apply_fade, limit_into};
use super::opus_toc::{DTX_MAX_BYTES, FRAME_SAMPLES, TocError, check_twenty_ms, level_from_size};
use super::talker::{Activity, ActivitySlot, select_talkers};
use super::{
    AudioCodec, MixOutputs, MixPacket, MixPacketKind, MixerConfig, MixerError, MixerInput, PayloadRef, RtpAudioIn,
};

mod addressed;
mod outputs;
mod rest;

pub use addressed::TAP_FRAME_SAMPLES;

/// Per-participant counters (input side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParticipantStats {
    pub jitter: JitterStats,
    pub invalid_packets: u64,
    pub decode_errors: u64,
    pub fec_recovered: u64,
    pub concealed: u64,
}

/// Room-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixerStats {
    pub ticks: u64,
    pub decodes: u64,
    pub shared_encodes: u64,
    pub mix_minus_encodes: u64,
    pub passthrough_packets: u64,
    pub silence_packets: u64,
    pub encode_errors: u64,
    /// Talkers selected while every codec slot was busy (not mixed that tick).
    pub codec_slots_exhausted: u64,
    /// Listeners' own streams encoded because audio was addressed to them (playTo, hold).
    pub personal_encodes: u64,
    /// Frames decoded for the per-source taps.
    pub tap_decodes: u64,
    /// Encoder state resets (the shared mix starting or restarting — its first start makes the
    /// encoder —, a talker's mix-minus starting).
    pub encoder_resets: u64,
    /// Ticks of a silent room skipped in O(1) (`mixer/mixer/rest.rs`); counted in `ticks` too.
    pub resting_ticks: u64,
}

/// What the room sends this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixMode {
    Silence,
    Passthrough(MixerInput),
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Silence,
    Passthrough(usize),
    Mixed,
}

#[derive(Debug, Clone, Copy)]
struct OutputStream {
    seq: u16,
    timestamp: u32,
    sent_last_tick: bool,
    sent_this_tick: bool,
    silence_countdown: u32,
    /// Silence packets sent since the stream last carried anything else.
    silence_run: u32,
}

#[derive(Debug)]
struct Participant {
    jitter: JitterBuffer,
    activity: Activity,
    playout: Playout,
    last_level: Option<AudioLevel>,
    /// Smallest recent packet size: the sender's noise floor for the size-based VAD.
    size_floor: f32,
    /// Consecutive quiet frames (see [`MixerConfig::quiet_dbov`]).
    quiet_run: u32,
    is_member: bool,
    output: OutputStream,
    stats: ParticipantStats,
    /// What it sends (decoded as) and what it hears (encoded as).
    input_codec: AudioCodec,
    output_codec: AudioCodec,
    /// G.711 input: the last 8 kHz sample of the previous frame (upsampler history).
    upsample_prev: i16,
    /// G.722 input: the phone's decoder; G.722 output: its own encoder (mix-minus, personal).
    g722_in: Option<Box<G722Input>>,
    g722_out: Option<Box<G722Output>>,
    /// Contributes nothing to anyone's mix (Call Automation mute).
    muted: bool,
    /// On hold: contributes nothing and hears only audio addressed to it (music on hold).
    held: bool,
    /// An addressed source (playTo, music on hold): heard only by its listeners, never a talker.
    addressed: Option<Box<addressed::Addressed>>,
    /// What sources addressed to this participant add to its mix this tick.
    personal: Option<Box<addressed::Personal>>,
    /// The per-source tap's decoder (unmixed recording), while taps are on.
    tap_decoder: Option<Box<opus::Decoder>>,
}

impl Participant {
    /// Its audio goes into the mix this tick: a selected talker not released for quiet (fewer
    /// than `release` quiet frames in a row, [`MixerConfig::quiet_release_frames`]).
    fn mixes(&self, release: u32) -> bool {
        self.activity.selected && self.quiet_run < release
    }
}

/// Payloads of this tick shared by every listener of one codec.
#[derive(Debug, Clone, Copy, Default)]
struct SharedPayloads {
    opus: Option<PayloadRef>,
    pcmu: Option<PayloadRef>,
    pcma: Option<PayloadRef>,
    g722: Option<PayloadRef>,
}

impl SharedPayloads {
    fn get(&self, codec: AudioCodec) -> Option<PayloadRef> {
        match codec {
            AudioCodec::Opus => self.opus,
            AudioCodec::Pcmu => self.pcmu,
            AudioCodec::Pcma => self.pcma,
            AudioCodec::G722 => self.g722,
        }
    }

    fn slot(&mut self, codec: AudioCodec) -> &mut Option<PayloadRef> {
        match codec {
            AudioCodec::Opus => &mut self.opus,
            AudioCodec::Pcmu => &mut self.pcmu,
            AudioCodec::Pcma => &mut self.pcma,
            AudioCodec::G722 => &mut self.g722,
        }
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    participant: Option<Participant>,
}

impl ActivitySlot for Slot {
    fn activity(&self) -> Option<&Activity> {
        self.participant.as_ref().map(|p| &p.activity)
    }
    fn activity_mut(&mut self) -> Option<&mut Activity> {
        self.participant.as_mut().map(|p| &mut p.activity)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Entering,
    Steady,
    Leaving,
}

/// A decoded talker: its participant (None once removed: it fades out on PLC) and codec slot.
#[derive(Debug, Clone, Copy)]
struct Member {
    participant: Option<usize>,
    codec: usize,
    phase: Phase,
    /// Last tick this talker got the other talker's raw packets (pair passthrough).
    raw_last_tick: bool,
}

/// The audio mixer of one room. See the module docs for the per-tick pipeline.
pub struct Mixer {
    config: MixerConfig,
    epoch: Instant,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    active: usize,
    /// Talkers' codec slots, made on first need (at most 2·K).
    codecs: Vec<CodecSlot>,
    members: Vec<Member>,
    /// The shared mix's encoder, made the first time the room mixes.
    shared_encoder: Option<Encoder>,
    sum: Vec<i32>,
    out_pcm: Vec<i16>,
    silence: Vec<u8>,
    /// An Opus DTX frame: the last silence packet before a stream pauses, and its keep-alive.
    dtx_frame: Vec<u8>,
    lookahead: usize,
    mode: Mode,
    recording: bool,
    speakers_pending: bool,
    last_speaker_update: Option<i64>,
    rng: u64,
    stats: MixerStats,
    /// Participants that send or hear G.711 (passthrough is off while there are any).
    g711_participants: usize,
    /// G.711 frames of silence (µ-law, A-law), sent every tick: phone legs have no DTX.
    g711_silence: [[u8; G711_FRAME_BYTES]; 2],
    /// The shared mix's G.722 stream (one encoder state for all its listeners), and a frame
    /// of encoded silence.
    shared_g722: Box<G722Output>,
    g722_silence: [u8; G722_FRAME_BYTES],
    /// Scratch accumulator of one listener's personal mix (conversation + addressed audio).
    scratch: Vec<i32>,
    /// This tick, a listener that hears the conversation also hears addressed audio: its
    /// conversation must be available as PCM, so passthrough is off.
    personal_mixing: bool,
    /// Per-source taps on: every unmuted participant's decoded frame goes out each tick.
    taps: bool,
    /// Ticks skipped while the room is silent (`rest.rs`).
    rest: rest::Rest,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer").field("participants", &self.active).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Mixer {
    /// Creates a room mixer; `now` is the epoch of its virtual clock.
    pub fn new(now: Instant, config: MixerConfig) -> Result<Self, MixerError> {
        let k = config.talkers.max_talkers;
        if !(1..=16).contains(&k) {
            return Err(MixerError::InvalidTalkerCount(k));
        }
        let channels = config.output_channels;
        // The codec slots and the shared encoder are made when the room first mixes; this
        // encoder only tells the lookahead the fades need.
        let mut probe = new_encoder(&config.encoder, channels)?;
        let lookahead = probe.get_lookahead().map_err(super::CodecError)?.clamp(0, 480) as usize;
        drop(probe);
        let samples = FRAME_SAMPLES * channels.count();
        // initial RTP sequence numbers/timestamps must be unpredictable: seed from the
        // process' random hash keys (no clock read)
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        };
        let silence = silence_packet(&config.encoder, channels)?;
        Ok(Self {
            dtx_frame: dtx_packet(&config.encoder, channels)?.unwrap_or_else(|| silence.clone()),
            silence,
            config,
            epoch: now,
            slots: Vec::new(),
            free_slots: Vec::new(),
            active: 0,
            codecs: Vec::with_capacity(2 * k),
            members: Vec::with_capacity(2 * k),
            shared_encoder: None,
            sum: vec![0; samples],
            out_pcm: vec![0; samples],
            lookahead,
            mode: Mode::Silence,
            recording: false,
            speakers_pending: false,
            last_speaker_update: None,
            rng: seed | 1,
            stats: MixerStats::default(),
            g711_participants: 0,
            g711_silence: [[Law::Mu.silence_byte(); G711_FRAME_BYTES], [Law::A.silence_byte(); G711_FRAME_BYTES]],
            shared_g722: Box::default(),
            g722_silence: G722Output::silence_frame(),
            scratch: vec![0; samples],
            personal_mixing: false,
            taps: false,
            rest: rest::Rest::default(),
        })
    }

    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    pub fn participant_count(&self) -> usize {
        self.active
    }

    pub fn stats(&self) -> MixerStats {
        self.stats
    }

    /// Turns the recording tap on or off: when on, every tick exposes the room mix in
    /// [`MixOutputs::recording`].
    pub fn set_recording_tap(&mut self, on: bool) {
        self.wake();
        self.recording = on;
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: unpredictable-enough initial RTP sequence numbers and timestamps
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Adds a participant (it both sends and receives audio).
    pub fn add_participant(&mut self) -> Result<MixerInput, MixerError> {
        self.wake();
        if self.active >= self.config.max_participants {
            return Err(MixerError::Full(self.config.max_participants));
        }
        let random = self.next_random();
        let tap_decoder = self.new_tap_decoder()?;
        let participant = Participant {
            jitter: JitterBuffer::new(self.config.jitter),
            activity: Activity::default(),
            playout: Playout::Silent,
            last_level: None,
            size_floor: 0.0,
            quiet_run: 0,
            is_member: false,
            output: OutputStream {
                seq: random as u16,
                timestamp: (random >> 32) as u32,
                sent_last_tick: false,
                sent_this_tick: false,
                silence_countdown: 0,
                silence_run: 0,
            },
            stats: ParticipantStats::default(),
            input_codec: AudioCodec::Opus,
            output_codec: AudioCodec::Opus,
            upsample_prev: 0,
            g722_in: None,
            g722_out: None,
            muted: false,
            held: false,
            addressed: None,
            personal: None,
            tap_decoder,
        };
        let index = match self.free_slots.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.generation = slot.generation.wrapping_add(1);
                slot.participant = Some(participant);
                index
            }
            None => {
                self.slots.push(Slot { generation: 0, participant: Some(participant) });
                (self.slots.len() - 1) as u32
            }
        };
        self.active += 1;
        Ok(MixerInput { index, generation: self.slots[index as usize].generation })
    }

    /// Sets the codec a participant sends in and the one it hears in (both Opus when added).
    /// A G.711 input is decoded into the mix (8 → 48 kHz); a G.711 output receives the mix
    /// encoded once per tick for all listeners of that codec.
    pub fn set_codecs(&mut self, input: MixerInput, sends: AudioCodec, hears: AudioCodec) -> Result<(), MixerError> {
        self.wake();
        let jitter = self.config.jitter;
        let p = self.participant_mut(input)?;
        let was = p.input_codec != AudioCodec::Opus || p.output_codec != AudioCodec::Opus;
        if p.input_codec != sends {
            p.jitter = JitterBuffer::new(jitter);
            p.upsample_prev = 0;
            p.g722_in = (sends == AudioCodec::G722).then(Box::default);
        }
        if p.output_codec != hears {
            p.g722_out = (hears == AudioCodec::G722).then(Box::default);
        }
        p.input_codec = sends;
        p.output_codec = hears;
        let is = sends != AudioCodec::Opus || hears != AudioCodec::Opus;
        match (was, is) {
            (false, true) => self.g711_participants += 1,
            (true, false) => self.g711_participants -= 1,
            _ => {}
        }
        Ok(())
    }

    /// Removes a participant. If it was talking, its voice fades out on concealment.
    pub fn remove_participant(&mut self, input: MixerInput) -> Result<(), MixerError> {
        self.wake();
        let p = self.participant(input)?;
        if p.input_codec != AudioCodec::Opus || p.output_codec != AudioCodec::Opus {
            self.g711_participants -= 1;
        }
        let index = input.index as usize;
        self.slots[index].participant = None;
        for member in self.members.iter_mut().filter(|m| m.participant == Some(index)) {
            member.participant = None;
            member.phase = Phase::Leaving;
        }
        if self.mode == Mode::Passthrough(index) {
            self.mode = Mode::Silence;
        }
        self.free_slots.push(input.index);
        self.active -= 1;
        self.speakers_pending = true;
        Ok(())
    }

    fn participant(&self, input: MixerInput) -> Result<&Participant, MixerError> {
        match self.slots.get(input.index as usize) {
            Some(Slot { generation, participant: Some(p) }) if *generation == input.generation => Ok(p),
            _ => Err(MixerError::UnknownInput),
        }
    }

    fn participant_mut(&mut self, input: MixerInput) -> Result<&mut Participant, MixerError> {
        match self.slots.get_mut(input.index as usize) {
            Some(Slot { generation, participant: Some(p) }) if *generation == input.generation => Ok(p),
            _ => Err(MixerError::UnknownInput),
        }
    }

    fn input_at(&self, index: usize) -> MixerInput {
        MixerInput { index: index as u32, generation: self.slots[index].generation }
    }

    /// (A resting room's jitter counters lag by the ticks it skipped until it wakes: `rest.rs`.)
    pub fn participant_stats(&self, input: MixerInput) -> Result<ParticipantStats, MixerError> {
        self.participant(input).map(|p| ParticipantStats { jitter: p.jitter.stats(), ..p.stats })
    }

    /// Audio buffered for `input` ahead of its playout point.
    pub fn buffered(&self, input: MixerInput) -> Result<Duration, MixerError> {
        let samples = self.participant(input)?.jitter.buffered_samples();
        Ok(Duration::from_micros(samples as u64 * 1000 / 48))
    }

    /// How long `input`'s packet played in the last tick waited in the jitter buffer.
    pub fn last_playout_delay(&self, input: MixerInput) -> Result<Option<Duration>, MixerError> {
        let delay = self.participant(input)?.jitter.last_playout_delay();
        Ok(delay.map(|s| Duration::from_micros(s.max(0) as u64 * 1000 / 48)))
    }

    /// The currently selected talkers.
    pub fn talkers(&self) -> impl Iterator<Item = MixerInput> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.participant.as_ref().filter(|p| p.activity.selected).map(|_| self.input_at(i)))
    }

    pub fn mode(&self) -> MixMode {
        match self.mode {
            Mode::Silence => MixMode::Silence,
            Mode::Passthrough(index) => MixMode::Passthrough(self.input_at(index)),
            Mode::Mixed => MixMode::Mixed,
        }
    }

    fn samples_at(&self, now: Instant) -> i64 {
        (now.saturating_duration_since(self.epoch).as_micros() as i64) * 48 / 1000
    }

    /// Hands one received audio packet to the mixer. Invalid or unusable packets are
    /// counted and rejected with the reason; nothing else changes.
    pub fn push(&mut self, now: Instant, input: MixerInput, packet: &RtpAudioIn<'_>) -> Result<(), MixerError> {
        self.wake();
        let now = self.samples_at(now);
        let participant = self.participant_mut(input)?;
        let (timestamp, level) = match participant.input_codec.g711() {
            None if participant.input_codec == AudioCodec::G722 => {
                if packet.payload.len() != G722_FRAME_BYTES {
                    participant.stats.invalid_packets += 1;
                    let samples = packet.payload.len() * 2 * super::g722::UPSAMPLE;
                    return Err(TocError::UnsupportedDuration(samples).into());
                }
                // The level of the phone's last decoded frame (G.722 must be decoded in
                // playout order, so it lags a frame); its 8 kHz clock as in G.711.
                let level = participant.g722_in.as_ref().map(|d| (d.level(), d.level() < 127));
                (packet.timestamp.wrapping_mul(g711::UPSAMPLE as u32), packet.audio_level.or(level))
            }
            None => {
                if let Err(e) = check_twenty_ms(packet.payload) {
                    participant.stats.invalid_packets += 1;
                    return Err(e.into());
                }
                (packet.timestamp, packet.audio_level)
            }
            Some(law) => {
                if packet.payload.len() != G711_FRAME_BYTES {
                    participant.stats.invalid_packets += 1;
                    let samples = packet.payload.len() * g711::UPSAMPLE;
                    return Err(TocError::UnsupportedDuration(samples).into());
                }
                // 8 kHz timestamps in the 48 kHz units the jitter buffer counts in (the
                // multiplication wraps consistently: differences are kept modulo 2^32).
                let level = packet.audio_level.or(Some((g711::frame_level(law, packet.payload), true)));
                (packet.timestamp.wrapping_mul(g711::UPSAMPLE as u32), level)
            }
        };
        participant.jitter.push(now, packet.seq, timestamp, level, packet.payload)?;
        Ok(())
    }

    /// Runs one 20 ms mixing step at `now` and fills `out` (cleared first).
    pub fn tick(&mut self, now: Instant, out: &mut MixOutputs) {
        let now = self.samples_at(now);
        if self.skip_resting_tick(now, out) {
            return;
        }
        self.wake();
        out.clear();
        if out.packets.capacity() < self.active {
            out.packets.reserve(self.active);
        }
        self.stats.ticks += 1;
        self.play_and_observe(now);
        self.advance_g722_inputs();
        self.decode_addressed();
        if self.taps {
            self.decode_taps(out);
        }
        if select_talkers(&self.config.talkers, &mut self.slots).changed {
            self.speakers_pending = true;
        }
        let target = self.target_mode();
        let was_mixed = self.mode == Mode::Mixed;
        self.update_members(target, was_mixed);
        let mut silence_ref = None;
        let mixed = target == Mode::Mixed || was_mixed;
        if mixed {
            self.mix_tick(out);
        } else if let Mode::Passthrough(talker) = target {
            self.passthrough_tick(talker, out, &mut silence_ref);
        }
        self.mode = target;
        self.personal_tick(out, mixed);
        self.finish_outputs(out, &mut silence_ref);
        self.update_speakers(now, out);
        self.settle(now);
    }

    fn play_and_observe(&mut self, now: i64) {
        let talkers = self.config.talkers;
        let quiet_bytes = self.config.fallback_quiet_bytes;
        let quiet_dbov = self.config.quiet_dbov;
        for p in self.slots.iter_mut().filter_map(|s| s.participant.as_mut()) {
            p.playout = p.jitter.next_frame(now);
            let level = match p.playout {
                Playout::Packet { slot } => {
                    let len = p.jitter.payload(slot).len();
                    let level = match p.jitter.level(slot) {
                        Some(level) => Some(level),
                        None => {
                            // no RFC 6464 level: judge by size against the sender's own floor
                            // (smallest recent non-DTX packet, starting at the configured
                            // minimum), which drops at once and creeps up slowly (doubling
                            // in about 70 s of packets without a pause)
                            if len > DTX_MAX_BYTES {
                                let floor =
                                    if p.size_floor == 0.0 { quiet_bytes as f32 } else { p.size_floor * 1.0002 };
                                p.size_floor = floor.min(len as f32);
                            }
                            let quiet = quiet_bytes.max((2.0 * p.size_floor) as usize);
                            Some((level_from_size(len, quiet), true))
                        }
                    };
                    p.last_level = level;
                    level
                }
                Playout::Lost { .. } => p.last_level,
                Playout::Silent => {
                    p.last_level = None;
                    None
                }
            };
            // Muted, held and addressed inputs are never talkers of the conversation.
            let level = if p.is_silenced() { None } else { level };
            let quiet = level.is_none_or(|(dbov, voice)| !voice && dbov >= quiet_dbov);
            p.quiet_run = if quiet { p.quiet_run.saturating_add(1) } else { 0 };
            p.activity.observe(&talkers, level);
        }
    }

    fn target_mode(&self) -> Mode {
        let release = self.config.quiet_release_frames;
        let mut selected =
            self.slots.iter().enumerate().filter(|(_, s)| s.participant.as_ref().is_some_and(|p| p.mixes(release)));
        match (selected.next(), selected.next()) {
            (None, _) => Mode::Silence,
            (Some((index, _)), None)
                if self.config.passthrough && self.g711_participants == 0 && !self.personal_mixing =>
            {
                Mode::Passthrough(index)
            }
            _ => Mode::Mixed,
        }
    }

    fn update_members(&mut self, target: Mode, was_mixed: bool) {
        if target != Mode::Mixed {
            for member in &mut self.members {
                member.phase = Phase::Leaving;
            }
            return;
        }
        if !was_mixed {
            // The shared stream restarts under the listeners' decoders: start it clean (its
            // encoder is made the first time the room mixes at all).
            let started = match self.shared_encoder.as_mut() {
                Some(encoder) => encoder.reset_state().map_err(CodecError),
                None => new_encoder(&self.config.encoder, self.config.output_channels)
                    .map(|encoder| self.shared_encoder = Some(encoder)),
            };
            match started {
                Ok(()) => self.stats.encoder_resets += 1,
                Err(_) => self.stats.encode_errors += 1,
            }
        }
        let release = self.config.quiet_release_frames;
        for member in &mut self.members {
            let still_mixed =
                member.participant.and_then(|i| self.slots[i].participant.as_ref()).is_some_and(|p| p.mixes(release));
            if !still_mixed {
                member.phase = Phase::Leaving;
            }
        }
        for index in 0..self.slots.len() {
            let Some(p) = self.slots[index].participant.as_mut() else { continue };
            if !p.mixes(release) || p.is_member {
                continue;
            }
            // Codec slots are made as talkers first need them (up to 2·K): a room that never
            // mixes (one talker at a time: passthrough) holds no Opus decoder or encoder.
            let codec = match self.codecs.iter().position(|c| !c.in_use) {
                Some(codec) => codec,
                None if self.codecs.len() < 2 * self.config.talkers.max_talkers => {
                    match CodecSlot::new(&self.config.talker_encoder, self.config.output_channels) {
                        Ok(slot) => self.codecs.push(slot),
                        Err(_) => {
                            self.stats.encode_errors += 1;
                            continue;
                        }
                    }
                    self.codecs.len() - 1
                }
                None => {
                    self.stats.codec_slots_exhausted += 1;
                    continue;
                }
            };
            if self.codecs[codec].acquire().is_err() {
                self.stats.encode_errors += 1;
                continue;
            }
            p.is_member = true;
            self.members.push(Member { participant: Some(index), codec, phase: Phase::Entering, raw_last_tick: false });
        }
    }

    fn fade_for(&self, phase: Phase) -> Fade {
        match phase {
            Phase::Entering => Fade { from: 0.0, to: 1.0, length: FRAME_SAMPLES },
            Phase::Steady => Fade::UNITY,
            Phase::Leaving => Fade { from: 1.0, to: 0.0, length: FRAME_SAMPLES - self.lookahead },
        }
    }

    /// Every G.722 phone's frame is decoded each tick (see `G722Input::advance`).
    fn advance_g722_inputs(&mut self) {
        let (tick, channels) = (self.stats.ticks, self.config.output_channels.count());
        for p in self.slots.iter_mut().filter_map(|s| s.participant.as_mut()) {
            if let (Some(decoder), Playout::Packet { slot }) = (p.g722_in.as_deref_mut(), p.playout) {
                decoder.advance(tick, p.jitter.payload(slot), channels);
            }
        }
    }

    fn decode_members(&mut self) {
        let channels = self.config.output_channels.count();
        self.sum.fill(0);
        for m in 0..self.members.len() {
            let member = self.members[m];
            let fade = self.fade_for(member.phase);
            let codec = &mut self.codecs[member.codec];
            let participant = member.participant.and_then(|i| self.slots[i].participant.as_mut());
            let mut participant = participant;
            if let Some(p) = participant.as_deref_mut()
                && let Some(decoder) = p.g722_in.as_deref_mut()
            {
                match p.playout {
                    Playout::Packet { slot } => {
                        decoder.decode_tick(self.stats.ticks, p.jitter.payload(slot), &mut codec.pcm, channels)
                    }
                    // Concealment as for G.711: the last frame again at half the level.
                    Playout::Lost { .. } => {
                        codec.pcm.iter_mut().for_each(|s| *s /= 2);
                        p.stats.concealed += 1;
                    }
                    Playout::Silent => codec.pcm.fill(0),
                }
                self.stats.decodes += 1;
                codec.contribution.fill(0);
                accumulate(&mut codec.contribution, &codec.pcm, channels, fade);
                for (acc, &c) in self.sum.iter_mut().zip(codec.contribution.iter()) {
                    *acc += c;
                }
                continue;
            }
            let law = participant.as_ref().and_then(|p| p.input_codec.g711());
            if let Some(law) = law
                && let Some(p) = participant.as_deref_mut()
            {
                match p.playout {
                    Playout::Packet { slot } => g711::decode_upsample(
                        law,
                        p.jitter.payload(slot),
                        &mut p.upsample_prev,
                        &mut codec.pcm,
                        channels,
                    ),
                    // Concealment: the last frame again at half the level (it decays to
                    // silence over a burst of losses).
                    Playout::Lost { .. } => {
                        codec.pcm.iter_mut().for_each(|s| *s /= 2);
                        p.stats.concealed += 1;
                    }
                    Playout::Silent => codec.pcm.fill(0),
                }
                self.stats.decodes += 1;
                codec.contribution.fill(0);
                accumulate(&mut codec.contribution, &codec.pcm, channels, fade);
                for (acc, &c) in self.sum.iter_mut().zip(codec.contribution.iter()) {
                    *acc += c;
                }
                continue;
            }
            let result = match participant.as_ref().map(|p| (p.playout, &p.jitter)) {
                None => codec.decoder.decode(&[], &mut codec.pcm, false),
                Some((Playout::Packet { slot }, jitter)) => {
                    codec.decoder.decode(jitter.payload(slot), &mut codec.pcm, false)
                }
                Some((Playout::Lost { fec_slot: Some(slot) }, jitter)) => {
                    codec.decoder.decode(jitter.payload(slot), &mut codec.pcm, true)
                }
                Some((Playout::Lost { fec_slot: None }, _)) => codec.decoder.decode(&[], &mut codec.pcm, false),
                Some((Playout::Silent, _)) => {
                    codec.pcm.fill(0);
                    Ok(FRAME_SAMPLES)
                }
            };
            self.stats.decodes += 1;
            if let Some(p) = participant {
                match (&result, p.playout) {
                    (Err(_), _) => p.stats.decode_errors += 1,
                    (Ok(_), Playout::Lost { fec_slot: Some(_) }) => p.stats.fec_recovered += 1,
                    (Ok(_), Playout::Lost { fec_slot: None }) => p.stats.concealed += 1,
                    _ => {}
                }
            }
            match result {
                Ok(samples) if samples >= FRAME_SAMPLES => {}
                Ok(samples) => codec.pcm[samples * channels..].fill(0),
                Err(_) => {
                    // corrupt payload: conceal instead
                    if codec.decoder.decode(&[], &mut codec.pcm, false).is_err() {
                        codec.pcm.fill(0);
                    }
                }
            }
            codec.contribution.fill(0);
            accumulate(&mut codec.contribution, &codec.pcm, channels, fade);
            for (acc, &c) in self.sum.iter_mut().zip(codec.contribution.iter()) {
                *acc += c;
            }
        }
    }
}
