//! Stories of the media controller, told next to the router: every command [`Conferences`]
//! emits is applied to real worker engines in virtual time (a refused command fails the test),
//! and the tests read the commands and `media.slots` frames a browser, a QUIC participant or
//! a trunk leg gets as they join, speak, share, subscribe and leave.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::net::DEFAULT_EGRESS_CAPACITY;
use crate::router::ConsumerId;
use crate::rtp::Codec;
use crate::srtp::Profile;
use crate::testing::TestEngine;
use palaver_core::MediaKind;

const CONVERSATION: &str = "conv-1";

/// The controller and one engine per worker; `run` applies an output's commands (also used
/// by `control/sip/reseat/tests.rs`).
pub(super) struct Rig {
    pub(super) control: Conferences,
    pub(super) engines: Vec<TestEngine>,
}

impl Rig {
    pub(super) fn new(workers: usize) -> Self {
        let candidates = (0..workers).map(|i| SocketAddr::from(([192, 0, 2, 1], 40_000 + i as u16))).collect();
        let identity = DtlsIdentity::generate_server().expect("a DTLS certificate");
        let control = Conferences::new(ControlConfig { candidates, identity }, [9; 32]);
        Self { control, engines: (0..workers).map(|_| TestEngine::new()).collect() }
    }

    /// Applies every command of `out` to its worker's engine (each must be accepted), then
    /// lets 100 ms of virtual time pass on every engine.
    pub(super) fn run(&mut self, out: Output) -> Output {
        for (worker, command) in &out.commands {
            let name = command.name();
            let result = self.engines[*worker].command(command.clone());
            assert!(result.is_ok(), "worker {worker} refused {name}: {result:?}");
        }
        for engine in &mut self.engines {
            engine.drive(Duration::from_millis(100));
            let failed: Vec<EngineEvent> =
                engine.events().into_iter().filter(|e| matches!(e, EngineEvent::CommandFailed { .. })).collect();
            assert!(failed.is_empty(), "{failed:?}");
        }
        out
    }

    fn browser(&mut self, who: &str, ssrc: u32, extra_cameras: usize) -> (String, Output) {
        let sdp = browser_offer(ssrc, extra_cameras);
        let (answer, out) = self.control.join_offer(CONVERSATION, who, true, &sdp).expect("offer accepted");
        (answer, self.run(out))
    }

    fn quic(&mut self, who: &str, ssrc: u32, receive: MediaReceive) -> (Joined, Vec<MediaTrack>, Output) {
        let tracks = [MediaTrack::opus(ssrc), MediaTrack::vp8(MediaKind::Video, ssrc + 1)];
        let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
        let (joined, attached, out) =
            self.control.join_direct(CONVERSATION, who, true, link, &tracks, receive).expect("attach accepted");
        (joined, attached, self.run(out))
    }

    fn leave(&mut self, who: &str) -> Output {
        let out = self.control.leave(CONVERSATION, who);
        self.run(out)
    }

    /// The router's loudest talkers as the worker reports them.
    fn speakers(&mut self, names: &[&str]) -> Output {
        let conference = self.control.conference(CONVERSATION).expect("conference");
        let mut ids = [None; 3];
        for (slot, name) in ids.iter_mut().zip(names) {
            *slot = Some(conference.participants[*name].transport);
        }
        let event = EngineEvent::ActiveSpeakers { router: conference.router(), speakers: ids };
        let out = self.control.on_event(conference.worker(), event);
        self.run(out)
    }
}

/// A browser's offer: sendrecv audio (`ssrc`), camera (`ssrc+1`, RTX `ssrc+5`) and screen
/// (`ssrc+2`), then `extra_cameras` receive-only camera sections. Video numbers VP8 98.
fn browser_offer(ssrc: u32, extra_cameras: usize) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AB:CD\r\n\
         a=ice-ufrag:cli\r\na=ice-pwd:client-password-123456\r\n",
    );
    sdp += &format!(
        "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:0\r\na=rtpmap:109 opus/48000/2\r\na=ssrc:{ssrc} cname:c\r\n"
    );
    let video = |mid: usize, direction: &str| {
        format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=mid:{mid}\r\na={direction}\r\na=rtpmap:98 VP8/90000\r\na=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n"
        )
    };
    sdp += &video(1, "sendrecv");
    sdp += &format!("a=ssrc-group:FID {} {}\r\na=ssrc:{} cname:c\r\n", ssrc + 1, ssrc + 5, ssrc + 1);
    sdp += &video(2, "sendrecv");
    sdp += &format!("a=ssrc:{} cname:c\r\n", ssrc + 2);
    for i in 0..extra_cameras {
        sdp += &video(3 + i, "recvonly");
    }
    sdp
}

fn names(out: &Output) -> Vec<&'static str> {
    out.commands.iter().map(|(_, c)| c.name()).collect()
}

/// `(mid, participant)` of one participant's frame in `out`.
fn frame(out: &Output, who: &str) -> Option<Vec<(String, Option<String>)>> {
    let f = out.frames.iter().rev().find(|f| f.participant == who)?;
    Some(f.slots.iter().map(|s| (s.mid.clone(), s.participant_id.clone())).collect())
}

fn shows(mid: &str, who: Option<&str>) -> (String, Option<String>) {
    (mid.to_owned(), who.map(str::to_owned))
}

/// The consumer filling `who`'s slot `mid`, and the producer it shows.
fn slot_consumer(rig: &Rig, who: &str, mid: &str) -> Option<(ConsumerId, ProducerId)> {
    let conference = rig.control.conference(CONVERSATION)?;
    conference.participants[who].slots.iter().find(|s| s.mid == mid)?.consumer
}

fn camera_of(rig: &Rig, who: &str) -> ProducerId {
    let conference = rig.control.conference(CONVERSATION).expect("conference");
    conference.participants[who].producers.iter().find(|p| p.kind == MediaKind::Video).expect("a camera").id
}

#[test]
fn a_browser_joins_from_its_offer_and_hears_the_mix() {
    let mut rig = Rig::new(1);
    let (answer, out) = rig.browser("ann", 100, 0);
    assert_eq!(
        names(&out),
        ["create_router", "add_webrtc_transport", "add_producer", "add_producer", "add_producer", "set_mix_output"]
    );
    assert!(answer.contains("192.0.2.1 40000 typ host"), "{answer}");
    assert!(answer.contains(rig.control.config.identity.fingerprint()), "the answer names the server's certificate");
    let mix = out.commands.iter().find_map(|(_, c)| match c {
        Command::SetMixOutput { output: Some(output), .. } => Some(*output),
        _ => None,
    });
    let audio_slot = rig.control.conference(CONVERSATION).unwrap().participants["ann"].slots[0].ssrc;
    assert_eq!(mix, Some(crate::engine::MixOutputSpec { ssrc: audio_slot, payload_type: 109 }));
    assert!(answer.contains(&format!("a=ssrc:{audio_slot} ")), "the answer announces the mix's SSRC");
    // Alone: told that both video slots are empty.
    assert_eq!(frame(&out, "ann"), Some(vec![shows("1", None), shows("2", None)]));
    assert_eq!(out.frames[0].slots[1].kind, MediaKind::Screen);
}

#[test]
fn a_quic_participant_joins_from_its_tracks() {
    let mut rig = Rig::new(1);
    let (joined, attached, out) = rig.quic("quinn", 500, MediaReceive { video: 1, screen: false });
    assert_eq!(
        names(&out),
        [
            "create_router",
            "add_direct_transport",
            "add_producer",
            "add_producer",
            "set_mix_output",
            "set_telephone_event"
        ]
    );
    assert_eq!((joined.worker, joined.router), (0, rig.control.conference(CONVERSATION).unwrap().router()));
    assert!(
        out.commands
            .iter()
            .any(|(_, c)| matches!(c, Command::AddDirectTransport { id, .. } if *id == joined.transport))
    );
    let kinds: Vec<(MediaKind, Option<&str>)> = attached.iter().map(|t| (t.kind, t.mid.as_deref())).collect();
    assert_eq!(kinds, [(MediaKind::Audio, None), (MediaKind::Video, Some("quic-video-0"))]);
    assert_eq!(frame(&out, "quinn"), Some(vec![shows("quic-video-0", None)]));
    // An audio-only participant gets no slot frame at all.
    let (_, _, out) = rig.quic("audio-only", 600, MediaReceive::default());
    assert_eq!(frame(&out, "audio-only"), None);
}

#[test]
fn a_browser_and_a_quic_participant_share_one_router_and_see_each_other() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 0);
    let (joined, _, out) = rig.quic("quinn", 500, MediaReceive { video: 1, screen: true });
    assert!(!names(&out).contains(&"create_router"), "one router per conversation");
    // The browser's camera slot shows the QUIC camera, numbered the browser's way (VP8 98).
    let (browser_consumer, shown) = slot_consumer(&rig, "ann", "1").expect("ann's camera slot is filled");
    assert_eq!(shown, camera_of(&rig, "quinn"));
    let numbering_of = |consumer: ConsumerId| {
        out.commands.iter().find_map(|(_, c)| match c {
            Command::SetConsumerNumbering { consumer: id, numbering, .. } if *id == consumer => {
                Some(numbering.codecs[0])
            }
            _ => None,
        })
    };
    assert_eq!(numbering_of(browser_consumer), Some((98, Codec::Vp8)));
    // The QUIC camera slot shows the browser's camera, numbered the QUIC client's way (VP8 96).
    let (quic_consumer, shown) = slot_consumer(&rig, "quinn", "quic-video-0").expect("quinn's camera slot is filled");
    assert_eq!(shown, camera_of(&rig, "ann"));
    assert_eq!(numbering_of(quic_consumer), Some((96, Codec::Vp8)));
    let to_quic = out.commands.iter().any(|(_, c)| {
        matches!(c, Command::AddConsumer { spec, .. } if spec.transport == joined.transport && spec.id == quic_consumer)
    });
    assert!(to_quic);
    assert_eq!(frame(&out, "ann"), Some(vec![shows("1", Some("quinn")), shows("2", None)]));
    assert_eq!(frame(&out, "quinn"), Some(vec![shows("quic-video-0", Some("ann")), shows("quic-screen", None)]));
}

#[test]
fn a_new_speaker_moves_into_view_and_is_reported() {
    let mut rig = Rig::new(1);
    let one_camera = MediaReceive { video: 1, screen: false };
    for (i, who) in ["a", "b", "c", "d"].into_iter().enumerate() {
        rig.quic(who, 100 * (i as u32 + 1), one_camera);
    }
    // Earliest arrivals first: everyone but a sees a; a sees b.
    assert_eq!(slot_consumer(&rig, "c", "quic-video-0").map(|c| c.1), Some(camera_of(&rig, "a")));
    let out = rig.speakers(&["d"]);
    assert_eq!(out.speakers, [Speakers { conversation: CONVERSATION.into(), participants: vec!["d".into()] }]);
    // a, b and c now see d, on the same consumers; d still sees a.
    assert_eq!(names(&out), ["repoint_consumer"; 3]);
    assert!(
        out.commands
            .iter()
            .all(|(_, c)| matches!(c, Command::RepointConsumer { producer, .. } if *producer == camera_of(&rig, "d")))
    );
    assert_eq!(frame(&out, "a"), Some(vec![shows("quic-video-0", Some("d"))]));
    assert_eq!(frame(&out, "d"), None, "d's own slot did not change");
    // The same speakers again change nothing but are still reported.
    let out = rig.speakers(&["d"]);
    assert!(out.commands.is_empty() && out.frames.is_empty());
    assert_eq!(out.speakers.len(), 1);
}

#[test]
fn a_leaver_is_replaced_in_place_and_the_last_one_out_closes_the_router() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 1);
    rig.browser("bob", 200, 1);
    rig.browser("cat", 300, 1);
    rig.browser("dan", 400, 1);
    // ann's two camera slots show the earliest arrivals, bob and cat.
    let (before, _) = slot_consumer(&rig, "ann", "1").expect("ann sees bob");
    assert_eq!(slot_consumer(&rig, "ann", "3").map(|c| c.1), Some(camera_of(&rig, "cat")));
    let out = rig.leave("bob");
    // bob's slot now shows dan on the same consumer (same SSRC for the browser); cat stays put.
    assert_eq!(slot_consumer(&rig, "ann", "1"), Some((before, camera_of(&rig, "dan"))));
    assert_eq!(frame(&out, "ann"), Some(vec![shows("1", Some("dan")), shows("2", None), shows("3", Some("cat"))]));
    assert_eq!(out.commands.last().map(|(_, c)| c.name()), Some("remove_transport"), "slots move off bob first");
    assert!(names(&out).iter().all(|n| ["repoint_consumer", "remove_consumer", "remove_transport"].contains(n)));
    rig.leave("dan");
    rig.leave("ann");
    let out = rig.leave("cat");
    assert_eq!(names(&out), ["remove_transport", "close_router"]);
    assert!(rig.control.is_empty());
    assert_eq!(rig.engines[0].engine.router_count(), 0);
    assert!(rig.leave("cat").commands.is_empty(), "leaving twice is harmless");
}

#[test]
fn only_the_active_share_fills_screen_slots() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 0);
    rig.browser("bob", 200, 0);
    assert_eq!(slot_consumer(&rig, "bob", "2"), None, "nobody shares yet");
    let out = rig.control.share(CONVERSATION, "ann", true);
    let out = rig.run(out);
    assert_eq!(names(&out), ["add_consumer", "set_consumer_numbering"]);
    assert_eq!(frame(&out, "bob"), Some(vec![shows("1", Some("ann")), shows("2", Some("ann"))]));
    assert_eq!(frame(&out, "ann"), None, "the sharer's own slots did not change");
    assert!(rig.control.share(CONVERSATION, "bob", false).commands.is_empty(), "bob was not sharing");
    let out = rig.control.share(CONVERSATION, "ann", false);
    let out = rig.run(out);
    assert_eq!(names(&out), ["remove_consumer"]);
    assert_eq!(frame(&out, "bob"), Some(vec![shows("1", Some("ann")), shows("2", None)]));
}

#[test]
fn subscribe_caps_height_and_pauses_filled_video_slots_only() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 0);
    rig.browser("bob", 200, 0);
    let (consumer, _) = slot_consumer(&rig, "bob", "1").expect("bob sees ann");
    let wishes = [
        SlotSubscription { mid: "1".into(), max_height: Some(360), paused: Some(true) },
        SlotSubscription { mid: "2".into(), max_height: Some(720), paused: None },
        SlotSubscription { mid: "0".into(), max_height: None, paused: Some(true) },
        SlotSubscription { mid: "nope".into(), max_height: Some(1), paused: None },
    ];
    let out = rig.control.subscribe(CONVERSATION, "bob", &wishes);
    let out = rig.run(out);
    assert_eq!(out.commands.len(), 2, "the empty screen slot, the audio slot and the unknown mid are skipped");
    assert!(matches!(out.commands[0].1, Command::SetConsumerPaused { consumer: c, paused: true, .. } if c == consumer));
    assert!(
        matches!(out.commands[1].1, Command::SetConsumerMaxHeight { consumer: c, max_height: 360, .. } if c == consumer)
    );
    assert!(rig.control.subscribe("elsewhere", "bob", &wishes).commands.is_empty());
}

#[test]
fn joining_again_replaces_the_earlier_session() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 0);
    rig.browser("bob", 200, 0);
    let old = rig.control.conference(CONVERSATION).unwrap().participants["ann"].transport;
    let (_, _, out) = rig.quic("ann", 900, MediaReceive { video: 1, screen: false });
    let removed =
        out.commands.iter().position(|(_, c)| matches!(c, Command::RemoveTransport { transport } if *transport == old));
    let added = out.commands.iter().position(|(_, c)| c.name() == "add_direct_transport");
    assert!(removed.is_some() && removed < added, "{:?}", names(&out));
    assert_eq!(slot_consumer(&rig, "bob", "1").map(|c| c.1), Some(camera_of(&rig, "ann")), "bob sees ann's new camera");
}

#[test]
fn a_trunk_leg_joins_through_the_same_path() {
    let mut rig = Rig::new(1);
    rig.browser("ann", 100, 0);
    let keys = SrtpKeys {
        profile: Profile::Aes128CmHmacSha1_80,
        local_master_key: vec![1; 16],
        local_master_salt: vec![2; 14],
        remote_master_key: vec![3; 16],
        remote_master_salt: vec![4; 14],
    };
    let remote = SocketAddr::from(([198, 51, 100, 7], 5004));
    let attach = Attach {
        transport: TransportKind::Srtp { remote, keys },
        publish: vec![ProducerSpec::opus(ProducerId(0), TransportId(0), 111, 77, 0)],
        receive: vec![ReceiveSlot { mid: "trunk".into(), kind: MediaKind::Audio, ssrc: 4242, numbering: None }],
        mix_payload_type: 111,
        announce_slots: false,
    };
    let (joined, out) = rig.control.join(CONVERSATION, "trunk", attach);
    let out = rig.run(out);
    assert_eq!(names(&out), ["add_transport", "add_producer", "set_mix_output"]);
    assert!(
        matches!(&out.commands[0].1, Command::AddTransport(spec) if spec.remote == Some(remote) && spec.id == joined.transport)
    );
    assert!(out.frames.is_empty(), "a leg without video slots gets no frame");
}

#[test]
fn conferences_spread_over_workers_and_answers_name_their_worker() {
    let mut rig = Rig::new(2);
    let offer = browser_offer(100, 0);
    let (first, out) = rig.control.join_offer("one", "ann", true, &offer).unwrap();
    rig.run(out);
    let (second, out) = rig.control.join_offer("two", "bob", true, &offer).unwrap();
    rig.run(out);
    assert!(first.contains("192.0.2.1 40000 typ host"));
    assert!(second.contains("192.0.2.1 40001 typ host"), "the second conversation goes to the idle worker");
    assert_eq!((rig.engines[0].engine.router_count(), rig.engines[1].engine.router_count()), (1, 1));
}

#[test]
fn bad_offers_and_tracks_are_refused_before_anything_changes() {
    let mut rig = Rig::new(1);
    assert!(matches!(rig.control.join_offer(CONVERSATION, "ann", true, "v=0\r\n"), Err(ControlError::BadOffer(_))));
    let link = DirectLink::new(4);
    let audio_rid = [MediaTrack { rid: Some("q".into()), ..MediaTrack::opus(1) }];
    let refused = rig.control.join_direct(CONVERSATION, "q", true, link.clone(), &audio_rid, MediaReceive::default());
    assert!(matches!(refused, Err(ControlError::InvalidTracks(_))));
    let too_many = MediaReceive { video: 200, screen: false };
    let refused = rig.control.join_direct(CONVERSATION, "q", true, link, &[MediaTrack::opus(1)], too_many);
    assert!(matches!(refused, Err(ControlError::InvalidTracks(_))));
    assert!(rig.control.is_empty());
}

#[test]
fn a_server_leg_hears_the_mix_and_a_quic_participants_dtmf_becomes_a_tone() {
    use crate::rtp::telephone_event::{tone_packets, write_packet};
    let mut rig = Rig::new(1);
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    let (leg, streams, out) = rig.control.join_leg(CONVERSATION, "leg-1", link.clone());
    let out = rig.run(out);
    let names = names(&out);
    assert!(names.contains(&"add_direct_transport") && names.contains(&"add_producer"), "{names:?}");
    assert!(names.contains(&"set_mix_output") && names.contains(&"set_telephone_event"), "{names:?}");
    assert_eq!(streams.telephone_event_payload_type, palaver_core::protocol::quic::TELEPHONE_EVENT_PT);
    let (alice, _, _) = rig.quic("alice", 5000, MediaReceive::default());
    assert_eq!(leg.router, alice.router, "one conference");

    // Alice presses 7 (RFC 4733 on the QUIC payload type, her audio SSRC): one tone.
    let engine = &mut rig.engines[alice.worker];
    let mut buf = [0u8; 32];
    for (seq, (marker, event)) in tone_packets(7, 10, 800).enumerate() {
        let pt = palaver_core::protocol::quic::TELEPHONE_EVENT_PT;
        let n = write_packet(&mut buf, pt, marker, seq as u16, 48_000, 5000, &event).unwrap();
        engine.direct(alice.transport, &buf[..n]);
    }
    let tones: Vec<Tone> =
        engine.events().into_iter().flat_map(|event| rig.control.on_event(alice.worker, event).tones).collect();
    assert_eq!(
        tones,
        [Tone { conversation: CONVERSATION.into(), participant: "alice".into(), event: 7, duration: 800 }]
    );
    // The leg's own tones are recognized the same way (bot-to-bot DTMF goes through the engine).
    let engine = &mut rig.engines[leg.worker];
    for (seq, (marker, event)) in tone_packets(11, 10, 400).enumerate() {
        let n = write_packet(
            &mut buf,
            streams.telephone_event_payload_type,
            marker,
            seq as u16,
            9,
            streams.audio_ssrc,
            &event,
        )
        .unwrap();
        engine.direct(leg.transport, &buf[..n]);
    }
    let events = engine.events();
    assert!(
        matches!(events[..], [EngineEvent::Dtmf { event: 11, duration: 400, transport }] if transport == leg.transport)
    );
    let _ = link;
}
