//! Worker tests of the mixer in the live path, with real Opus: three participants (two over
//! UDP/SRTP, one queue-attached) each send a tone; each receives exactly one audio stream,
//! the mix, which after decoding holds the other two tones and not its own. Plus the mix
//! output commands, active speakers from the mixer, and removal.

use std::sync::Arc;
use std::time::Duration;

use opus::{Channels, Decoder};

use crate::engine::*;
use crate::mixer::MixerConfig;
use crate::mixer::tests::{ToneSender, reference_tone_db, tone_db};
use crate::net::DirectLink;
use crate::router::{ProducerId, ProducerSpec, RouterConfig, TransportId};
use crate::rtp::{RtpHeader, is_rtcp};
use crate::srtp::Profile;
use crate::testing::{Peer, TestEngine};

const ROOM: RouterId = RouterId(3);
const OPUS: u8 = 111;
/// The queue participant negotiated another Opus payload type for what it receives.
const QUEUE_OPUS: u8 = 109;
const LEVEL_ID: u8 = 1;
/// Not harmonics of each other (coding distortion of one tone must not land on another).
const TONES: [f32; 3] = [440.0, 660.0, 1000.0];
const QUEUE_ID: TransportId = TransportId(30);

/// Plain RTP with a one-byte RFC 6464 audio-level extension.
fn rtp_with_level(ssrc: u32, seq: u16, timestamp: u32, level: (u8, bool), payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x90, OPUS];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xBE, 0xDE, 0, 1, LEVEL_ID << 4, (u8::from(level.1) << 7) | level.0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

fn audio_producer(id: u32, transport: TransportId, ssrc: u32) -> Command {
    Command::AddProducer { router: ROOM, spec: ProducerSpec::opus(ProducerId(id), transport, OPUS, ssrc, LEVEL_ID) }
}

/// What one participant received: its mix stream, decoded in arrival order.
struct Heard {
    decoder: Decoder,
    samples: Vec<f32>,
    ssrcs: Vec<u32>,
    payload_types: Vec<u8>,
    sequences: Vec<u16>,
}

impl Heard {
    fn new() -> Self {
        Self {
            decoder: Decoder::new(48_000, Channels::Mono).unwrap(),
            samples: Vec::new(),
            ssrcs: Vec::new(),
            payload_types: Vec::new(),
            sequences: Vec::new(),
        }
    }

    fn receive(&mut self, packet: &[u8]) {
        let h = RtpHeader::parse(packet).unwrap();
        let mut pcm = [0i16; 960];
        let n = self.decoder.decode(h.payload(packet), &mut pcm, false).unwrap();
        assert_eq!(n, 960);
        self.samples.extend(pcm.iter().map(|&s| f32::from(s)));
        if !self.ssrcs.contains(&h.ssrc) {
            self.ssrcs.push(h.ssrc);
        }
        if !self.payload_types.contains(&h.payload_type) {
            self.payload_types.push(h.payload_type);
        }
        self.sequences.push(h.sequence);
    }
}

struct MixRoom {
    t: TestEngine,
    udp: Vec<Peer>,
    link: Arc<DirectLink>,
}

/// Participants 0 and 1 over UDP/SRTP, participant 2 queue-attached; all publish audio and
/// receive the mix (SSRC 0x9000 + i).
fn mix_room() -> MixRoom {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 7);
    let udp: Vec<Peer> = (0..2).map(|i| Peer::new(20 + i, Profile::Aes128CmHmacSha1_80)).collect();
    let link = DirectLink::new(256);
    let mut commands = vec![Command::CreateRouter { router: ROOM }];
    for (i, peer) in udp.iter().enumerate() {
        commands.push(peer.add_transport(ROOM, Some(peer.addr)));
        commands.push(audio_producer(i as u32 + 1, peer.transport, 0xA000 + i as u32));
        let output = Some(MixOutputSpec { ssrc: 0x9000 + i as u32, payload_type: OPUS });
        commands.push(Command::SetMixOutput { router: ROOM, transport: peer.transport, output });
    }
    commands.push(Command::AddDirectTransport { id: QUEUE_ID, router: ROOM, link: link.clone() });
    commands.push(audio_producer(3, QUEUE_ID, 0xA002));
    let output = Some(MixOutputSpec { ssrc: 0x9002, payload_type: QUEUE_OPUS });
    commands.push(Command::SetMixOutput { router: ROOM, transport: QUEUE_ID, output });
    t.commands(commands);
    // Frames arrive 1 ms into each 20 ms mixer period.
    t.drive(Duration::from_millis(1));
    MixRoom { t, udp, link }
}

impl MixRoom {
    /// Every participant sends 20 ms of its tone (when `talking(i)`) every 20 ms, and the
    /// engine's timers (the mixer's ticks, reports) run at their deadlines in
    /// between; what each receives is decoded into `heard`.
    fn run(&mut self, ticks: u64, senders: &mut [ToneSender], talking: impl Fn(usize) -> bool, heard: &mut [Heard]) {
        for _ in 0..ticks {
            self.send(senders, &talking);
            self.t.drive(Duration::from_millis(20));
            for (to, mut packet) in self.t.out.sent.drain(..) {
                if is_rtcp(&packet) {
                    continue; // the router's receiver/sender reports
                }
                let i = self.udp.iter().position(|p| p.addr == to).expect("mix goes to a participant");
                let n = self.udp[i].from_server.unprotect_rtp(&mut packet).unwrap();
                heard[i].receive(&packet[..n]);
            }
            while let Some(packet) = self.link.pop_egress() {
                if is_rtcp(&packet) {
                    continue;
                }
                heard[2].receive(&packet);
            }
        }
    }

    /// Every participant sends its next 20 ms frame now (a tone when `talking(i)`).
    fn send(&mut self, senders: &mut [ToneSender], talking: impl Fn(usize) -> bool) {
        for (i, sender) in senders.iter_mut().enumerate() {
            let (seq, ts, level, payload) = sender.next(talking(i));
            let packet = rtp_with_level(0xA000 + i as u32, seq, ts, level, &payload);
            if i < 2 {
                let wire = self.udp[i].srtp(&packet);
                self.t.datagram(self.udp[i].addr, wire);
            } else {
                self.t.direct(QUEUE_ID, &packet);
            }
        }
    }
}

#[test]
fn each_participant_receives_one_mix_of_the_others_and_not_itself() {
    let mut room = mix_room();
    let mut senders: Vec<ToneSender> = TONES.iter().map(|&f| ToneSender::new(f, Channels::Mono)).collect();
    let mut heard: Vec<Heard> = (0..3).map(|_| Heard::new()).collect();
    room.run(150, &mut senders, |_| true, &mut heard);
    let window = 48_000;
    let reference: Vec<f64> = TONES.iter().map(|&f| reference_tone_db(f, window)).collect();
    for (i, h) in heard.iter().enumerate() {
        assert_eq!(h.ssrcs, vec![0x9000 + i as u32], "participant {i}: exactly one audio stream, the mix");
        let pt = if i == 2 { QUEUE_OPUS } else { OPUS };
        assert_eq!(h.payload_types, vec![pt], "participant {i}: its negotiated Opus payload type");
        assert!(h.sequences.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "participant {i}: sequence gap");
        assert!(h.samples.len() >= 140 * 960, "participant {i}: {} packets", h.sequences.len());
        let last = &h.samples[h.samples.len() - window..];
        let own = tone_db(last, TONES[i]);
        let mut others_min = f64::MAX;
        for other in (0..3).filter(|&o| o != i) {
            let error = tone_db(last, TONES[other]) - reference[other];
            assert!(error.abs() <= 3.0, "participant {i} hears {} Hz at {error:+.1} dB", TONES[other]);
            others_min = others_min.min(tone_db(last, TONES[other]));
        }
        assert!(others_min - own >= 30.0, "participant {i}: own tone only {:.1} dB below the others", others_min - own);
    }
    let c = room.t.counters();
    assert_eq!(c.dropped_total(), 0, "{c:?}");
    assert!(c.mixer_overruns == 0, "virtual time never runs late here: {c:?}");
    // Speakers come from the mixer's selection, as transport ids.
    let mut last = None;
    while let Some(event) = room.t.engine.poll_event() {
        if let EngineEvent::ActiveSpeakers { router: r, speakers } = event {
            assert_eq!(r, ROOM);
            last = Some(speakers);
        }
    }
    let mut speakers: Vec<TransportId> = last.expect("speaker update").into_iter().flatten().collect();
    speakers.sort();
    let mut expected = vec![room.udp[0].transport, room.udp[1].transport, QUEUE_ID];
    expected.sort();
    assert_eq!(speakers, expected);
}

#[test]
fn a_lone_talker_is_passed_through_to_the_others_and_hears_no_echo() {
    let mut room = mix_room();
    let mut senders: Vec<ToneSender> = TONES.iter().map(|&f| ToneSender::new(f, Channels::Mono)).collect();
    let mut heard: Vec<Heard> = (0..3).map(|_| Heard::new()).collect();
    room.run(100, &mut senders, |i| i == 2, &mut heard);
    let window = 24_000;
    for (i, h) in heard.iter().enumerate().take(2) {
        let last = &h.samples[h.samples.len() - window..];
        let error = tone_db(last, TONES[2]) - reference_tone_db(TONES[2], window);
        assert!(error.abs() <= 3.0, "listener {i} hears the queue talker at {error:+.1} dB");
    }
    // The talker gets silence packets (sparse, like DTX) and never its own voice.
    let own = &heard[2];
    assert!(!own.sequences.is_empty() && own.sequences.len() < 50, "{} packets", own.sequences.len());
    let loudest = own.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!(loudest < 100.0, "the talker hears something: peak {loudest}");
}

#[test]
fn mix_outputs_follow_commands_and_removal() {
    let mut room = mix_room();
    let stranger = Command::SetMixOutput { router: ROOM, transport: TransportId(999), output: None };
    assert_eq!(room.t.command(stranger), Err(CommandError::UnknownTransport));
    let wrong_room = Command::SetMixOutput { router: RouterId(77), transport: QUEUE_ID, output: None };
    assert_eq!(room.t.command(wrong_room), Err(CommandError::UnknownTransport));
    // Participant 0 stops receiving; participant 1 leaves; only the queue peer still gets the mix.
    let stop = Command::SetMixOutput { router: ROOM, transport: room.udp[0].transport, output: None };
    room.t.command(stop).unwrap();
    let leave = Command::RemoveTransport { transport: room.udp[1].transport };
    room.t.command(leave).unwrap();
    assert_eq!(room.t.engine.mix_member_count(ROOM), Some(2), "0 still sends, 1 is gone, 2 sends and receives");
    let mut senders: Vec<ToneSender> = TONES.iter().map(|&f| ToneSender::new(f, Channels::Mono)).collect();
    let mut heard: Vec<Heard> = (0..3).map(|_| Heard::new()).collect();
    let (out_before, in_before) = (room.t.out.sent.len(), room.t.counters().packets_in);
    room.run(20, &mut senders, |i| i != 1, &mut heard);
    assert_eq!(out_before, 0);
    assert!(heard[0].sequences.is_empty() && heard[1].sequences.is_empty());
    assert!(heard[2].sequences.len() >= 18, "{}", heard[2].sequences.len());
    // The departed peer's packets are unknown now.
    assert_eq!(room.t.counters().dropped(DropReason::UnknownSource), 20);
    assert!(room.t.counters().packets_in >= in_before + 60);
    room.t.command(Command::CloseRouter { router: ROOM }).unwrap();
    assert_eq!(room.t.engine.mix_member_count(ROOM), None);
}

mod reports;
