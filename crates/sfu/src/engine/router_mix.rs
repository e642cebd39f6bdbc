//! The room mixer in the live audio path. Each room on a worker owns one [`Mixer`]: every
//! transport with an Opus audio producer is a mixer input (its packets are parsed here, with
//! the RFC 6464 level from the producer's extension map, and pushed into the mixer), and every
//! transport with a mix output receives exactly one audio stream, the mix (mix-minus for a
//! talker), under the SSRC and payload type the control plane chose. The worker ticks each
//! room every 20 ms of virtual time and turns [`MixOutputs`] into RTP; active speakers come
//! from the mixer's talker selection.

use std::time::{Duration, Instant};

use std::sync::Arc;

use super::early_media::EarlyPlayer;
use super::mix_reports::MixSendStats;
use super::tone_relay::ToneRelay;
use super::{CommandError, MixAudio, MixOutputSpec, SourceTap};
use crate::mixer::{AudioCodec, MixOutputs, MixPacket, Mixer, MixerConfig, MixerError, MixerInput, RtpAudioIn};
use crate::router::{FastMap, ProducerId, ProducerSpec, TransportId};
use crate::rtp::telephone_event::{PAYLOAD_LEN as TONE_PAYLOAD_LEN, TelephoneEvent};
use crate::rtp::{Codec, ExtensionMap, Extensions, RtpHeader};
use palaver_core::MediaKind;

/// One mixer step.
pub const MIX_PERIOD: Duration = Duration::from_millis(20);

/// Size of the RTP header the worker writes in front of each mixed payload.
pub const MIX_RTP_HEADER: usize = 12;

/// Where a participant's audio comes from.
#[derive(Debug, Clone, Copy)]
struct Source {
    producer: ProducerId,
    /// The producer's SSRC when signalled; otherwise learned from its first Opus packet.
    ssrc: Option<u32>,
    /// The payload type mixed, and its codec (Opus, or G.711 for a phone leg).
    audio_pt: u8,
    codec: AudioCodec,
    /// Only the audio-level id is set (0 when the sender does not use RFC 6464).
    extensions: ExtensionMap,
}

/// A stream of a member heard only by chosen listeners (`playTo`, music on hold).
#[derive(Debug)]
struct AddressedStream {
    ssrc: u32,
    input: MixerInput,
    /// Who hears it (the tones sent under `ssrc` are relayed to these only).
    listeners: Vec<TransportId>,
}

/// What [`RouterMix::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Not audio of a mixer input.
    NotAudio,
    /// Audio of the member's mixer input (accepted or counted there).
    Mixed,
    /// Audio of one of the member's addressed streams: nobody else may get it.
    Addressed,
}

#[derive(Debug)]
struct Member {
    input: MixerInput,
    source: Option<Source>,
    addressed: Vec<AddressedStream>,
    output: Option<MixOutputSpec>,
    /// What the output stream sent (for its sender reports).
    sent: MixSendStats,
    /// RFC 4733 tones of others relayed on the output (phone legs with telephone-event).
    tones: Option<Box<ToneRelay>>,
    /// With `tones`: the last packet sent on the output (sequence and mix timestamp as sent)
    /// and the tick it went on, and how many packets the relay added to the mixer's
    /// sequence (tones on ticks the mixer sent nothing: an Opus output in silence).
    tone_clock: Option<(MixPacket, u64)>,
    tone_seq_offset: u16,
}

/// What one tick of one room did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TickReport {
    pub ran: bool,
    /// The tick ran at least one period late (the worker loop stalled).
    pub late: bool,
}

/// One room's mixer and its participants (see the module docs).
pub(super) struct RouterMix {
    mixer: Mixer,
    outputs: MixOutputs,
    members: FastMap<TransportId, Member>,
    /// Transport of each mixer input slot (indexed by `MixerInput::index`).
    by_index: Vec<Option<TransportId>>,
    sources: FastMap<ProducerId, TransportId>,
    next_tick: Instant,
    /// The worker's tick grid: every mixer of a worker ticks at `grid + k × MIX_PERIOD`, so one
    /// wake-up runs all of them and their packets leave in one send batch (a room per phase
    /// cost a wake-up and a `sendmmsg` per room every 20 ms).
    grid: Instant,
    /// Per-source tap (unmixed recording) and the ticks run so far (its frame numbers).
    tap: Option<Arc<SourceTap>>,
    ticks: u64,
    /// Scratch list of a relayed tone's listeners (kept, so relaying does not allocate).
    tone_targets: Vec<TransportId>,
    /// Ringback/hold tones playing to legs that wait for their callee (`early_media`).
    early: Vec<EarlyPlayer>,
    /// Some member relays RFC 4733 tones (else the per-tick tone pass is skipped).
    any_tones: bool,
    /// The earliest sender report due among the outputs ([`MixSendStats::due`]): the outputs
    /// are scanned only then, not every round (a silent room's paused streams have none).
    reports_due: Option<Instant>,
}

impl std::fmt::Debug for RouterMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterMix").field("members", &self.members.len()).finish_non_exhaustive()
    }
}

/// The first mixable payload type of an audio producer (Opus, PCMU or PCMA, in the
/// producer's order), if it is a mixer source at all.
fn audio_payload_type(spec: &ProducerSpec) -> Option<(u8, AudioCodec)> {
    if spec.kind != MediaKind::Audio {
        return None;
    }
    spec.codecs.iter().find_map(|(pt, codec)| match codec {
        Codec::Opus => Some((*pt, AudioCodec::Opus)),
        Codec::Pcmu => Some((*pt, AudioCodec::Pcmu)),
        Codec::Pcma => Some((*pt, AudioCodec::Pcma)),
        Codec::G722 => Some((*pt, AudioCodec::G722)),
        _ => None,
    })
}

/// The codec a mix output is encoded in: the static phone payload types (RFC 3551: 0 PCMU,
/// 8 PCMA, 9 G.722) are phone legs; every dynamic type the control plane assigns is Opus.
pub fn output_codec(output: &MixOutputSpec) -> AudioCodec {
    match output.payload_type {
        0 => AudioCodec::Pcmu,
        8 => AudioCodec::Pcma,
        9 => AudioCodec::G722,
        _ => AudioCodec::Opus,
    }
}

/// The first instant of `grid + k × MIX_PERIOD` (k ≥ 1) strictly after `now`.
pub(super) fn next_on_grid(grid: Instant, now: Instant) -> Instant {
    let period = MIX_PERIOD.as_nanos();
    let elapsed = now.saturating_duration_since(grid).as_nanos();
    let periods = (elapsed / period + 1) as u32;
    grid + MIX_PERIOD * periods
}

impl RouterMix {
    /// A room mixer created at `now` whose ticks fall on the worker's `grid` (see the field).
    pub fn new(now: Instant, grid: Instant, config: MixerConfig) -> Result<Self, MixerError> {
        Ok(Self {
            mixer: Mixer::new(now, config)?,
            outputs: MixOutputs::new(),
            members: FastMap::default(),
            by_index: Vec::new(),
            sources: FastMap::default(),
            next_tick: next_on_grid(grid, now),
            grid,
            tap: None,
            ticks: 0,
            tone_targets: Vec::new(),
            early: Vec::new(),
            any_tones: false,
            reports_due: None,
        })
    }

    fn member(&mut self, now: Instant, transport: TransportId) -> Result<&mut Member, MixerError> {
        if self.members.is_empty() && self.next_tick < now {
            // An empty mixer is not ticked: the first member starts a fresh schedule.
            self.next_tick = next_on_grid(self.grid, now);
        }
        if !self.members.contains_key(&transport) {
            let input = self.mixer.add_participant()?;
            let index = input.index as usize;
            if self.by_index.len() <= index {
                self.by_index.resize(index + 1, None);
            }
            self.by_index[index] = Some(transport);
            let member = Member {
                input,
                source: None,
                addressed: Vec::new(),
                output: None,
                sent: MixSendStats::default(),
                tones: None,
                tone_clock: None,
                tone_seq_offset: 0,
            };
            self.members.insert(transport, member);
            // Room for every member in a relayed tone's listener list (see `relay_tone`).
            self.tone_targets.reserve(self.members.len());
        }
        Ok(self.members.get_mut(&transport).expect("inserted above"))
    }

    /// Drops a member that neither sends nor receives any more.
    fn prune(&mut self, transport: TransportId) {
        let Some(member) = self.members.get(&transport) else { return };
        if member.source.is_none() && member.output.is_none() {
            let input = member.input;
            let member = self.members.remove(&transport).expect("found above");
            for stream in member.addressed {
                let _ = self.mixer.remove_participant(stream.input);
            }
            self.by_index[input.index as usize] = None;
            let _ = self.mixer.remove_participant(input);
            self.any_tones = self.members.values().any(|m| m.tones.is_some());
        }
    }

    /// Makes an audio producer a mixer input (other producers are ignored). A transport has
    /// one input: a second audio producer replaces the first.
    pub fn add_source(&mut self, now: Instant, spec: &ProducerSpec) -> Result<(), MixerError> {
        let Some((audio_pt, codec)) = audio_payload_type(spec) else { return Ok(()) };
        let source = Source {
            producer: spec.id,
            ssrc: spec.layers.first().and_then(|l| l.ssrc),
            audio_pt,
            codec,
            extensions: ExtensionMap { audio_level: spec.extensions.audio_level, ..ExtensionMap::default() },
        };
        let member = self.member(now, spec.transport)?;
        if let Some(old) = member.source.replace(source) {
            self.sources.remove(&old.producer);
        }
        self.sources.insert(spec.id, spec.transport);
        self.sync_codecs(spec.transport)
    }

    /// Tells the mixer what the member sends and hears.
    fn sync_codecs(&mut self, transport: TransportId) -> Result<(), MixerError> {
        let Some(member) = self.members.get(&transport) else { return Ok(()) };
        let sends = member.source.map_or(AudioCodec::Opus, |s| s.codec);
        let hears = member.output.as_ref().map_or(AudioCodec::Opus, output_codec);
        self.mixer.set_codecs(member.input, sends, hears)
    }

    pub fn remove_source(&mut self, producer: ProducerId) {
        let Some(transport) = self.sources.remove(&producer) else { return };
        if let Some(member) = self.members.get_mut(&transport) {
            member.source = None;
        }
        self.prune(transport);
    }

    /// Starts, changes or (with `None`) stops the mix a transport receives.
    pub fn set_output(
        &mut self,
        now: Instant,
        transport: TransportId,
        output: Option<MixOutputSpec>,
    ) -> Result<(), MixerError> {
        match output {
            Some(spec) => {
                let member = self.member(now, transport)?;
                if member.output.is_none_or(|old| old.ssrc != spec.ssrc) {
                    member.sent = MixSendStats::default(); // a new stream starts counting afresh
                }
                member.output = Some(spec);
                self.sync_codecs(transport)?;
            }
            None => {
                if let Some(member) = self.members.get_mut(&transport) {
                    member.output = None;
                }
                self.prune(transport);
            }
        }
        Ok(())
    }

    pub fn remove_transport(&mut self, transport: TransportId) {
        self.stop_early_media(transport);
        if let Some(member) = self.members.get_mut(&transport) {
            if let Some(source) = member.source.take() {
                self.sources.remove(&source.producer);
            }
            member.output = None;
        }
        self.prune(transport);
    }

    /// Offers one plaintext RTP packet of `from`: its Opus audio goes into the mixer (into an
    /// addressed stream's input when its SSRC names one).
    pub fn push(&mut self, now: Instant, from: TransportId, packet: &[u8]) -> Pushed {
        let Some(member) = self.members.get_mut(&from) else { return Pushed::NotAudio };
        let Some(source) = member.source.as_mut() else { return Pushed::NotAudio };
        let Ok(header) = RtpHeader::parse(packet) else { return Pushed::NotAudio };
        if header.payload_type != source.audio_pt {
            return Pushed::NotAudio;
        }
        let mut into = member.input;
        let mut pushed = Pushed::Mixed;
        if let Some(stream) = member.addressed.iter().find(|s| s.ssrc == header.ssrc) {
            into = stream.input;
            pushed = Pushed::Addressed;
        } else {
            match source.ssrc {
                Some(ssrc) if ssrc != header.ssrc => return Pushed::NotAudio,
                Some(_) => {}
                None => source.ssrc = Some(header.ssrc),
            }
        }
        let audio_level = if source.extensions.audio_level == 0 {
            None
        } else {
            Extensions::parse(packet, &header, &source.extensions)
                .ok()
                .and_then(|e| e.audio_level)
                .map(|(voice, level)| (level, voice))
        };
        let payload = &packet[header.payload_offset..header.payload_offset + header.payload_len];
        let input = RtpAudioIn {
            seq: header.sequence,
            timestamp: header.timestamp,
            audio_level,
            marker: header.marker,
            payload,
        };
        // Late, duplicate or invalid packets are counted in the mixer's per-input stats.
        let _ = self.mixer.push(now, into, &input);
        pushed
    }

    /// Applies a per-participant change (mute, hold, addressed stream, source tap). A change
    /// about a transport that is not (or no longer) in the mix does nothing.
    pub fn set_audio(&mut self, now: Instant, audio: MixAudio) -> Result<(), CommandError> {
        let refused = |_| CommandError::Mixer("mixer input refused");
        match audio {
            MixAudio::Muted { transport, muted } => {
                let Some(member) = self.members.get(&transport) else { return Ok(()) };
                self.mixer.set_muted(member.input, muted).map_err(refused)
            }
            MixAudio::Held { transport, held } => {
                let Some(member) = self.members.get(&transport) else { return Ok(()) };
                self.mixer.set_held(member.input, held).map_err(refused)
            }
            MixAudio::Audience { transport, ssrc, listeners } => {
                let Some(member) = self.members.get(&transport) else { return Ok(()) };
                let existing = member.addressed.iter().position(|s| s.ssrc == ssrc);
                let Some(listeners) = listeners else {
                    if let Some(at) = existing {
                        let stream = self.members.get_mut(&transport).expect("found").addressed.swap_remove(at);
                        let _ = self.mixer.remove_participant(stream.input);
                    }
                    return Ok(());
                };
                let inputs: Vec<MixerInput> =
                    listeners.iter().filter_map(|t| self.members.get(t)).map(|m| m.input).collect();
                let input = match existing {
                    Some(at) => {
                        let stream = &mut self.members.get_mut(&transport).expect("found").addressed[at];
                        stream.listeners.clone_from(&listeners);
                        stream.input
                    }
                    None => {
                        if self.members.is_empty() && self.next_tick < now {
                            self.next_tick = next_on_grid(self.grid, now);
                        }
                        let input = self.mixer.add_participant().map_err(refused)?;
                        let member = self.members.get_mut(&transport).expect("found");
                        member.addressed.push(AddressedStream { ssrc, input, listeners: listeners.clone() });
                        input
                    }
                };
                self.mixer.set_audience(input, Some(&inputs)).map_err(refused)
            }
            MixAudio::SourceTap { tap } => {
                self.mixer.set_source_taps(tap.is_some()).map_err(refused)?;
                self.tap = tap;
                Ok(())
            }
            MixAudio::EarlyMedia { transport, tone } => {
                self.stop_early_media(transport);
                let (Some(tone), Some(member)) = (tone, self.members.get(&transport)) else { return Ok(()) };
                if tone.is_empty() {
                    return Ok(());
                }
                let listener = member.input;
                let input = self.mixer.add_participant().map_err(refused)?;
                if let Err(error) = self.mixer.set_audience(input, Some(&[listener])) {
                    let _ = self.mixer.remove_participant(input);
                    return Err(refused(error));
                }
                self.early.push(EarlyPlayer::new(transport, input, tone));
                Ok(())
            }
            MixAudio::TelephoneEventsOut { transport, payload_type, clock_rate } => {
                let Some(member) = self.members.get_mut(&transport) else { return Ok(()) };
                // One tick of the output's RTP clock: 8 kHz for G.711 and G.722, 48 kHz for Opus.
                let tick_units = match member.output.as_ref().map(output_codec) {
                    Some(AudioCodec::Opus) | None => 960,
                    Some(_) => 160,
                };
                // One tick of the events' clock (durations): 160 at /8000, 960 at /48000.
                let duration_units = (clock_rate / 50).clamp(1, tick_units);
                member.tones = payload_type.map(|pt| Box::new(ToneRelay::new(pt, tick_units, duration_units)));
                self.any_tones = self.members.values().any(|m| m.tones.is_some());
                Ok(())
            }
        }
    }

    /// Ends the early media playing to `transport`, if any.
    fn stop_early_media(&mut self, transport: TransportId) {
        while let Some(at) = self.early.iter().position(|p| p.listener == transport) {
            let player = self.early.swap_remove(at);
            let _ = self.mixer.remove_participant(player.input);
        }
    }

    /// A telephone-event packet of `from` (sent under `ssrc` with RTP `timestamp`): relayed to
    /// every other member whose output carries tones, or, when `ssrc` is one of `from`'s
    /// addressed streams, to that stream's listeners only.
    pub fn relay_tone(&mut self, from: TransportId, ssrc: u32, timestamp: u32, event: &TelephoneEvent) {
        let Some(sender) = self.members.get(&from) else { return };
        self.tone_targets.clear();
        match sender.addressed.iter().find(|s| s.ssrc == ssrc) {
            Some(stream) => self.tone_targets.extend_from_slice(&stream.listeners),
            None => self.tone_targets.extend(self.members.keys().filter(|&&t| t != from)),
        }
        for target in &self.tone_targets {
            if let Some(relay) = self.members.get_mut(target).and_then(|m| m.tones.as_deref_mut()) {
                relay.on_source(from, timestamp, event);
            }
        }
    }

    /// The next tick is due at or before `now` (never for a mixer without members).
    pub fn due(&self, now: Instant) -> bool {
        !self.members.is_empty() && now >= self.next_tick
    }

    /// When the next tick is due; `None` while the mixer has no members.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.members.is_empty()).then_some(self.next_tick)
    }

    /// Runs one tick if due: `emit` gets each output packet (its receiver, stream and payload)
    /// and `speakers` the new active speakers when they changed.
    pub fn tick(
        &mut self,
        now: Instant,
        mut emit: impl FnMut(TransportId, &MixOutputSpec, &MixPacket, &[u8]),
        speakers: impl FnOnce([Option<TransportId>; 3]),
    ) -> TickReport {
        if !self.due(now) {
            return TickReport::default();
        }
        let late = now >= self.next_tick + MIX_PERIOD;
        // A stalled loop resynchronises (on the grid) instead of bursting the missed ticks.
        self.next_tick = if late { next_on_grid(self.grid, now) } else { self.next_tick + MIX_PERIOD };
        for player in &mut self.early {
            let input = player.input;
            // Refused frames are counted in the input's stats like any sender's.
            let _ = self.mixer.push(now, input, &player.next_frame());
        }
        self.mixer.tick(now, &mut self.outputs);
        self.ticks += 1;
        if let Some(tap) = &self.tap {
            let channels = self.mixer.config().output_channels.count();
            for (input, pcm) in self.outputs.source_frames() {
                if let Some(Some(transport)) = self.by_index.get(input.index as usize) {
                    tap.push(*transport, self.ticks, pcm, channels);
                }
            }
        }
        for packet in self.outputs.packets() {
            let Some(Some(transport)) = self.by_index.get(packet.to.index as usize) else { continue };
            let Some(member) = self.members.get_mut(transport) else { continue };
            let Some(output) = &member.output else { continue };
            let mut packet = *packet;
            packet.sequence = packet.sequence.wrapping_add(member.tone_seq_offset);
            if member.tones.is_some() {
                member.tone_clock = Some((packet, self.ticks));
            }
            let packet = &packet;
            if let Some(tone) = member.tones.as_deref_mut().and_then(|relay| relay.on_tick(packet.timestamp)) {
                // The tone replaces this tick's mix packet: same SSRC and sequence number.
                let pt = member.tones.as_deref().map_or(output.payload_type, |r| r.payload_type);
                let spec = MixOutputSpec { ssrc: output.ssrc, payload_type: pt };
                let relayed = MixPacket { marker: tone.marker, timestamp: tone.timestamp, ..*packet };
                let mut payload = [0u8; TONE_PAYLOAD_LEN];
                if tone.event.write(&mut payload).is_ok() {
                    member.sent.on_sent(now, output.ssrc, packet.timestamp, payload.len());
                    self.reports_due = earliest(self.reports_due, member.sent.due());
                    emit(*transport, &spec, &relayed, &payload);
                }
                continue;
            }
            let payload = self.outputs.payload(packet.payload);
            member.sent.on_sent(now, output.ssrc, packet.timestamp, payload.len());
            self.reports_due = earliest(self.reports_due, member.sent.due());
            emit(*transport, output, packet, payload);
        }
        self.tones_between_packets(now, &mut emit);
        if let Some(active) = self.outputs.active_speakers() {
            let mut ids = [None; 3];
            for (slot, input) in ids.iter_mut().zip(active) {
                *slot = self.by_index.get(input.index as usize).copied().flatten();
            }
            speakers(ids);
        }
        TickReport { ran: true, late }
    }

    /// A tone keeps its 20 ms pace on outputs the mixer sent nothing this tick (an Opus
    /// trunk in a silent room gets a silence packet only every few ticks): the packet goes
    /// out with the next sequence number (the member's later mix packets are shifted by one)
    /// and the mix timestamp this tick would have had.
    fn tones_between_packets(
        &mut self,
        now: Instant,
        emit: &mut impl FnMut(TransportId, &MixOutputSpec, &MixPacket, &[u8]),
    ) {
        if !self.any_tones {
            return;
        }
        for (transport, member) in self.members.iter_mut() {
            let (Some(relay), Some(output)) = (member.tones.as_deref_mut(), member.output) else { continue };
            let Some((last, tick)) = member.tone_clock else { continue };
            if !relay.is_active() || tick == self.ticks {
                continue;
            }
            let elapsed = u32::try_from(self.ticks - tick).unwrap_or(u32::MAX);
            let timestamp = last.timestamp.wrapping_add(relay.tick_units().wrapping_mul(elapsed));
            let Some(tone) = relay.on_tick(timestamp) else { continue };
            let sent = MixPacket { sequence: last.sequence.wrapping_add(1), timestamp, ..last };
            member.tone_clock = Some((sent, self.ticks));
            member.tone_seq_offset = member.tone_seq_offset.wrapping_add(1);
            let spec = MixOutputSpec { ssrc: output.ssrc, payload_type: relay.payload_type };
            let relayed = MixPacket { marker: tone.marker, timestamp: tone.timestamp, ..sent };
            let mut payload = [0u8; TONE_PAYLOAD_LEN];
            if tone.event.write(&mut payload).is_ok() {
                member.sent.on_sent(now, output.ssrc, timestamp, payload.len());
                self.reports_due = earliest(self.reports_due, member.sent.due());
                emit(*transport, &spec, &relayed, &payload);
            }
        }
    }

    /// Some output's sender report is due at `now` (cheap: the caller then reads the router's
    /// clock and calls [`Self::sender_reports`]).
    pub fn reports_due(&self, now: Instant) -> bool {
        self.reports_due.is_some_and(|due| now >= due)
    }

    /// Sends each output's sender report when due (`ntp_time`: the room router's clock). The
    /// outputs are walked only when one is due ([`Self::reports_due`]).
    pub fn sender_reports(&mut self, now: Instant, ntp_time: u64, mut emit: impl FnMut(TransportId, &[u8])) {
        if !self.reports_due(now) {
            return;
        }
        let mut buf = [0u8; 64];
        let mut next = None;
        for (&transport, member) in self.members.iter_mut() {
            let Some(output) = member.output else { continue };
            if let Some(n) = member.sent.report(now, ntp_time, output.ssrc, &mut buf) {
                emit(transport, &buf[..n]);
            }
            next = earliest(next, member.sent.due());
        }
        self.reports_due = next;
    }

    #[cfg(test)]
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Writes the RTP packet of one mix output into `buf`; `None` if it does not fit.
pub(super) fn write_mix_rtp(
    buf: &mut [u8],
    output: &MixOutputSpec,
    packet: &MixPacket,
    payload: &[u8],
) -> Option<usize> {
    let len = MIX_RTP_HEADER + payload.len();
    let out = buf.get_mut(..len)?;
    out[0] = 0x80;
    out[1] = (output.payload_type & 0x7F) | if packet.marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&packet.sequence.to_be_bytes());
    out[4..8].copy_from_slice(&packet.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&output.ssrc.to_be_bytes());
    out[MIX_RTP_HEADER..].copy_from_slice(payload);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_created_at_different_times_tick_on_one_grid() {
        let grid = Instant::now();
        let output = MixOutputSpec { ssrc: 1, payload_type: 111 };
        let mut first = RouterMix::new(grid, grid, MixerConfig::default()).unwrap();
        first.set_output(grid, TransportId(1), Some(output)).unwrap();
        let later = grid + Duration::from_millis(7);
        let mut second = RouterMix::new(later, grid, MixerConfig::default()).unwrap();
        second.set_output(later, TransportId(2), Some(output)).unwrap();
        assert_eq!(first.poll_timeout(), Some(grid + MIX_PERIOD));
        assert_eq!(second.poll_timeout(), first.poll_timeout(), "the later room joins the same grid");
        // A stalled loop resynchronises onto the grid, never onto the late instant.
        let stalled = grid + Duration::from_millis(95);
        let report = second.tick(stalled, |_, _, _, _| {}, |_| {});
        assert!(report.ran && report.late);
        assert_eq!(second.poll_timeout(), Some(grid + Duration::from_millis(100)));
        assert_eq!(next_on_grid(grid, grid + MIX_PERIOD), grid + 2 * MIX_PERIOD, "strictly after now");
    }
}
