//! Quiet release: a selected talker that pauses (its frames are voice-off noise or silence)
//! leaves the mix after `quiet_release_frames` while it stays an active speaker for the
//! hang-over, so the room falls back to passthrough of the one audible talker; it is mixed
//! again on its first frame that is not quiet.

use super::super::{MixMode, MixPacketKind, MixerConfig};
use super::Room;

/// A (440 Hz) talks throughout; B (660 Hz) talks, pauses for `pause` ticks from tick 100,
/// and talks again; C listens. Returns the room after `ticks` and the mode at every tick.
fn run(config: MixerConfig, pause: u64, ticks: u64) -> (Room, Vec<MixMode>) {
    let mut room = Room::new(config, &[Some(440.0), Some(660.0), None]);
    let mut modes = Vec::new();
    for _ in 0..ticks {
        room.step(|i, tick| i == 0 || !(100..100 + pause).contains(&tick), |_, _| false);
        modes.push(room.mixer.mode());
    }
    (room, modes)
}

#[test]
fn a_pausing_talker_is_released_from_the_mix_but_stays_a_speaker() {
    let config = MixerConfig::default();
    let (mut room, modes) = run(config, 20, 110);
    let a = room.inputs[0];
    assert_eq!(modes[90], MixMode::Mixed, "both talk: mixed");
    // B's frames from tick 100 on are silence (voice flag off): released after 5 of them.
    let released = modes[100..].iter().position(|&m| m == MixMode::Passthrough(a)).map(|t| t + 100);
    let released = released.expect("A alone is passed through while B pauses");
    assert!(released <= 100 + config.quiet_release_frames as usize + 2, "released at tick {released}");
    assert_eq!(room.mixer.talkers().count(), 2, "B keeps its place among the talkers for the hang-over");
    // While released, nothing is encoded and the listener and B get A's own packets.
    let encodes = room.mixer.stats().shared_encodes + room.mixer.stats().mix_minus_encodes;
    room.step(|i, _| i == 0, |_, _| false);
    let stats = room.mixer.stats();
    assert_eq!(stats.shared_encodes + stats.mix_minus_encodes, encodes, "no encode while B is quiet");
    let kinds: Vec<_> = room.out.packets().iter().map(|p| (p.to, p.kind)).collect();
    for listener in [room.inputs[1], room.inputs[2]] {
        assert!(kinds.contains(&(listener, MixPacketKind::Passthrough)), "{kinds:?}");
    }
}

#[test]
fn a_released_talker_is_mixed_again_when_it_speaks_within_its_hang_over() {
    let (room, modes) = run(MixerConfig::default(), 12, 130);
    assert!(matches!(modes[110], MixMode::Passthrough(_)), "released during the pause: {:?}", modes[110]);
    // B resumes at tick 112, still selected (hang-over 25 frames): mixed again at once.
    let again = modes[112..].iter().position(|&m| m == MixMode::Mixed).map(|t| t + 112);
    assert!(again.is_some_and(|t| t <= 115), "mixed again at {again:?}");
    assert_eq!(modes[129], MixMode::Mixed);
    assert_eq!(room.mixer.talkers().count(), 2);
}

#[test]
fn without_quiet_release_a_pausing_talker_is_mixed_for_its_whole_hang_over() {
    let config = MixerConfig { quiet_release_frames: u32::MAX, ..MixerConfig::default() };
    let (_, modes) = run(config, 20, 120);
    assert!(modes[100..118].iter().all(|&m| m == MixMode::Mixed), "{:?}", &modes[100..118]);
}

#[test]
fn a_mix_minus_encoder_is_reset_once_when_its_talker_first_needs_it() {
    // A and B talk, C joins as a third talker at tick 50, then B pauses (released: A and C are a
    // pair again) and resumes: each mix-minus stream restarts from a reset encoder exactly when
    // it is needed again, never for a pair.
    let mut room = Room::new(MixerConfig::default(), &[Some(440.0), Some(660.0), Some(880.0), None]);
    let talking = |i: usize, tick: u64| match i {
        0 => true,
        1 => !(100..130).contains(&tick),
        2 => tick >= 50,
        _ => false,
    };
    let mut resets = Vec::new();
    for _ in 0..160 {
        room.step(talking, |_, _| false);
        resets.push(room.mixer.stats().encoder_resets);
    }
    let stats = room.mixer.stats();
    // 1: the shared mix starts (A + B, a pair: no mix-minus encoder touched).
    assert_eq!(resets[45], 1, "{stats:?}");
    // + 3: C makes three talkers, each mix-minus encoder starts clean.
    assert_eq!(resets[95], 4, "{stats:?}");
    // + 3 at most when B comes back (A's and C's streams restart after their pair, B's own).
    assert!(resets[159] <= 7 && resets[159] > 4, "{stats:?}");
    assert!(stats.mix_minus_encodes > 0);
}
