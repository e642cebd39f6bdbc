//! ICE-lite STUN Binding requests (`palaver_sfu::webrtc::stun`): parsing (attributes,
//! FINGERPRINT) and MESSAGE-INTEGRITY verification of any datagram, then the success response
//! written for it. The input also drives a generated request: its USERNAME and password come
//! from the input, so the write → parse → verify round trip is checked for arbitrary values.

use std::net::SocketAddr;

use crate::Fields;
use palaver_sfu::webrtc::stun::{BindingRequest, is_stun, write_binding_request, write_binding_success};

const PASSWORD: &[u8] = b"fuzz-ice-password-0123456";

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let _ = is_stun(data);
    if let Ok(request) = BindingRequest::parse(data) {
        assert!(is_stun(data));
        let _ = request.verify(PASSWORD);
        let mapped: SocketAddr = if data.len().is_multiple_of(2) { "192.0.2.1:32853" } else { "[2001:db8::1]:3478" }
            .parse()
            .expect("literal address");
        let mut out = [0u8; 128];
        let n = write_binding_success(&mut out, &request.transaction_id, mapped, PASSWORD).expect("fits 128 bytes");
        assert!(is_stun(&out[..n]));
    }

    let mut fields = Fields::new(data);
    let transaction: [u8; 12] = std::array::from_fn(|_| fields.byte());
    let password = fields.part(0xFF);
    let username = fields.text(0xFF);
    let mut out = vec![0u8; 20 + 4 + username.len().div_ceil(4) * 4 + 24 + 8];
    let Ok(n) = write_binding_request(&mut out, &transaction, &username, password) else { return };
    if username.len() > u16::MAX as usize - 64 {
        return; // no longer fits a STUN length field
    }
    match BindingRequest::parse(&out[..n]) {
        Ok(request) => {
            assert_eq!(request.transaction_id, transaction);
            assert_eq!(Some(request.local_ufrag), username.split_once(':').map(|(local, _)| local));
            request.verify(password).expect("MESSAGE-INTEGRITY of our own request verifies");
        }
        Err(e) => assert!(!username.contains(':'), "our own request with USERNAME {username:?} refused: {e}"),
    }
}
