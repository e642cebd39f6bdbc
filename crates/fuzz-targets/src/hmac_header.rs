//! The ACS HMAC-SHA256 request signature (`palaver_signaling::auth::hmac::verify_request`):
//! the `Authorization` header, `x-ms-date`/`date`, `host`/authority and
//! `x-ms-content-sha256` of a REST request. Two modes by the first byte: every header value
//! from the input; or a request the input describes (method, path, host, date offset, body)
//! signed correctly with the resource's key. Properties: no panic; a forged request is never
//! accepted; a correctly signed one is accepted exactly when its date is within ±15 minutes.

use std::time::{Duration, SystemTime};

use crate::Fields;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method};
use palaver_signaling::auth::hmac::{
    HmacKeys, MAX_CLOCK_SKEW, SignedRequest, authorization_header, content_hash, verify_request,
};

const KEY: &[u8] = b"fuzz-access-key-0123456789abcdef";
const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE];

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let keys =
        HmacKeys::from_base64([base64::engine::general_purpose::STANDARD.encode(KEY).as_str()]).expect("valid key");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut fields = Fields::new(data);
    let signed = fields.byte() & 1 == 1;
    let method = METHODS[fields.byte() as usize % METHODS.len()].clone();
    let path = fields.text(0xFF);
    let host = fields.text(0xFF);
    let mut headers = HeaderMap::new();
    if !signed {
        let authority = Some(host.as_str()).filter(|h| !h.is_empty());
        for name in ["authorization", "x-ms-date", "date", "x-ms-content-sha256", "host"] {
            let value = fields.text(0xFF);
            set(&mut headers, name, &value);
        }
        let body = fields.rest();
        let request = SignedRequest { method: &method, path_and_query: &path, headers: &headers, authority, body };
        assert!(verify_request(&request, &keys, now).is_err(), "a request with a forged signature was accepted");
        return;
    }
    let offset = i64::from(i16::from_be_bytes([fields.byte(), fields.byte()]));
    let date = if offset >= 0 {
        now + Duration::from_secs(offset as u64)
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    };
    let date = httpdate::fmt_http_date(date);
    let body = fields.rest();
    let hash = content_hash(body);
    let authorization = authorization_header(KEY, method.as_str(), &path, &date, &host, &hash);
    set(&mut headers, "authorization", &authorization);
    set(&mut headers, "x-ms-date", &date);
    set(&mut headers, "x-ms-content-sha256", &hash);
    // A host that cannot be a visible-ASCII header value travels as the request's authority
    // instead: `HeaderValue` takes obs-text bytes (>= 0x80) that the verifier, like any HTTP
    // server reading `Host`, does not read as text (found by this target: such a host was set
    // as the header and the correctly signed request was refused as "host is missing").
    let authority = if HeaderValue::from_str(&host).is_ok_and(|value| value.to_str().is_ok()) {
        set(&mut headers, "host", &host);
        None
    } else {
        Some(host.as_str())
    };
    let request = SignedRequest { method: &method, path_and_query: &path, headers: &headers, authority, body };
    let verdict = verify_request(&request, &keys, now);
    let in_window = offset.unsigned_abs() <= MAX_CLOCK_SKEW.as_secs();
    assert_eq!(verdict.is_ok(), in_window, "signed request at {offset:+} s: {verdict:?}");
}
