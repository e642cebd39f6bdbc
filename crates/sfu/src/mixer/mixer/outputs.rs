//! The output half of a [`Mixer`] tick: the mixed tick (decode talkers, sum, the shared mix
//! encoded once per listener codec, mix-minus per talker, two-talker swap), the passthrough
//! tick, silence and the per-listener packet emission, and the active-speaker order.

use super::*;

impl Mixer {
    pub(super) fn mix_tick(&mut self, out: &mut MixOutputs) {
        self.decode_members();
        let channels = self.config.output_channels.count();
        let (mut opus, mut pcmu, mut pcma, mut g722) = (self.recording, false, false, false);
        for p in self.slots.iter().filter_map(|s| s.participant.as_ref()).filter(|p| !p.is_member && p.hears_shared()) {
            match p.output_codec {
                AudioCodec::Opus => opus = true,
                AudioCodec::Pcmu => pcmu = true,
                AudioCodec::Pcma => pcma = true,
                AudioCodec::G722 => g722 = true,
            }
        }
        if opus || pcmu || pcma || g722 {
            // One encode per codec the listeners use, shared by all of them.
            limit_into(&mut self.out_pcm, &self.sum, None);
            let mut shared = SharedPayloads::default();
            if opus && let Some(encoder) = self.shared_encoder.as_mut() {
                let pcm = &self.out_pcm;
                match out.encode_into(|buf| encoder.encode(pcm, buf)) {
                    Ok(payload) => {
                        self.stats.shared_encodes += 1;
                        shared.opus = Some(payload);
                    }
                    Err(_) => self.stats.encode_errors += 1,
                }
            }
            for (wanted, codec) in [(pcmu, AudioCodec::Pcmu), (pcma, AudioCodec::Pcma)] {
                let (true, Some(law)) = (wanted, codec.g711()) else { continue };
                let pcm = &self.out_pcm;
                let payload = out.encode_into(|buf| Ok::<_, ()>(g711::downsample_encode(law, pcm, channels, buf)));
                *shared.slot(codec) = payload.ok();
                self.stats.shared_encodes += 1;
            }
            if g722 {
                let (encoder, pcm) = (&mut self.shared_g722, &self.out_pcm);
                let payload = out.encode_into(|buf| Ok::<_, ()>(encoder.downsample_encode(pcm, channels, buf)));
                shared.g722 = payload.ok();
                self.stats.shared_encodes += 1;
            }
            for index in 0..self.slots.len() {
                let input = self.input_at(index);
                if let Some(p) = self.slots[index].participant.as_mut().filter(|p| !p.is_member && p.hears_shared())
                    && let Some(payload) = shared.get(p.output_codec)
                {
                    emit(out, p, input, MixPacketKind::SharedMix, payload);
                }
            }
            if self.recording {
                out.recording = shared.opus;
            }
        }
        let leaving = self.members.iter().filter(|m| m.phase == Phase::Leaving).count();
        let staying = self.members.len() - leaving;
        // Exactly two talkers: each one's mix-minus is the other's voice alone, so it gets
        // the other's own packets (no encode). Their encoded streams fade out on the tick
        // before such a pair forms, and fade in (from a reset encoder) when it ends.
        let pair = self.config.pair_passthrough && self.g711_participants == 0 && !self.personal_mixing;
        let pair_now = pair && leaving == 0 && self.members.len() == 2;
        let pair_next = pair && leaving > 0 && staying == 2;
        for m in 0..self.members.len() {
            let member = self.members[m];
            let Some(index) = member.participant else { continue };
            let input = self.input_at(index);
            if pair_now {
                let other = self.members[1 - m].participant.and_then(|o| self.slots[o].participant.as_ref());
                let raw = other.and_then(|p| match p.playout {
                    Playout::Packet { slot } => Some(out.push_bytes(p.jitter.payload(slot))),
                    _ => None,
                });
                if let (Some(payload), Some(p)) = (raw, self.slots[index].participant.as_mut()) {
                    emit(out, p, input, MixPacketKind::Passthrough, payload);
                    self.stats.passthrough_packets += 1;
                }
                self.members[m].raw_last_tick = true;
                continue;
            }
            let fade_out = self.fade_for(Phase::Leaving);
            let codec = &mut self.codecs[member.codec];
            match self.slots[index].participant.as_ref().map(|p| (!p.held, p.personal_live())) {
                // Held: it hears only what is addressed to it (`personal_tick`).
                Some((false, _)) | None => continue,
                // Its mix-minus plus the audio addressed to it.
                Some((true, Some(personal))) => {
                    for (((acc, &s), &own), &extra) in
                        self.scratch.iter_mut().zip(&self.sum).zip(&codec.contribution).zip(&personal.sum)
                    {
                        *acc = s - own + extra;
                    }
                    limit_into(&mut self.out_pcm, &self.scratch, None);
                }
                Some((true, None)) => limit_into(&mut self.out_pcm, &self.sum, Some(&codec.contribution)),
            }
            if member.raw_last_tick {
                codec.restart_encoder();
                apply_fade(&mut self.out_pcm, channels, Fade { from: 0.0, to: 1.0, length: FRAME_SAMPLES });
            } else if pair_next && member.phase != Phase::Leaving {
                apply_fade(&mut self.out_pcm, channels, fade_out);
            }
            self.members[m].raw_last_tick = false;
            let hears = self.slots[index].participant.as_ref().map_or(AudioCodec::Opus, |p| p.output_codec);
            let pcm = &self.out_pcm;
            let g722 = self.slots[index].participant.as_mut().and_then(|p| p.g722_out.as_deref_mut());
            let encoded = match (hears.g711(), g722) {
                (None, Some(g722)) => out.encode_into(|buf| Ok(g722.downsample_encode(pcm, channels, buf))),
                (None, None) => match codec.fresh_encoder() {
                    Ok((encoder, reset)) => {
                        self.stats.encoder_resets += u64::from(reset);
                        out.encode_into(|buf| encoder.encode(pcm, buf)).map_err(|_| ())
                    }
                    Err(_) => Err(()),
                },
                (Some(law), _) => out.encode_into(|buf| Ok(g711::downsample_encode(law, pcm, channels, buf))),
            };
            match encoded {
                Ok(payload) => {
                    self.stats.mix_minus_encodes += 1;
                    if let Some(p) = self.slots[index].participant.as_mut() {
                        emit(out, p, input, MixPacketKind::MixMinus, payload);
                    }
                }
                Err(_) => self.stats.encode_errors += 1,
            }
        }
        // Members that faded out this tick give their codec slot back.
        for m in (0..self.members.len()).rev() {
            let member = &mut self.members[m];
            match member.phase {
                Phase::Entering => member.phase = Phase::Steady,
                Phase::Steady => {}
                Phase::Leaving => {
                    let member = self.members.swap_remove(m);
                    self.codecs[member.codec].in_use = false;
                    if let Some(p) = member.participant.and_then(|i| self.slots[i].participant.as_mut()) {
                        p.is_member = false;
                    }
                }
            }
        }
    }

    pub(super) fn passthrough_tick(
        &mut self,
        talker: usize,
        out: &mut MixOutputs,
        silence_ref: &mut Option<PayloadRef>,
    ) {
        let Some(p) = self.slots[talker].participant.as_ref() else { return };
        let forwarded = match p.playout {
            Playout::Packet { slot } => Some(out.push_bytes(p.jitter.payload(slot))),
            _ => None,
        };
        if let Some(payload) = forwarded {
            for index in 0..self.slots.len() {
                if index == talker {
                    continue;
                }
                let input = self.input_at(index);
                if let Some(p) = self.slots[index].participant.as_mut().filter(|p| p.hears_shared()) {
                    emit(out, p, input, MixPacketKind::Passthrough, payload);
                    self.stats.passthrough_packets += 1;
                }
            }
        }
        if self.recording {
            out.recording = Some(match forwarded {
                Some(payload) => payload,
                None => *silence_ref.get_or_insert_with(|| out.push_bytes(&self.silence)),
            });
        }
    }

    /// Silence for everyone who got nothing this tick (a few packets at the DTX cadence, then a
    /// rare keep-alive; phone legs every tick), then
    /// advance every output stream's RTP clock by one frame.
    pub(super) fn finish_outputs(&mut self, out: &mut MixOutputs, silence_ref: &mut Option<PayloadRef>) {
        // Silence goes to everyone in a silent room and to the lone talker in passthrough.
        // A passthrough listener whose talker frame is missing gets nothing: its own
        // receiver conceals the gap, and a foreign packet would disturb its decoder.
        let mode = self.mode;
        if self.recording && out.recording.is_none() {
            out.recording = Some(*silence_ref.get_or_insert_with(|| out.push_bytes(&self.silence)));
        }
        let repeat = self.config.silence_repeat_ticks.max(1);
        let repeats = self.config.silence_repeats.max(1);
        let keepalive = self.config.silence_keepalive_ticks.max(1);
        let mut dtx_ref = None;
        for index in 0..self.slots.len() {
            let input = self.input_at(index);
            let Some(p) = self.slots[index].participant.as_mut() else { continue };
            let silence_due = p.held
                || match mode {
                    Mode::Silence => true,
                    Mode::Passthrough(talker) => talker == index,
                    Mode::Mixed => false,
                };
            if !p.output.sent_this_tick
                && (p.output_codec.g711().is_some() || p.output_codec == AudioCodec::G722)
                && (silence_due || mode == Mode::Mixed)
            {
                // Phone legs get a frame every tick (G.711 has no DTX; SBCs watch for RTP).
                let frame = match p.output_codec.g711() {
                    Some(law) => &self.g711_silence[usize::from(law == Law::A)][..],
                    None => &self.g722_silence[..],
                };
                let payload = out.push_bytes(frame);
                emit(out, p, input, MixPacketKind::Silence, payload);
                self.stats.silence_packets += 1;
            } else if !p.output.sent_this_tick && silence_due {
                // A silent Opus stream: a few silence packets at the DTX cadence, the last a DTX
                // frame, then only a keep-alive DTX frame now and then (`silence_repeats`).
                if p.output.silence_countdown == 0 {
                    p.output.silence_run = p.output.silence_run.saturating_add(1);
                    let payload = if p.output.silence_run < repeats {
                        *silence_ref.get_or_insert_with(|| out.push_bytes(&self.silence))
                    } else {
                        *dtx_ref.get_or_insert_with(|| out.push_bytes(&self.dtx_frame))
                    };
                    emit(out, p, input, MixPacketKind::Silence, payload);
                    self.stats.silence_packets += 1;
                    p.output.silence_countdown = if p.output.silence_run < repeats { repeat } else { keepalive };
                }
                p.output.silence_countdown -= 1;
            } else if p.output.sent_this_tick {
                p.output.silence_countdown = 0;
                p.output.silence_run = 0;
            }
            let output = &mut p.output;
            output.sent_last_tick = output.sent_this_tick;
            output.sent_this_tick = false;
            output.timestamp = output.timestamp.wrapping_add(p.output_codec.frame_ticks());
        }
    }

    pub(super) fn update_speakers(&mut self, now: i64, out: &mut MixOutputs) {
        let interval = i64::from(self.config.speaker_update_interval_ms) * 48;
        if !self.speakers_pending || self.last_speaker_update.is_some_and(|last| now - last < interval) {
            return;
        }
        self.speakers_pending = false;
        self.last_speaker_update = Some(now);
        out.speakers.clear();
        for index in 0..self.slots.len() {
            if self.slots[index].activity().is_some_and(|a| a.selected) {
                out.speakers.push(self.input_at(index));
            }
        }
        let slots = &self.slots;
        let score = |input: &MixerInput| slots[input.index as usize].activity().map_or(0.0, |a| a.score);
        out.speakers.sort_unstable_by(|a, b| score(b).total_cmp(&score(a)));
        out.speakers_changed = true;
    }
}

pub(super) fn emit(
    out: &mut MixOutputs,
    p: &mut Participant,
    to: MixerInput,
    kind: MixPacketKind,
    payload: PayloadRef,
) {
    let marker = !p.output.sent_last_tick && kind != MixPacketKind::Silence;
    out.packets.push(MixPacket { to, sequence: p.output.seq, timestamp: p.output.timestamp, marker, kind, payload });
    p.output.seq = p.output.seq.wrapping_add(1);
    p.output.sent_this_tick = true;
}
