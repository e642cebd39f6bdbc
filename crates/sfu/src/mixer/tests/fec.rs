//! Is in-band FEC (LBRR) actually produced at the mixer's encoder settings? A lost frame is
//! recovered from the next packet (`decode(next, fec = true)`) and compared with the frame
//! the decoder would have produced had it arrived: with LBRR the recovery tracks the signal,
//! without it libopus can only conceal (PLC), which drifts away on a changing signal.

use opus::{Decoder, Encoder};

use super::super::codec::{EncoderSettings, OutputChannels, new_encoder};
use super::super::opus_toc::FRAME_SAMPLES;

/// Speech-like test signal: a 140 Hz voice with harmonics whose pitch glides and whose
/// loudness is syllable-modulated (4 Hz), so PLC cannot simply continue a steady tone.
fn voice(frame: usize) -> Vec<i16> {
    (0..FRAME_SAMPLES)
        .map(|i| {
            let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
            let pitch = 140.0 + 40.0 * (std::f32::consts::TAU * 0.7 * t).sin();
            let envelope = 0.55 + 0.45 * (std::f32::consts::TAU * 4.0 * t).sin();
            let phase = std::f32::consts::TAU * pitch * t;
            let sample: f32 = (1..=12).map(|h| (phase * h as f32).sin() / h as f32).sum();
            (6_000.0 * envelope * sample) as i16
        })
        .collect()
}

/// Mean SNR (dB) of frames recovered from the following packet's FEC data against the same
/// frames decoded normally, over every 10th frame of 4 s of `voice`; plus the TOC configs seen.
fn recovery_snr_db(settings: &EncoderSettings) -> (f64, Vec<u8>) {
    let mut encoder: Encoder = new_encoder(settings, OutputChannels::Mono).unwrap();
    let mut packets = Vec::new();
    let mut buf = [0u8; 1500];
    for frame in 0..200 {
        let len = encoder.encode(&voice(frame), &mut buf).unwrap();
        packets.push(buf[..len].to_vec());
    }
    let mut configs: Vec<u8> = packets.iter().map(|p| p[0] >> 3).collect();
    configs.sort_unstable();
    configs.dedup();
    let mut snrs = Vec::new();
    for lost in (50..190).step_by(10) {
        let mut reference = Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut recovering = Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        for packet in &packets[..lost] {
            reference.decode(packet, &mut pcm, false).unwrap();
            recovering.decode(packet, &mut pcm, false).unwrap();
        }
        let mut expected = vec![0i16; FRAME_SAMPLES];
        reference.decode(&packets[lost], &mut expected, false).unwrap();
        let mut recovered = vec![0i16; FRAME_SAMPLES];
        recovering.decode(&packets[lost + 1], &mut recovered, true).unwrap();
        let signal: f64 = expected.iter().map(|&s| f64::from(s).powi(2)).sum();
        let error: f64 = expected.iter().zip(&recovered).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
        snrs.push(10.0 * (signal / error.max(1.0)).log10());
    }
    (snrs.iter().sum::<f64>() / snrs.len() as f64, configs)
}

/// At the default 32 kb/s with 5 % expected loss libopus emits no LBRR (recovery equals PLC);
/// from 40 kb/s at 5 % (or 32 kb/s at 10 %) it does. The default stays at 32 kb/s / 5 %:
/// spending bits on LBRR cost the signal tests 5 dB (40 kb/s) to 14 dB (32 kb/s, 10 %) of
/// clean SNR (docs/mixer.md). This proves the settings reach libopus and FEC works when the
/// bitrate allows, and prints the default's figure.
#[test]
fn inband_fec_recovers_lost_frames_once_the_bitrate_allows() {
    let default = EncoderSettings::default();
    let (at_default, _) = recovery_snr_db(&default);
    let on = EncoderSettings { bitrate_bps: 40_000, ..default };
    assert!(on.inband_fec && on.expected_loss_percent > 0, "FEC needs a loss percentage above zero");
    let off = EncoderSettings { inband_fec: false, ..on };
    let (with_fec, configs) = recovery_snr_db(&on);
    let (without, _) = recovery_snr_db(&off);
    eprintln!(
        "FEC recovery SNR: {at_default:.1} dB at the default {} b/s / {} %; at 40 kb/s {with_fec:.1} dB with FEC, \
         {without:.1} dB PLC only; TOC configs {configs:?}",
        default.bitrate_bps, default.expected_loss_percent
    );
    // SILK (0..=11) or hybrid (12..=15) packets: the modes that carry LBRR.
    assert!(configs.iter().all(|&c| c <= 15), "CELT-only packets carry no FEC: {configs:?}");
    assert!(with_fec > without + 6.0, "FEC recovery {with_fec:.1} dB is no better than PLC {without:.1} dB");
}
