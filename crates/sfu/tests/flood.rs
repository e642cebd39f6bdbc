//! A real worker thread on loopback: a subscriber connects with ICE-lite STUN, a publisher
//! streams SRTP audio, and meanwhile an attacker (plus the publisher's own socket) floods the
//! worker with junk of every kind. Every real packet must reach the subscriber, in order, and
//! the junk must show up in the drop counters.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palaver_sfu::engine::{DropReason, EngineEvent, RouterId};
use palaver_sfu::net::{WorkerConfig, WorkerPool};
use palaver_sfu::rtp::RtpHeader;
use palaver_sfu::srtp::Profile;
use palaver_sfu::webrtc::stun::write_binding_request;
use rand::{Rng, SeedableRng, rngs::StdRng};
use support::*;

const REAL_PACKETS: u16 = 2_000;

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn junk_flood_causes_no_loss_for_the_real_stream() {
    let config = WorkerConfig { workers: 1, bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let pool = WorkerPool::start(config).unwrap();
    let worker = &pool.workers()[0];
    let server = worker.local_addr;
    let room = RouterId(1);

    let publisher_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let subscriber_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    subscriber_socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut publisher = Peer::new(1, Profile::Aes128CmHmacSha1_80);
    let mut subscriber = Peer::new(2, Profile::Aes128CmHmacSha1_80);
    let mut commands = room_commands(room, &publisher, Some(publisher_socket.local_addr().unwrap()));
    commands.extend(subscriber_commands(room, &subscriber, None, false));
    let expected = commands.len() as u64;
    for c in commands {
        worker.send(c).unwrap();
    }
    wait_for("commands", Duration::from_secs(5), || worker.counters().commands == expected);
    assert_eq!(worker.counters().commands_failed, 0);

    // ICE-lite: the subscriber proves its credentials and learns its mapped address.
    let mut buf = [0u8; 1500];
    let n =
        write_binding_request(&mut buf, &[9; 12], &format!("{}:client", subscriber.ufrag), subscriber.pwd.as_bytes())
            .unwrap();
    subscriber_socket.send_to(&buf[..n], server).unwrap();
    let (n, from) = subscriber_socket.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    assert_eq!((&buf[..2], &buf[8..20]), (&[0x01, 0x01][..], &[9; 12][..]), "binding success ({n} bytes)");
    wait_for("connected event", Duration::from_secs(2), || {
        matches!(worker.try_event(), Some(EngineEvent::TransportConnected { .. }))
    });

    // The attackers: a stranger and the publisher's own address, each sending junk.
    let stop = Arc::new(AtomicBool::new(false));
    let junk_progress = Arc::new(AtomicU64::new(0));
    let attacker = {
        let stop = stop.clone();
        let progress = junk_progress.clone();
        let from_publisher = publisher_socket.try_clone().unwrap();
        let mut forger = Peer::new(1, Profile::Aes128CmHmacSha1_80); // same keys, used to make valid-looking junk
        std::thread::spawn(move || {
            let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut rng = StdRng::seed_from_u64(3);
            let mut plain = [0u8; 1500];
            let mut wire = [0u8; 1600];
            let mut sent = 0u64;
            let mut seq = 30_000u16;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..10 {
                    let kind = rng.gen_range(0..6);
                    let len = match kind {
                        0 => {
                            let len = rng.gen_range(1..400);
                            rng.fill(&mut wire[..len]);
                            len
                        }
                        1 => {
                            let len = write_rtp(&mut plain, AUDIO_SSRC, OPUS, 7, 0, 100, false);
                            wire[..len].copy_from_slice(&plain[..len]);
                            rng.gen_range(12..len)
                        }
                        2 => write_binding_request(&mut wire, &[1; 12], "srv2:client", b"wrong-password").unwrap(),
                        3 => {
                            let len = write_rtp(&mut plain, 0xDEAD_BEEF, OPUS, seq, 0, 100, false);
                            seq = seq.wrapping_add(1);
                            forger.protect(&plain[..len], &mut wire)
                        }
                        4 => {
                            let len = write_rtp(&mut plain, AUDIO_SSRC, OPUS, rng.r#gen(), 0, 100, false);
                            let n = forger.protect(&plain[..len], &mut wire);
                            wire[n - 1] ^= 0x55; // broken auth tag
                            n
                        }
                        _ => {
                            let len = write_rtp(&mut plain, AUDIO_SSRC, OPUS, 1, 0, 100, false);
                            wire[..len].copy_from_slice(&plain[..len]);
                            len
                        }
                    };
                    let socket = if kind >= 3 { &from_publisher } else { &stranger };
                    let _ = socket.send_to(&wire[..len], server);
                    sent += 1;
                }
                progress.store(sent, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    };

    // The real stream: 2000 audio packets, one every 250 µs.
    let receiver = std::thread::spawn(move || {
        let mut sequences = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(20);
        while sequences.len() < REAL_PACKETS as usize && Instant::now() < deadline {
            let Ok((n, _)) = subscriber_socket.recv_from(&mut buf) else { continue };
            if palaver_sfu::rtp::is_rtcp(&buf[..n]) {
                continue; // the server's sender reports
            }
            let len = subscriber.from_server.unprotect_rtp(&mut buf[..n]).expect("server traffic authenticates");
            let header = RtpHeader::parse(&buf[..len]).unwrap();
            assert_eq!(header.payload(&buf[..len]).len(), 100);
            sequences.push(header.sequence);
        }
        sequences
    });
    let publisher_addr: SocketAddr = publisher_socket.local_addr().unwrap();
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    std::thread::sleep(Duration::from_millis(20)); // let the flood get going first
    for seq in 0..REAL_PACKETS {
        // Keep the flood at least 10 junk datagrams per real packet whatever the scheduler
        // does on a loaded machine (bounded: never wait more than 50 ms for the attacker).
        let waited = Instant::now();
        while junk_progress.load(Ordering::Relaxed) < 10 * (seq as u64 + 1)
            && waited.elapsed() < Duration::from_millis(50)
        {
            std::thread::sleep(Duration::from_micros(100));
        }
        let len = write_rtp(&mut plain, AUDIO_SSRC, OPUS, 1000 + seq, 960 * seq as u32, 100, false);
        let n = publisher.protect(&plain[..len], &mut wire);
        publisher_socket.send_to(&wire[..n], server).unwrap();
        std::thread::sleep(Duration::from_micros(250));
    }
    let sequences = receiver.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let junk_sent = attacker.join().unwrap();

    assert_eq!(sequences.len(), REAL_PACKETS as usize, "loss on the real stream");
    assert!(sequences.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "out of order");
    let counters = pool.counters();
    println!("publisher {publisher_addr}: {junk_sent} junk datagrams sent; counters {counters:?}");
    assert!(junk_sent >= 10 * REAL_PACKETS as u64, "the flood was too thin to prove anything: {junk_sent}");
    for reason in [
        DropReason::NotMedia,
        DropReason::UnknownSource,
        DropReason::StunBadIntegrity,
        DropReason::SrtpAuthFailed,
        DropReason::UnknownSsrc,
    ] {
        assert!(counters.dropped(reason) > 0, "no {reason:?} drops: {counters:?}");
    }
    // every junk datagram that reached the worker is counted as a drop (UDP on loopback may
    // still lose a few to a full socket buffer, which would show as fewer drops, never more)
    assert!(counters.dropped_total() <= junk_sent);
    assert!(counters.dropped_total() * 100 >= junk_sent * 95, "junk not counted: {counters:?}");
    // Every forwarded packet is timed once, from its receive batch to the flush that sent it.
    let latency = counters.forwarding_latency;
    assert_eq!(latency.count(), counters.rtp_forwarded);
    println!(
        "forwarding latency: {} packets, mean {} ns, cumulative per bound {:?} (+Inf {})",
        latency.count(),
        latency.sum_ns / latency.count().max(1),
        latency.cumulative(),
        latency.count()
    );
    pool.shutdown();
}
