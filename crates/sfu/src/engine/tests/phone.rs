//! A SIP trunk leg in the live path: a plain RTP/AVP peer speaking PCMU (no SRTP, SSRC not
//! signalled) and a QUIC participant speaking Opus share one router. Each hears the other's
//! tone through the mixer and not its own; the phone's stream is PCMU (static payload type
//! 0, 160-byte frames, timestamps in 8 kHz steps), sent every 20 ms.

use std::net::SocketAddr;
use std::time::Duration;

use opus::{Channels, Decoder};

use crate::engine::*;
use crate::mixer::MixerConfig;
use crate::mixer::g711::{G711_FRAME_BYTES, Law};
use crate::mixer::tests::{AMPLITUDE, ToneSender, reference_tone_db, tone_db};
use crate::net::DirectLink;
use crate::router::{LayerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use crate::rtp::{Codec, ExtensionMap, RtpHeader, is_rtcp};
use crate::testing::TestEngine;
use palaver_core::MediaKind;

const ROOM: RouterId = RouterId(5);
const PHONE: TransportId = TransportId(40);
const QUIC: TransportId = TransportId(41);
const OPUS: u8 = 111;
const PHONE_TONE: f32 = 1000.0;
const QUIC_TONE: f32 = 440.0;

fn phone_addr() -> SocketAddr {
    "127.0.0.1:6000".parse().unwrap()
}

fn pcmu_producer() -> ProducerSpec {
    ProducerSpec {
        id: ProducerId(1),
        transport: PHONE,
        kind: MediaKind::Audio,
        mid: None,
        codecs: vec![(0, Codec::Pcmu)],
        layers: vec![LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: 0, height: 0, max_bitrate_bps: 0 }],
        extensions: ExtensionMap::default(),
    }
}

/// A phone: 20 ms of µ-law tone per packet, like SIPp playing a pcap.
struct PhoneSender {
    phase: f32,
    seq: u16,
    timestamp: u32,
}

impl PhoneSender {
    fn next(&mut self) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&0x5EED_u32.to_be_bytes());
        let step = std::f32::consts::TAU * PHONE_TONE / 8000.0;
        for _ in 0..G711_FRAME_BYTES {
            p.push(Law::Mu.encode((AMPLITUDE * self.phase.sin()) as i16));
            self.phase = (self.phase + step) % std::f32::consts::TAU;
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(G711_FRAME_BYTES as u32);
        p
    }
}

#[test]
fn a_pcmu_phone_and_an_opus_participant_hear_each_other_through_the_mixer() {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 9);
    let link = DirectLink::new(256);
    t.commands([
        Command::CreateRouter { router: ROOM },
        Command::AddRtpTransport { id: PHONE, router: ROOM, remote: phone_addr() },
        Command::AddProducer { router: ROOM, spec: pcmu_producer() },
        Command::SetMixOutput {
            router: ROOM,
            transport: PHONE,
            output: Some(MixOutputSpec { ssrc: 0x7000, payload_type: 0 }),
        },
        Command::AddDirectTransport { id: QUIC, router: ROOM, link: link.clone() },
        Command::AddProducer { router: ROOM, spec: ProducerSpec::opus(ProducerId(2), QUIC, OPUS, 0xA1, 1) },
        Command::SetMixOutput {
            router: ROOM,
            transport: QUIC,
            output: Some(MixOutputSpec { ssrc: 0x7001, payload_type: OPUS }),
        },
    ]);
    t.drive(Duration::from_millis(1));
    let mut phone = PhoneSender { phase: 0.0, seq: 100, timestamp: 16_000 };
    let mut quic = ToneSender::new(QUIC_TONE, Channels::Mono);
    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let (mut phone_heard, mut quic_heard) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (mut phone_timestamps, mut phone_sizes) = (Vec::new(), Vec::new());
    for _ in 0..150 {
        t.datagram(phone_addr(), phone.next());
        let (seq, ts, level, payload) = quic.next(true);
        let mut packet = vec![0x90, OPUS];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&ts.to_be_bytes());
        packet.extend_from_slice(&0xA1_u32.to_be_bytes());
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1 << 4, (u8::from(level.1) << 7) | level.0, 0, 0]);
        packet.extend_from_slice(&payload);
        t.direct(QUIC, &packet);
        t.drive(Duration::from_millis(20));
        for (to, packet) in t.out.sent.drain(..) {
            if is_rtcp(&packet) {
                continue;
            }
            assert_eq!(to, phone_addr(), "plain RTP goes to the phone's SDP address");
            let h = RtpHeader::parse(&packet).unwrap();
            assert_eq!((h.payload_type, h.ssrc), (0, 0x7000));
            phone_timestamps.push(h.timestamp);
            phone_sizes.push(h.payload(&packet).len());
            // Zero-order hold back to 48 kHz for the analysis helpers.
            for &b in h.payload(&packet) {
                phone_heard.extend(std::iter::repeat_n(f32::from(Law::Mu.decode(b)), 6));
            }
        }
        while let Some(packet) = link.pop_egress() {
            if is_rtcp(&packet) {
                continue;
            }
            let h = RtpHeader::parse(&packet).unwrap();
            assert_eq!(h.payload_type, OPUS);
            let mut pcm = [0i16; 960];
            decoder.decode(h.payload(&packet), &mut pcm, false).unwrap();
            quic_heard.extend(pcm.iter().map(|&s| f32::from(s)));
        }
    }
    assert!(phone_sizes.len() >= 140 && phone_sizes.iter().all(|&n| n == G711_FRAME_BYTES), "{phone_sizes:?}");
    assert!(phone_timestamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160), "8 kHz timestamps");
    let window = 48_000;
    let phone_last = &phone_heard[phone_heard.len() - window..];
    let quic_last = &quic_heard[quic_heard.len() - window..];
    let heard_by_phone = tone_db(phone_last, QUIC_TONE) - reference_tone_db(QUIC_TONE, window);
    let heard_by_quic = tone_db(quic_last, PHONE_TONE) - reference_tone_db(PHONE_TONE, window);
    assert!(heard_by_phone.abs() <= 3.0, "the phone hears the QUIC tone at {heard_by_phone:+.1} dB");
    assert!(heard_by_quic.abs() <= 3.0, "the QUIC participant hears the phone tone at {heard_by_quic:+.1} dB");
    let echo_phone = tone_db(phone_last, QUIC_TONE) - tone_db(phone_last, PHONE_TONE);
    let echo_quic = tone_db(quic_last, PHONE_TONE) - tone_db(quic_last, QUIC_TONE);
    assert!(echo_phone >= 25.0, "the phone's own tone only {echo_phone:.1} dB below");
    assert!(echo_quic >= 25.0, "the QUIC participant's own tone only {echo_quic:.1} dB below");
    let c = t.counters();
    assert_eq!(c.dropped_total(), 0, "plain RTP in, SSRC learned, nothing dropped: {c:?}");
    // The phone's address is released with the transport.
    t.command(Command::RemoveTransport { transport: PHONE }).unwrap();
    t.datagram(phone_addr(), phone.next());
    assert_eq!(t.counters().dropped(DropReason::UnknownSource), 1);
}
