//! Silence in a room where nobody talks: each Opus listener gets a few silence packets at the
//! DTX cadence (the last an Opus DTX frame), then only a rare keep-alive DTX frame, and the run
//! starts again after the stream carried audio. Phone legs (G.711) still get a frame every tick.

use std::time::{Duration, Instant};

use super::super::opus_toc::DTX_MAX_BYTES;
use super::super::{AudioCodec, MixOutputs, MixPacketKind, Mixer, MixerConfig};
use super::Room;

/// (tick, payload length) of every silence packet `listener` got while `room` stepped `ticks`
/// with `talking(i, tick)`.
fn silence_packets(
    room: &mut Room,
    listener: usize,
    ticks: u64,
    talking: impl Fn(usize, u64) -> bool,
) -> Vec<(u64, usize)> {
    let mut got = Vec::new();
    for _ in 0..ticks {
        let tick = room.tick;
        room.step(&talking, |_, _| false);
        for packet in room.out.packets().iter().filter(|p| p.to == room.inputs[listener]) {
            if packet.kind == MixPacketKind::Silence {
                got.push((tick, room.out.payload(packet.payload).len()));
            }
        }
    }
    got
}

#[test]
fn a_silent_room_sends_three_silence_packets_then_a_keep_alive_every_five_seconds() {
    let config = MixerConfig::default();
    let mut room = Room::new(config, &[None, None, None]);
    let got = silence_packets(&mut room, 1, 1_000, |_, _| false);
    let ticks: Vec<u64> = got.iter().map(|&(t, _)| t).collect();
    // 0, 400 and 800 ms at the DTX cadence, then every 5 s (250 ticks).
    assert_eq!(ticks, vec![0, 20, 40, 290, 540, 790], "{got:?}");
    // The first ones decode to silence as ordinary frames; the last of the run and every
    // keep-alive are DTX frames (what WebRTC's NetEq recognises as DTX: ≤ 2 bytes).
    assert!(got[0].1 > DTX_MAX_BYTES && got[1].1 > DTX_MAX_BYTES, "{got:?}");
    assert!(got[2..].iter().all(|&(_, len)| (1..=DTX_MAX_BYTES).contains(&len)), "{got:?}");
    // 1,000 ticks of three listeners: 18 packets instead of 150 at the DTX cadence.
    assert_eq!(room.mixer.stats().silence_packets, 18);
    // Every receiver decoded what it got (digital silence), without sequence gaps.
    for receiver in &room.receivers {
        assert_eq!(receiver.packets, 6);
        assert_eq!(receiver.sequence_gaps, 0);
        let peak = receiver.samples.iter().fold(0.0f32, |m, &s| m.max(s.abs()));
        assert!(peak < 32.0, "silence and DTX decode to (near) silence: peak {peak}");
    }
}

#[test]
fn the_silence_run_starts_again_after_the_stream_carried_audio() {
    // Participant 0 talks for ticks 100..150; listener 1 hears it (passthrough), then silence.
    let mut room = Room::new(MixerConfig::default(), &[Some(440.0), None]);
    let talking = |i: usize, tick: u64| i == 0 && (100..150).contains(&tick);
    let got = silence_packets(&mut room, 1, 400, talking);
    let after: Vec<u64> = got.iter().map(|&(t, _)| t).filter(|&t| t >= 100).collect();
    assert_eq!(after.len(), 3, "three silence packets after the talk spurt: {got:?}");
    let first = after[0];
    assert!((150..180).contains(&first), "silence resumes once the talker is released: {got:?}");
    assert_eq!(after, vec![first, first + 20, first + 40]);
}

#[test]
fn the_keep_alive_can_be_turned_off_and_the_old_cadence_restored() {
    let never = MixerConfig { silence_keepalive_ticks: u32::MAX, ..MixerConfig::default() };
    let mut room = Room::new(never, &[None, None]);
    assert_eq!(silence_packets(&mut room, 0, 2_000, |_, _| false).len(), 3);
    let dtx_cadence = MixerConfig { silence_repeats: u32::MAX, ..MixerConfig::default() };
    let mut room = Room::new(dtx_cadence, &[None, None]);
    assert_eq!(silence_packets(&mut room, 0, 200, |_, _| false).len(), 10, "one every 20 ticks");
}

#[test]
fn a_phone_leg_in_a_silent_room_still_gets_a_frame_every_tick() {
    let t0 = Instant::now();
    let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
    let phone = mixer.add_participant().unwrap();
    let browser = mixer.add_participant().unwrap();
    mixer.set_codecs(phone, AudioCodec::Pcmu, AudioCodec::Pcmu).unwrap();
    let mut out = MixOutputs::new();
    let (mut phone_frames, mut browser_frames) = (0, 0);
    for tick in 0..500u64 {
        mixer.tick(t0 + Duration::from_millis(tick * 20 + 12), &mut out);
        phone_frames += out.packets().iter().filter(|p| p.to == phone).count();
        browser_frames += out.packets().iter().filter(|p| p.to == browser).count();
    }
    assert_eq!(phone_frames, 500, "G.711 has no DTX: SBCs watch for RTP");
    assert_eq!(browser_frames, 4, "three at the DTX cadence and one keep-alive");
}
