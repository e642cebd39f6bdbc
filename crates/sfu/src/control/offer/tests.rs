//! Tests of the SDP offer interpretation: section kinds, producers by SSRC or rid with the
//! table's layer sizes, receive slots numbered as the client numbered them, and the mix's
//! payload type.

use super::*;
use crate::control::layers::FULL_BITRATE_BPS;
use rand::SeedableRng;
use rand::rngs::StdRng;

const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\n\
                    a=ice-ufrag:u\r\na=ice-pwd:p\r\n";

fn parse(sections: &str) -> Offer {
    Offer::parse(&format!("{HEAD}{sections}")).expect("offer parses")
}

fn interpret(offer: &Offer, may_send: bool) -> OfferAttach {
    offer_attach(offer, may_send, &mut StdRng::from_seed([3; 32]))
}

#[test]
fn the_screen_slot_is_the_second_video_section() {
    let offer = parse(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n",
    );
    let kinds: Vec<MediaKind> = (0..offer.media.len()).map(|i| section_kind(&offer, i)).collect();
    use MediaKind::{Audio, Screen, Video};
    assert_eq!(kinds, vec![Audio, Video, Screen, Video]);
}

#[test]
fn sent_sections_become_producers_and_received_ones_numbered_slots() {
    let offer = parse(
        "m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=mid:a\r\na=sendrecv\r\na=rtpmap:109 opus/48000/2\r\n\
         a=extmap:3 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=ssrc:11 cname:x\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=mid:v\r\na=sendrecv\r\na=rtpmap:98 VP8/90000\r\n\
         a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\na=ssrc-group:FID 21 22\r\na=ssrc:21 cname:x\r\na=ssrc:22 cname:x\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:d\r\n",
    );
    let OfferAttach { attach, answer_tracks } = interpret(&offer, true);
    assert!(matches!(&attach.transport, TransportKind::WebRtc { ice_ufrag, ice_pwd, remote_fingerprint }
        if ice_ufrag.len() == 8 && ice_pwd.len() == 24 && remote_fingerprint == "AA:BB"));
    let audio = &attach.publish[0];
    assert_eq!((audio.kind, audio.codecs.as_slice()), (MediaKind::Audio, &[(109, Codec::Opus)][..]));
    assert_eq!(audio.extensions.audio_level, 3);
    let video = &attach.publish[1];
    assert_eq!((video.layers[0].ssrc, video.layers[0].rtx_ssrc), (Some(21), Some(22)));
    assert_eq!((video.layers[0].width, video.layers[0].max_bitrate_bps), (1280, FULL_BITRATE_BPS));
    assert_eq!(attach.mix_payload_type, 109, "the mix uses the client's Opus number");
    let slots: Vec<(&str, MediaKind)> = attach.receive.iter().map(|s| (s.mid.as_str(), s.kind)).collect();
    assert_eq!(slots, [("a", MediaKind::Audio), ("v", MediaKind::Video)]);
    assert_eq!(attach.receive[1].numbering.as_ref().map(|n| n.codecs[0]), Some((98, Codec::Vp8)));
    assert_eq!(answer_tracks.len(), 3);
    assert_eq!(answer_tracks[1].as_ref().map(|t| t.ssrc), Some(attach.receive[1].ssrc));
    assert!(answer_tracks[2].is_none(), "nothing is sent on the data channel section");
    assert!(attach.announce_slots);
    assert!(interpret(&offer, false).attach.publish.is_empty(), "a receive-only participant publishes nothing");
}

#[test]
fn rid_simulcast_gets_the_usual_layer_sizes() {
    let offer = parse(
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n\
         a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n",
    );
    let attach = interpret(&offer, true).attach;
    let sizes: Vec<(u16, u16, Option<u32>)> =
        attach.publish[0].layers.iter().map(|l| (l.width, l.height, l.ssrc)).collect();
    assert_eq!(sizes, [(320, 180, None), (640, 360, None), (1280, 720, None)]);
    assert!(attach.receive.is_empty());
    assert_eq!(attach.mix_payload_type, crate::control::DEFAULT_MIX_PT, "no audio received: the default");
}
