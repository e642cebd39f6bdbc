//! The WebRTC transport inside a worker core, over virtual time: ICE-lite binding, the DTLS
//! handshake through `handle_datagram`, SRTP keys installed from the export, and media
//! forwarded between two DTLS-keyed peers; DTLS from strangers, media before the handshake
//! and a peer with the wrong certificate are counted and dropped.

use std::net::SocketAddr;

use crate::engine::{Command, DropReason, RouterId, WebRtcTransportSpec};
use crate::mixer::MixerConfig;
use crate::router::{ConsumerId, ConsumerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use crate::srtp::SrtpContext;
use crate::srtp::SrtpKeys;
use crate::webrtc::dtls::{DtlsIdentity, DtlsSession};
use crate::webrtc::stun::write_binding_request;

use crate::testing::TestEngine;

const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40000));
const ROOM: RouterId = RouterId(1);

/// An engine on virtual time with one router.
fn engine() -> TestEngine {
    let mut t = TestEngine::with_config(RouterConfig::default(), MixerConfig::default(), 0x5A1A_0000);
    t.commands([Command::CreateRouter { router: ROOM }]);
    t
}

/// Adds a WebRTC transport for a browser-like peer, binds it over STUN and runs its DTLS
/// client handshake through the worker. Returns the peer's SRTP keys if the handshake completed.
fn connect(
    t: &mut TestEngine,
    server_id: &DtlsIdentity,
    n: u8,
    claimed_fingerprint: Option<&str>,
) -> (SocketAddr, Option<SrtpKeys>) {
    let now = t.now();
    let client_id = DtlsIdentity::generate(true).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, n], 5000 + u16::from(n)));
    let (ufrag, pwd) = (format!("srv{n}"), format!("password-of-peer-{n}"));
    t.take_sent();
    t.commands([Command::AddWebRtcTransport(Box::new(WebRtcTransportSpec {
        id: TransportId(u32::from(n)),
        router: ROOM,
        ice_ufrag: ufrag.clone(),
        ice_pwd: pwd.clone(),
        dtls: server_id.clone(),
        remote_fingerprint: claimed_fingerprint.unwrap_or(client_id.fingerprint()).to_owned(),
    }))]);
    let mut buf = [0u8; 256];
    let len = write_binding_request(&mut buf, &[n; 12], &format!("{ufrag}:browser"), pwd.as_bytes()).unwrap();
    t.datagram(addr, buf[..len].to_vec());
    assert_eq!(t.take_sent().len(), 1, "binding answered");

    let (mut client, mut to_server) = DtlsSession::client(&client_id, server_id.fingerprint(), now, SERVER).unwrap();
    let mut keys = None;
    for _ in 0..20 {
        for d in to_server.drain(..).map(|b| b.to_vec()) {
            t.datagram(addr, d);
        }
        for (to, d) in t.take_sent() {
            assert_eq!(to, addr);
            if let Ok(o) = client.handle(now, SERVER, &d) {
                to_server.extend(o.transmit);
                keys = keys.or(o.keys);
            }
        }
        if keys.is_some() && to_server.is_empty() {
            break;
        }
    }
    (addr, keys)
}

fn opus_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xF8; 80]);
    p.resize(p.len() + 64, 0);
    p
}

#[test]
fn dtls_keyed_peers_exchange_srtp_through_the_worker() {
    let server_id = DtlsIdentity::generate_server().unwrap();
    let mut t = engine();

    let (a_addr, a_keys) = connect(&mut t, &server_id, 1, None);
    let a_keys = a_keys.expect("peer A completed DTLS");
    let (b_addr, b_keys) = connect(&mut t, &server_id, 2, None);
    let b_keys = b_keys.expect("peer B completed DTLS");
    assert_eq!(t.counters().commands_failed, 0);
    assert_ne!(a_keys.local_master_key, b_keys.local_master_key, "each transport has its own keys");

    // A publishes audio (SSRC 0xA), B consumes it as SSRC 0xB0.
    let producer = ProducerSpec::opus(ProducerId(1), TransportId(1), 111, 0xA, 0);
    t.commands([Command::AddProducer { router: ROOM, spec: producer }]);
    let consumer = ConsumerSpec {
        id: ConsumerId(1),
        transport: TransportId(2),
        producer: ProducerId(1),
        ssrc: 0xB0,
        rtx: None,
        paused: false,
        max_height: 0,
    };
    t.commands([Command::AddConsumer { router: ROOM, spec: consumer }]);
    t.take_sent();

    let mut to_server = SrtpContext::new(a_keys.profile, &a_keys.local_master_key, &a_keys.local_master_salt).unwrap();
    let mut from_server =
        SrtpContext::new(b_keys.profile, &b_keys.remote_master_key, &b_keys.remote_master_salt).unwrap();
    for seq in 1..=5u16 {
        let mut p = opus_packet(seq, 0xA);
        let len = to_server.protect_rtp(&mut p, 92).unwrap();
        t.datagram(a_addr, p[..len].to_vec());
    }
    let forwarded: Vec<_> = t.take_sent().into_iter().filter(|(to, _)| *to == b_addr).collect();
    assert_eq!(forwarded.len(), 5, "every packet reaches B");
    let mut last_seq = None;
    for (_, mut d) in forwarded {
        let len = from_server.unprotect_rtp(&mut d).expect("B's DTLS keys decrypt what the server sent");
        assert_eq!(len, 92);
        assert_eq!(u32::from_be_bytes(d[8..12].try_into().unwrap()), 0xB0);
        let seq = u16::from_be_bytes(d[2..4].try_into().unwrap());
        if let Some(last) = last_seq {
            assert_eq!(seq, u16::wrapping_add(last, 1), "sequence numbers stay continuous");
        }
        last_seq = Some(seq);
    }
}

#[test]
fn strangers_unkeyed_media_and_wrong_certificates_are_dropped() {
    let server_id = DtlsIdentity::generate_server().unwrap();
    let mut t = engine();

    // DTLS from an address that never passed ICE.
    let stranger = SocketAddr::from(([127, 0, 0, 99], 9999));
    t.datagram(stranger, vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(t.counters().dropped(DropReason::UnknownSource), 1);

    // A peer whose certificate does not match the fingerprint of its offer never gets keys,
    // and its SRTP is dropped as not yet keyed.
    // (The client may still finish its side: the server refuses at its end of the handshake.)
    let (addr, _client_side_keys) = connect(&mut t, &server_id, 7, Some("00:11:22"));
    let p = opus_packet(1, 0xA);
    let before = t.counters().dropped(DropReason::Dtls);
    t.datagram(addr, p[..92].to_vec());
    assert_eq!(t.counters().dropped(DropReason::Dtls), before + 1);
    assert!(t.out.sent.iter().all(|(_, d)| d.first().is_some_and(|b| (20..=63).contains(b))));
}
