//! Shared helpers for the sfu integration tests: a peer that holds both SRTP key sets of its
//! transport, packet builders, and a room setup command list.

#![allow(dead_code)]

use std::net::SocketAddr;

use palaver_sfu::engine::{Command, RouterId, TransportSpec};
use palaver_sfu::router::{ConsumerId, ConsumerSpec, LayerSpec, ProducerId, ProducerSpec, TrackKind, TransportId};
use palaver_sfu::rtp::{Codec, ExtensionMap};
use palaver_sfu::srtp::SrtpKeys;
use palaver_sfu::srtp::{Profile, SrtpContext};

pub const OPUS: u8 = 111;
pub const VP8: u8 = 96;
pub const AUDIO_SSRC: u32 = 0x0A0A_0001;
pub const VIDEO_SSRC: u32 = 0x0B0B_0001;

/// A participant as seen from the client side.
pub struct Peer {
    pub transport: TransportId,
    pub ufrag: String,
    pub pwd: String,
    pub to_server: SrtpContext,
    pub from_server: SrtpContext,
    pub keys: SrtpKeys,
}

impl Peer {
    pub fn new(n: u32, profile: Profile) -> Self {
        let b = n as u8;
        let client_key: Vec<u8> = (0..16u8).map(|i| i ^ b).collect();
        let client_salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| i.wrapping_mul(3) ^ b).collect();
        let server_key: Vec<u8> = (0..16u8).map(|i| (i + 100) ^ b).collect();
        let server_salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| i.wrapping_mul(5) ^ b).collect();
        Self {
            transport: TransportId(n),
            ufrag: format!("srv{n}"),
            pwd: format!("password-of-peer-{n}"),
            to_server: SrtpContext::new(profile, &client_key, &client_salt).unwrap(),
            from_server: SrtpContext::new(profile, &server_key, &server_salt).unwrap(),
            keys: SrtpKeys {
                profile,
                local_master_key: server_key,
                local_master_salt: server_salt,
                remote_master_key: client_key,
                remote_master_salt: client_salt,
            },
        }
    }

    pub fn add_transport(&self, room: RouterId, remote: Option<SocketAddr>) -> Command {
        Command::AddTransport(Box::new(TransportSpec {
            id: self.transport,
            router: room,
            ice_ufrag: self.ufrag.clone(),
            ice_pwd: self.pwd.clone(),
            remote,
            srtp: self.keys.clone(),
        }))
    }

    /// Protects a plaintext RTP packet into `out`; returns the length.
    pub fn protect(&mut self, plain: &[u8], out: &mut [u8]) -> usize {
        out[..plain.len()].copy_from_slice(plain);
        self.to_server.protect_rtp(out, plain.len()).unwrap()
    }

    pub fn protect_rtcp(&mut self, plain: &[u8], out: &mut [u8]) -> usize {
        out[..plain.len()].copy_from_slice(plain);
        self.to_server.protect_rtcp(out, plain.len()).unwrap()
    }
}

/// Writes an RTP packet into `out` (one-byte extension with audio level id 1 for audio).
pub fn write_rtp(out: &mut [u8], ssrc: u32, pt: u8, seq: u16, ts: u32, payload_len: usize, keyframe: bool) -> usize {
    out[..12].copy_from_slice(&[0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let mut at = 12;
    if pt == OPUS {
        out[0] |= 0x10;
        out[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x80 | 30, 0, 0]);
        at = 20;
    }
    let payload = &mut out[at..at + payload_len];
    payload.fill(0x5A);
    if pt == VP8 {
        payload[0] = 0x10;
        payload[1] = if keyframe { 0x00 } else { 0x01 };
    }
    at + payload_len
}

/// Commands that create a room with one publisher (audio + VP8 video) and `subscribers`
/// consuming both tracks.
pub fn room_commands(room: RouterId, publisher: &Peer, publisher_addr: Option<SocketAddr>) -> Vec<Command> {
    vec![
        Command::CreateRouter { router: room },
        publisher.add_transport(room, publisher_addr),
        Command::AddProducer {
            router: room,
            spec: ProducerSpec::opus(ProducerId(1), publisher.transport, OPUS, AUDIO_SSRC, 1),
        },
        Command::AddProducer {
            router: room,
            spec: ProducerSpec {
                id: ProducerId(2),
                transport: publisher.transport,
                kind: TrackKind::Video,
                mid: None,
                codecs: vec![(VP8, Codec::Vp8)],
                layers: vec![layer(VIDEO_SSRC)],
                extensions: ExtensionMap::default(),
            },
        },
    ]
}

fn layer(ssrc: u32) -> LayerSpec {
    LayerSpec { rid: None, ssrc: Some(ssrc), rtx_ssrc: None, width: 640, height: 360, max_bitrate_bps: 0 }
}

/// Commands that add a subscriber consuming the publisher's audio (and video if asked).
pub fn subscriber_commands(room: RouterId, peer: &Peer, addr: Option<SocketAddr>, video: bool) -> Vec<Command> {
    let n = peer.transport.0;
    let mut commands = vec![peer.add_transport(room, addr)];
    let tracks: &[(u32, u32)] = if video { &[(1, 0), (2, 1)] } else { &[(1, 0)] };
    for &(producer, k) in tracks {
        commands.push(Command::AddConsumer {
            router: room,
            spec: ConsumerSpec {
                id: ConsumerId(n * 10 + k),
                transport: peer.transport,
                producer: ProducerId(producer),
                ssrc: 0x1000_0000 + n * 10 + k,
                rtx: None,
                paused: false,
                max_height: u16::MAX,
            },
        });
    }
    commands
}
