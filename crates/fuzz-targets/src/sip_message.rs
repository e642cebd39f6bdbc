//! SIP messages from trunks, as palaver's gateway (`palaver-sip` on rsipstack) takes them: the
//! first byte picks the transport's entry point, the rest is the bytes on the wire.
//! - even: one UDP datagram, parsed as the UDP transport parses it (`SipMessage::try_from`);
//! - odd: a TCP/TLS byte stream through the stream transport's framing (`SipCodec`), fed at
//!   once and again cut at up to three points taken from the input.
//!
//! Every parsed request then goes through what `palaver-sip` does with an INVITE before
//! anything rings: the called number (`config::normalize_number` of the Request-URI's user
//! part), the caller (`From` parsed as `typed::From`), the trunk's digest check
//! (`trunks::Trunks::authenticate` against a trunk with credentials) and the SDP offer
//! (`Description::parse`, `control::sip::negotiate`).
//!
//! Properties beyond "no panic": the stream framing yields the same messages however the
//! bytes are cut (segments of up to 60,000 bytes; the framing refuses a partial message over
//! 64 KiB, so cuts of a longer one may differ by design); a normalised number is E.164;
//! `authenticate` never accepts a nonce the gateway did not issue, and a nonce it issued is
//! used at most once (seeds write `NONCE` where the issued nonce goes, so the digest
//! verification itself runs on the input's `Authorization`).

use std::time::Instant;

use bytes::BytesMut;
use palaver_sfu::control::sip::{SrtpPolicy, TrunkPolicy, negotiate};
use palaver_sfu::mixer::AudioCodec;
use palaver_sfu::webrtc::sdp::Description;
use palaver_sip::TrunkConfig;
use palaver_sip::config::{is_e164, normalize_number};
use palaver_sip::trunks::{Authentication, Trunks};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::From as FromHeader;
use rsipstack::sip::{Request, SipMessage};
use rsipstack::transport::stream::{SipCodec, SipCodecType};
use tokio_util::codec::Decoder;

const PREFERENCE: [AudioCodec; 3] = [AudioCodec::Pcmu, AudioCodec::Pcma, AudioCodec::Opus];
/// Inputs up to this long must frame the same way however they are cut.
const SAME_FRAMING_UP_TO: usize = 60_000;

/// A trunk with digest credentials, read as its `[[sip.trunks]]` configuration is.
fn trunk() -> TrunkConfig {
    serde_json::from_value(serde_json::json!({
        "name": "carrier", "address": "127.0.0.1:5060", "allow_from": ["127.0.0.1"],
        "username": "palaver", "password": "secret", "codecs": ["PCMU", "PCMA", "opus"],
    }))
    .expect("trunk configuration")
}

/// The messages the stream framing yields from `chunks` (in order), up to its first error.
fn frame(chunks: &[&[u8]]) -> Vec<String> {
    let mut codec = SipCodec::new();
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(SipCodecType::Message(message))) => out.push(message.to_string()),
                Ok(Some(_keepalive)) => {}
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}

/// What the gateway does with a parsed request before the call machinery sees it.
fn inbound(request: &Request, raw: &[u8]) {
    if let Some(number) = request.uri.user().and_then(normalize_number) {
        assert!(is_e164(&number), "{number:?} is not E.164");
    }
    if let Ok(from) = request.from_header() {
        let _ = FromHeader::parse(from.value()).map(|f| f.uri.user().and_then(normalize_number));
    }
    let offer = String::from_utf8_lossy(&request.body);
    if let Ok(description) = Description::parse(&offer) {
        let _ = negotiate(
            &description,
            &TrunkPolicy { codecs: PREFERENCE.to_vec(), srtp: SrtpPolicy::Optional, trunk: None },
        );
    }

    let trunk = trunk();
    let trunks = Trunks::new(vec![trunk.clone()]);
    let now = Instant::now();
    // No nonce has been issued yet: whatever the request carries is challenged.
    let Authentication::Challenge(challenge) = trunks.authenticate(&trunk, request, now) else {
        panic!("accepted credentials with a nonce this gateway never issued");
    };
    // One challenge per digest algorithm of the trunk, all on one nonce.
    let first = challenge.first().expect("a challenge");
    let nonce = first.split("nonce=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("nonce");
    // The issued nonce where the input asked for it: the digest check runs on the input's
    // response, and the nonce is good for one attempt only.
    if let Some(text) = std::str::from_utf8(raw).ok().filter(|t| t.contains("NONCE"))
        && let Ok(SipMessage::Request(with_nonce)) = SipMessage::try_from(text.replace("NONCE", nonce).as_bytes())
    {
        let _ = trunks.authenticate(&trunk, &with_nonce, now);
        assert!(
            matches!(trunks.authenticate(&trunk, &with_nonce, now), Authentication::Challenge(_)),
            "a nonce was accepted twice"
        );
    }
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Some((&selector, wire)) = data.split_first() else { return };
    if selector % 2 == 0 {
        if let Ok(SipMessage::Request(request)) = SipMessage::try_from(wire) {
            inbound(&request, wire);
        }
        return;
    }
    let whole = frame(&[wire]);
    if wire.len() <= SAME_FRAMING_UP_TO {
        let mut cuts: Vec<usize> = wire.iter().take(3).map(|b| *b as usize * wire.len() / 256).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts {
            chunks.push(&wire[from..cut]);
            from = cut;
        }
        chunks.push(&wire[from..]);
        assert_eq!(frame(&chunks), whole, "the stream framing depends on how the bytes were cut");
    }
    for text in &whole {
        if let Ok(SipMessage::Request(request)) = SipMessage::try_from(text.as_bytes()) {
            inbound(&request, text.as_bytes());
        }
    }
}
