//! Unmixed recording on tick numbers: channel choice (affinity, ordering, arrival, overflow),
//! alignment, pause, and the interleaved WAV read back.

use super::*;

fn tone(hz: f64, tick: u64) -> [i16; FRAME] {
    let mut frame = [0i16; FRAME];
    for (i, s) in frame.iter_mut().enumerate() {
        let t = (tick as f64 * FRAME as f64 + i as f64) / 48_000.0;
        *s = ((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16;
    }
    frame
}

/// (channels, interleaved samples) of a PCM16 WAV.
fn read_wav(path: &Path) -> (usize, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]) as usize;
    assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), WAV_RATE);
    let samples = bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    (channels, samples)
}

/// Peak of channel `c` over 16 kHz frames `frames`.
fn peak(samples: &[i16], channels: usize, c: usize, frames: std::ops::Range<usize>) -> i16 {
    samples[frames.start * OUT_FRAME * channels..frames.end * OUT_FRAME * channels]
        .iter()
        .skip(c)
        .step_by(channels)
        .map(|s| s.saturating_abs())
        .max()
        .unwrap_or(0)
}

fn dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("palaver-unmixed-{name}-{}", std::process::id()))
}

#[test]
fn channels_follow_affinity_then_ordering_then_arrival_and_stay_aligned() {
    let dir = dir("order");
    let affinity = vec![(0, "8:acs:carol".to_owned())];
    let order = vec!["8:acs:bob".to_owned()];
    let mut rec = UnmixedRecorder::create(&dir, "u1", affinity, order, false).unwrap();
    // alice speaks from tick 100, bob from 110, carol from 120; all until 150.
    for tick in 100..150u64 {
        rec.push("8:acs:alice", tick, &tone(440.0, tick)).unwrap();
        if tick >= 110 {
            rec.push("8:acs:bob", tick, &tone(660.0, tick)).unwrap();
        }
        if tick >= 120 {
            rec.push("8:acs:carol", tick, &tone(1000.0, tick)).unwrap();
        }
    }
    let file = rec.finish().unwrap();
    assert_eq!(file.channels, ["8:acs:carol", "8:acs:bob", "8:acs:alice"]);
    assert_eq!(file.duration_ms, 50 * 20);
    let (channels, samples) = read_wav(&file.path);
    assert_eq!((channels, samples.len()), (3, 3 * 50 * OUT_FRAME));
    // Aligned on the ticks: each channel is silent before its participant spoke.
    assert!(peak(&samples, 3, 2, 0..50) > 7000, "alice on channel 2 from the start");
    assert_eq!(peak(&samples, 3, 1, 0..10), 0, "bob's channel is silent before tick 110");
    assert!(peak(&samples, 3, 1, 10..50) > 7000);
    assert_eq!(peak(&samples, 3, 0, 0..20), 0, "carol's channel is silent before tick 120");
    assert!(peak(&samples, 3, 0, 20..50) > 7000);
    assert!(!dir.join("u1.ch0.part").exists(), "the channel scratch files are gone");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn paused_ticks_are_skipped_and_extra_participants_share_the_last_channel() {
    let dir = dir("pause");
    let mut rec = UnmixedRecorder::create(&dir, "u2", Vec::new(), Vec::new(), false).unwrap();
    let names: Vec<String> = (0..7).map(|i| format!("8:acs:p{i}")).collect();
    for tick in 0..60u64 {
        rec.set_paused((20..40).contains(&tick));
        for (i, name) in names.iter().enumerate() {
            rec.push(name, tick, &tone(300.0 + 100.0 * i as f64, tick)).unwrap();
        }
    }
    let file = rec.finish().unwrap();
    assert_eq!(file.duration_ms, 40 * 20, "20 paused ticks are not in the file");
    assert_eq!(file.channels.len(), MAX_CHANNELS);
    assert_eq!(file.channels[..4], names[..4]);
    assert_eq!(file.channels[4], names[4..].join(","), "participants 5-7 share the last channel");
    let (channels, samples) = read_wav(&file.path);
    assert_eq!(channels, MAX_CHANNELS);
    assert!(peak(&samples, channels, 4, 0..40) > 8000, "three tones summed on the last channel");
    std::fs::remove_dir_all(&dir).unwrap();
}
