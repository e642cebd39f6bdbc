//! A resting room: the ticks of a silent room that would send nothing are skipped in O(1).
//!
//! A room where nobody talks still ticks 50 times a second, and each tick walked every
//! participant (playout, talker selection, the silence countdown of every output) to send, in
//! steady state, one DTX keep-alive per participant every 5 s. After a full tick the room
//! *settles* when that walk is known to be a no-op until some output's countdown runs out: it
//! is in silence with no talker (selected or in onset), every jitter buffer [`rests`] (nothing
//! stored, a missing frame counts as silence), and nothing is played to anyone in particular
//! (no addressed source, personal mix, tap, recording, phone leg — phone legs get a frame every
//! tick). The next ticks, up to the first one where some output sends, then only count.
//! Anything that changes the room — a packet pushed, a participant added or removed, a setting —
//! first *wakes* it: the skipped ticks are applied to every participant in one pass (exactly what
//! those ticks would have done: the jitter cursor and counters, the activity decay, the output
//! timestamps and countdowns), so a talker's first packet is played at the very next tick, as in
//! a room that never rested, and the room's output is packet for packet the same
//! (`mixer::tests::rest`).
//!
//! [`rests`]: super::super::jitter::JitterBuffer::rests

use super::{Mixer, Mode, Playout};
use crate::mixer::MixOutputs;
use crate::mixer::opus_toc::FRAME_SAMPLES;

/// One tick of the mixer's virtual clock, in 48 kHz samples.
const TICK_SAMPLES: i64 = FRAME_SAMPLES as i64;

/// The resting state of a room (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Rest {
    /// The last full tick left the room settled: ticks may be skipped.
    settled: bool,
    /// How many ticks after the last full one send nothing (the smallest silence countdown).
    budget: u32,
    /// Ticks skipped since the last full one.
    skipped: u32,
    /// `now` of the last tick, full or skipped (48 kHz samples since the epoch).
    last_now: i64,
    /// `now` of the last full tick: the skipped ticks followed it one period apart.
    full_now: i64,
}

impl Mixer {
    /// Skips this tick when the room rests (see the module docs); false when it must run.
    pub(super) fn skip_resting_tick(&mut self, now: i64, out: &mut MixOutputs) -> bool {
        let rest = &mut self.rest;
        if !rest.settled || rest.skipped >= rest.budget || now != rest.last_now + TICK_SAMPLES {
            return false;
        }
        rest.skipped += 1;
        rest.last_now = now;
        self.stats.ticks += 1;
        self.stats.resting_ticks += 1;
        out.clear();
        true
    }

    /// Applies the ticks skipped while resting to every participant and ends the rest. Called
    /// before anything changes the room and before a full tick.
    pub(super) fn wake(&mut self) {
        let rest = &mut self.rest;
        rest.settled = false;
        let skipped = std::mem::take(&mut rest.skipped);
        if skipped == 0 {
            return;
        }
        let full_now = rest.full_now;
        let talkers = self.config.talkers;
        for p in self.slots.iter_mut().filter_map(|s| s.participant.as_mut()) {
            for tick in 1..=i64::from(skipped) {
                p.jitter.next_frame_at_rest(full_now + tick * TICK_SAMPLES);
                p.activity.observe(&talkers, None);
            }
            p.playout = Playout::Silent;
            p.last_level = None;
            p.quiet_run = p.quiet_run.saturating_add(skipped);
            let output = &mut p.output;
            output.silence_countdown -= skipped;
            output.sent_last_tick = false;
            output.timestamp = output.timestamp.wrapping_add(p.output_codec.frame_ticks().wrapping_mul(skipped));
        }
    }

    /// After a full tick at `now`: does the room settle, and for how many ticks.
    pub(super) fn settle(&mut self, now: i64) {
        self.rest.last_now = now;
        self.rest.full_now = now;
        self.rest.settled = false;
        let room_rests = self.config.rest_when_silent
            && self.mode == Mode::Silence
            && self.members.is_empty()
            && self.g711_participants == 0
            && !self.recording
            && !self.taps
            && !self.personal_mixing
            && !self.speakers_pending;
        if !room_rests {
            return;
        }
        let mut budget = u32::MAX;
        for p in self.slots.iter().filter_map(|s| s.participant.as_ref()) {
            let personal_idle = p.personal.as_deref().is_none_or(|personal| personal.is_idle());
            let rests = p.playout == Playout::Silent
                && p.jitter.rests()
                && !p.activity.selected
                && p.activity.speech_run == 0
                && p.addressed.is_none()
                && personal_idle
                && p.tap_decoder.is_none();
            if !rests {
                return;
            }
            budget = budget.min(p.output.silence_countdown);
        }
        self.rest.settled = budget > 0;
        self.rest.budget = budget;
    }
}
