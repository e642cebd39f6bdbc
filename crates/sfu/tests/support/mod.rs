//! Shared helpers for the sfu integration tests: packet builders, a router setup command list,
//! and the counting allocator of the allocation tests. The client-side peer is the crate's
//! test harness `palaver_sfu::testing::Peer`.

#![allow(dead_code)]

pub mod counting_alloc;

use std::net::SocketAddr;

use palaver_core::MediaKind;
use palaver_sfu::engine::{Command, RouterId};
use palaver_sfu::router::{ConsumerId, ConsumerSpec, LayerSpec, ProducerId, ProducerSpec};
use palaver_sfu::rtp::{Codec, ExtensionMap};
pub use palaver_sfu::testing::Peer;

pub const OPUS: u8 = 111;
pub const VP8: u8 = 96;
pub const AUDIO_SSRC: u32 = 0x0A0A_0001;
pub const VIDEO_SSRC: u32 = 0x0B0B_0001;

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
                kind: MediaKind::Video,
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
