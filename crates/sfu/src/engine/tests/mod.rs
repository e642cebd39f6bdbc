//! Worker core tests over virtual time and an in-memory transmit queue: ICE-lite binding,
//! the SRTP-in → route → SRTP-out path between two peers, and bad input of every kind being
//! counted and dropped without disturbing a real stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::mixer::MixerConfig;
use crate::net::{DirectLink, WorkerConfig, WorkerPool};
use crate::router::{ConsumerId, ConsumerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use crate::rtp::RtpHeader;
use crate::srtp::Profile;
use crate::testing::{Peer, TestEngine};
use crate::webrtc::stun::write_binding_request;

mod latching;
mod mix;
mod phone;
mod webrtc;

const ROOM: RouterId = RouterId(1);
const OPUS: u8 = 111;

fn audio(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0x0A, 0x0A];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(960 * seq as u32).to_be_bytes());
    p.extend_from_slice(&[0xAB; 80]);
    p
}

/// The publisher's Opus producer (id 1, SSRC 0x0A0A) on `transport`.
fn opus_producer(transport: TransportId) -> ProducerSpec {
    ProducerSpec::opus(ProducerId(1), transport, OPUS, 0x0A0A, 0)
}

/// A room with a publisher (audio producer, SSRC 0x0A0A) and `n` subscribers, on virtual time.
fn room_with(n: u8, profile: Profile) -> (TestEngine, Peer, Vec<Peer>) {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 99);
    let publisher = Peer::new(1, profile);
    let subscribers: Vec<Peer> = (0..n).map(|i| Peer::new(10 + u32::from(i), profile)).collect();
    t.commands([
        Command::CreateRouter { router: ROOM },
        publisher.add_transport(ROOM, Some(publisher.addr)),
        Command::AddProducer { router: ROOM, spec: opus_producer(publisher.transport) },
    ]);
    for (i, s) in subscribers.iter().enumerate() {
        let spec = ConsumerSpec {
            id: ConsumerId(i as u32),
            transport: s.transport,
            producer: ProducerId(1),
            ssrc: 0x5000 + i as u32,
            rtx: None,
            paused: false,
            max_height: u16::MAX,
        };
        t.commands([s.add_transport(ROOM, Some(s.addr)), Command::AddConsumer { router: ROOM, spec }]);
    }
    (t, publisher, subscribers)
}

#[test]
fn srtp_in_route_srtp_out_for_every_profile() {
    for profile in [Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32, Profile::AeadAes128Gcm] {
        let (mut t, mut publisher, mut subscribers) = room_with(3, profile);
        for seq in 0..10u16 {
            let packet = publisher.srtp(&audio(seq));
            t.datagram(publisher.addr, packet);
        }
        assert_eq!(t.out.sent.len(), 30, "{profile:?}");
        for (to, mut packet) in t.out.sent.drain(..) {
            let sub = subscribers.iter_mut().find(|s| s.addr == to).unwrap();
            let n = sub.from_server.unprotect_rtp(&mut packet).unwrap();
            let h = RtpHeader::parse(&packet[..n]).unwrap();
            assert_eq!(h.ssrc, 0x5000 + (sub.transport.0 - 10));
            assert_eq!(h.payload(&packet[..n]), &[0xAB; 80]);
        }
        let c = t.counters();
        assert_eq!((c.packets_in, c.packets_out, c.rtp_forwarded, c.dropped_total()), (10, 30, 30, 0));
    }
}

#[test]
fn subscriber_receiver_reports_feed_loss_and_jitter_counters() {
    let (mut t, _, mut subscribers) = room_with(2, Profile::Aes128CmHmacSha1_80);
    // RR from each subscriber about its own audio stream (SSRC 0x5000 + i): 12 and then 20 lost,
    // fraction 32/256 and 96/256, jitter 960 and 2880 units at 48 kHz (20 ms and 60 ms).
    for (i, (sub, (lost, fraction, jitter))) in
        subscribers.iter_mut().zip([(12u32, 32u8, 960u32), (20, 96, 2880)]).enumerate()
    {
        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 0x77];
        rr.extend_from_slice(&(0x5000 + i as u32).to_be_bytes());
        rr.push(fraction);
        rr.extend_from_slice(&lost.to_be_bytes()[1..]);
        rr.extend_from_slice(&[0, 0, 0, 100]);
        rr.extend_from_slice(&jitter.to_be_bytes());
        rr.extend_from_slice(&[0; 8]);
        let len = rr.len();
        rr.resize(len + 32, 0);
        let n = sub.to_server.protect_rtcp(&mut rr, len).unwrap();
        t.datagram(sub.addr, rr[..n].to_vec());
    }
    let c = t.counters();
    assert_eq!(c.dropped_total(), 0, "{c:?}");
    // One worker: its EWMA starts at the first block, then moves 1/8 towards the second.
    assert_eq!((c.reception.report_blocks, c.reception.packets_lost), (2, 32));
    let expected_loss = 0.125 + (0.375 - 0.125) * EWMA_WEIGHT;
    assert!((c.reception.loss_ratio() - expected_loss).abs() < 1e-6, "{c:?}");
    assert!((c.reception.jitter_seconds() - (0.020 + 0.040 * EWMA_WEIGHT)).abs() < 1e-9, "{c:?}");
}

#[test]
fn ice_lite_binding_learns_the_address_and_rejects_bad_credentials() {
    let (mut t, _, _) = room_with(0, Profile::Aes128CmHmacSha1_80);
    let late = Peer::new(50, Profile::Aes128CmHmacSha1_80);
    t.command(late.add_transport(ROOM, None)).unwrap();
    let mut buf = [0u8; 200];
    let username = format!("{}:browser", late.ufrag);
    // wrong password, unknown ufrag, garbage
    let n = write_binding_request(&mut buf, &[1; 12], &username, b"not-the-password").unwrap();
    t.datagram(late.addr, buf[..n].to_vec());
    let n = write_binding_request(&mut buf, &[2; 12], "nobody:browser", late.pwd.as_bytes()).unwrap();
    t.datagram(late.addr, buf[..n].to_vec());
    let mut garbage = buf[..n].to_vec();
    garbage[25] ^= 0xFF;
    t.datagram(late.addr, garbage);
    assert!(t.out.sent.is_empty());
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::StunBadIntegrity), 1);
    assert_eq!(c.dropped(DropReason::StunUnknownUfrag), 1);
    assert_eq!(c.dropped(DropReason::StunInvalid), 1);
    // the right credentials: answered, and media from that address is now accepted
    let n = write_binding_request(&mut buf, &[3; 12], &username, late.pwd.as_bytes()).unwrap();
    t.datagram(late.addr, buf[..n].to_vec());
    assert_eq!(t.out.sent.len(), 1);
    let (to, response) = &t.out.sent[0];
    assert_eq!(*to, late.addr);
    assert_eq!(&response[..2], &[0x01, 0x01]);
    assert_eq!(&response[8..20], &[3; 12]);
}

#[test]
fn junk_of_every_kind_is_counted_and_the_real_stream_is_intact() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let (mut t, mut publisher, mut subscribers) = room_with(1, Profile::Aes128CmHmacSha1_80);
    let mut rng = StdRng::seed_from_u64(42);
    let stranger: SocketAddr = "127.9.9.9:9999".parse().unwrap();
    let mut replay = Vec::new();
    for seq in 0..1000u16 {
        // 20 ms between packets; the engine's timers run at their own deadlines on the way.
        t.drive(Duration::from_millis(20));
        let packet = publisher.srtp(&audio(seq));
        if seq == 500 {
            replay = packet.clone();
        }
        t.datagram(publisher.addr, packet);
        // junk between every real packet
        let len = rng.gen_range(0..300);
        let junk: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        t.datagram(publisher.addr, junk);
        let mut junk_rtp = audio(seq);
        junk_rtp[0] = 0x80;
        let cut = rng.gen_range(0..junk_rtp.len());
        t.datagram(publisher.addr, junk_rtp[..cut].to_vec());
        t.datagram(stranger, publisher.srtp(&audio(seq)));
        if !replay.is_empty() {
            t.datagram(publisher.addr, replay.clone());
        }
        let mut wrong_ssrc = audio(seq);
        wrong_ssrc[8..12].copy_from_slice(&0xBAD_BAD_u32.to_be_bytes());
        let wrong_ssrc = publisher.srtp(&wrong_ssrc);
        t.datagram(publisher.addr, wrong_ssrc);
        let rtcp_junk = vec![0x80, 200, 0, 50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
        t.datagram(publisher.addr, rtcp_junk);
    }
    let sub = &mut subscribers[0];
    let mut sequences = Vec::new();
    for (to, mut packet) in t.out.sent.drain(..) {
        if crate::rtp::is_rtcp(&packet) {
            continue; // sender reports to the subscriber, receiver reports to the publisher
        }
        assert_eq!(to, sub.addr);
        let n = sub.from_server.unprotect_rtp(&mut packet).unwrap();
        sequences.push(RtpHeader::parse(&packet[..n]).unwrap().sequence);
    }
    assert_eq!(sequences.len(), 1000, "every real packet arrives exactly once");
    assert!(sequences.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::UnknownSource), 1000);
    // 500 replays plus truncated copies that reuse an already accepted sequence number
    assert!(c.dropped(DropReason::SrtpReplayed) >= 500);
    assert_eq!(c.dropped(DropReason::UnknownSsrc), 1000);
    assert_eq!(c.dropped_total(), c.packets_in - 1000, "everything but the real stream is dropped and counted: {c:?}");
    assert_eq!(c.packets_in, 1000 * 6 + 500);
}

#[test]
fn commands_that_fail_change_nothing() {
    let (mut t, publisher, _) = room_with(1, Profile::AeadAes128Gcm);
    assert_eq!(t.command(Command::CreateRouter { router: ROOM }), Err(CommandError::RouterExists));
    assert_eq!(t.command(publisher.add_transport(ROOM, Some(publisher.addr))), Err(CommandError::TransportExists));
    assert_eq!(t.command(publisher.add_transport(RouterId(7), Some(publisher.addr))), Err(CommandError::UnknownRouter));
    let mut bad = Peer::new(77, Profile::AeadAes128Gcm);
    bad.keys.remote_master_salt.pop();
    assert!(matches!(t.command(bad.add_transport(ROOM, None)), Err(CommandError::Srtp(_))));
    assert_eq!(t.command(Command::RemoveTransport { transport: TransportId(77) }), Err(CommandError::UnknownTransport));
    t.command(Command::CloseRouter { router: ROOM }).unwrap();
    assert_eq!(t.engine.router_count(), 0);
    let c = t.counters();
    assert_eq!(c.commands_failed, 5);
}

/// Counts how often the worker woke a queue transport's consumer.
#[derive(Default)]
struct WakeCount(std::sync::atomic::AtomicUsize);

impl std::task::Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

const QUEUE_PEER: TransportId = TransportId(40);

/// `room_with(1)` plus a queue-attached transport that publishes audio (producer 2, SSRC
/// 0x0B0B, consumed by the UDP subscriber as 0x6000) and consumes the UDP publisher (as 0x7000).
fn room_with_queue_peer(egress: usize) -> (TestEngine, Peer, Peer, Arc<DirectLink>) {
    let (mut t, publisher, mut subscribers) = room_with(1, Profile::Aes128CmHmacSha1_80);
    let link = DirectLink::new(egress);
    t.command(Command::AddDirectTransport { id: QUEUE_PEER, router: ROOM, link: link.clone() }).unwrap();
    let mut producer = ProducerSpec::opus(ProducerId(2), QUEUE_PEER, OPUS, 0x0B0B, 0);
    t.command(Command::AddProducer { router: ROOM, spec: producer.clone() }).unwrap();
    let subscriber = subscribers.remove(0);
    // The UDP subscriber now hears only the queue peer.
    t.command(Command::RemoveConsumer { router: ROOM, consumer: ConsumerId(0) }).unwrap();
    let consumers = [
        (ConsumerId(20), subscriber.transport, ProducerId(2), 0x6000),
        (ConsumerId(21), QUEUE_PEER, ProducerId(1), 0x7000),
    ];
    for (id, transport, producer, ssrc) in consumers {
        let spec = ConsumerSpec { id, transport, producer, ssrc, rtx: None, paused: false, max_height: u16::MAX };
        t.command(Command::AddConsumer { router: ROOM, spec }).unwrap();
    }
    // A producer may only live on a transport of its room.
    producer.id = ProducerId(3);
    producer.transport = TransportId(999);
    assert_eq!(t.command(Command::AddProducer { router: ROOM, spec: producer }), Err(CommandError::UnknownTransport));
    t.out.sent.clear();
    (t, publisher, subscriber, link)
}

fn queued_audio(seq: u16) -> Vec<u8> {
    let mut p = audio(seq);
    p[8..12].copy_from_slice(&0x0B0B_u32.to_be_bytes());
    p
}

#[test]
fn queue_transport_plain_rtp_reaches_an_srtp_subscriber_and_srtp_reaches_its_egress_queue() {
    let (mut t, mut publisher, mut subscriber, link) = room_with_queue_peer(64);
    let wakes = Arc::new(WakeCount::default());
    link.egress_waker.register(&std::task::Waker::from(wakes.clone()));
    // queue → UDP/SRTP: plain in, SRTP out with the consumer's SSRC
    for seq in 0..5u16 {
        t.direct(QUEUE_PEER, &queued_audio(seq));
    }
    assert_eq!(t.out.sent.len(), 5);
    let mut sequences = Vec::new();
    for (to, mut packet) in t.out.sent.drain(..) {
        assert_eq!(to, subscriber.addr);
        let n = subscriber.from_server.unprotect_rtp(&mut packet).unwrap();
        let h = RtpHeader::parse(&packet[..n]).unwrap();
        assert_eq!(h.ssrc, 0x6000);
        assert_eq!(h.payload(&packet[..n]), &[0xAB; 80]);
        sequences.push(h.sequence);
    }
    assert!(sequences.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert!(link.egress.is_empty(), "its own audio is not sent back");
    // UDP/SRTP → queue: SRTP in, plain RTP in the egress queue, consumer woken
    for seq in 0..3u16 {
        let packet = publisher.srtp(&audio(seq));
        t.datagram(publisher.addr, packet);
    }
    let mut got = Vec::new();
    while let Some(packet) = link.pop_egress() {
        let h = RtpHeader::parse(&packet).unwrap();
        assert_eq!(h.ssrc, 0x7000);
        assert_eq!(h.payload(&packet), &[0xAB; 80], "plain RTP, no SRTP tag");
        got.push(h.sequence);
    }
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1, "a woken waker is consumed");
    let c = t.counters();
    assert_eq!((c.packets_in, c.packets_out, c.rtp_forwarded, c.dropped_total()), (8, 8, 8, 0), "{c:?}");
}

#[test]
fn a_full_egress_queue_is_counted_not_blocked_and_bad_queued_input_is_dropped() {
    let (mut t, mut publisher, _, link) = room_with_queue_peer(2);
    for seq in 0..5u16 {
        let packet = publisher.srtp(&audio(seq));
        t.datagram(publisher.addr, packet);
    }
    assert_eq!(link.egress.len(), 2);
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::EgressQueueFull), 3);
    assert_eq!(c.packets_out, 2);
    // Not RTP, truncated RTP, an unknown SSRC, a UDP transport's id and an unknown id.
    t.direct(QUEUE_PEER, b"hello");
    t.direct(QUEUE_PEER, &queued_audio(9)[..7]);
    let mut stranger = queued_audio(9);
    stranger[8..12].copy_from_slice(&0xBAD_u32.to_be_bytes());
    t.direct(QUEUE_PEER, &stranger);
    t.direct(publisher.transport, &audio(9));
    t.direct(TransportId(12345), &queued_audio(9));
    assert!(t.out.sent.is_empty());
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::NotMedia), 2, "{c:?}");
    assert_eq!(c.dropped(DropReason::UnknownSsrc), 1);
    assert_eq!(c.dropped(DropReason::UnknownSource), 2);
}

#[test]
fn a_removed_queue_transport_neither_sends_nor_receives() {
    let (mut t, mut publisher, _, link) = room_with_queue_peer(64);
    let duplicate = Command::AddDirectTransport { id: QUEUE_PEER, router: ROOM, link: link.clone() };
    assert_eq!(t.command(duplicate), Err(CommandError::TransportExists));
    let elsewhere = Command::AddDirectTransport { id: TransportId(41), router: RouterId(9), link: link.clone() };
    assert_eq!(t.command(elsewhere), Err(CommandError::UnknownRouter));
    t.command(Command::RemoveTransport { transport: QUEUE_PEER }).unwrap();
    t.direct(QUEUE_PEER, &queued_audio(0));
    let packet = publisher.srtp(&audio(0));
    t.datagram(publisher.addr, packet);
    assert!(t.out.sent.is_empty() && link.egress.is_empty());
    let c = t.counters();
    assert_eq!(c.dropped(DropReason::UnknownSource), 1);
    assert_eq!(c.packets_out, 0);
    // The id can be attached again.
    let again = Command::AddDirectTransport { id: QUEUE_PEER, router: ROOM, link };
    t.command(again).unwrap();
}

#[test]
fn the_worker_thread_drains_ingress_and_fills_egress_within_a_few_ticks() {
    let config = WorkerConfig { workers: 1, bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let pool = WorkerPool::start(config).unwrap();
    let worker = &pool.workers()[0];
    let (a, b) = (DirectLink::new(16), DirectLink::new(16));
    let commands = [
        Command::CreateRouter { router: ROOM },
        Command::AddDirectTransport { id: TransportId(1), router: ROOM, link: a.clone() },
        Command::AddDirectTransport { id: TransportId(2), router: ROOM, link: b.clone() },
        Command::AddProducer { router: ROOM, spec: opus_producer(TransportId(1)) },
        Command::AddConsumer {
            router: ROOM,
            spec: ConsumerSpec {
                id: ConsumerId(1),
                transport: TransportId(2),
                producer: ProducerId(1),
                ssrc: 0x5000,
                rtx: None,
                paused: false,
                max_height: u16::MAX,
            },
        },
    ];
    for command in commands {
        worker.send(command).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut seq = 0u16;
    while got.len() < 10 && Instant::now() < deadline {
        // Commands run before ingress in each round, but keep pushing until packets flow.
        worker.push_ingress(TransportId(1), bytes::Bytes::from(audio(seq))).unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(2));
        while let Some(packet) = b.pop_egress() {
            got.push(RtpHeader::parse(&packet).unwrap().ssrc);
        }
    }
    assert!(got.len() >= 10 && got.iter().all(|ssrc| *ssrc == 0x5000), "{got:x?}");
    assert!(a.egress.is_empty());
    let c = worker.counters();
    assert!(c.rtp_forwarded >= 10 && c.dropped(DropReason::IngressQueueFull) == 0, "{c:?}");
}

#[test]
fn every_packet_refused_by_a_full_ingress_queue_is_given_back_and_counted_once() {
    let config =
        WorkerConfig { workers: 1, bind: "127.0.0.1:0".parse().unwrap(), ingress_queue: 1, ..Default::default() };
    let pool = WorkerPool::start(config).unwrap();
    let worker = &pool.workers()[0];
    let mut refused = 0;
    for seq in 0..2000u16 {
        if let Err(back) = worker.push_ingress(TransportId(1), bytes::Bytes::from(audio(seq))) {
            assert_eq!(back, audio(seq));
            refused += 1;
        }
    }
    // The worker drains at most every tick; nothing else counts this reason.
    let c = worker.counters();
    assert_eq!(c.dropped(DropReason::IngressQueueFull), refused);
}

/// Idle costs nothing: an engine without routers, or with a router nobody joined, has no
/// deadline, so the shell sleeps; a member's mixer asks for its 20 ms ticks until it leaves.
#[test]
fn an_engine_has_a_deadline_only_while_something_runs() {
    let mut t = crate::testing::TestEngine::new();
    assert_eq!(t.engine.poll_timeout(), None, "no routers");
    t.commands([Command::CreateRouter { router: ROOM }]);
    assert_eq!(t.engine.poll_timeout(), None, "an empty router");
    let alice = Peer::new(1, Profile::Aes128CmHmacSha1_80);
    let output = Some(MixOutputSpec { ssrc: 0x9000, payload_type: OPUS });
    t.commands([
        alice.add_transport(ROOM, Some(alice.addr)),
        Command::SetMixOutput { router: ROOM, transport: alice.transport, output },
    ]);
    let next = t.engine.poll_timeout().expect("the mixer ticks");
    assert_eq!(next, t.now() + MIX_PERIOD);
    assert_eq!(t.drive(Duration::from_secs(1)), 50, "one timer run per 20 ms tick");
    t.commands([Command::CloseRouter { router: ROOM }]);
    assert_eq!(t.engine.poll_timeout(), None, "closed");
    assert_eq!(t.drive(Duration::from_secs(10)), 0);
}

/// A worker may sleep through arrivals until its next tick only while every room just mixes:
/// a forwarding consumer (an SFU stream wants each packet at once) or a DTLS handshake in
/// progress (its flights are timed) make it receive as packets come.
#[test]
fn receiving_waits_for_the_tick_only_while_rooms_just_mix() {
    let mut t = crate::testing::TestEngine::new();
    assert!(!t.engine.receive_waits_for_tick(), "nothing mixes");
    t.commands([Command::CreateRouter { router: ROOM }]);
    assert!(!t.engine.receive_waits_for_tick(), "a room without members has no tick to wait for");
    let alice = Peer::new(1, Profile::Aes128CmHmacSha1_80);
    let output = Some(MixOutputSpec { ssrc: 0x9000, payload_type: OPUS });
    t.commands([
        alice.add_transport(ROOM, Some(alice.addr)),
        Command::AddProducer { router: ROOM, spec: opus_producer(alice.transport) },
        Command::SetMixOutput { router: ROOM, transport: alice.transport, output },
    ]);
    assert!(t.engine.receive_waits_for_tick(), "a mixing room: packets wait for the tick");
    let bob = Peer::new(2, Profile::Aes128CmHmacSha1_80);
    let spec = ConsumerSpec {
        id: ConsumerId(7),
        transport: bob.transport,
        producer: ProducerId(1),
        ssrc: 0x5000,
        rtx: None,
        paused: false,
        max_height: u16::MAX,
    };
    t.commands([bob.add_transport(ROOM, Some(bob.addr)), Command::AddConsumer { router: ROOM, spec }]);
    assert!(!t.engine.receive_waits_for_tick(), "a forwarded stream is received at once");
    t.commands([Command::RemoveConsumer { router: ROOM, consumer: ConsumerId(7) }]);
    assert!(t.engine.receive_waits_for_tick(), "mixing only again");
}
