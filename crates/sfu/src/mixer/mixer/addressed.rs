//! Per-participant audio of a [`Mixer`] (Call Automation): mute (a participant contributes
//! nothing), hold (it contributes nothing and hears only what is addressed to it), addressed
//! sources (an input heard only by chosen listeners: `playTo`, music on hold) and the
//! per-source taps (each unmuted participant's decoded frame every tick, for unmixed
//! recording and streaming).
//!
//! An addressed source is never a talker: each tick its frame is decoded once (its own
//! decoder) and added to a **personal** accumulator of every listener it addresses. A
//! listener with personal audio gets its own stream that tick: its conversation (the shared
//! mix, its mix-minus as a talker, or nothing on hold) plus the personal sum, encoded by its
//! own encoder (a talker keeps its mix-minus encoder, so its stream stays continuous).
//! Listeners that hear the conversation need it as PCM, so passthrough is off while one of
//! them has personal audio (the same rule as for phone legs). Entering a personal stream
//! starts from a reset encoder with a fade-in; leaving it ends with one faded-out frame.
//! Everything here is allocated by the commands (`set_audience`, `set_source_taps`), never
//! per tick.

use super::outputs::emit;
use super::*;

/// Samples of one tap frame per channel (20 ms at 48 kHz).
pub const TAP_FRAME_SAMPLES: usize = FRAME_SAMPLES;

/// An addressed source: who hears it, and its decoder.
pub(super) struct Addressed {
    listeners: Vec<MixerInput>,
    decoder: opus::Decoder,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for Addressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addressed").field("listeners", &self.listeners).finish_non_exhaustive()
    }
}

/// A listener's personal mix state: what addressed sources add this tick, and its encoder.
pub(super) struct Personal {
    pub(super) sum: Vec<i32>,
    encoder: Encoder,
    /// Addressed audio reached this listener this tick / last tick.
    live: bool,
    was_live: bool,
}

impl Personal {
    /// No addressed audio this tick or the last: the listener hears the room like anyone.
    pub(super) fn is_idle(&self) -> bool {
        !self.live && !self.was_live
    }
}

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personal").field("live", &self.live).finish_non_exhaustive()
    }
}

impl Participant {
    /// Contributes nothing to the conversation this tick (muted, held or addressed).
    pub(super) fn is_silenced(&self) -> bool {
        self.muted || self.held || self.addressed.is_some()
    }

    /// Receives the shared stream (or passthrough) this tick: not held, and no personal
    /// stream running or ending.
    pub(super) fn hears_shared(&self) -> bool {
        !self.held && !self.personal.as_ref().is_some_and(|p| p.live || p.was_live)
    }

    /// The personal audio addressed to it this tick, if any.
    pub(super) fn personal_live(&self) -> Option<&Personal> {
        self.personal.as_deref().filter(|p| p.live)
    }
}

impl Mixer {
    /// Call Automation mute: `input` contributes nothing to anyone's mix while muted (its
    /// packets are still played out of its jitter buffer, so unmuting resumes cleanly); it
    /// still hears the conversation. Takes effect at the next tick.
    pub fn set_muted(&mut self, input: MixerInput, muted: bool) -> Result<(), MixerError> {
        self.wake();
        let p = self.participant_mut(input)?;
        p.muted = muted;
        self.silence_now(input)
    }

    /// Hold: `input` contributes nothing and hears only audio addressed to it (music on hold
    /// through [`Self::set_audience`]; silence when there is none). Unhold restores both.
    pub fn set_held(&mut self, input: MixerInput, held: bool) -> Result<(), MixerError> {
        self.wake();
        let p = self.participant_mut(input)?;
        p.held = held;
        self.silence_now(input)
    }

    /// Makes `source` an addressed input heard only by `listeners` (`Some`), or a normal
    /// input of the conversation again (`None`). Listeners that are gone later are skipped.
    /// Allocates the source's decoder and each new listener's encoder here, not per tick.
    pub fn set_audience(&mut self, source: MixerInput, listeners: Option<&[MixerInput]>) -> Result<(), MixerError> {
        self.wake();
        self.participant(source)?;
        let channels = self.config.output_channels;
        let samples = FRAME_SAMPLES * channels.count();
        let Some(listeners) = listeners else {
            self.participant_mut(source)?.addressed = None;
            return Ok(());
        };
        for &listener in listeners.iter().filter(|&&l| l != source) {
            let settings = self.config.encoder;
            let Ok(p) = self.participant_mut(listener) else { continue };
            if p.personal.is_none() {
                let encoder = new_encoder(&settings, channels)?;
                p.personal = Some(Box::new(Personal { sum: vec![0; samples], encoder, live: false, was_live: false }));
            }
        }
        let p = self.participant_mut(source)?;
        match p.addressed.as_mut() {
            Some(addressed) => {
                addressed.listeners.clear();
                addressed.listeners.extend_from_slice(listeners);
            }
            None => {
                let decoder = new_decoder(channels)?;
                let listeners = listeners.to_vec();
                p.addressed = Some(Box::new(Addressed { listeners, decoder, pcm: vec![0; samples] }));
            }
        }
        self.silence_now(source)
    }

    /// Per-source taps: while on, every tick puts each unmuted, non-addressed participant's
    /// decoded frame into [`MixOutputs::source_frames`] (participants with nothing to play
    /// that tick are left out). Allocates one decoder per participant here.
    pub fn set_source_taps(&mut self, on: bool) -> Result<(), MixerError> {
        self.wake();
        self.taps = on;
        let channels = self.config.output_channels;
        for p in self.slots.iter_mut().filter_map(|s| s.participant.as_mut()) {
            p.tap_decoder = if on { Some(Box::new(new_decoder(channels)?)) } else { None };
        }
        Ok(())
    }

    pub(super) fn new_tap_decoder(&self) -> Result<Option<Box<opus::Decoder>>, MixerError> {
        if !self.taps {
            return Ok(None);
        }
        Ok(Some(Box::new(new_decoder(self.config.output_channels)?)))
    }

    /// A silenced input leaves the talkers at once (no hang-over).
    fn silence_now(&mut self, input: MixerInput) -> Result<(), MixerError> {
        let p = self.participant_mut(input)?;
        if p.is_silenced() && p.activity.selected {
            p.activity.selected = false;
            p.activity.speech_run = 0;
            self.speakers_pending = true;
        }
        Ok(())
    }

    /// Decodes every addressed source that has a frame this tick into the personal sums of
    /// its listeners, and notes whether passthrough must be off.
    pub(super) fn decode_addressed(&mut self) {
        let channels = self.config.output_channels.count();
        for p in self.slots.iter_mut().filter_map(|s| s.participant.as_mut()) {
            if let Some(personal) = p.personal.as_deref_mut()
                && (personal.live || personal.was_live)
            {
                personal.sum.fill(0);
                personal.live = false;
            }
        }
        for index in 0..self.slots.len() {
            let Some(p) = self.slots[index].participant.as_mut() else { continue };
            let Some(mut addressed) = p.addressed.take() else { continue };
            let decoded = match p.playout {
                Playout::Packet { slot } => addressed.decoder.decode(p.jitter.payload(slot), &mut addressed.pcm, false),
                Playout::Lost { fec_slot: Some(slot) } => {
                    addressed.decoder.decode(p.jitter.payload(slot), &mut addressed.pcm, true)
                }
                Playout::Lost { fec_slot: None } => addressed.decoder.decode(&[], &mut addressed.pcm, false),
                Playout::Silent => Ok(0),
            };
            match decoded {
                Ok(samples) if samples > 0 => {
                    self.stats.decodes += 1;
                    addressed.pcm[samples.min(FRAME_SAMPLES) * channels..].fill(0);
                    for &listener in &addressed.listeners {
                        if listener.index as usize == index {
                            continue;
                        }
                        let Ok(l) = self.participant_mut(listener) else { continue };
                        let Some(personal) = l.personal.as_deref_mut() else { continue };
                        accumulate(&mut personal.sum, &addressed.pcm, channels, Fade::UNITY);
                        personal.live = true;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    if let Some(p) = self.slots[index].participant.as_mut() {
                        p.stats.decode_errors += 1;
                    }
                }
            }
            if let Some(p) = self.slots[index].participant.as_mut() {
                p.addressed = Some(addressed);
            }
        }
        self.personal_mixing = self
            .slots
            .iter()
            .filter_map(|s| s.participant.as_ref())
            .any(|p| !p.held && p.personal.as_ref().is_some_and(|l| l.live || l.was_live));
    }

    /// Sends each listener that has personal audio (or just lost it) its own stream, unless
    /// it already got one as a talker; `mixed`: `self.sum` holds this tick's conversation.
    pub(super) fn personal_tick(&mut self, out: &mut MixOutputs, mixed: bool) {
        let channels = self.config.output_channels.count();
        let fade_out = self.fade_for(Phase::Leaving);
        for index in 0..self.slots.len() {
            let input = self.input_at(index);
            let Some(p) = self.slots[index].participant.as_mut() else { continue };
            let Some(personal) = p.personal.as_deref_mut() else { continue };
            let (live, was_live) = (personal.live, personal.was_live);
            personal.was_live = live;
            if (!live && !was_live) || p.output.sent_this_tick {
                continue;
            }
            let conversation = mixed && !p.held;
            for (i, acc) in self.scratch.iter_mut().enumerate() {
                let base = if conversation { self.sum[i] } else { 0 };
                *acc = base + if live { personal.sum[i] } else { 0 };
            }
            limit_into(&mut self.out_pcm, &self.scratch, None);
            if !was_live {
                // A new stream under the listener's decoder: start it clean.
                if personal.encoder.reset_state().is_err() {
                    self.stats.encode_errors += 1;
                }
                apply_fade(&mut self.out_pcm, channels, Fade { from: 0.0, to: 1.0, length: FRAME_SAMPLES });
            } else if !live {
                apply_fade(&mut self.out_pcm, channels, fade_out);
            }
            let (encoder, pcm) = (&mut personal.encoder, &self.out_pcm);
            let encoded = match (p.output_codec.g711(), p.g722_out.as_deref_mut()) {
                (None, Some(g722)) => out.encode_into(|buf| Ok(g722.downsample_encode(pcm, channels, buf))),
                (None, None) => out.encode_into(|buf| encoder.encode(pcm, buf)).map_err(|_| ()),
                (Some(law), _) => out.encode_into(|buf| Ok(g711::downsample_encode(law, pcm, channels, buf))),
            };
            match encoded {
                Ok(payload) => {
                    self.stats.personal_encodes += 1;
                    emit(out, p, input, MixPacketKind::Personal, payload);
                }
                Err(_) => self.stats.encode_errors += 1,
            }
        }
    }

    /// Decodes every unmuted, non-addressed participant's frame of this tick into the taps.
    pub(super) fn decode_taps(&mut self, out: &mut MixOutputs) {
        let channels = self.config.output_channels.count();
        let samples = FRAME_SAMPLES * channels;
        for index in 0..self.slots.len() {
            let input = self.input_at(index);
            let Some(p) = self.slots[index].participant.as_mut() else { continue };
            if p.is_silenced() || matches!(p.playout, Playout::Silent) {
                continue;
            }
            let Some(decoder) = p.tap_decoder.as_deref_mut() else { continue };
            let frame = out.tap_frame(input, samples);
            let tick = self.stats.ticks;
            let decoded = match (p.input_codec.g711(), p.playout) {
                (None, Playout::Packet { slot }) if p.g722_in.is_some() => {
                    if let Some(g722) = p.g722_in.as_deref_mut() {
                        g722.decode_tick(tick, p.jitter.payload(slot), frame, channels);
                    }
                    Ok(FRAME_SAMPLES)
                }
                (None, _) if p.g722_in.is_some() => Ok(0),
                (Some(law), Playout::Packet { slot }) => {
                    let mut prev = p.upsample_prev;
                    g711::decode_upsample(law, p.jitter.payload(slot), &mut prev, frame, channels);
                    Ok(FRAME_SAMPLES)
                }
                (Some(_), _) => Ok(0),
                (None, Playout::Packet { slot }) => decoder.decode(p.jitter.payload(slot), frame, false),
                (None, Playout::Lost { fec_slot: Some(slot) }) => decoder.decode(p.jitter.payload(slot), frame, true),
                (None, Playout::Lost { fec_slot: None }) => decoder.decode(&[], frame, false),
                (None, Playout::Silent) => Ok(0),
            };
            match decoded {
                Ok(n) if n > 0 => {
                    frame[n.min(FRAME_SAMPLES) * channels..].fill(0);
                    self.stats.tap_decodes += 1;
                }
                _ => out.drop_tap_frame(samples),
            }
        }
    }
}
