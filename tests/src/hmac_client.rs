//! Client-side HMAC-SHA256 request signing, written from the protocol description (not
//! shared with the server) so the e2e tests check the server against an independent
//! implementation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::SystemTime;

/// Signs requests with a resource's access key.
#[derive(Clone)]
pub struct HmacSigner {
    key: Vec<u8>,
}

impl HmacSigner {
    /// From the base64 access key of a connection string.
    pub fn from_access_key(access_key: &str) -> Self {
        Self { key: B64.decode(access_key).expect("access key is base64") }
    }

    /// The headers for `method path_and_query` to `host` with `body`, dated `date`.
    pub fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        host: &str,
        body: &[u8],
        date: SystemTime,
    ) -> Vec<(String, String)> {
        sign_headers(&self.key, method, path_and_query, host, body, date)
    }
}

/// `x-ms-date`, `x-ms-content-sha256` and `Authorization` for one request.
pub fn sign_headers(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    host: &str,
    body: &[u8],
    date: SystemTime,
) -> Vec<(String, String)> {
    let date = httpdate::fmt_http_date(date);
    let hash = B64.encode(Sha256::digest(body));
    let string_to_sign = format!("{method}\n{path_and_query}\n{date};{host};{hash}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    vec![
        ("x-ms-date".into(), date),
        ("x-ms-content-sha256".into(), hash),
        (
            "authorization".into(),
            format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"),
        ),
    ]
}
