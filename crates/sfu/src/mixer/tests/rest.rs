//! A resting room (`mixer/mixer/rest.rs`): the ticks of a silent room are skipped, and what the
//! room sends is packet for packet what a room that ticks every time sends — through talk
//! spurts after long silences, a pair, a participant joining and one leaving.

use super::super::{MixPacketKind, MixerConfig};
use super::Room;

/// Who talks when: 0 alone (passthrough) after 6 s of silence, then 0 and 1 (a pair), then 0
/// again after 10 s of silence; 2 and 3 only listen.
fn talking(i: usize, tick: u64) -> bool {
    match i {
        0 => (300..360).contains(&tick) || (400..460).contains(&tick) || (960..990).contains(&tick),
        1 => (420..480).contains(&tick),
        _ => false,
    }
}

/// Every packet each participant received, relative to its stream's first packet: (tick,
/// receiver, kind, sequence offset, timestamp offset, payload).
type Heard = Vec<(u64, usize, MixPacketKind, u16, u32, Vec<u8>)>;

fn run(rest: bool, ticks: u64) -> (Heard, Room) {
    let config = MixerConfig { rest_when_silent: rest, ..MixerConfig::default() };
    let mut room = Room::new(config, &[Some(440.0), Some(660.0), None, None]);
    for sender in room.senders.iter_mut().flatten() {
        sender.enable_dtx();
    }
    let mut first: Vec<Option<(u16, u32)>> = vec![None; 5];
    let mut heard = Heard::new();
    for _ in 0..ticks {
        let tick = room.tick;
        if tick == 700 {
            // A participant joins the resting room (it wakes) and one leaves later.
            let input = room.mixer.add_participant().unwrap();
            room.inputs.push(input);
            room.senders.push(None);
            room.receivers.push(super::Receiver::new());
        }
        if tick == 850 {
            room.mixer.remove_participant(room.inputs[3]).unwrap();
            room.inputs[3] = room.inputs[4];
            room.senders.remove(4);
            room.receivers.remove(4);
            room.inputs.truncate(4);
        }
        // A sender transmits only while it talks (DTX): a silent room gets no packets at all.
        room.step(talking, |i, tick| !talking(i, tick));
        for packet in room.out.packets() {
            let to = room.inputs.iter().position(|&i| i == packet.to).unwrap();
            let to = if tick >= 850 && to == 3 { 4 } else { to };
            let (seq0, ts0) = *first[to].get_or_insert((packet.sequence, packet.timestamp));
            heard.push((
                tick,
                to,
                packet.kind,
                packet.sequence.wrapping_sub(seq0),
                packet.timestamp.wrapping_sub(ts0),
                room.out.payload(packet.payload).to_vec(),
            ));
        }
    }
    (heard, room)
}

#[test]
fn a_resting_room_sends_exactly_what_a_ticking_room_sends() {
    let (ticking, ticked) = run(false, 1_300);
    let (resting, rested) = run(true, 1_300);
    assert_eq!(ticked.mixer.stats().resting_ticks, 0);
    assert_eq!(ticking.len(), resting.len(), "same number of packets");
    for (a, b) in ticking.iter().zip(&resting) {
        assert_eq!(a, b, "the first difference");
    }
    // Talk spurts were heard (passthrough and the pair), and silence around them.
    let kinds = |k: MixPacketKind| resting.iter().filter(|p| p.2 == k).count();
    assert!(kinds(MixPacketKind::Passthrough) > 100, "{}", kinds(MixPacketKind::Passthrough));
    assert!(kinds(MixPacketKind::Silence) > 20);
    // Most of the 1,300 ticks were silent and skipped; the counters are the same.
    let stats = rested.mixer.stats();
    assert!(stats.resting_ticks > 800, "{} resting ticks", stats.resting_ticks);
    assert_eq!(stats.ticks, ticked.mixer.stats().ticks);
    assert_eq!(stats.silence_packets, ticked.mixer.stats().silence_packets);
    // A resting room's per-input counters lag by the skipped ticks until something wakes it
    // (a packet, a setting); then they agree with the ticking room's.
    let mut rested = rested;
    rested.mixer.set_recording_tap(false);
    for (a, b) in ticked.inputs.iter().zip(&rested.inputs).take(2) {
        assert_eq!(ticked.mixer.participant_stats(*a).unwrap(), rested.mixer.participant_stats(*b).unwrap());
    }
}

#[test]
fn the_first_packet_after_a_long_silence_is_heard_at_the_next_tick() {
    let (resting, rested) = run(true, 965);
    // Participant 0 starts again at tick 960 after 5 s of a resting room: the listeners get its
    // packet (passthrough) within the jitter buffer's usual delay, as before the rest.
    let first_heard = resting.iter().find(|p| p.0 >= 960 && p.2 == MixPacketKind::Passthrough).map(|p| p.0);
    let (ticking, _) = run(false, 965);
    let first_ticking = ticking.iter().find(|p| p.0 >= 960 && p.2 == MixPacketKind::Passthrough).map(|p| p.0);
    assert!(first_heard.is_some_and(|t| t <= 962), "{first_heard:?}");
    assert_eq!(first_heard, first_ticking);
    assert!(rested.mixer.stats().resting_ticks > 500);
}
