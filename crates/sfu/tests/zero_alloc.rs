//! Proof of "no heap allocation per packet in steady state": a counting global allocator
//! watches over 100k forwarded SRTP packets go receive → unprotect → route → rewrite → protect to four
//! subscribers (audio and video, with NACK answering and timers mixed in, including the RTCP
//! sender reports to subscribers and receiver reports + REMB to the publisher), the same for
//! direct (QUIC) transports whose packets come in as plain RTP and leave through their
//! `DirectLink` (the egress buffers are reused), and the worker's `SendBatch` sending 100k
//! datagrams over loopback with GSO runs. quinn's own buffers (the `Bytes` a connection
//! receives, its send path) are outside what this test can see.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver_sfu::engine::{Command, Engine, EngineEvent, RouterId, Transmit, WorkerCounters};
use palaver_sfu::net::{DirectEgress, DirectLink, SendBatch};
use palaver_sfu::router::RouterConfig;
use palaver_sfu::router::{ConsumerId, ConsumerSpec, TransportId};
use palaver_sfu::rtp::rtcp::write_nack;
use palaver_sfu::srtp::Profile;
use support::*;

#[global_allocator]
static GLOBAL: support::counting_alloc::CountingAllocator = support::counting_alloc::CountingAllocator;

/// Counts datagrams (and SRTCP sender/receiver reports among them) and keeps nothing.
struct CountingTransmit {
    buf: Vec<u8>,
    sent: u64,
    sender_reports: u64,
    receiver_reports: u64,
    direct: DirectEgress,
}

impl CountingTransmit {
    fn new() -> Self {
        Self { buf: vec![0; 2048], sent: 0, sender_reports: 0, receiver_reports: 0, direct: DirectEgress::new() }
    }
}

impl Transmit for CountingTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, _len: usize, _to: SocketAddr) {
        self.sent += 1;
        // SRTCP leaves the first RTCP header in the clear: byte 1 is the packet type.
        match self.buf[1] {
            200 => self.sender_reports += 1,
            201 => self.receiver_reports += 1,
            _ => {}
        }
    }
    fn commit_direct(&mut self, len: usize, to: &DirectLink) -> bool {
        self.sent += 1;
        self.direct.send(to, &self.buf[..len])
    }
}

/// Packets the publisher sends while allocations are counted (half audio, half video); each
/// goes to four subscribers, so over 100k forwarded packets per profile.
const STEPS: u32 = 30_000;
/// Packets a direct publisher sends while allocations are counted (each to four subscribers).
const DIRECT_STEPS: u32 = 100_000;

/// The publisher's packet of step `i` (audio on even steps, VP8 on odd ones, the first a
/// keyframe) written into `plain`; its length.
fn publisher_packet(plain: &mut [u8], i: u32) -> usize {
    let seq = (i / 2) as u16;
    if i.is_multiple_of(2) {
        write_rtp(plain, AUDIO_SSRC, OPUS, seq, 960 * (i / 2), 100, false)
    } else {
        write_rtp(plain, VIDEO_SSRC, VP8, seq, 3000 * (i / 2), 1100, i == 1)
    }
}

#[test]
fn forwarding_100k_packets_allocates_nothing() {
    for profile in [Profile::Aes128CmHmacSha1_80, Profile::AeadAes128Gcm] {
        run(profile, false);
    }
}

/// The QUIC participant's SRTP media carrier (`docs/quic.md`): every peer's transport is
/// added without an address (as `TransportKind::IceSrtp` does), learned from its STUN binding
/// request, and keyed from TLS-exported keying material; then the same 100k+ packets.
#[test]
fn the_quic_srtp_carrier_forwards_100k_packets_without_allocating() {
    run(Profile::AeadAes128Gcm, true);
}

fn run(profile: Profile, quic_srtp: bool) {
    let peer = |n: u32| if quic_srtp { Peer::quic_srtp(n) } else { Peer::new(n, profile) };
    let known = |addr: SocketAddr| (!quic_srtp).then_some(addr);
    let mut stun = [0u8; 256];
    let room = RouterId(9);
    let counters = Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = CountingTransmit::new();
    let mut now = Instant::now();
    let mut publisher = peer(1);
    let publisher_addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    for c in room_commands(room, &publisher, known(publisher_addr)) {
        core.handle_command(now, c, &mut tx).unwrap();
    }
    if quic_srtp {
        let n = publisher.binding_request(&mut stun, 1);
        core.handle_datagram(now, publisher_addr, &mut stun[..n], &mut tx);
    }
    let mut subscribers = Vec::new();
    for n in 0..4u32 {
        let peer = peer(10 + n);
        let addr: SocketAddr = format!("127.0.0.1:{}", 41000 + n).parse().unwrap();
        for c in subscriber_commands(room, &peer, known(addr), true) {
            core.handle_command(now, c, &mut tx).unwrap();
        }
        if quic_srtp {
            let k = peer.binding_request(&mut stun, 2 + n as u8);
            core.handle_datagram(now, addr, &mut stun[..k], &mut tx);
        }
        subscribers.push((peer, addr));
    }
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    let mut nack = [0u8; 64];
    let mut rtcp_wire = [0u8; 128];
    let mut step = |i: u32, now: Instant, core: &mut Engine, tx: &mut CountingTransmit| {
        let len = publisher_packet(&mut plain, i);
        let n = publisher.protect(&plain[..len], &mut wire);
        core.handle_datagram(now, publisher_addr, &mut wire[..n], tx);
        if i % 1000 == 999 {
            // subscriber 0 reports a lost video packet; answered from the cache
            let (peer, addr) = &mut subscribers[0];
            let media = 0x1000_0000 + peer.transport.0 * 10 + 1;
            // the video packet sent 10 steps ago: its out sequence is seed + (step - 1) / 2
            let lost = (media as u16).wrapping_add(((i - 10 - 1) / 2) as u16);
            let k = write_nack(&mut nack, 7, media, &[lost]).unwrap();
            let m = peer.protect_rtcp(&nack[..k], &mut rtcp_wire);
            core.handle_datagram(now, *addr, &mut rtcp_wire[..m], tx);
        }
        if i.is_multiple_of(20) {
            core.handle_timeout(now, tx);
        }
    };
    // warm-up: SSRC states, speaker table, keyframe switch, hash maps reach their size
    for i in 0..2_000 {
        now += Duration::from_millis(10);
        step(i, now, &mut core, &mut tx);
    }
    let sent_before = tx.sent;
    let reports_before = (tx.sender_reports, tx.receiver_reports);
    let forwarded_before = counters.snapshot().rtp_forwarded;
    // the counter itself works: one allocation on this thread is seen
    let ((), probe) = support::counting_alloc::counted(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16))));
    assert_eq!(probe, 1);
    let ((), allocations) = support::counting_alloc::counted(|| {
        for i in 2_000..2_000 + STEPS {
            now += Duration::from_millis(10);
            step(i, now, &mut core, &mut tx);
        }
    });
    let forwarded = counters.snapshot().rtp_forwarded - forwarded_before;
    let snapshot = counters.snapshot();
    assert!(forwarded >= 4 * STEPS as u64, "{profile:?}: only {forwarded} forwarded: {snapshot:?}");
    assert!(forwarded >= 100_000);
    assert!(tx.sent - sent_before >= 4 * STEPS as u64);
    assert_eq!(snapshot.dropped_total(), 0, "{profile:?}: {snapshot:?}");
    assert!(snapshot.nack_received >= (STEPS / 1000) as u64);
    assert_eq!(snapshot.nack_missed, 0, "NACKs name packets that were forwarded and cached");
    // 300 s of virtual time at a ~1 s report interval: SRs for each consumer stream (at least
    // the 4 video ones) and RRs to the publisher were composed and sent in the counted window.
    let sender_reports = tx.sender_reports - reports_before.0;
    let receiver_reports = tx.receiver_reports - reports_before.1;
    assert!(sender_reports >= 4 * 200, "{profile:?}: {sender_reports} sender reports");
    assert!(receiver_reports >= 200, "{profile:?}: {receiver_reports} receiver reports");
    if quic_srtp {
        assert_eq!(snapshot.stun_answered, 5, "each peer bound once by STUN");
    }
    println!(
        "{profile:?} (QUIC SRTP carrier: {quic_srtp}): {forwarded} packets forwarded, {sender_reports} SRs, {receiver_reports} RRs, \
         {allocations} heap allocations"
    );
    assert_eq!(allocations, 0, "{profile:?}: {allocations} allocations while forwarding {forwarded} packets");
}

/// A direct (QUIC) publisher of audio and video and four direct subscribers: the worker side of
/// 100k+ packets in (`handle_direct`, what the worker does with each packet it pops from its
/// ingress queue) and out (cut from the reused egress chunks into each link's queue, then popped
/// and dropped as the connection's egress pump does after `send_datagram`).
#[test]
fn direct_transports_exchange_100k_packets_without_allocating() {
    let router = RouterId(11);
    let counters = Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = CountingTransmit::new();
    let mut now = Instant::now();
    let publisher = Peer::new(1, Profile::Aes128CmHmacSha1_80);
    let mut commands = room_commands(router, &publisher, None);
    // The publisher's link carries the router's receiver reports and REMB.
    let mut links = vec![DirectLink::new(64)];
    commands[1] = Command::AddDirectTransport { id: publisher.transport, router, link: links[0].clone() };
    for n in 0..4u32 {
        let id = TransportId(10 + n);
        let link = DirectLink::new(256);
        commands.push(Command::AddDirectTransport { id, router, link: link.clone() });
        for (producer, k) in [(1, 0), (2, 1)] {
            let spec = ConsumerSpec {
                id: ConsumerId(id.0 * 10 + k),
                transport: id,
                producer: palaver_sfu::router::ProducerId(producer),
                ssrc: 0x1000_0000 + id.0 * 10 + k,
                rtx: None,
                paused: false,
                max_height: u16::MAX,
            };
            commands.push(Command::AddConsumer { router, spec });
        }
        links.push(link);
    }
    // The publisher may send DTMF (as QUIC participants and server legs do): every packet of it
    // is checked for the telephone-event payload type, and a tone now and then is reported.
    let telephone_event = palaver_core::protocol::quic::TELEPHONE_EVENT_PT;
    commands.push(Command::SetTelephoneEvent { transport: publisher.transport, payload_type: Some(telephone_event) });
    for c in commands {
        core.handle_command(now, c, &mut tx).unwrap();
    }
    let mut plain = [0u8; 1500];
    let mut received = 0u64;
    let mut step = |i: u32, now: Instant, core: &mut Engine, tx: &mut CountingTransmit| {
        let len = publisher_packet(&mut plain, i);
        core.handle_direct(now, publisher.transport, &plain[..len], tx);
        if i.is_multiple_of(5_000) {
            // One tone's end packet (event 5), a new timestamp each time: reported once.
            let event =
                palaver_sfu::rtp::telephone_event::TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 };
            let n = palaver_sfu::rtp::telephone_event::write_packet(
                &mut plain,
                telephone_event,
                false,
                1,
                i,
                AUDIO_SSRC,
                &event,
            )
            .expect("fits");
            core.handle_direct(now, publisher.transport, &plain[..n], tx);
        }
        if i.is_multiple_of(20) {
            core.handle_timeout(now, tx);
        }
        for link in &links {
            while let Some(packet) = link.pop_egress() {
                received += packet.len() as u64;
            }
        }
    };
    // warm-up: keyframe switch, maps and every egress chunk reach their size
    for i in 0..2_000 {
        now += Duration::from_millis(10);
        step(i, now, &mut core, &mut tx);
    }
    let forwarded_before = counters.snapshot().rtp_forwarded;
    let ((), allocations) = support::counting_alloc::counted(|| {
        for i in 2_000..2_000 + DIRECT_STEPS {
            now += Duration::from_millis(10);
            step(i, now, &mut core, &mut tx);
        }
    });
    let snapshot = counters.snapshot();
    let forwarded = snapshot.rtp_forwarded - forwarded_before;
    let tones =
        std::iter::from_fn(|| core.poll_event()).filter(|e| matches!(e, EngineEvent::Dtmf { event: 5, .. })).count();
    assert_eq!(tones, (2_000 + DIRECT_STEPS as usize).div_ceil(5_000), "one DTMF event per tone");
    assert!(forwarded >= 4 * DIRECT_STEPS as u64, "only {forwarded} forwarded: {snapshot:?}");
    assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
    assert!(received > 0);
    println!("direct: {DIRECT_STEPS} packets in, {forwarded} forwarded out, {allocations} heap allocations");
    assert_eq!(allocations, 0, "{allocations} allocations while forwarding {forwarded} direct packets");
}

#[test]
fn sending_100k_datagrams_with_gso_runs_allocates_nothing() {
    // Four destinations, 5-datagram "frames" fanned out interleaved, one flush per frame (the
    // receivers are not read: what their buffers cannot hold the kernel drops after sending).
    let receivers: Vec<UdpSocket> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let addrs: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let mut batch = SendBatch::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    let frame = |batch: &mut SendBatch| {
        for len in [1100, 1100, 1100, 1100, 600] {
            for &to in &addrs {
                batch.buffer()[..len].fill(0x5A);
                batch.commit(len, to);
            }
        }
        batch.flush();
    };
    frame(&mut batch);
    let frames = 5_000;
    let ((), allocations) = support::counting_alloc::counted(|| (0..frames).for_each(|_| frame(&mut batch)));
    let failed = batch.take_failed();
    println!(
        "SendBatch (gso {}): {} datagrams, {failed} failed, {allocations} heap allocations",
        batch.gso(),
        frames * 20
    );
    assert_eq!(failed, 0);
    assert_eq!(allocations, 0, "{allocations} allocations while sending {} datagrams", frames * 20);
}
