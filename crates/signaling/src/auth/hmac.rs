//! HMAC-SHA256 request authentication, exactly as the ACS SDKs sign:
//!
//! ```text
//! string_to_sign = METHOD "\n" path_and_query "\n" x-ms-date ";" host ";" x-ms-content-sha256
//! Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<b64>
//! ```
//!
//! The path and query are taken from the raw request target (still percent-encoded), the
//! content hash must equal the SHA-256 of the body actually received, and the date must be
//! within ±15 minutes. [`verify_request`] is the pure check; `api::HmacAuthenticated` is the
//! extractor that applies it with the resource's access keys and yields the body.

use crate::domain::Refusal;
use axum::http::{HeaderMap, Method};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use palaver_core::ErrorCode;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

/// How far `x-ms-date` may be from the server clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The decoded access keys of the resource (primary first; any may sign).
#[derive(Clone)]
pub struct HmacKeys {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HmacKeys({} keys)", self.keys.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access key is not valid base64")]
pub struct InvalidAccessKey;

impl HmacKeys {
    /// From base64 access keys as they appear in connection strings.
    pub fn from_base64<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Self, InvalidAccessKey> {
        let keys = keys
            .into_iter()
            .map(|k| B64.decode(k.trim()).map_err(|_| InvalidAccessKey))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() || keys.iter().any(Vec::is_empty) {
            return Err(InvalidAccessKey);
        }
        Ok(Self { keys })
    }
}

/// The request facts the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    /// Raw request target: path and query as received, percent-encoding untouched.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    /// Authority from the request URI (HTTP/2 `:authority`), used when `host` is absent.
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// base64(SHA-256(body)), the `x-ms-content-sha256` value.
pub fn content_hash(body: &[u8]) -> String {
    B64.encode(Sha256::digest(body))
}

/// base64(HMAC-SHA256(key, string_to_sign)).
pub fn sign(key: &[u8], string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value a client sends (used by tests and tools).
pub fn authorization_header(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    date: &str,
    host: &str,
    hash: &str,
) -> String {
    let sts = format!("{method}\n{path_and_query}\n{date};{host};{hash}");
    format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={}", sign(key, &sts))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::new(code, message)
}

/// Verify an HMAC-signed request at `now`.
pub fn verify_request(req: &SignedRequest<'_>, keys: &HmacKeys, now: SystemTime) -> Result<(), Refusal> {
    let auth = header(req.headers, "authorization")
        .ok_or_else(|| invalid(ErrorCode::MissingAuthentication, "the Authorization header is required"))?;
    let rest = auth
        .strip_prefix("HMAC-SHA256 ")
        .ok_or_else(|| invalid(ErrorCode::InvalidAuthentication, "the Authorization scheme must be HMAC-SHA256"))?;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.trim().split('&') {
        match part.split_once('=') {
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            // The signature is base64 and may itself end in '='; split_once keeps the rest.
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(invalid(ErrorCode::InvalidAuthentication, "malformed HMAC-SHA256 Authorization header")),
        }
    }
    let (Some(signed_headers), Some(signature)) = (signed_headers, signature) else {
        return Err(invalid(ErrorCode::InvalidAuthentication, "Authorization needs SignedHeaders and Signature"));
    };
    let names: Vec<String> = signed_headers.split(';').map(str::to_ascii_lowercase).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    if !(has("host") && has("x-ms-content-sha256") && (has("x-ms-date") || has("date"))) {
        return Err(invalid(
            ErrorCode::InvalidAuthentication,
            "SignedHeaders must include x-ms-date (or date), host and x-ms-content-sha256",
        ));
    }

    // Date: x-ms-date, else date; RFC 1123; within the allowed skew.
    let date_name = if has("x-ms-date") { "x-ms-date" } else { "date" };
    let date_value = header(req.headers, date_name)
        .or_else(|| if date_name == "x-ms-date" { None } else { header(req.headers, "x-ms-date") })
        .ok_or_else(|| invalid(ErrorCode::InvalidAuthentication, format!("the {date_name} header is required")))?;
    let date = httpdate::parse_http_date(date_value)
        .map_err(|_| invalid(ErrorCode::InvalidAuthentication, format!("{date_name} is not an RFC 1123 date")))?;
    let skew = now.duration_since(date).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Err(invalid(
            ErrorCode::StaleRequestDate,
            format!("{date_name} `{date_value}` is more than 15 minutes away from the server time"),
        ));
    }

    // Content hash of the body actually received.
    let claimed_hash = header(req.headers, "x-ms-content-sha256")
        .ok_or_else(|| invalid(ErrorCode::InvalidAuthentication, "the x-ms-content-sha256 header is required"))?;
    let actual_hash = content_hash(req.body);
    if !bool::from(claimed_hash.as_bytes().ct_eq(actual_hash.as_bytes())) {
        return Err(invalid(ErrorCode::ContentHashMismatch, "x-ms-content-sha256 does not match the request body"));
    }

    // Rebuild the string to sign from the signed header values in their listed order.
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        let value = match name.as_str() {
            "host" => header(req.headers, "host").or(req.authority),
            other => header(req.headers, other),
        }
        .ok_or_else(|| invalid(ErrorCode::InvalidAuthentication, format!("signed header `{name}` is missing")))?;
        values.push(value);
    }
    let string_to_sign = format!("{}\n{}\n{}", req.method.as_str(), req.path_and_query, values.join(";"));
    let presented =
        B64.decode(signature).map_err(|_| invalid(ErrorCode::InvalidSignature, "the signature is not valid base64"))?;
    let matches = keys.keys.iter().any(|key| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&presented).is_ok() // constant-time comparison
    });
    if !matches {
        return Err(invalid(ErrorCode::InvalidSignature, "the request signature is not valid for this resource"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const KEY_B64: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==";

    fn keys() -> HmacKeys {
        HmacKeys::from_base64([KEY_B64]).unwrap()
    }

    fn signed_headers(path: &str, body: &[u8], date: SystemTime) -> HeaderMap {
        let key = B64.decode(KEY_B64).unwrap();
        let date = httpdate::fmt_http_date(date);
        let hash = content_hash(body);
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8443"));
        h.insert("x-ms-date", HeaderValue::from_str(&date).unwrap());
        h.insert("x-ms-content-sha256", HeaderValue::from_str(&hash).unwrap());
        let auth = authorization_header(&key, "POST", path, &date, "127.0.0.1:8443", &hash);
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        h
    }

    fn check(path: &str, headers: &HeaderMap, body: &[u8], now: SystemTime) -> Result<(), ErrorCode> {
        let req = SignedRequest { method: &Method::POST, path_and_query: path, headers, authority: None, body };
        verify_request(&req, &keys(), now).map_err(|e| e.code)
    }

    const PATH: &str = "/identities/8%3Aacs%3Ar_1/:issueAccessToken?api-version=2023-10-01";

    #[test]
    fn accepts_a_correctly_signed_request() {
        let now = SystemTime::now();
        let body = br#"{"scopes":["chat"]}"#;
        assert_eq!(check(PATH, &signed_headers(PATH, body, now), body, now), Ok(()));
        // Clock skew up to 15 minutes either way is fine.
        let h = signed_headers(PATH, body, now - Duration::from_secs(14 * 60));
        assert_eq!(check(PATH, &h, body, now), Ok(()));
        let h = signed_headers(PATH, body, now + Duration::from_secs(14 * 60));
        assert_eq!(check(PATH, &h, body, now), Ok(()));
    }

    #[test]
    fn signature_covers_the_raw_percent_encoded_target() {
        let now = SystemTime::now();
        let h = signed_headers(PATH, b"", now);
        let decoded = "/identities/8:acs:r_1/:issueAccessToken?api-version=2023-10-01";
        assert_eq!(check(decoded, &h, b"", now), Err(ErrorCode::InvalidSignature));
    }

    #[test]
    fn rejects_each_kind_of_bad_authentication() {
        let now = SystemTime::now();
        let body = b"{}";
        let good = signed_headers(PATH, body, now);

        let mut h = good.clone();
        h.remove("authorization");
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::MissingAuthentication));

        let mut h = good.clone();
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::InvalidAuthentication));

        let mut h = good.clone();
        h.insert("authorization", HeaderValue::from_static("HMAC-SHA256 Signature=abc"));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::InvalidAuthentication));

        // Body changed after signing.
        assert_eq!(check(PATH, &good, b"{\"x\":1}", now), Err(ErrorCode::ContentHashMismatch));

        // Stale and future dates.
        let h = signed_headers(PATH, body, now - Duration::from_secs(16 * 60));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::StaleRequestDate));
        let h = signed_headers(PATH, body, now + Duration::from_secs(16 * 60));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::StaleRequestDate));

        let mut h = good.clone();
        h.insert("x-ms-date", HeaderValue::from_static("yesterday"));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::InvalidAuthentication));

        // Wrong host (e.g. another port) or path invalidates the signature.
        let mut h = good.clone();
        h.insert("host", HeaderValue::from_static("127.0.0.1:9999"));
        assert_eq!(check(PATH, &h, body, now), Err(ErrorCode::InvalidSignature));
        assert_eq!(check("/identities?api-version=2023-10-01", &good, body, now), Err(ErrorCode::InvalidSignature));

        // Signed with another key.
        let other = HmacKeys::from_base64(["b3RoZXI="]).unwrap();
        let req = SignedRequest { method: &Method::POST, path_and_query: PATH, headers: &good, authority: None, body };
        assert_eq!(verify_request(&req, &other, now).unwrap_err().code, ErrorCode::InvalidSignature);
    }

    #[test]
    fn date_header_is_accepted_when_signed_instead_of_x_ms_date() {
        let now = SystemTime::now();
        let key = B64.decode(KEY_B64).unwrap();
        let date = httpdate::fmt_http_date(now);
        let hash = content_hash(b"");
        let sts = format!("GET\n/x\n{date};h;{hash}");
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("h"));
        h.insert("date", HeaderValue::from_str(&date).unwrap());
        h.insert("x-ms-content-sha256", HeaderValue::from_str(&hash).unwrap());
        let auth = format!("HMAC-SHA256 SignedHeaders=date;host;x-ms-content-sha256&Signature={}", sign(&key, &sts));
        h.insert("authorization", HeaderValue::from_str(&auth).unwrap());
        let req = SignedRequest { method: &Method::GET, path_and_query: "/x", headers: &h, authority: None, body: b"" };
        assert!(verify_request(&req, &keys(), now).is_ok());
    }

    #[test]
    fn keys_must_be_base64() {
        assert!(HmacKeys::from_base64(["not base64!"]).is_err());
        assert!(HmacKeys::from_base64(Vec::<&str>::new()).is_err());
    }
}
