//! SDP from SIP trunks (`palaver_sfu::webrtc::sdp::Description::parse` with nothing required,
//! then `control::sip::negotiate`, `sip_attach` and the server's answer). Properties: no panic
//! on any text; an agreed codec is one of the preference list, with a payload type the offer
//! lists; the answer written for it reads back as the same address, codec and
//! telephone-event type, and an SDES key agreed under a policy that allows SRTP reads back
//! from the answer with the same tag and suite.

use palaver_sfu::control::sip::{
    LocalSdp, SdesCrypto, SrtpPolicy, TrunkPolicy, answer_direction, negotiate, sip_attach, write_sdp,
};
use palaver_sfu::mixer::AudioCodec;
use palaver_sfu::webrtc::sdp::Description;

const PREFERENCE: [AudioCodec; 3] = [AudioCodec::Pcmu, AudioCodec::Pcma, AudioCodec::Opus];

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(description) = Description::parse(text) else { return };
    let policy = TrunkPolicy { codecs: PREFERENCE.to_vec(), srtp: SrtpPolicy::Optional, trunk: None };
    let Ok(media) = negotiate(&description, &policy) else { return };
    assert!(PREFERENCE.contains(&media.codec));
    let mut rng = rand::rngs::mock::StepRng::new(1, 1);
    let local: Vec<SdesCrypto> =
        media.crypto.iter().map(|remote| SdesCrypto::generate(remote.tag, remote.profile, &mut rng)).collect();
    let keys = local.first().zip(media.crypto.as_ref()).map(|(l, r)| SdesCrypto::keys(l, r));
    let attach = sip_attach(&media, true, keys, &mut rng);
    assert_eq!(attach.mix_payload_type, media.payload_type);
    let answer = write_sdp(&LocalSdp {
        address: media.remote,
        session_id: 1,
        codecs: &[(media.payload_type, media.codec)],
        telephone_event: media.telephone_event,
        telephone_event_clock: Some(media.telephone_event_clock),
        direction: answer_direction(&media.direction),
        protocol: "RTP/AVP",
        crypto: &local,
        dtls: None,
    });
    let back_policy = TrunkPolicy { codecs: vec![media.codec], srtp: SrtpPolicy::Optional, trunk: None };
    let back = negotiate(&Description::parse(&answer).expect("our answer parses"), &back_policy).expect("agreed");
    assert_eq!((back.remote, back.codec, back.telephone_event), (media.remote, media.codec, media.telephone_event));
    let tags = |c: &Option<SdesCrypto>| c.as_ref().map(|c| (c.tag, c.profile));
    assert_eq!(tags(&back.crypto), tags(&media.crypto));
}
