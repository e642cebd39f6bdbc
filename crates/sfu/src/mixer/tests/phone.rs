//! G.711 legs in the mixer: the shared mix is encoded once per codec its listeners use (not
//! once per listener), listeners of one codec share the very same payload bytes, and a PCMU
//! talker is heard by Opus and PCMA listeners.

use std::time::{Duration, Instant};

use opus::Channels;

use super::super::g711::{G711_FRAME_BYTES, Law};
use super::super::{AudioCodec, MixOutputs, MixPacketKind, Mixer, MixerConfig, RtpAudioIn};
use super::ToneSender;

#[test]
fn the_shared_mix_is_encoded_once_per_codec_and_listeners_of_a_codec_share_the_bytes() {
    let t0 = Instant::now();
    let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
    // 0: Opus talker, 1: PCMU talker, 2/3: PCMU listeners, 4: PCMA listener, 5: Opus listener,
    // 6/7: G.722 listeners.
    let inputs: Vec<_> = (0..8).map(|_| mixer.add_participant().unwrap()).collect();
    let codecs = [
        AudioCodec::Opus,
        AudioCodec::Pcmu,
        AudioCodec::Pcmu,
        AudioCodec::Pcmu,
        AudioCodec::Pcma,
        AudioCodec::Opus,
        AudioCodec::G722,
        AudioCodec::G722,
    ];
    for (input, codec) in inputs.iter().zip(codecs) {
        mixer.set_codecs(*input, codec, codec).unwrap();
    }
    let mut opus = ToneSender::new(440.0, Channels::Mono);
    let mut out = MixOutputs::new();
    let (mut mixed_ticks, mut shared_before) = (0, 0);
    for tick in 0..100u64 {
        let now = t0 + Duration::from_millis(tick * 20);
        let (seq, timestamp, level, payload) = opus.next(true);
        let packet = RtpAudioIn { seq, timestamp, audio_level: Some(level), marker: false, payload: &payload };
        mixer.push(now + Duration::from_millis(1), inputs[0], &packet).unwrap();
        let pcmu: Vec<u8> = (0..G711_FRAME_BYTES)
            .map(|n| {
                let t = (tick as usize * G711_FRAME_BYTES + n) as f32 / 8000.0;
                Law::Mu.encode((8000.0 * (std::f32::consts::TAU * 1000.0 * t).sin()) as i16)
            })
            .collect();
        let packet = RtpAudioIn {
            seq: tick as u16,
            timestamp: (tick as u32) * G711_FRAME_BYTES as u32,
            audio_level: None,
            marker: false,
            payload: &pcmu,
        };
        mixer.push(now + Duration::from_millis(1), inputs[1], &packet).unwrap();
        let before = mixer.stats().shared_encodes;
        mixer.tick(now + Duration::from_millis(10), &mut out);
        if tick < 50 {
            continue;
        }
        // Steady state: both talkers mixed; three listener codecs → three shared encodes.
        mixed_ticks += 1;
        shared_before += mixer.stats().shared_encodes - before;
        let to = |i: usize| out.packets().iter().find(|p| p.to == inputs[i]).copied().expect("a packet");
        let (a, b, pcma, opus_listener) = (to(2), to(3), to(4), to(5));
        assert_eq!(a.payload, b.payload, "two PCMU listeners point at the same bytes");
        assert_eq!(a.kind, MixPacketKind::SharedMix);
        assert_eq!(out.payload(a.payload).len(), G711_FRAME_BYTES);
        assert_eq!(out.payload(pcma.payload).len(), G711_FRAME_BYTES);
        assert_ne!(a.payload, pcma.payload);
        assert!(out.payload(opus_listener.payload).len() < G711_FRAME_BYTES, "the Opus listener gets Opus");
        // G.722 (stateful) too: one encoder for the shared stream, its bytes for both.
        let (g1, g2) = (to(6), to(7));
        assert_eq!((g1.payload, g1.kind), (g2.payload, MixPacketKind::SharedMix), "G.722 listeners share");
        assert_eq!(out.payload(g1.payload).len(), crate::mixer::g722::G722_FRAME_BYTES);
        // The PCMU talker's mix-minus is PCMU too (its own codec), the Opus talker's Opus.
        assert_eq!(out.payload(to(1).payload).len(), G711_FRAME_BYTES);
        assert_eq!(to(1).kind, MixPacketKind::MixMinus);
    }
    assert_eq!(shared_before, 4 * mixed_ticks, "one encode per listener codec per tick (Opus, PCMU, PCMA, G.722)");
    // The timestamps of G.711 outputs advance by 160 per tick.
    let ts = |out: &MixOutputs| out.packets().iter().find(|p| p.to == inputs[2]).unwrap().timestamp;
    let before = ts(&out);
    mixer.tick(t0 + Duration::from_millis(100 * 20 + 10), &mut out);
    assert_eq!(ts(&out).wrapping_sub(before), G711_FRAME_BYTES as u32);
}
