//! Trunk SDP: codec choice by preference, static payload types, addresses, answers.

use super::*;
use crate::srtp::Profile;
use crate::webrtc::sdp::Description;

fn plain(codecs: &[AudioCodec]) -> TrunkPolicy {
    TrunkPolicy { codecs: codecs.to_vec(), srtp: SrtpPolicy::Off, trunk: None }
}

fn with_srtp(srtp: SrtpPolicy) -> TrunkPolicy {
    TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp, trunk: None }
}

const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

#[test]
fn the_trunk_preference_picks_among_static_payload_types() {
    let sdp = Description::parse(SIPP_OFFER).unwrap();
    let media = negotiate(&sdp, &plain(&[AudioCodec::Pcmu, AudioCodec::Pcma])).unwrap();
    assert_eq!(media.remote, "127.0.0.1:6000".parse::<SocketAddr>().unwrap());
    assert_eq!((media.codec, media.payload_type), (AudioCodec::Pcmu, 0));
    assert_eq!(media.telephone_event, Some(101));
    let media = negotiate(&sdp, &plain(&[AudioCodec::Pcma])).unwrap();
    assert_eq!((media.codec, media.payload_type), (AudioCodec::Pcma, 8));
    assert_eq!(negotiate(&sdp, &plain(&[AudioCodec::Opus])), Err(TrunkSdpError::NoCommonCodec("8 0 101".into())));
}

#[test]
fn savp_and_portless_sections_are_refused() {
    let savp = SIPP_OFFER.replace("RTP/AVP", "RTP/SAVP");
    let sdp = Description::parse(&savp).unwrap();
    assert_eq!(negotiate(&sdp, &plain(&[AudioCodec::Pcmu])), Err(TrunkSdpError::Protocol("RTP/SAVP".into())));
    let held = SIPP_OFFER.replace("m=audio 6000", "m=audio 0");
    assert_eq!(
        negotiate(&Description::parse(&held).unwrap(), &plain(&[AudioCodec::Pcmu])),
        Err(TrunkSdpError::NoAudio)
    );
    let nowhere = SIPP_OFFER.replace("c=IN IP4 127.0.0.1\r\n", "");
    assert_eq!(
        negotiate(&Description::parse(&nowhere).unwrap(), &plain(&[AudioCodec::Pcmu])),
        Err(TrunkSdpError::NoAddress)
    );
}

#[test]
fn the_attach_is_plain_rtp_with_one_audio_producer_and_the_mix_in_the_same_codec() {
    let sdp = Description::parse(SIPP_OFFER).unwrap();
    let media = negotiate(&sdp, &plain(&[AudioCodec::Pcmu])).unwrap();
    let mut rng = rand::rngs::mock::StepRng::new(7, 1);
    let attach = sip_attach(&media, true, None, &mut rng);
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
        telephone_event_clock: None,
        direction: answer_direction("sendrecv"),
        protocol: "RTP/AVP",
        crypto: &[],
        dtls: None,
    });
    assert!(sdp.contains("c=IN IP4 192.0.2.1\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(sdp.contains("a=rtcp:40000\r\n") && sdp.contains("a=sendrecv\r\n"));
    // It reads back as what it says.
    let back = negotiate(&Description::parse(&sdp).unwrap(), &plain(&[AudioCodec::Pcmu])).unwrap();
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
    assert!(matches!(negotiate(&sdp, &plain(&[AudioCodec::Pcmu])), Err(TrunkSdpError::NoCommonCodec(_))));
}

/// A SAVP offer as SBCs send it: two suites, HMAC-80 first (keys from RFC 4568's example).
const SAVP_OFFER: &str = "v=0\r\no=sbc 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
m=audio 5004 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20\r\n\
a=crypto:2 AEAD_AES_128_GCM inline:/Bpe8AqnRhPrMJ/bqeEw8aCXc7ndP/Jcu0/BSQ==\r\n";

#[test]
fn sdes_keys_are_read_from_the_first_usable_crypto_line() {
    let sdp = Description::parse(SAVP_OFFER).unwrap();
    let media = negotiate(&sdp, &with_srtp(SrtpPolicy::Optional)).unwrap();
    let crypto = media.crypto.expect("SRTP agreed");
    assert_eq!((crypto.tag, crypto.profile), (1, Profile::Aes128CmHmacSha1_80));
    assert_eq!((crypto.key.len(), crypto.salt.len()), (16, 14));
    // An MKI or a session parameter makes a line unusable; the next one is taken.
    let mki = SAVP_OFFER.replace("|2^20", "|2^20|1:4");
    let media = negotiate(&Description::parse(&mki).unwrap(), &with_srtp(SrtpPolicy::Required)).unwrap();
    let crypto = media.crypto.unwrap();
    assert_eq!((crypto.tag, crypto.profile, crypto.salt.len()), (2, Profile::AeadAes128Gcm, 12));
    let none = mki.replace("BSQ==", "BSQ== UNENCRYPTED_SRTCP");
    assert_eq!(
        negotiate(&Description::parse(&none).unwrap(), &with_srtp(SrtpPolicy::Optional)),
        Err(TrunkSdpError::NoUsableCrypto)
    );
}

#[test]
fn the_srtp_policy_decides_what_is_accepted() {
    let savp = Description::parse(SAVP_OFFER).unwrap();
    let avp = Description::parse(SIPP_OFFER).unwrap();
    // off: SAVP refused, AVP plain (keys in an AVP offer ignored).
    assert!(matches!(negotiate(&savp, &with_srtp(SrtpPolicy::Off)), Err(TrunkSdpError::Protocol(_))));
    let best_effort = Description::parse(&SAVP_OFFER.replace("RTP/SAVP", "RTP/AVP")).unwrap();
    assert_eq!(negotiate(&best_effort, &with_srtp(SrtpPolicy::Off)).unwrap().crypto, None);
    // optional: keys when offered (SAVP, or AVP with a=crypto), plain otherwise.
    assert!(negotiate(&best_effort, &with_srtp(SrtpPolicy::Optional)).unwrap().crypto.is_some());
    assert_eq!(negotiate(&avp, &with_srtp(SrtpPolicy::Optional)).unwrap().crypto, None);
    // required: no keys, no call.
    assert_eq!(negotiate(&avp, &with_srtp(SrtpPolicy::Required)), Err(TrunkSdpError::SrtpRequired));
    assert!(negotiate(&savp, &with_srtp(SrtpPolicy::Required)).unwrap().crypto.is_some());
}

#[test]
fn crypto_attributes_round_trip_and_the_policy_names_read_back() {
    let mut rng = rand::rngs::mock::StepRng::new(3, 7);
    for profile in [Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32, Profile::AeadAes128Gcm] {
        let ours = SdesCrypto::generate(5, profile, &mut rng);
        assert_eq!(SdesCrypto::parse(&ours.attribute()), Some(ours));
    }
    assert_eq!(SdesCrypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="), None, "wrong key length");
    assert_eq!(SdesCrypto::parse("1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"), None);
    let policy = TrunkPolicy {
        codecs: vec![AudioCodec::Pcma, AudioCodec::Opus],
        srtp: SrtpPolicy::Required,
        trunk: Some("carrier".into()),
    };
    assert_eq!(TrunkPolicy::from_names(&policy.names()), policy);
}

#[test]
fn an_sdes_answer_is_savp_with_the_agreed_tag_and_reads_back() {
    let sdp = Description::parse(SAVP_OFFER).unwrap();
    let media = negotiate(&sdp, &with_srtp(SrtpPolicy::Required)).unwrap();
    let remote = media.crypto.clone().unwrap();
    let mut rng = rand::rngs::mock::StepRng::new(11, 13);
    let local = SdesCrypto::generate(remote.tag, remote.profile, &mut rng);
    let keys = SdesCrypto::keys(&local, &remote);
    assert_eq!(
        (keys.remote_master_key.as_slice(), keys.local_master_key.as_slice()),
        (&remote.key[..], &local.key[..])
    );
    let attach = sip_attach(&media, true, Some(keys), &mut rng);
    assert!(matches!(attach.transport, TransportKind::Srtp { remote, .. } if remote == media.remote));
    let answer = write_sdp(&LocalSdp {
        address: "192.0.2.1:40000".parse().unwrap(),
        session_id: 1,
        codecs: &[(0, AudioCodec::Pcmu)],
        telephone_event: Some(101),
        telephone_event_clock: None,
        direction: "sendrecv",
        protocol: "RTP/SAVP",
        crypto: std::slice::from_ref(&local),
        dtls: None,
    });
    assert!(answer.contains("m=audio 40000 RTP/SAVP 0 101\r\n"), "{answer}");
    assert_eq!(answer.matches("a=crypto:").count(), 1);
    let back = negotiate(&Description::parse(&answer).unwrap(), &with_srtp(SrtpPolicy::Required)).unwrap();
    assert_eq!(back.crypto, Some(local));
}

/// RFC 4733 at the Opus clock: an Opus trunk's `telephone-event/48000` is agreed (not its
/// `/8000`), the answer says `/48000`, and palaver's own offer lists both clocks when it
/// lists Opus beside a phone codec.
#[test]
fn an_opus_trunk_agrees_telephone_events_at_48_khz() {
    let offer = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 111 101 102\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
a=rtpmap:102 telephone-event/48000\r\n";
    let media = negotiate(&Description::parse(offer).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!((media.codec, media.payload_type, media.telephone_event), (AudioCodec::Opus, 111, Some(102)));
    let only_8k = offer.replace(" 102\r\n", "\r\n").replace("a=rtpmap:102 telephone-event/48000\r\n", "");
    let media8 = negotiate(&Description::parse(&only_8k).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!((media8.telephone_event, media8.telephone_event_clock), (Some(101), 8_000), "the /8000 fallback");
    assert_eq!(media.telephone_event_clock, 48_000);
    let local = |codecs: &[(u8, AudioCodec)], te| {
        write_sdp(&LocalSdp {
            address: "192.0.2.1:40000".parse().unwrap(),
            session_id: 1,
            codecs,
            telephone_event: te,
            telephone_event_clock: None,
            direction: "sendrecv",
            protocol: "RTP/AVP",
            crypto: &[],
            dtls: None,
        })
    };
    let answer = local(&[(111, AudioCodec::Opus)], media.telephone_event);
    assert!(answer.contains("m=audio 40000 RTP/AVP 111 102\r\n"), "{answer}");
    assert!(answer.contains("a=rtpmap:102 telephone-event/48000\r\n"), "{answer}");
    let back = negotiate(&Description::parse(&answer).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!(back.telephone_event, Some(102));
    let ours = local(&[(0, AudioCodec::Pcmu), (111, AudioCodec::Opus)], Some(101));
    assert!(ours.contains("m=audio 40000 RTP/AVP 0 111 101 110\r\n"), "{ours}");
    assert!(
        ours.contains("a=rtpmap:101 telephone-event/8000\r\n")
            && ours.contains("a=rtpmap:110 telephone-event/48000\r\n")
    );
    let pcmu = negotiate(&Description::parse(&ours).unwrap(), &plain(&[AudioCodec::Pcmu])).unwrap();
    assert_eq!(pcmu.telephone_event, Some(101));
    let opus = negotiate(&Description::parse(&ours).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!(opus.telephone_event, Some(TELEPHONE_EVENT_48K_OFFER_PT));
}

/// An SBC that lists only `telephone-event/8000` beside Opus (many do): the Opus leg agrees
/// it, palaver's answer says `/8000` on that payload type (not `/48000`), reads back as the
/// same agreement, and a G.711 leg is unchanged.
#[test]
fn an_opus_trunk_with_only_8_khz_events_agrees_them_at_8_khz() {
    let offer = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 111 0 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n";
    let media = negotiate(&Description::parse(offer).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!((media.codec, media.telephone_event, media.telephone_event_clock), (AudioCodec::Opus, Some(101), 8_000));
    let answer = write_sdp(&LocalSdp {
        address: "192.0.2.1:40000".parse().unwrap(),
        session_id: 1,
        codecs: &[(media.payload_type, media.codec)],
        telephone_event: media.telephone_event,
        telephone_event_clock: Some(media.telephone_event_clock),
        direction: "sendrecv",
        protocol: "RTP/AVP",
        crypto: &[],
        dtls: None,
    });
    assert!(answer.contains("m=audio 40000 RTP/AVP 111 101\r\n"), "{answer}");
    assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{answer}");
    assert!(!answer.contains("telephone-event/48000"), "{answer}");
    let back = negotiate(&Description::parse(&answer).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!((back.telephone_event, back.telephone_event_clock), (Some(101), 8_000));
    let pcmu = negotiate(&Description::parse(offer).unwrap(), &plain(&[AudioCodec::Pcmu])).unwrap();
    assert_eq!((pcmu.codec, pcmu.telephone_event, pcmu.telephone_event_clock), (AudioCodec::Pcmu, Some(101), 8_000));
    let no_events =
        offer.replace(" 101\r\n", "\r\n").replace("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", "");
    let none = negotiate(&Description::parse(&no_events).unwrap(), &plain(&[AudioCodec::Opus])).unwrap();
    assert_eq!(none.telephone_event, None);
}
