//! Clock drift: a sender whose clock runs ±200 ppm off must not grow (or starve) the
//! jitter buffer without bound over ten minutes of virtual time.

use std::time::Duration;

use opus::Channels;

use super::super::{MixerConfig, RtpAudioIn};
use super::{Room, ToneSender};

/// Runs 10 minutes with one talker whose clock is off by `ppm`; returns (max buffered
/// after the first minute, skips, stalls, lost).
fn run_drift(ppm: f64) -> (Duration, u64, u64, u64) {
    let mut room = Room::new(MixerConfig::default(), &[None, None]);
    let talker = room.inputs[0];
    // 50 real encoded 20 ms frames, sent in a loop (encoding 30 000 frames adds nothing).
    let mut sender = ToneSender::new(440.0, Channels::Mono);
    let frames: Vec<(u8, Vec<u8>)> = (0..50).map(|_| sender.next(true)).map(|(_, _, l, p)| (l.0, p)).collect();
    let period_ms = 20.0 / (1.0 + ppm * 1e-6);
    let mut sent: u64 = 0;
    let mut max_buffered = Duration::ZERO;
    for tick in 0..30_000u64 {
        let tick_ms = tick as f64 * 20.0 + 12.0;
        while sent as f64 * period_ms + 1.0 <= tick_ms {
            let (level, payload) = &frames[(sent % 50) as usize];
            let packet = RtpAudioIn {
                seq: sent as u16,
                timestamp: (sent as u32).wrapping_mul(960),
                audio_level: Some((*level, true)),
                marker: false,
                payload,
            };
            room.mixer.push(room.at(sent as f64 * period_ms + 1.0), talker, &packet).unwrap();
            sent += 1;
        }
        room.mixer.tick(room.at(tick_ms), &mut room.out);
        if tick >= 3_000 {
            max_buffered = max_buffered.max(room.mixer.buffered(talker).unwrap());
        }
    }
    let stats = room.mixer.participant_stats(talker).unwrap().jitter;
    (max_buffered, stats.skips, stats.stalls, stats.lost)
}

#[test]
fn sender_200_ppm_fast_does_not_grow_the_buffer() {
    let (max_buffered, skips, _, _) = run_drift(200.0);
    // Uncorrected, +200 ppm over 10 minutes would pile up 120 ms.
    assert!(max_buffered <= Duration::from_millis(80), "buffer grew to {max_buffered:?}");
    assert!(skips >= 1, "drift must have been shed by dropping frames");
}

#[test]
fn sender_200_ppm_slow_does_not_starve_the_buffer() {
    let (max_buffered, _, stalls, lost) = run_drift(-200.0);
    assert!(max_buffered <= Duration::from_millis(80), "buffer grew to {max_buffered:?}");
    // 120 ms of drift = 6 frames; allow start-up and a few extra concealments
    assert!(stalls <= 12, "stalls {stalls}");
    assert!(lost <= 12, "lost {lost}");
}
