//! Trunk SDP: codec choice by preference, static payload types, addresses, answers.

use super::*;
use crate::webrtc::sdp::Description;

const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

#[test]
fn the_trunk_preference_picks_among_static_payload_types() {
    let sdp = Description::parse(SIPP_OFFER).unwrap();
    let media = negotiate(&sdp, &[AudioCodec::Pcmu, AudioCodec::Pcma]).unwrap();
    assert_eq!(media.remote, "127.0.0.1:6000".parse::<SocketAddr>().unwrap());
    assert_eq!((media.codec, media.payload_type), (AudioCodec::Pcmu, 0));
    assert_eq!(media.telephone_event, Some(101));
    let media = negotiate(&sdp, &[AudioCodec::Pcma]).unwrap();
    assert_eq!((media.codec, media.payload_type), (AudioCodec::Pcma, 8));
    assert_eq!(negotiate(&sdp, &[AudioCodec::Opus]), Err(TrunkSdpError::NoCommonCodec("8 0 101".into())));
}

#[test]
fn savp_and_portless_sections_are_refused() {
    let savp = SIPP_OFFER.replace("RTP/AVP", "RTP/SAVP");
    let sdp = Description::parse(&savp).unwrap();
    assert_eq!(negotiate(&sdp, &[AudioCodec::Pcmu]), Err(TrunkSdpError::Protocol("RTP/SAVP".into())));
    let held = SIPP_OFFER.replace("m=audio 6000", "m=audio 0");
    assert_eq!(negotiate(&Description::parse(&held).unwrap(), &[AudioCodec::Pcmu]), Err(TrunkSdpError::NoAudio));
    let nowhere = SIPP_OFFER.replace("c=IN IP4 127.0.0.1\r\n", "");
    assert_eq!(negotiate(&Description::parse(&nowhere).unwrap(), &[AudioCodec::Pcmu]), Err(TrunkSdpError::NoAddress));
}

#[test]
fn the_attach_is_plain_rtp_with_one_audio_producer_and_the_mix_in_the_same_codec() {
    let sdp = Description::parse(SIPP_OFFER).unwrap();
    let media = negotiate(&sdp, &[AudioCodec::Pcmu]).unwrap();
    let mut rng = rand::rngs::mock::StepRng::new(7, 1);
    let attach = sip_attach(&media, true, &mut rng);
    assert!(matches!(attach.transport, TransportKind::Rtp { remote } if remote == media.remote));
    assert_eq!(attach.publish.len(), 1);
    assert_eq!(attach.publish[0].codecs, vec![(0, Codec::Pcmu)]);
    assert_eq!(attach.mix_payload_type, 0);
    assert_eq!(attach.receive.len(), 1);
    assert_eq!(attach.receive[0].kind, MediaKind::Audio);
}

#[test]
fn the_answer_names_the_worker_socket_the_codec_and_rtcp_on_the_same_port() {
    let sdp = write_sdp(&LocalSdp {
        address: "192.0.2.1:40000".parse().unwrap(),
        session_id: 9,
        codecs: &[(0, AudioCodec::Pcmu)],
        telephone_event: Some(101),
        direction: answer_direction("sendrecv"),
    });
    assert!(sdp.contains("c=IN IP4 192.0.2.1\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(sdp.contains("a=rtcp:40000\r\n") && sdp.contains("a=sendrecv\r\n"));
    // It reads back as what it says.
    let back = negotiate(&Description::parse(&sdp).unwrap(), &[AudioCodec::Pcmu]).unwrap();
    assert_eq!((back.remote, back.telephone_event), ("192.0.2.1:40000".parse::<SocketAddr>().unwrap(), Some(101)));
}

#[test]
fn g711_is_taken_only_on_its_static_payload_type() {
    // The mix output's codec follows the payload type (0 PCMU, 8 PCMA, dynamic = Opus), so a
    // PCMU mapped to a dynamic type must not be agreed.
    let dynamic = SIPP_OFFER
        .replace("RTP/AVP 8 0 101", "RTP/AVP 96 101")
        .replace("a=rtpmap:101 telephone-event/8000", "a=rtpmap:96 PCMU/8000\r\na=rtpmap:101 telephone-event/8000");
    let sdp = Description::parse(&dynamic).unwrap();
    assert!(matches!(negotiate(&sdp, &[AudioCodec::Pcmu]), Err(TrunkSdpError::NoCommonCodec(_))));
}
