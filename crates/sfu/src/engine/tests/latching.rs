//! RTP latching on virtual time (`engine/engine/latching.rs`): two plain PCMU legs of one
//! SBC behind NAT (SDP 10.0.0.5, packets from 203.0.113.7) and an SDES-SRTP leg. Who may
//! latch, who may re-latch, and that one call's packets never move another call's leg.

use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::*;
use crate::mixer::MixerConfig;
use crate::mixer::g711::G711_FRAME_BYTES;
use crate::router::{LayerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use crate::rtp::{Codec, ExtensionMap, RtpHeader, is_rtcp};
use crate::srtp::Profile;
use crate::testing::{Peer, TestEngine};
use palaver_core::MediaKind;

const ROOM: RouterId = RouterId(3);
const A: TransportId = TransportId(50);
const B: TransportId = TransportId(51);
const SECURE: TransportId = TransportId(52);
const NAT: [u8; 4] = [203, 0, 113, 7];

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn pcmu(transport: TransportId, id: u32) -> ProducerSpec {
    ProducerSpec {
        id: ProducerId(id),
        transport,
        kind: MediaKind::Audio,
        mid: None,
        codecs: vec![(0, Codec::Pcmu)],
        layers: vec![LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: 0, height: 0, max_bitrate_bps: 0 }],
        extensions: ExtensionMap::default(),
    }
}

fn packet(payload_type: u8, ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, payload_type];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0xFF, G711_FRAME_BYTES));
    p
}

fn latch() -> Option<RtpLatch> {
    Some(RtpLatch { ips: vec![[10, 0, 0, 5].into(), NAT.into()], payload_types: vec![0, 101] })
}

/// Where the mix of each leg went during one tick.
fn tick(t: &mut TestEngine) -> Vec<(SocketAddr, u32)> {
    t.drive(Duration::from_millis(20));
    let sent = t.take_sent().into_iter().filter(|(_, p)| !is_rtcp(p));
    sent.map(|(to, p)| (to, RtpHeader::parse(&p).map(|h| h.ssrc).unwrap_or(0))).collect()
}

fn sends_to(sent: &[(SocketAddr, u32)], to: SocketAddr, mix_ssrc: u32) -> bool {
    sent.contains(&(to, mix_ssrc))
}

#[test]
fn plain_legs_latch_to_the_stream_they_own_and_never_to_another_calls() {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 7);
    let (sdp_a, sdp_b) = (addr([10, 0, 0, 5], 6000), addr([10, 0, 0, 5], 6002));
    t.commands([Command::CreateRouter { router: ROOM }]);
    for (id, remote, mix) in [(A, sdp_a, 0x7A), (B, sdp_b, 0x7B)] {
        t.commands([
            Command::AddRtpTransport { id, router: ROOM, remote },
            Command::AddProducer { router: ROOM, spec: pcmu(id, id.0) },
            Command::SetMixOutput {
                router: ROOM,
                transport: id,
                output: Some(MixOutputSpec { ssrc: mix, payload_type: 0 }),
            },
        ]);
    }
    let refused = |t: &TestEngine| t.counters().dropped(DropReason::RtpLatchRefused);
    let unknown = |t: &TestEngine| t.counters().dropped(DropReason::UnknownSource);
    // Without latching the NAT's address is an unknown source.
    t.datagram(addr(NAT, 40_000), packet(0, 0xA, 1));
    assert_eq!((unknown(&t), refused(&t)), (1, 0));
    t.commands([
        Command::SetRtpLatching { transport: A, latch: latch() },
        Command::SetRtpLatching { transport: B, latch: latch() },
    ]);
    // Both legs are fresh: whose stream is it? Nobody's.
    t.datagram(addr(NAT, 40_000), packet(0, 0xA, 2));
    assert_eq!((unknown(&t), refused(&t)), (1, 1), "two fresh legs of one SBC: ambiguous");
    let sent = tick(&mut t);
    assert!(!sent.iter().any(|(to, _)| to.ip() == std::net::IpAddr::from(NAT)), "{sent:?}");
    // B hears from its SDP address: it owns SSRC 0xB and is no longer fresh.
    t.datagram(sdp_b, packet(0, 0xB, 1));
    // Now A is the one fresh leg: SSRC 0xA latches it, and its mix goes to the NAT's port.
    t.datagram(addr(NAT, 40_000), packet(0, 0xA, 3));
    assert_eq!(refused(&t), 1);
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 40_000), 0x7A) && !sends_to(&sent, sdp_a, 0x7A), "{sent:?}");
    assert!(sends_to(&sent, sdp_b, 0x7B), "B still sends to its SDP address: {sent:?}");
    // NAT rebinding: A's stream from a new port re-latches A.
    t.datagram(addr(NAT, 40_010), packet(0, 0xA, 4));
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 40_010), 0x7A) && !sends_to(&sent, addr(NAT, 40_000), 0x7A), "{sent:?}");
    // B's stream from the NAT moves B only; A stays where it is.
    t.datagram(addr(NAT, 40_020), packet(0, 0xB, 2));
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 40_020), 0x7B) && sends_to(&sent, addr(NAT, 40_010), 0x7A), "{sent:?}");
    // A stream nobody owns (no fresh leg left), a wrong payload type, RTCP: refused.
    t.datagram(addr(NAT, 40_030), packet(0, 0xC, 1));
    t.datagram(addr(NAT, 40_032), packet(96, 0xA, 5));
    let mut rtcp = vec![0x80, 200, 0, 6];
    rtcp.extend_from_slice(&0xAu32.to_be_bytes());
    rtcp.extend_from_slice(&[0; 20]);
    t.datagram(addr(NAT, 40_034), rtcp);
    assert_eq!(refused(&t), 4, "no owner, wrong payload type, RTCP");
    // Another IP is not the SBC's: an unknown source, whatever its SSRC.
    t.datagram(addr([198, 51, 100, 99], 40_000), packet(0, 0xA, 6));
    assert_eq!(unknown(&t), 2);
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 40_010), 0x7A) && sends_to(&sent, addr(NAT, 40_020), 0x7B), "{sent:?}");
    // A removed leg leaves the index: its stream from a new port is refused.
    t.commands([Command::RemoveTransport { transport: A }]);
    t.datagram(addr(NAT, 40_040), packet(0, 0xA, 7));
    assert_eq!(refused(&t), 5);
    assert_eq!(t.counters().dropped(DropReason::MalformedRtp), 0);
}

#[test]
fn an_srtp_leg_latches_to_the_first_packet_that_authenticates_under_its_keys() {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 7);
    let mut trunk = Peer::new(SECURE.0, Profile::Aes128CmHmacSha1_80);
    let mut stranger = Peer::new(99, Profile::Aes128CmHmacSha1_80);
    let sdp = addr([10, 0, 0, 5], 7000);
    t.commands([
        Command::CreateRouter { router: ROOM },
        trunk.add_transport(ROOM, Some(sdp)),
        Command::AddProducer { router: ROOM, spec: pcmu(SECURE, 9) },
        Command::SetMixOutput {
            router: ROOM,
            transport: SECURE,
            output: Some(MixOutputSpec { ssrc: 0x75, payload_type: 0 }),
        },
        Command::SetRtpLatching { transport: SECURE, latch: latch() },
    ]);
    let refused = |t: &TestEngine| t.counters().dropped(DropReason::RtpLatchRefused);
    // Another call's keys (or a forgery) from the SBC's IP: refused, the leg stays.
    t.datagram(addr(NAT, 41_000), stranger.srtp(&packet(0, 0x5, 1)));
    assert_eq!(refused(&t), 1);
    let sent = tick(&mut t);
    assert!(sends_to(&sent, sdp, 0x75), "{sent:?}");
    // The trunk's own packet authenticates: latched, and the packet itself is taken.
    t.datagram(addr(NAT, 41_002), trunk.srtp(&packet(0, 0x5, 1)));
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 41_002), 0x75) && !sends_to(&sent, sdp, 0x75), "{sent:?}");
    assert_eq!(refused(&t), 1);
    assert_eq!(t.counters().dropped(DropReason::SrtpAuthFailed), 0, "the failed try is a refusal, not an auth failure");
    // A replay of that packet from yet another port does not move it again.
    let mut replay = Peer::new(SECURE.0, Profile::Aes128CmHmacSha1_80);
    t.datagram(addr(NAT, 41_004), replay.srtp(&packet(0, 0x5, 1)));
    assert_eq!(refused(&t), 2);
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 41_002), 0x75), "{sent:?}");
}

#[test]
fn fresh_legs_behind_a_port_preserving_nat_latch_by_their_sdp_ports() {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 7);
    let (sdp_a, sdp_b) = (addr([10, 0, 0, 5], 6000), addr([10, 0, 0, 5], 6002));
    t.commands([Command::CreateRouter { router: ROOM }]);
    for (id, remote, mix) in [(A, sdp_a, 0x7A), (B, sdp_b, 0x7B)] {
        t.commands([
            Command::AddRtpTransport { id, router: ROOM, remote },
            Command::AddProducer { router: ROOM, spec: pcmu(id, id.0) },
            Command::SetMixOutput {
                router: ROOM,
                transport: id,
                output: Some(MixOutputSpec { ssrc: mix, payload_type: 0 }),
            },
            Command::SetRtpLatching { transport: id, latch: latch() },
        ]);
    }
    // Both fresh; the NAT kept B's port: B's stream latches B, then A's is A's alone.
    t.datagram(addr(NAT, 6002), packet(0, 0xB, 1));
    t.datagram(addr(NAT, 6000), packet(0, 0xA, 1));
    let sent = tick(&mut t);
    assert!(sends_to(&sent, addr(NAT, 6000), 0x7A) && sends_to(&sent, addr(NAT, 6002), 0x7B), "{sent:?}");
    assert_eq!(t.counters().dropped(DropReason::RtpLatchRefused), 0);
}
