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

/// The RTP headers of the packets a phone got (asserted: one SSRC `ssrc`, one sequence space
/// without gaps), the telephone-events among them (payload type `te`) and the digits they
/// decode to.
fn one_stream_with_tones(
    packets: &[Vec<u8>],
    ssrc: u32,
    te: u8,
) -> (Vec<RtpHeader>, Vec<(RtpHeader, crate::rtp::telephone_event::TelephoneEvent)>, Vec<u8>) {
    use crate::rtp::telephone_event::{TelephoneEvent, ToneDetector};
    let headers: Vec<RtpHeader> = packets.iter().map(|p| RtpHeader::parse(p).unwrap()).collect();
    assert!(headers.iter().all(|h| h.ssrc == ssrc), "one stream: the mix's SSRC");
    assert!(headers.windows(2).all(|w| w[1].sequence == w[0].sequence.wrapping_add(1)), "one sequence space");
    let tones: Vec<(RtpHeader, TelephoneEvent)> = headers
        .iter()
        .zip(packets)
        .filter(|(h, _)| h.payload_type == te)
        .map(|(h, p)| (*h, TelephoneEvent::parse(h.payload(p)).unwrap()))
        .collect();
    let mut detector = ToneDetector::default();
    let digits = tones.iter().filter_map(|(h, e)| detector.on_packet(h.timestamp, e)).map(|e| e.event).collect();
    (headers, tones, digits)
}

/// DTMF out to a phone: a direct participant (Call Automation's leg, a QUIC user) sends RFC
/// 4733 digits on its transport; the phone's mix stream carries them under the phone's own
/// telephone-event payload type, with the mix's SSRC, its running sequence numbers and its
/// 8 kHz timestamps (one RTP timestamp per tone, the marker on each tone's first packet,
/// three end packets), the µ-law packets pausing while a tone plays. A second phone that did
/// not agree to telephone-events keeps getting audio only.
#[test]
fn tones_of_a_participant_go_out_to_the_phone_in_its_mix_stream() {
    use crate::rtp::telephone_event::{TelephoneEvent, tone_packets, write_packet};
    const OTHER_PHONE: TransportId = TransportId(42);
    const PHONE_TE: u8 = 96;
    let other_addr: SocketAddr = "127.0.0.1:6100".parse().unwrap();
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 9);
    let link = DirectLink::new(256);
    let mix = |transport, ssrc| Command::SetMixOutput {
        router: ROOM,
        transport,
        output: Some(MixOutputSpec { ssrc, payload_type: 0 }),
    };
    t.commands([
        Command::CreateRouter { router: ROOM },
        Command::AddRtpTransport { id: PHONE, router: ROOM, remote: phone_addr() },
        Command::AddProducer { router: ROOM, spec: pcmu_producer() },
        mix(PHONE, 0x7000),
        Command::SetTelephoneEvent { transport: PHONE, payload_type: Some(PHONE_TE) },
        Command::SetMixAudio {
            router: ROOM,
            audio: MixAudio::TelephoneEventsOut { transport: PHONE, payload_type: Some(PHONE_TE), clock_rate: 8000 },
        },
        Command::AddRtpTransport { id: OTHER_PHONE, router: ROOM, remote: other_addr },
        mix(OTHER_PHONE, 0x7002),
        Command::AddDirectTransport { id: QUIC, router: ROOM, link: link.clone() },
        Command::AddProducer { router: ROOM, spec: ProducerSpec::opus(ProducerId(2), QUIC, OPUS, 0xA1, 1) },
        Command::SetTelephoneEvent { transport: QUIC, payload_type: Some(101) },
    ]);
    t.drive(Duration::from_millis(1));
    let mut phone = PhoneSender { phase: 0.0, seq: 100, timestamp: 16_000 };
    // The sender's plan: digits 1, 2, 3, each 100 ms, 60 ms apart (as the leg sends them).
    let mut plan: Vec<Option<(bool, u32, TelephoneEvent)>> = Vec::new();
    for (i, digit) in [1u8, 2, 3].into_iter().enumerate() {
        let ts = 90_000 + i as u32 * 11 * 960;
        plan.extend(tone_packets(digit, 10, 800).map(|(marker, e)| Some((marker, ts, e))));
        plan.extend([None, None, None]);
    }
    plan.extend(std::iter::repeat_n(None, 10));
    let (mut to_phone, mut to_other) = (Vec::new(), 0);
    for (i, step) in plan.iter().enumerate() {
        t.datagram(phone_addr(), phone.next());
        if let Some((marker, ts, event)) = step {
            let mut buf = [0u8; 32];
            let n = write_packet(&mut buf, 101, *marker, 500 + i as u16, *ts, 0xA1, event).unwrap();
            t.direct(QUIC, &buf[..n]);
        }
        t.drive(Duration::from_millis(20));
        for (to, packet) in t.out.sent.drain(..) {
            if is_rtcp(&packet) {
                continue;
            }
            if to == other_addr {
                let h = RtpHeader::parse(&packet).unwrap();
                assert_eq!((h.payload_type, h.ssrc), (0, 0x7002), "no tones to a phone without telephone-event");
                to_other += 1;
                continue;
            }
            to_phone.push(packet);
        }
    }
    let (headers, tones, digits) = one_stream_with_tones(&to_phone, 0x7000, PHONE_TE);
    assert_eq!(digits, [1, 2, 3], "the phone decodes the digits");
    assert_eq!(tones.len(), 3 * 8, "5 updates and 3 ends per digit");
    let markers: Vec<u32> = tones.iter().filter(|(h, _)| h.marker).map(|(h, _)| h.timestamp).collect();
    assert_eq!(markers.len(), 3, "a marker on each tone's first packet");
    for (h, e) in &tones {
        assert_eq!(e.volume, 10);
        assert!(markers.contains(&h.timestamp), "every packet carries its tone's start timestamp");
    }
    // Each tone starts at the timestamp its tick's µ-law packet would have had, and the audio
    // after it goes on in the same 8 kHz clock.
    for w in headers.windows(2) {
        if w[1].marker && w[1].payload_type == PHONE_TE {
            assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
        }
        if w[0].payload_type == PHONE_TE && w[1].payload_type == 0 {
            let tone_start = w[0].timestamp;
            assert_eq!(w[1].timestamp.wrapping_sub(tone_start), 8 * 160, "audio resumes on the running clock");
        }
    }
    assert!(tones.iter().all(|(_, e)| e.duration <= 960), "durations in 8 kHz units");
    assert!(to_other >= plan.len() - 2, "the other phone heard the mix throughout ({to_other})");
    assert_eq!(t.counters().dropped_total(), 0);
}

/// `sendDtmfTones` to one participant: tones sent under an addressed SSRC (the Call
/// Automation leg registers its tone stream's audience as the target) reach that listener's
/// phone only; tones under the sender's own SSRC reach every phone that takes tones.
#[test]
fn tones_under_an_addressed_ssrc_reach_only_its_listeners() {
    use crate::rtp::telephone_event::{TelephoneEvent, ToneDetector, tone_packets, write_packet};
    const PHONE_B: TransportId = TransportId(43);
    let addr_b: SocketAddr = "127.0.0.1:6200".parse().unwrap();
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 9);
    let link = DirectLink::new(256);
    let mut commands = vec![Command::CreateRouter { router: ROOM }];
    for (id, addr, ssrc) in [(PHONE, phone_addr(), 0x7000), (PHONE_B, addr_b, 0x7003)] {
        commands.extend([
            Command::AddRtpTransport { id, router: ROOM, remote: addr },
            Command::SetMixOutput {
                router: ROOM,
                transport: id,
                output: Some(MixOutputSpec { ssrc, payload_type: 0 }),
            },
            Command::SetMixAudio {
                router: ROOM,
                audio: MixAudio::TelephoneEventsOut { transport: id, payload_type: Some(101), clock_rate: 8000 },
            },
        ]);
    }
    commands.extend([
        Command::AddDirectTransport { id: QUIC, router: ROOM, link: link.clone() },
        Command::AddProducer { router: ROOM, spec: ProducerSpec::opus(ProducerId(2), QUIC, OPUS, 0xA1, 1) },
        Command::SetTelephoneEvent { transport: QUIC, payload_type: Some(101) },
        Command::SetMixAudio {
            router: ROOM,
            audio: MixAudio::Audience { transport: QUIC, ssrc: 0xA2, listeners: Some(vec![PHONE_B]) },
        },
    ]);
    t.commands(commands);
    t.drive(Duration::from_millis(1));
    // Digit 4 to phone B only (SSRC 0xA2), then digit 7 to everyone (the audio SSRC 0xA1).
    let mut plan: Vec<Option<(u32, u32, bool, TelephoneEvent)>> = Vec::new();
    for (digit, ssrc, ts) in [(4u8, 0xA2u32, 1000u32), (7, 0xA1, 9000)] {
        plan.extend(tone_packets(digit, 10, 800).map(|(m, e)| Some((ssrc, ts, m, e))));
        plan.extend(std::iter::repeat_n(None, 4));
    }
    let (mut detectors, mut digits) = ([ToneDetector::default(); 2], [Vec::new(), Vec::new()]);
    for (i, step) in plan.iter().enumerate() {
        if let Some((ssrc, ts, marker, event)) = step {
            let mut buf = [0u8; 32];
            let n = write_packet(&mut buf, 101, *marker, 700 + i as u16, *ts, *ssrc, event).unwrap();
            t.direct(QUIC, &buf[..n]);
        }
        t.drive(Duration::from_millis(20));
        for (to, packet) in t.out.sent.drain(..) {
            let Ok(h) = RtpHeader::parse(&packet) else { continue };
            if is_rtcp(&packet) || h.payload_type != 101 {
                continue;
            }
            let which = usize::from(to == addr_b);
            let event = TelephoneEvent::parse(h.payload(&packet)).unwrap();
            digits[which].extend(detectors[which].on_packet(h.timestamp, &event).map(|e| e.event));
        }
    }
    assert_eq!(digits[0], [7], "phone A gets only the tone sent to everyone");
    assert_eq!(digits[1], [4, 7], "phone B gets the tone addressed to it and the one to everyone");
}

/// DTMF out to an Opus trunk (`telephone-event/48000`): in a silent room the mixer sends an
/// Opus listener a silence packet only every few ticks, yet the tones keep their 20 ms pace
/// on the mix stream: one SSRC, no sequence gap, durations in 48 kHz units (960 per tick),
/// the digits decoded once each.
#[test]
fn tones_reach_an_opus_trunk_at_its_48_khz_clock_even_in_a_silent_room() {
    use crate::rtp::telephone_event::{TelephoneEvent, tone_packets, write_packet};
    const PHONE_TE: u8 = 97;
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 9);
    let link = DirectLink::new(256);
    t.commands([
        Command::CreateRouter { router: ROOM },
        Command::AddRtpTransport { id: PHONE, router: ROOM, remote: phone_addr() },
        Command::SetMixOutput {
            router: ROOM,
            transport: PHONE,
            output: Some(MixOutputSpec { ssrc: 0x7000, payload_type: OPUS }),
        },
        Command::SetMixAudio {
            router: ROOM,
            audio: MixAudio::TelephoneEventsOut { transport: PHONE, payload_type: Some(PHONE_TE), clock_rate: 48_000 },
        },
        Command::AddDirectTransport { id: QUIC, router: ROOM, link: link.clone() },
        Command::AddProducer { router: ROOM, spec: ProducerSpec::opus(ProducerId(2), QUIC, OPUS, 0xA1, 1) },
        Command::SetTelephoneEvent { transport: QUIC, payload_type: Some(101) },
    ]);
    t.drive(Duration::from_millis(1));
    let mut plan: Vec<Option<(bool, u32, TelephoneEvent)>> = vec![None; 5];
    for (i, digit) in [1u8, 2, 3].into_iter().enumerate() {
        let ts = 90_000 + i as u32 * 11 * 960;
        plan.extend(tone_packets(digit, 10, 800).map(|(marker, e)| Some((marker, ts, e))));
        plan.extend([None, None, None]);
    }
    plan.extend(std::iter::repeat_n(None, 10));
    let mut to_phone = Vec::new();
    for (i, step) in plan.iter().enumerate() {
        if let Some((marker, ts, event)) = step {
            let mut buf = [0u8; 32];
            let n = write_packet(&mut buf, 101, *marker, 500 + i as u16, *ts, 0xA1, event).unwrap();
            t.direct(QUIC, &buf[..n]);
        }
        t.drive(Duration::from_millis(20));
        to_phone.extend(t.out.sent.drain(..).filter(|(to, p)| *to == phone_addr() && !is_rtcp(p)).map(|(_, p)| p));
    }
    let (headers, tones, digits) = one_stream_with_tones(&to_phone, 0x7000, PHONE_TE);
    let audio = headers.iter().filter(|h| h.payload_type == OPUS).count();
    println!("Opus trunk: {} packets, {} telephone-events, {audio} Opus (silence)", headers.len(), tones.len());
    assert_eq!(digits, [1, 2, 3], "the phone decodes the digits");
    assert_eq!(tones.len(), 3 * 8, "5 updates and 3 ends per digit, one per tick");
    assert!(audio < plan.len() / 4, "a silent room sends an Opus listener little ({audio} packets)");
    let durations: Vec<u16> = tones.iter().take(8).map(|(_, e)| e.duration).collect();
    assert_eq!(durations, [960, 1920, 2880, 3840, 4800, 5760, 5760, 5760], "48 kHz units, one tick each");
    assert_eq!(tones.iter().filter(|(h, _)| h.marker).count(), 3);
    assert_eq!(t.counters().dropped_total(), 0);
}
