//! SDP offer parsing and answer writing against offers captured from Chromium 156 (the
//! reference client's transceivers: audio, camera, screen; and a simulcast camera).

use super::*;

const CHROMIUM_OFFER: &str = include_str!("../../../tests/fixtures/chromium_offer.sdp");
const CHROMIUM_SIMULCAST_OFFER: &str = include_str!("../../../tests/fixtures/chromium_offer_simulcast.sdp");

#[test]
fn parses_and_answers_a_simulcast_offer() {
    let offer = Offer::parse(CHROMIUM_SIMULCAST_OFFER).unwrap();
    let video = &offer.media[1];
    assert_eq!(video.send_rids, ["q", "h", "f"]);
    assert_eq!(video.simulcast.as_deref(), Some("send q;h;f"));
    assert_ne!(video.extension_map().rid, 0);
    assert_ne!(video.extension_map().repaired_rid, 0);
    let answer = write_answer(
        &offer,
        &AnswerParams {
            ice_ufrag: "uf",
            ice_pwd: "pw",
            fingerprint: "AB:CD",
            candidate: "127.0.0.1:40000".parse().unwrap(),
            session_id: 7,
            send: &[None, None, None],
        },
    );
    assert!(answer.contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n"));
    assert!(answer.contains(EXT_RID));
}

#[test]
fn parses_a_chromium_offer() {
    let offer = Offer::parse(CHROMIUM_OFFER).unwrap();
    assert_eq!(offer.media.len(), 3);
    assert_eq!(offer.media[0].kind, Some(MediaKind::Audio));
    assert_eq!(offer.media[0].mid, "0");
    assert!(offer.media[0].client_sends());
    assert!(!offer.media[0].ssrcs.is_empty());
    assert_eq!(offer.media[0].accepted_codecs()[0].codec(), Some(Codec::Opus));
    assert_ne!(offer.media[0].extension_map().audio_level, 0);
    assert_ne!(offer.media[1].extension_map().mid, 0);
    assert_eq!(offer.media[1].accepted_codecs()[0].codec(), Some(Codec::Vp8));
    assert!(!offer.media[1].fid_groups.is_empty());
    assert_eq!(offer.fingerprint.len(), 95);
}

#[test]
fn answer_is_ice_lite_bundled_passive_and_sends_ssrcs() {
    let offer = Offer::parse(CHROMIUM_OFFER).unwrap();
    let send = [
        Some(AnswerTrack { ssrc: 1111, stream_id: "s".into(), track_id: "a".into() }),
        Some(AnswerTrack { ssrc: 2222, stream_id: "s".into(), track_id: "v".into() }),
        None,
    ];
    let answer = write_answer(
        &offer,
        &AnswerParams {
            ice_ufrag: "uf",
            ice_pwd: "pw",
            fingerprint: "AB:CD",
            candidate: "127.0.0.1:40000".parse().unwrap(),
            session_id: 7,
            send: &send,
        },
    );
    assert!(answer.contains("a=group:BUNDLE 0 1 2\r\n"));
    assert!(answer.contains("a=ice-lite\r\n"));
    assert!(answer.contains("a=setup:passive\r\n"));
    assert!(answer.contains("a=fingerprint:sha-256 AB:CD\r\n"));
    assert!(answer.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"));
    assert!(answer.contains("a=ssrc:1111 msid:s a\r\n"));
    assert_eq!(answer.matches("a=sendrecv\r\n").count(), 2);
    assert_eq!(answer.matches("a=recvonly\r\n").count(), 1);
    assert_eq!(answer.matches("a=rtcp-mux\r\n").count(), 3);
    assert!(answer.contains(EXT_AUDIO_LEVEL));
    // RTX is accepted for the accepted video codecs (the router unwraps it), without feedback
    assert!(answer.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"), "{answer}");
    assert!(!answer.contains("a=rtcp-fb:97 "));
    assert!(answer.contains("a=rtcp-fb:96 nack\r\n"));
}

#[test]
fn bad_offers_are_refused() {
    assert_eq!(Offer::parse("v=0\r\n"), Err(SdpError::Missing("a=ice-ufrag")));
    let no_fp = CHROMIUM_OFFER.replace("a=fingerprint:sha-256", "a=x:");
    assert_eq!(Offer::parse(&no_fp), Err(SdpError::Missing("a=fingerprint:sha-256")));
    assert!(Offer::parse("a=ice-ufrag:a\r\na=ice-pwd:b\r\nm=audio\r\n").is_err());
    for len in (0..CHROMIUM_OFFER.len()).step_by(97) {
        let _ = Offer::parse(&CHROMIUM_OFFER[..len]);
    }
}

/// Found writing the `sdp_offer` fuzz target (every answer line is one CRLF-terminated line): a
/// bare CR inside an offer's `a=mid:` or `m=` line was copied into the answer, where it reads as
/// a line break of its own.
#[test]
fn a_bare_cr_inside_a_line_is_refused() {
    let injected = CHROMIUM_OFFER.replacen("a=mid:0", "a=mid:0\ra=setup:active", 1);
    assert!(matches!(Offer::parse(&injected), Err(SdpError::Malformed(_))));
    assert!(Offer::parse(CHROMIUM_OFFER).is_ok(), "CRLF line ends stay accepted");
}

#[test]
fn telephone_event_8000_is_answered_beside_opus() {
    let offer = Offer::parse(CHROMIUM_OFFER).unwrap();
    assert_eq!(offer.media[0].telephone_event_pt(), Some(126));
    assert_eq!(offer.media[1].telephone_event_pt(), None);
    let answer = write_answer(
        &offer,
        &AnswerParams {
            ice_ufrag: "uf",
            ice_pwd: "pw",
            fingerprint: "AB:CD",
            candidate: "127.0.0.1:40000".parse().unwrap(),
            session_id: 7,
            send: &[None, None, None],
        },
    );
    assert!(answer.contains("a=rtpmap:126 telephone-event/8000\r\n"), "{answer}");
    // Only the 8 kHz clock is taken (the 48 kHz entry is not answered).
    assert!(!answer.contains("telephone-event/48000"));
    // Opus stays the first (preferred) payload type of the audio m-line.
    let m_audio = answer.lines().find(|l| l.starts_with("m=audio")).unwrap();
    assert!(m_audio.ends_with("111 126") || m_audio.split(' ').nth(3) == Some("111"), "{m_audio}");
}
