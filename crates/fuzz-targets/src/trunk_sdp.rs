//! SDP from SIP trunks (`palaver_sfu::webrtc::sdp::Description::parse` with nothing required,
//! then `control::sip::negotiate`, `sip_attach` and the server's answer). Properties: no panic
//! on any text; an agreed codec is one of the preference list, with a payload type the offer
//! lists; the answer written for it reads back as the same address, codec and
//! telephone-event type.

use palaver_sfu::control::sip::{LocalSdp, answer_direction, negotiate, sip_attach, write_sdp};
use palaver_sfu::mixer::AudioCodec;
use palaver_sfu::webrtc::sdp::Description;

const PREFERENCE: [AudioCodec; 3] = [AudioCodec::Pcmu, AudioCodec::Pcma, AudioCodec::Opus];

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(description) = Description::parse(text) else { return };
    let Ok(media) = negotiate(&description, &PREFERENCE) else { return };
    assert!(PREFERENCE.contains(&media.codec));
    let mut rng = rand::rngs::mock::StepRng::new(1, 1);
    let attach = sip_attach(&media, true, &mut rng);
    assert_eq!(attach.mix_payload_type, media.payload_type);
    let answer = write_sdp(&LocalSdp {
        address: media.remote,
        session_id: 1,
        codecs: &[(media.payload_type, media.codec)],
        telephone_event: media.telephone_event,
        direction: answer_direction(&media.direction),
    });
    let back = negotiate(&Description::parse(&answer).expect("our answer parses"), &[media.codec]).expect("agreed");
    assert_eq!((back.remote, back.codec, back.telephone_event), (media.remote, media.codec, media.telephone_event));
}
