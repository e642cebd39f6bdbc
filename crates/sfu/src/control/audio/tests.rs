//! Per-participant audio through the controller and a real engine on virtual time: a server
//! leg's stream addressed to one QUIC participant reaches only that participant's mix, a
//! muted participant is left out, a held one hears only its music, a per-source tap names
//! each participant's frames, and all of it survives a listener's new media session.

use std::sync::Arc;
use std::time::Duration;

use opus::{Application, Channels, Decoder, Encoder};
use palaver_core::protocol::{MediaReceive, MediaTrack};

use super::super::{Conferences, ControlConfig, Joined, Output};
use crate::engine::{EngineEvent, SourceTap};
use crate::mixer::tests::{reference_tone_db, tone_db};
use crate::net::{DEFAULT_EGRESS_CAPACITY, DirectLink};
use crate::rtp::RtpHeader;
use crate::testing::TestEngine;
use crate::webrtc::dtls::DtlsIdentity;

const CONVERSATION: &str = "call-1";
const PROMPT: f32 = 1000.0;
const VOICE: f32 = 440.0;

struct Party {
    joined: Joined,
    link: Arc<DirectLink>,
    decoder: Decoder,
    heard: Vec<f32>,
}

struct Story {
    control: Conferences,
    engine: TestEngine,
}

impl Story {
    fn new() -> Self {
        let identity = DtlsIdentity::generate_server().expect("a DTLS certificate");
        let candidates = vec!["192.0.2.1:40000".parse().unwrap()];
        Self { control: Conferences::new(ControlConfig { candidates, identity }, [3; 32]), engine: TestEngine::new() }
    }

    fn run(&mut self, out: Output) {
        for (_, command) in out.commands {
            let name = command.name();
            assert!(self.engine.command(command).is_ok(), "refused {name}");
        }
        let failed: Vec<_> =
            self.engine.events().into_iter().filter(|e| matches!(e, EngineEvent::CommandFailed { .. })).collect();
        assert!(failed.is_empty(), "{failed:?}");
    }

    fn quic(&mut self, who: &str, ssrc: u32) -> Party {
        let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
        let tracks = [MediaTrack::opus(ssrc)];
        let (joined, _, out) = self
            .control
            .join_direct(CONVERSATION, who, true, link.clone(), &tracks, MediaReceive::default())
            .expect("attach accepted");
        self.run(out);
        Party { joined, link, decoder: Decoder::new(48_000, Channels::Mono).unwrap(), heard: Vec::new() }
    }
}

/// An Opus tone sender (RTP with a fixed SSRC).
struct Tone {
    encoder: Encoder,
    ssrc: u32,
    seq: u16,
    phase: f32,
    frequency: f32,
}

impl Tone {
    fn new(frequency: f32, ssrc: u32) -> Self {
        Self {
            encoder: Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap(),
            ssrc,
            seq: 0,
            phase: 0.0,
            frequency,
        }
    }

    fn packet(&mut self) -> Vec<u8> {
        let step = std::f32::consts::TAU * self.frequency / 48_000.0;
        let pcm: Vec<i16> = (0..960)
            .map(|_| {
                self.phase = (self.phase + step) % std::f32::consts::TAU;
                (8_000.0 * self.phase.sin()) as i16
            })
            .collect();
        let mut packet = vec![0u8; 1500];
        let n = self.encoder.encode(&pcm, &mut packet[12..]).unwrap();
        packet.truncate(12 + n);
        packet[0] = 0x80;
        packet[1] = palaver_core::protocol::quic::DEFAULT_OPUS_PT;
        packet[2..4].copy_from_slice(&self.seq.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(self.seq) * 960).to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        packet
    }
}

/// Every 20 ms: each sender's packet, then the mix each party decodes (silence when none).
fn play(
    story: &mut Story,
    senders: &mut [(crate::router::TransportId, &mut Tone)],
    parties: &mut [&mut Party],
    ticks: usize,
) {
    for _ in 0..ticks {
        for (transport, tone) in senders.iter_mut() {
            let packet = tone.packet();
            story.engine.direct(*transport, &packet);
        }
        story.engine.drive(Duration::from_millis(20));
        for party in parties.iter_mut() {
            let mut frame = vec![0i16; 960];
            let mut got = false;
            while let Some(packet) = party.link.pop_egress() {
                // The mix's RTCP sender reports share the link; a receiver demultiplexes them
                // (RFC 5761) as palaver-client does. Decoded as Opus they are loud noise.
                if crate::rtp::is_rtcp(&packet) {
                    continue;
                }
                let Ok(header) = RtpHeader::parse(&packet) else { continue };
                let payload = &packet[header.payload_offset..header.payload_offset + header.payload_len];
                if party.decoder.decode(payload, &mut frame, false).is_ok() {
                    got = true;
                }
            }
            if !got {
                frame.fill(0);
            }
            party.heard.extend(frame.iter().map(|&s| f32::from(s)));
        }
    }
}

fn level(samples: &[f32], tone: f32) -> f64 {
    tone_db(samples, tone) - reference_tone_db(tone, samples.len())
}

#[test]
fn a_leg_stream_addressed_to_one_participant_reaches_only_its_mix() {
    let mut story = Story::new();
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    let (leg, _, out) = story.control.join_leg(CONVERSATION, "call-1/8:bot", link);
    story.run(out);
    let mut alice = story.quic("call-1/8:acs:alice", 5000);
    let mut bob = story.quic("call-1/8:acs:bob", 6000);
    let out = story.control.set_audience(CONVERSATION, "call-1/8:bot", 777, Some(vec!["8:acs:alice".into()]));
    story.run(out);
    let mut prompt = Tone::new(PROMPT, 777);
    play(&mut story, &mut [(leg.transport, &mut prompt)], &mut [&mut alice, &mut bob], 60);
    let (to_alice, to_bob) = (level(&alice.heard[20 * 960..], PROMPT), level(&bob.heard[20 * 960..], PROMPT));
    assert!(to_alice.abs() <= 3.0, "alice hears the prompt at {to_alice:.1} dB");
    assert!(to_bob <= -40.0, "bob hears the prompt at {to_bob:.1} dB");

    // Alice's new media session (a reconnect) still gets the prompt; bob still does not.
    let mut alice = story.quic("call-1/8:acs:alice", 5001);
    bob.heard.clear();
    play(&mut story, &mut [(leg.transport, &mut prompt)], &mut [&mut alice, &mut bob], 60);
    assert!(level(&alice.heard[20 * 960..], PROMPT).abs() <= 3.0, "the audience follows alice's new transport");
    assert!(level(&bob.heard[20 * 960..], PROMPT) <= -40.0);

    // The stream ends: the leg's packets under that SSRC reach nobody.
    let out = story.control.set_audience(CONVERSATION, "call-1/8:bot", 777, None);
    story.run(out);
    alice.heard.clear();
    play(&mut story, &mut [(leg.transport, &mut prompt)], &mut [&mut alice], 40);
    assert!(level(&alice.heard[10 * 960..], PROMPT) <= -40.0);
    let _ = alice.joined;
}

#[test]
fn mute_hold_and_the_source_tap_follow_the_controller() {
    let mut story = Story::new();
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    let (leg, _, out) = story.control.join_leg(CONVERSATION, "call-1/8:bot", link);
    story.run(out);
    let mut alice = story.quic("call-1/8:acs:alice", 5000);
    let mut bob = story.quic("call-1/8:acs:bob", 6000);
    let tap = Arc::new(SourceTap::new(1000));
    let out = story.control.set_source_tap(CONVERSATION, "call-1/8:bot", Some(tap.clone()));
    story.run(out);
    let mut voice = Tone::new(VOICE, 5000);
    let alice_transport = alice.joined.transport;
    play(&mut story, &mut [(alice_transport, &mut voice)], &mut [&mut bob], 50);
    assert!(level(&bob.heard[20 * 960..], VOICE).abs() <= 3.0, "bob hears alice");
    let mut tapped = 0;
    while let Some(frame) = tap.pop() {
        assert_eq!(
            story.control.participant_of_transport(CONVERSATION, frame.source).as_deref(),
            Some("call-1/8:acs:alice")
        );
        tapped += 1;
    }
    assert!(tapped >= 40, "alice's frames are tapped ({tapped})");

    // Mute alice (by raw id): bob no longer hears her, and the tap no longer has her.
    let out = story.control.set_muted(CONVERSATION, "8:acs:alice", true);
    story.run(out);
    bob.heard.clear();
    play(&mut story, &mut [(alice_transport, &mut voice)], &mut [&mut bob], 50);
    assert!(level(&bob.heard[5 * 960..], VOICE) <= -40.0, "muted alice is silent");
    assert!(tap.pop().is_none());
    let out = story.control.set_muted(CONVERSATION, "8:acs:alice", false);
    story.run(out);

    // Hold bob with music from the leg: bob hears the music and not alice.
    let out = story.control.set_held(CONVERSATION, "8:acs:bob", true);
    story.run(out);
    let out = story.control.set_audience(CONVERSATION, "call-1/8:bot", 4242, Some(vec!["8:acs:bob".into()]));
    story.run(out);
    let mut music = Tone::new(PROMPT, 4242);
    bob.heard.clear();
    alice.heard.clear();
    play(
        &mut story,
        &mut [(alice_transport, &mut voice), (leg.transport, &mut music)],
        &mut [&mut bob, &mut alice],
        60,
    );
    assert!(level(&bob.heard[20 * 960..], PROMPT).abs() <= 3.0, "held bob hears the music");
    assert!(level(&bob.heard[20 * 960..], VOICE) <= -40.0, "held bob does not hear alice");
    assert!(level(&alice.heard[20 * 960..], PROMPT) <= -40.0, "alice does not hear the music");
    // The leg leaving ends its streams and its tap.
    let out = story.control.leave(CONVERSATION, "call-1/8:bot");
    story.run(out);
    let _ = leg;
}
