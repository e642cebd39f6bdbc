//! A phone leg answered in a 1:1 call is re-seated in a group call: every command is applied
//! to real engines in virtual time, and the phone (plain RTP, PCMU) and a QUIC participant
//! of the group call hear each other's tones through the new conference's mixer.

use std::net::SocketAddr;
use std::time::Duration;

use opus::{Channels, Decoder};

use super::*;
use crate::control::Output;
use crate::control::tests::Rig;
use crate::mixer::g711::{G711_FRAME_BYTES, Law};
use crate::mixer::tests::{AMPLITUDE, ToneSender, reference_tone_db, tone_db};
use crate::net::{DEFAULT_EGRESS_CAPACITY, DirectLink};
use crate::rtp::{RtpHeader, is_rtcp};
use palaver_core::protocol::{MediaReceive, MediaTrack};

const CALL: &str = "call-1";
const GROUP: &str = "group-1";
const PHONE_TONE: f32 = 1000.0;
const AGENT_TONE: f32 = 440.0;

fn phone_addr() -> SocketAddr {
    "127.0.0.1:6000".parse().unwrap()
}

fn trunk_sdp() -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        phone_addr().port()
    )
}

fn policy() -> TrunkPolicy {
    TrunkPolicy::from_names(&["PCMU", "PCMA"])
}

/// The phone and the agent on the story's [`Rig`].
trait Story {
    fn phone_in_call(&mut self) -> crate::engine::RouterId;
    fn agent_in(&mut self, conversation: &str, link: std::sync::Arc<DirectLink>) -> Joined;
    /// Applies `out` (as [`Rig::run`]) and returns its commands' names.
    fn apply(&mut self, out: Output) -> Vec<&'static str>;
}

impl Story for Rig {
    fn apply(&mut self, out: Output) -> Vec<&'static str> {
        let names = out.commands.iter().map(|(_, c)| c.name()).collect();
        self.run(out);
        names
    }

    fn phone_in_call(&mut self) -> crate::engine::RouterId {
        let (_, _, out) = self.control.join_sip(CALL, "phone", &trunk_sdp(), &policy()).expect("the SDP is usable");
        self.apply(out);
        self.control.conference(CALL).expect("the call's conference").router()
    }

    fn agent_in(&mut self, conversation: &str, link: std::sync::Arc<DirectLink>) -> Joined {
        let tracks = [MediaTrack::opus(0xA1)];
        let (joined, _, out) = self
            .control
            .join_direct(conversation, "agent", true, link, &tracks, MediaReceive::default())
            .expect("attach accepted");
        self.apply(out);
        joined
    }
}

/// 20 ms of µ-law tone per packet, like SIPp playing a pcap.
fn phone_packet(n: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend_from_slice(&(u32::from(n) * 160).to_be_bytes());
    p.extend_from_slice(&0x5EED_u32.to_be_bytes());
    let step = std::f32::consts::TAU * PHONE_TONE / 8000.0;
    for i in 0..G711_FRAME_BYTES {
        let phase = (usize::from(n) * G711_FRAME_BYTES + i) as f32 * step;
        p.push(Law::Mu.encode((AMPLITUDE * phase.sin()) as i16));
    }
    p
}

#[test]
fn a_phone_leg_moves_into_a_group_call_on_its_worker_keeping_its_address_and_both_hear_each_other() {
    let mut rig = Rig::new(1);
    let call_router = rig.phone_in_call();
    let transport = rig.control.conference(CALL).unwrap().transport_of("phone").unwrap();
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    let agent = rig.agent_in(GROUP, link.clone());

    let (reseat, out) =
        rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("re-seated");
    let names = rig.apply(out);
    assert_eq!(reseat, Reseat::Moved(Joined { worker: 0, router: agent.router, transport }));
    assert!(names.contains(&"move_transport") && names.contains(&"close_router"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("add_") && n.ends_with("transport")), "no new transport: {names:?}");
    assert!(!names.contains(&"remove_transport"), "{names:?}");
    assert!(rig.control.conference(CALL).is_none(), "the call's conference closed with its last member");
    assert_ne!(call_router, agent.router);
    let group = rig.control.conference(GROUP).unwrap();
    assert_eq!(group.transport_of("phone-in-group"), Some(transport));

    // The phone keeps sending to the same socket; the agent speaks Opus.
    let engine = &mut rig.engines[0];
    let mut agent_tone = ToneSender::new(AGENT_TONE, Channels::Mono);
    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let (mut phone_heard, mut agent_heard) = (Vec::<f32>::new(), Vec::<f32>::new());
    for n in 0..150u16 {
        engine.datagram(phone_addr(), phone_packet(n));
        let (seq, ts, level, payload) = agent_tone.next(true);
        let mut packet = vec![0x90, 111];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&ts.to_be_bytes());
        packet.extend_from_slice(&0xA1_u32.to_be_bytes());
        packet.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1 << 4, (u8::from(level.1) << 7) | level.0, 0, 0]);
        packet.extend_from_slice(&payload);
        engine.direct(agent.transport, &packet);
        engine.drive(Duration::from_millis(20));
        let sent = engine.take_sent();
        assert!(sent.iter().all(|(to, _)| *to == phone_addr()), "the mix goes to the phone's SDP address as before");
        for packet in sent.iter().map(|(_, p)| p).filter(|p| !is_rtcp(p)) {
            let h = RtpHeader::parse(packet).unwrap();
            assert_eq!(h.payload_type, 0, "PCMU, as agreed with the trunk");
            phone_heard
                .extend(h.payload(packet).iter().flat_map(|&b| std::iter::repeat_n(f32::from(Law::Mu.decode(b)), 6)));
        }
        for packet in std::iter::from_fn(|| link.pop_egress()).filter(|p| !is_rtcp(p)) {
            let h = RtpHeader::parse(&packet).unwrap();
            let mut pcm = [0i16; 960];
            decoder.decode(h.payload(&packet), &mut pcm, false).unwrap();
            agent_heard.extend(pcm.iter().map(|&s| f32::from(s)));
        }
    }
    let window = 48_000;
    assert!(phone_heard.len() >= window && agent_heard.len() >= window, "both receive the new conference's mix");
    let heard_by_phone =
        tone_db(&phone_heard[phone_heard.len() - window..], AGENT_TONE) - reference_tone_db(AGENT_TONE, window);
    let heard_by_agent =
        tone_db(&agent_heard[agent_heard.len() - window..], PHONE_TONE) - reference_tone_db(PHONE_TONE, window);
    assert!(heard_by_phone.abs() <= 3.0, "the phone hears the agent at {heard_by_phone:+.1} dB");
    assert!(heard_by_agent.abs() <= 3.0, "the agent hears the phone at {heard_by_agent:+.1} dB");
    assert_eq!(engine.counters().dropped_total(), 0, "{:?}", engine.counters());
}

#[test]
fn a_target_on_another_worker_is_named_and_the_leg_stays_where_it_is() {
    let mut rig = Rig::new(2);
    rig.phone_in_call();
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    let agent = rig.agent_in(GROUP, link);
    assert_eq!(agent.worker, 1, "the group call went to the idle worker");
    let (reseat, out) =
        rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("answered");
    assert_eq!(reseat, Reseat::OtherWorker { address: SocketAddr::from(([192, 0, 2, 1], 40_001)) });
    assert!(out.commands.is_empty() && out.frames.is_empty());
    assert!(rig.control.conference(CALL).unwrap().transport_of("phone").is_some(), "still in the call");
}

#[test]
fn a_target_without_a_conference_yet_is_created_on_the_legs_worker() {
    let mut rig = Rig::new(2);
    // Another conversation first, so the least loaded worker would be the other one.
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    rig.agent_in("elsewhere", link);
    rig.phone_in_call();
    let worker = rig.control.conference(CALL).unwrap().worker();
    let (reseat, out) =
        rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("re-seated");
    let names = rig.apply(out);
    assert!(matches!(reseat, Reseat::Moved(joined) if joined.worker == worker), "{reseat:?}");
    assert_eq!(names.first(), Some(&"create_router"), "{names:?}");
    assert_eq!(rig.control.conference(GROUP).unwrap().worker(), worker);
}

#[test]
fn nothing_changes_for_a_leg_without_media_the_same_conversation_or_an_unusable_sdp() {
    let mut rig = Rig::new(1);
    rig.phone_in_call();
    let sdp = trunk_sdp();
    let refused = rig.control.reseat_sip(CALL, "nobody", GROUP, "x", &sdp, &policy());
    assert!(matches!(refused, Err(ReseatError::NotSeated(who)) if who == "nobody"));
    let refused = rig.control.reseat_sip(CALL, "phone", CALL, "x", &sdp, &policy());
    assert!(matches!(refused, Err(ReseatError::SameConversation)));
    let refused = rig.control.reseat_sip(CALL, "phone", GROUP, "x", "v=0\r\n", &policy());
    assert!(matches!(refused, Err(ReseatError::Sdp(_))));
    assert!(rig.control.conference(GROUP).is_none());
    assert!(rig.control.conference(CALL).unwrap().transport_of("phone").is_some());
}

/// The packets to the phone in `n` 20 ms steps while the phone talks: (SSRCs seen, packets).
/// What was due before (the virtual clock catching up) is dropped first.
fn phone_receives(rig: &mut Rig, from: u16, n: u16) -> (Vec<u32>, usize) {
    let engine = &mut rig.engines[0];
    engine.drive(Duration::ZERO);
    engine.take_sent();
    let (mut ssrcs, mut packets) = (Vec::new(), 0);
    for i in from..from + n {
        engine.datagram(phone_addr(), phone_packet(i));
        engine.drive(Duration::from_millis(20));
        for packet in engine.take_sent().iter().map(|(_, p)| p).filter(|p| !is_rtcp(p)) {
            let ssrc = RtpHeader::parse(packet).unwrap().ssrc;
            if !ssrcs.contains(&ssrc) {
                ssrcs.push(ssrc);
            }
            packets += 1;
        }
    }
    (ssrcs, packets)
}

#[test]
fn a_moved_leg_is_held_and_resumed_in_place_by_the_trunk() {
    let mut rig = Rig::new(1);
    rig.phone_in_call();
    let transport = rig.control.conference(CALL).unwrap().transport_of("phone").unwrap();
    rig.agent_in(GROUP, DirectLink::new(DEFAULT_EGRESS_CAPACITY));
    let (_, out) =
        rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("re-seated");
    rig.apply(out);
    let (before, sent) = phone_receives(&mut rig, 0, 25);
    assert!(sent >= 20 && before.len() == 1, "the mix reaches the moved phone: {sent} packets, SSRCs {before:?}");

    // The trunk holds (re-INVITE with a=sendonly): the same leg, held on its transport.
    let held = trunk_sdp().replace("a=sendrecv", "a=sendonly");
    let (_, answer, out) = rig.control.join_sip(GROUP, "phone-in-group", &held, &policy()).expect("hold accepted");
    let names = rig.apply(out);
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(!names.iter().any(|n| n.ends_with("_transport")), "no new transport for a hold: {names:?}");
    assert!(names.contains(&"set_mix_output") && names.contains(&"set_mix_audio"), "{names:?}");
    assert_eq!(rig.control.conference(GROUP).unwrap().transport_of("phone-in-group"), Some(transport));
    let (_, on_hold) = phone_receives(&mut rig, 25, 25);
    assert_eq!(on_hold, 0, "nothing goes to a phone that holds");

    // Resume: the same transport and mix SSRC go on.
    let (_, answer, out) =
        rig.control.join_sip(GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("resume accepted");
    let names = rig.apply(out);
    assert!(answer.contains("a=sendrecv"), "{answer}");
    assert!(!names.iter().any(|n| n.ends_with("_transport")), "no new transport for a resume: {names:?}");
    let (after, sent) = phone_receives(&mut rig, 50, 25);
    assert!(sent >= 20, "the mix comes back after the resume ({sent})");
    assert_eq!(after, before, "the same mix stream as before the hold");
}

#[test]
fn a_leg_held_when_it_moves_stays_held_until_the_trunk_resumes() {
    let mut rig = Rig::new(1);
    rig.phone_in_call();
    let held = trunk_sdp().replace("a=sendrecv", "a=sendonly");
    let (_, _, out) = rig.control.join_sip(CALL, "phone", &held, &policy()).expect("hold accepted");
    rig.apply(out);
    rig.agent_in(GROUP, DirectLink::new(DEFAULT_EGRESS_CAPACITY));
    let (_, out) = rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &held, &policy()).expect("re-seated");
    rig.apply(out);
    let (_, on_hold) = phone_receives(&mut rig, 0, 25);
    assert_eq!(on_hold, 0, "the phone still holds after the move");
    let (_, _, out) = rig.control.join_sip(GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("resumed");
    let names = rig.apply(out);
    assert!(!names.iter().any(|n| n.ends_with("_transport")), "resumed in place: {names:?}");
    let (_, sent) = phone_receives(&mut rig, 25, 25);
    assert!(sent >= 20, "the mix reaches the resumed phone ({sent})");
}

#[test]
fn a_phone_rung_into_a_conversation_is_placed_on_its_worker_and_moves_in_without_a_re_invite() {
    let mut rig = Rig::new(2);
    let agent = rig.agent_in(GROUP, DirectLink::new(DEFAULT_EGRESS_CAPACITY));
    let group_socket = rig.control.worker_address(agent.worker);
    assert_ne!(rig.control.candidate_for(CALL), group_socket, "left alone, the ring would go to the idle worker");
    rig.control.colocate(CALL, GROUP);
    assert_eq!(rig.control.candidate_for(CALL), group_socket, "the trunk is offered the group call's socket");
    rig.phone_in_call();
    assert_eq!(rig.control.conference(CALL).unwrap().worker(), agent.worker);
    let (reseat, out) =
        rig.control.reseat_sip(CALL, "phone", GROUP, "phone-in-group", &trunk_sdp(), &policy()).expect("re-seated");
    rig.apply(out);
    assert!(matches!(reseat, Reseat::Moved(joined) if joined.worker == agent.worker), "{reseat:?}");
    assert!(rig.control.colocated.is_empty(), "forgotten once placed");
}

#[test]
fn a_ring_that_never_got_media_forgets_its_placement_when_it_leaves() {
    let mut rig = Rig::new(2);
    rig.agent_in(GROUP, DirectLink::new(DEFAULT_EGRESS_CAPACITY));
    rig.control.colocate(CALL, GROUP);
    rig.control.offer_sip(CALL, "phone", &TrunkPolicy::from_names(&["PCMU", "srtp=optional"]));
    let out = rig.control.leave(CALL, "phone");
    assert!(out.commands.is_empty(), "nothing to release on the workers");
    assert!(rig.control.colocated.is_empty() && rig.control.sip_offers.is_empty(), "nothing kept for a busy phone");
}
