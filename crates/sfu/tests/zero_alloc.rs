//! Proof of "no heap allocation per packet in steady state": a counting global allocator
//! watches over 100k forwarded SRTP packets go receive → unprotect → route → rewrite → protect to four
//! subscribers (audio and video, with NACK answering and timers mixed in, including the RTCP
//! sender reports to subscribers and receiver reports + REMB to the publisher), and the
//! worker's `SendBatch` sending 100k datagrams over loopback with GSO runs.

mod common;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_queue::ArrayQueue;
use palaver_sfu::engine::{Engine, RouterId, Transmit, WorkerCounters};
use palaver_sfu::net::SendBatch;
use palaver_sfu::router::RouterConfig;
use palaver_sfu::rtp::rtcp::write_nack;
use palaver_sfu::srtp::Profile;

#[global_allocator]
static GLOBAL: counting_alloc::CountingAllocator = counting_alloc::CountingAllocator;

/// Counts datagrams (and SRTCP sender/receiver reports among them) and keeps nothing.
struct CountingTransmit {
    buf: Vec<u8>,
    sent: u64,
    sender_reports: u64,
    receiver_reports: u64,
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
}

/// Packets the publisher sends while allocations are counted (half audio, half video); each
/// goes to four subscribers, so over 100k forwarded packets per profile.
const STEPS: u32 = 30_000;

#[test]
fn forwarding_100k_packets_allocates_nothing() {
    for profile in [Profile::Aes128CmHmacSha1_80, Profile::AeadAes128Gcm] {
        run(profile);
    }
}

fn run(profile: Profile) {
    let room = RouterId(9);
    let counters = Arc::new(WorkerCounters::default());
    let events = Arc::new(ArrayQueue::new(16));
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone(), events);
    let mut tx = CountingTransmit { buf: vec![0; 2048], sent: 0, sender_reports: 0, receiver_reports: 0 };
    let mut now = Instant::now();
    let mut publisher = Peer::new(1, profile);
    let publisher_addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    for c in room_commands(room, &publisher, Some(publisher_addr)) {
        core.apply(now, c, &mut tx).unwrap();
    }
    let mut subscribers = Vec::new();
    for n in 0..4u32 {
        let peer = Peer::new(10 + n, profile);
        let addr: SocketAddr = format!("127.0.0.1:{}", 41000 + n).parse().unwrap();
        for c in subscriber_commands(room, &peer, Some(addr), true) {
            core.apply(now, c, &mut tx).unwrap();
        }
        subscribers.push((peer, addr));
    }
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    let mut nack = [0u8; 64];
    let mut rtcp_wire = [0u8; 128];
    let mut step = |i: u32, now: Instant, core: &mut Engine, tx: &mut CountingTransmit| {
        let seq = (i / 2) as u16;
        let len = if i.is_multiple_of(2) {
            write_rtp(&mut plain, AUDIO_SSRC, OPUS, seq, 960 * (i / 2), 100, false)
        } else {
            write_rtp(&mut plain, VIDEO_SSRC, VP8, seq, 3000 * (i / 2), 1100, i == 1)
        };
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
            core.poll(now, tx);
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
    let ((), probe) = counting_alloc::counted(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(16))));
    assert_eq!(probe, 1);
    let ((), allocations) = counting_alloc::counted(|| {
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
    println!(
        "{profile:?}: {forwarded} packets forwarded, {sender_reports} SRs, {receiver_reports} RRs, \
         {allocations} heap allocations"
    );
    assert_eq!(allocations, 0, "{profile:?}: {allocations} allocations while forwarding {forwarded} packets");
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
    let ((), allocations) = counting_alloc::counted(|| (0..frames).for_each(|_| frame(&mut batch)));
    let failed = batch.take_failed();
    println!(
        "SendBatch (gso {}): {} datagrams, {failed} failed, {allocations} heap allocations",
        batch.gso(),
        frames * 20
    );
    assert_eq!(failed, 0);
    assert_eq!(allocations, 0, "{allocations} allocations while sending {} datagrams", frames * 20);
}
