//! Per-participant audio on virtual time with real Opus: mute, audio addressed to chosen
//! listeners (playTo), hold with music, and the per-source taps. Every check decodes what a
//! participant received and measures tones by FFT.

use super::super::{MixPacketKind, MixerConfig};
use super::{Room, reference_tone_db, tone_db};

const TALKER: f32 = 440.0;
const OTHER: f32 = 660.0;
const PROMPT: f32 = 1000.0;

fn never_lost(_: usize, _: u64) -> bool {
    false
}

/// The samples a receiver decoded in ticks `from..to`.
fn ticks(samples: &[f32], from: usize, to: usize) -> &[f32] {
    &samples[from * 960..to * 960]
}

fn heard(samples: &[f32], tone: f32) -> f64 {
    tone_db(samples, tone) - reference_tone_db(tone, samples.len())
}

#[test]
fn a_muted_participants_tone_is_absent_from_everyones_mix() {
    // 0 and 1 talk, 2 listens; 0 is muted at tick 100.
    let mut room = Room::new(MixerConfig::default(), &[Some(TALKER), Some(OTHER), None]);
    for tick in 0..220 {
        if tick == 100 {
            room.mixer.set_muted(room.inputs[0], true).unwrap();
        }
        room.step(|_, _| true, never_lost);
    }
    let listener_before = ticks(&room.receivers[2].samples, 40, 100);
    assert!(heard(listener_before, TALKER).abs() <= 3.0, "before the mute the listener hears the tone");
    let listener_after = ticks(&room.receivers[2].samples, 120, 220);
    let other_after = ticks(&room.receivers[1].samples, 120, 220);
    assert!(heard(listener_after, OTHER).abs() <= 3.0, "the other talker is still heard");
    let (muted_to_listener, muted_to_other) = (heard(listener_after, TALKER), heard(other_after, TALKER));
    assert!(muted_to_listener <= -40.0, "muted tone reaches the listener at {muted_to_listener:.1} dB");
    assert!(muted_to_other <= -40.0, "muted tone reaches the other talker at {muted_to_other:.1} dB");
    // The muted participant still hears the conversation.
    assert!(heard(ticks(&room.receivers[0].samples, 120, 220), OTHER).abs() <= 3.0);
    assert!(room.mixer.talkers().all(|t| t != room.inputs[0]));
}

#[test]
fn a_prompt_addressed_to_one_listener_is_heard_by_it_alone() {
    // 0 talks from tick 100 on, 1 is a server leg playing a prompt addressed to 2 only,
    // 3 is a listener who is not targeted.
    let mut room = Room::new(MixerConfig::default(), &[Some(TALKER), Some(PROMPT), None, None]);
    room.mixer.set_audience(room.inputs[1], Some(&[room.inputs[2]])).unwrap();
    let mut kinds = Vec::new();
    for tick in 0..220 {
        room.step(|i, tick| i != 0 || tick >= 100, never_lost);
        if tick >= 20 {
            kinds.extend(room.out.packets().iter().map(|p| (p.to, p.kind)));
        }
    }
    let (target, bystander) = (&room.receivers[2].samples, &room.receivers[3].samples);
    // A silent room: the prompt alone.
    assert!(heard(ticks(target, 20, 100), PROMPT).abs() <= 3.0, "the target hears the prompt");
    let leak = heard(ticks(bystander, 20, 100), PROMPT);
    assert!(leak <= -40.0, "the bystander hears the prompt at {leak:.1} dB");
    // With a talker: the target hears both, the bystander and the talker only the talker.
    assert!(heard(ticks(target, 130, 220), PROMPT).abs() <= 3.0);
    assert!(heard(ticks(target, 130, 220), TALKER).abs() <= 3.0);
    assert!(heard(ticks(bystander, 130, 220), TALKER).abs() <= 3.0);
    for (who, samples) in [("bystander", bystander), ("talker", &room.receivers[0].samples)] {
        let leak = heard(ticks(samples, 130, 220), PROMPT);
        assert!(leak <= -40.0, "the {who} hears the prompt at {leak:.1} dB");
    }
    // Only the target ever gets a personal stream; the leg is never a talker.
    assert!(kinds.iter().any(|&(to, kind)| to == room.inputs[2] && kind == MixPacketKind::Personal));
    assert!(kinds.iter().all(|&(to, kind)| kind != MixPacketKind::Personal || to == room.inputs[2]));
    assert!(room.speaker_updates.iter().all(|(_, speakers)| !speakers.contains(&1)));
}

#[test]
fn a_held_participant_hears_only_its_music_and_is_absent_from_the_mix() {
    // 0 talks; 1 talks but is held from tick 0 to 150 with music from 2 (a server leg);
    // 3 listens. At 150: unhold, and the music stops.
    let mut room = Room::new(MixerConfig::default(), &[Some(TALKER), Some(OTHER), Some(PROMPT), None]);
    let (held, music) = (room.inputs[1], room.inputs[2]);
    room.mixer.set_held(held, true).unwrap();
    room.mixer.set_audience(music, Some(&[held])).unwrap();
    for tick in 0..280 {
        if tick == 150 {
            room.mixer.set_held(held, false).unwrap();
            room.mixer.set_audience(music, None).unwrap();
        }
        room.step(|i, tick| i != 2 || tick < 150, never_lost);
    }
    let on_hold = ticks(&room.receivers[1].samples, 20, 150);
    assert!(heard(on_hold, PROMPT).abs() <= 3.0, "the held participant hears its music");
    let conversation = heard(on_hold, TALKER);
    assert!(conversation <= -40.0, "the held participant hears the conversation at {conversation:.1} dB");
    for who in [0, 3] {
        let samples = ticks(&room.receivers[who].samples, 20, 150);
        let (voice, music) = (heard(samples, OTHER), heard(samples, PROMPT));
        assert!(voice <= -40.0, "participant {who} hears the held one at {voice:.1} dB");
        assert!(music <= -40.0, "participant {who} hears the music at {music:.1} dB");
    }
    assert!(heard(ticks(&room.receivers[3].samples, 20, 150), TALKER).abs() <= 3.0);
    // Unhold restores both directions.
    let after = ticks(&room.receivers[1].samples, 180, 280);
    assert!(heard(after, TALKER).abs() <= 3.0, "after unhold it hears the talker again");
    assert!(heard(ticks(&room.receivers[3].samples, 180, 280), OTHER).abs() <= 3.0, "and is heard again");
}

#[test]
fn source_taps_deliver_each_unmuted_participants_decoded_audio() {
    let mut room = Room::new(MixerConfig::default(), &[Some(TALKER), Some(OTHER), Some(PROMPT), None]);
    room.mixer.set_source_taps(true).unwrap();
    room.mixer.set_muted(room.inputs[2], true).unwrap();
    let mut tapped: Vec<Vec<f32>> = vec![Vec::new(); 4];
    for _ in 0..120 {
        room.step(|_, _| true, never_lost);
        for (input, pcm) in room.out.source_frames() {
            let i = room.inputs.iter().position(|&x| x == input).unwrap();
            tapped[i].extend(pcm.iter().map(|&s| f32::from(s)));
        }
    }
    for (i, tone, other) in [(0, TALKER, OTHER), (1, OTHER, TALKER)] {
        assert_eq!(tapped[i].len(), 120 * 960, "one frame per tick from participant {i}");
        let own = &tapped[i][20 * 960..];
        assert!(heard(own, tone).abs() <= 3.0, "participant {i}'s tap carries its tone");
        assert!(heard(own, other) <= -40.0, "participant {i}'s tap carries only its own voice");
    }
    assert!(tapped[2].is_empty(), "a muted participant is not tapped");
    assert!(tapped[3].is_empty(), "a participant that sends nothing is not tapped");
    assert!(room.mixer.stats().tap_decodes >= 240);
}
