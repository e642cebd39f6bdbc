//! Tests of the QUIC `media.attach` interpretation: producers per track group with the
//! table's layer sizes, named receive slots, and the `media.attached` answer.

use super::*;
use crate::control::layers::FULL_BITRATE_BPS;
use crate::net::DEFAULT_EGRESS_CAPACITY;
use crate::rtp::ShortId;
use palaver_core::protocol::group_sent_tracks;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn attach(tracks: &[MediaTrack], receive: MediaReceive, may_send: bool) -> Attach {
    let groups = group_sent_tracks(tracks).expect("valid tracks");
    let link = DirectLink::new(DEFAULT_EGRESS_CAPACITY);
    direct_attach(link, tracks, &groups, receive, may_send, &mut StdRng::from_seed([7; 32]))
}

#[test]
fn single_tracks_become_single_layer_producers() {
    let tracks = [MediaTrack::opus(77), MediaTrack::vp8(MediaKind::Screen, 5)];
    let a = attach(&tracks, MediaReceive::default(), true);
    assert!(matches!(a.transport, TransportKind::Direct { .. }));
    let (audio, screen) = (&a.publish[0], &a.publish[1]);
    assert_eq!((audio.kind, audio.codecs.as_slice()), (MediaKind::Audio, &[(111, Codec::Opus)][..]));
    assert_eq!(audio.layers.len(), 1);
    assert_eq!(audio.layers[0].ssrc, Some(77));
    assert_eq!(audio.extensions.audio_level, quic::AUDIO_LEVEL_EXTENSION_ID);
    assert_eq!((screen.kind, screen.codecs[0]), (MediaKind::Screen, (96, Codec::Vp8)));
    assert_eq!((screen.layers[0].width, screen.layers[0].height), (1280, 720));
    assert_eq!(screen.extensions, ExtensionMap::default());
    assert!(attach(&tracks, MediaReceive::default(), false).publish.is_empty(), "a receive-only participant");
}

#[test]
fn rid_layers_become_one_simulcast_producer_with_sizes() {
    let tracks = [
        MediaTrack::vp8_layer(MediaKind::Video, 10, "f"),
        MediaTrack::vp8_layer(MediaKind::Video, 11, "q"),
        MediaTrack::vp8_layer(MediaKind::Video, 12, "h").with_size(480, 270),
    ];
    let a = attach(&tracks, MediaReceive::default(), true);
    assert_eq!(a.publish.len(), 1);
    let layers: Vec<(Option<u32>, u16, u16, Option<ShortId>)> =
        a.publish[0].layers.iter().map(|l| (l.ssrc, l.width, l.height, l.rid)).collect();
    let rid = |r: &str| ShortId::new(r.as_bytes());
    assert_eq!(
        layers,
        vec![(Some(10), 1280, 720, rid("f")), (Some(11), 320, 180, rid("q")), (Some(12), 480, 270, rid("h"))]
    );
    assert_eq!(a.publish[0].layers[0].max_bitrate_bps, FULL_BITRATE_BPS);
    assert!(a.publish[0].layers[1].max_bitrate_bps < a.publish[0].layers[2].max_bitrate_bps);
}

#[test]
fn receive_request_makes_named_slots_and_attached_tracks() {
    let tracks = [MediaTrack { payload_type: 109, ..MediaTrack::opus(1) }, MediaTrack::new(MediaKind::Video, 2, 100)];
    let a = attach(&tracks, MediaReceive { video: 2, screen: true }, true);
    let shape: Vec<(&str, MediaKind)> = a.receive.iter().map(|s| (s.mid.as_str(), s.kind)).collect();
    assert_eq!(
        shape,
        vec![
            ("quic-audio", MediaKind::Audio),
            ("quic-video-0", MediaKind::Video),
            ("quic-video-1", MediaKind::Video),
            ("quic-screen", MediaKind::Screen),
        ]
    );
    assert!(a.announce_slots);
    assert_eq!(a.mix_payload_type, 109);
    assert_eq!(a.receive[1].numbering.as_ref().map(|n| n.codecs.clone()), Some(vec![(100, Codec::Vp8)]));
    let sent = attached_tracks(&a);
    assert_eq!(sent[0], MediaTrack { payload_type: 109, ..MediaTrack::opus(a.receive[0].ssrc) });
    assert_eq!(sent[1].mid.as_deref(), Some("quic-video-0"));
    assert_eq!((sent[1].kind, sent[1].ssrc, sent[1].payload_type), (MediaKind::Video, a.receive[1].ssrc, 100));
    assert_eq!((sent[3].kind, sent[3].mid.as_deref()), (MediaKind::Screen, Some("quic-screen")));
    let audio_only = attach(&tracks, MediaReceive::default(), true);
    assert_eq!(audio_only.receive.len(), 1);
    assert!(!audio_only.announce_slots, "no video slots, nothing to announce");
}
