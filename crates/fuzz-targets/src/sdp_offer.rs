//! SDP offers from browsers (`palaver_sfu::webrtc::sdp::Offer::parse`) and the answer the
//! server writes for them. Properties: no panic on any text; a parsed offer's answer has one
//! m-section per offered one, in order, with the offer's mids; every answer line is a whole
//! CRLF-terminated line (nothing from the offer can start a line of its own in the answer).

use palaver_sfu::control::offer::section_kind;
use palaver_sfu::webrtc::sdp::{AnswerParams, AnswerTrack, Offer, write_answer};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = Offer::parse(text) else { return };
    for (index, media) in offer.media.iter().enumerate() {
        let _ = (section_kind(&offer, index), media.extension_map(), media.accepted_codecs());
        for codec in &media.codecs {
            let _ = (codec.codec(), codec.rtx_for());
        }
    }
    let send: Vec<Option<AnswerTrack>> = (0..offer.media.len())
        .map(|i| {
            (i % 2 == 0).then(|| AnswerTrack { ssrc: i as u32 + 1, stream_id: "s".into(), track_id: format!("t{i}") })
        })
        .collect();
    let params = AnswerParams {
        ice_ufrag: "srvufrag",
        ice_pwd: "server-ice-password-0123",
        fingerprint: "AB:CD",
        candidate: "127.0.0.1:40000".parse().expect("literal address"),
        session_id: 42,
        send: &send,
    };
    let answer = write_answer(&offer, &params);
    assert!(answer.ends_with("\r\n"));
    let lines: Vec<&str> = answer[..answer.len() - 2].split("\r\n").collect();
    for line in &lines {
        assert!(!line.contains(['\r', '\n']), "answer line {line:?} holds a line break");
    }
    let mids: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("a=mid:")).collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("m=")).count(), offer.media.len());
    assert_eq!(mids, offer.media.iter().map(|m| m.mid.as_str()).collect::<Vec<_>>());
}
