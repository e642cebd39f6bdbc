//! Mixer steady state allocates nothing: a counting global allocator watches many ticks
//! (and packet pushes) through silence, passthrough and mixed output. Also measures the
//! memory one added participant costs, and a room's fixed codec pool (glibc mallinfo2,
//! which sees libopus' own mallocs as well).

use std::time::{Duration, Instant};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use opus::{Application, Bitrate, Channels, Encoder};
use palaver_sfu::mixer::{MixOutputs, Mixer, MixerConfig, MixerInput, RtpAudioIn};

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

/// 20 ms Opus frames of a 440 Hz tone (on) and of silence (off), encoded up front.
fn frames(on: bool, count: usize) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
    encoder.set_bitrate(Bitrate::Bits(32_000)).unwrap();
    let mut phase = 0.0f32;
    (0..count)
        .map(|_| {
            let pcm: Vec<i16> = (0..960)
                .map(|_| {
                    phase += std::f32::consts::TAU * 440.0 / 48_000.0;
                    if on { (8000.0 * phase.sin()) as i16 } else { 0 }
                })
                .collect();
            encoder.encode_vec(&pcm, 1500).unwrap()
        })
        .collect()
}

/// Who talks at `tick`: cycles silence → one talker → three talkers → one talker.
fn talking(i: usize, tick: u64) -> bool {
    match (tick / 100) % 4 {
        0 => false,
        1 | 3 => i == 0,
        _ => i < 3,
    }
}

fn run(
    mixer: &mut Mixer,
    inputs: &[MixerInput],
    t0: Instant,
    ticks: std::ops::Range<u64>,
    voice: &[Vec<u8>],
    quiet: &[Vec<u8>],
    out: &mut MixOutputs,
) {
    for tick in ticks {
        let base = t0 + Duration::from_millis(tick * 20);
        for (i, &input) in inputs.iter().enumerate().take(5) {
            let on = talking(i, tick);
            let payload = if on { &voice[tick as usize % voice.len()] } else { &quiet[tick as usize % quiet.len()] };
            let packet = RtpAudioIn {
                seq: tick as u16,
                timestamp: (tick as u32).wrapping_mul(960),
                audio_level: Some(if on { (20, true) } else { (127, false) }),
                marker: false,
                payload,
            };
            mixer.push(base + Duration::from_millis(1), input, &packet).unwrap();
        }
        mixer.tick(base + Duration::from_millis(12), out);
    }
}

#[test]
fn steady_state_ticks_and_pushes_do_not_allocate_and_memory_is_measured() {
    let voice = frames(true, 50);
    let quiet = frames(false, 50);
    let t0 = Instant::now();

    // memory: the room's fixed part (codec pool) and the cost of one more participant
    let before_room = heap_in_use();
    let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
    let room_bytes = heap_in_use() - before_room;
    let before = heap_in_use();
    let inputs: Vec<MixerInput> = (0..100).map(|_| mixer.add_participant().unwrap()).collect();
    let per_participant = (heap_in_use() - before) / 100;
    println!(
        "room fixed (K=3 codec pool, shared encoder): {room_bytes} bytes; per participant: {per_participant} bytes"
    );
    assert!(per_participant < 64 * 1024, "per participant {per_participant} bytes");

    let mut out = MixOutputs::new();
    // warm-up: one full cycle through every mode grows every buffer once
    run(&mut mixer, &inputs, t0, 0..400, &voice, &quiet, &mut out);
    let stats_before = mixer.stats();
    let ((), allocated) =
        counting_alloc::counted(|| run(&mut mixer, &inputs, t0, 400..2_000, &voice, &quiet, &mut out));
    let stats = mixer.stats();
    assert!(stats.mix_minus_encodes > stats_before.mix_minus_encodes, "mixed mode was exercised");
    assert!(stats.passthrough_packets > stats_before.passthrough_packets, "passthrough was exercised");
    assert_eq!(allocated, 0, "1600 ticks and 8000 pushes allocated {allocated} times");
}

/// Bytes currently allocated from the C heap (Rust's System allocator and libopus both
/// allocate there).
fn heap_in_use() -> i64 {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks as i64 + info.hblkhd as i64
}
