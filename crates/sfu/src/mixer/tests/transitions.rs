//! Passthrough ↔ mixed transitions must not click: a listener decodes its stream across
//! both switches and a click detector (second-difference energy, sample steps) compares
//! the switch regions with the steady signal. The detector itself is checked on a
//! deliberately spliced signal so the test can fail.

use super::super::{MixMode, MixerConfig};
use super::{AMPLITUDE, RATE, Room, click_energy, max_step};

const SAMPLES_PER_TICK: usize = 960;

fn run() -> (Room, Vec<u64>) {
    // A (440 Hz) talks throughout; B (660 Hz) joins from 2 s to 4 s; C listens.
    let mut room = Room::new(MixerConfig::default(), &[Some(440.0), Some(660.0), None]);
    let mut switches = Vec::new();
    let mut previous = room.mixer.mode();
    for _ in 0..350 {
        room.step(|i, tick| i == 0 || (100..200).contains(&tick), |_, _| false);
        let mode = room.mixer.mode();
        let kind = |m: MixMode| matches!(m, MixMode::Mixed);
        if kind(mode) != kind(previous) && room.tick > 20 {
            switches.push(room.tick - 1);
        }
        previous = mode;
    }
    (room, switches)
}

#[test]
fn passthrough_and_mixed_switches_do_not_click() {
    let (room, switches) = run();
    assert_eq!(switches.len(), 2, "expected passthrough→mixed→passthrough, got {switches:?}");
    let heard = &room.receivers[2].samples;
    let steady_step = max_step(heard, 60 * SAMPLES_PER_TICK..90 * SAMPLES_PER_TICK);
    for &tick in &switches {
        let region = (tick as usize - 2) * SAMPLES_PER_TICK..(tick as usize + 3) * SAMPLES_PER_TICK;
        let (peak, median) = click_energy(heard, region.clone(), 20 * SAMPLES_PER_TICK);
        let ratio_db = 10.0 * (peak / median).log10();
        let step = max_step(heard, region);
        println!(
            "switch at tick {tick}: HF peak {ratio_db:.1} dB over median, max step {step:.0} (steady {steady_step:.0})"
        );
        assert!(ratio_db <= 12.0, "click at tick {tick}: HF energy {ratio_db:.1} dB over the median");
        // the steepest a clean 440 + 660 Hz mix can move, with 50 % codec headroom
        let natural = 1.5 * AMPLITUDE * std::f32::consts::TAU * (440.0 + 660.0) / RATE;
        assert!(step <= natural, "click at tick {tick}: step {step:.0} > {natural:.0}");
    }
}

#[test]
fn a_talker_switching_between_raw_pair_packets_and_its_mix_minus_does_not_click() {
    // A (440) and B (660) talk throughout; C (880) joins from 2 s to 4 s. A's stream goes
    // from B's own packets to A's mix-minus encode (B + C) and back.
    let mut room = Room::new(MixerConfig::default(), &[Some(440.0), Some(660.0), Some(880.0)]);
    let mut switches = Vec::new();
    let mut previous = 0;
    for _ in 0..350 {
        room.step(|i, tick| i < 2 || (100..200).contains(&tick), |_, _| false);
        let talkers = room.mixer.talkers().count();
        if talkers != previous && room.tick > 20 {
            switches.push(room.tick - 1);
        }
        previous = talkers;
    }
    assert_eq!(switches.len(), 2, "expected 2 → 3 → 2 talkers, got {switches:?}");
    let heard = &room.receivers[0].samples;
    for &tick in &switches {
        let region = (tick as usize - 2) * SAMPLES_PER_TICK..(tick as usize + 3) * SAMPLES_PER_TICK;
        let (peak, median) = click_energy(heard, region.clone(), 20 * SAMPLES_PER_TICK);
        let ratio_db = 10.0 * (peak / median).log10();
        let step = max_step(heard, region);
        println!("talker A, switch at tick {tick}: HF peak {ratio_db:.1} dB over median, max step {step:.0}");
        assert!(ratio_db <= 12.0, "click at tick {tick}: HF energy {ratio_db:.1} dB over the median");
        let natural = 1.5 * AMPLITUDE * std::f32::consts::TAU * (660.0 + 880.0) / RATE;
        assert!(step <= natural, "click at tick {tick}: step {step:.0} > {natural:.0}");
    }
}

#[test]
fn the_click_detector_catches_a_hard_splice() {
    let (room, _) = run();
    let mut spliced = room.receivers[2].samples.clone();
    // cut 3.3 ms out of the steady passthrough tone at 1.2 s: a phase jump, i.e. a click
    let at = 60 * SAMPLES_PER_TICK;
    spliced.drain(at..at + 160);
    let region = at - 2 * SAMPLES_PER_TICK..at + 2 * SAMPLES_PER_TICK;
    let (peak, median) = click_energy(&spliced, region, 20 * SAMPLES_PER_TICK);
    let ratio_db = 10.0 * (peak / median).log10();
    println!("spliced: HF peak {ratio_db:.1} dB over median");
    assert!(ratio_db > 12.0, "detector missed a splice: {ratio_db:.1} dB");
}
