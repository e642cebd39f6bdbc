//! Request extractors and checks shared by every REST API: a JSON body whose syntax and
//! shape errors become `InvalidJson`, and the `api-version` query check.

use super::error::ApiError;
pub use crate::domain::Repeatability;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use palaver_core::ErrorCode;
use serde::de::DeserializeOwned;

/// A JSON request body. Malformed JSON or a wrong shape is answered `InvalidJson` (400)
/// naming the position/field serde complained about. Use as the last handler argument.
#[derive(Debug, Clone)]
pub struct AcsJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AcsJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_read_error)?;
        parse_json(&bytes).map(AcsJson)
    }
}

/// Parse a JSON body (`InvalidJson` on failure, including an empty body).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(ErrorCode::InvalidJson, "request body is empty; a JSON object is required"));
    }
    // serde_json does not check UTF-8 inside members it skips: check the whole body first.
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: not UTF-8 ({e})")))?;
    serde_json::from_str(text).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))
}

/// Parse a JSON body that may be absent: an empty body yields `T::default()`.
pub fn parse_json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { parse_json(body) }
}

/// Map a body-read failure (too large, too slow, connection error) to an API error.
pub fn body_read_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
    } else if timed_out(&rejection) {
        // The server's `RequestBodyTimeoutLayer` cut the body off (`body_timeout_ms`).
        ApiError::new(ErrorCode::RequestTimeout, "the request body did not arrive in time")
    } else {
        ApiError::new(ErrorCode::BadRequest, format!("cannot read request body: {rejection}"))
    }
}

/// Is the body-timeout error somewhere in this rejection's chain of causes?
fn timed_out(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Check the `api-version` query parameter of `query` (the raw query string, e.g. from
/// `uri.query()`) against the versions an API accepts; returns the version. Missing or
/// unknown versions are `UnsupportedApiVersion` (400).
pub fn require_api_version<'a>(query: Option<&str>, accepted: &[&'a str]) -> Result<&'a str, ApiError> {
    let requested = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == "api-version")
        .map(|(_, v)| v);
    let Some(requested) = requested else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedApiVersion,
            format!("the api-version query parameter is required; supported: {}", accepted.join(", ")),
        )
        .with_target("api-version"));
    };
    accepted.iter().copied().find(|v| *v == requested).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedApiVersion,
            format!("api-version `{requested}` is not supported; supported: {}", accepted.join(", ")),
        )
        .with_target("api-version")
    })
}

/// The request's `Repeatability-Request-ID`, if any, with a fingerprint of method, path and body.
pub fn repeatability(
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<Option<Repeatability>, ApiError> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let Some(value) = headers.get("repeatability-request-id") else {
        return Ok(None);
    };
    let id = value.to_str().unwrap_or("").trim();
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::new(
            palaver_core::ErrorCode::InvalidParameter,
            "Repeatability-Request-ID must be 1-128 visible characters",
        )
        .with_target("Repeatability-Request-ID"));
    }
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update(b"\n");
    h.update(uri.path());
    h.update(b"\n");
    h.update(body);
    let fingerprint = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    Ok(Some(Repeatability { request_id: id.to_string(), fingerprint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        n: u32,
    }

    #[test]
    fn json_errors_are_invalid_json() {
        assert_eq!(parse_json::<Body>(b"{\"n\":1}").unwrap(), Body { n: 1 });
        for bad in [&b""[..], b"  ", b"{", b"{\"n\":\"x\"}", b"5", b"{\"m\":1}"] {
            assert_eq!(parse_json::<Body>(bad).unwrap_err().code, ErrorCode::InvalidJson, "{bad:?}");
        }
        assert_eq!(parse_json_or_default::<Body>(b"").unwrap(), Body::default());
        assert_eq!(parse_json_or_default::<Body>(b"{").unwrap_err().code, ErrorCode::InvalidJson);
    }

    /// Found by the `ca_request` fuzz target's seed test: serde_json does not check UTF-8
    /// inside a member it skips, so a body with invalid UTF-8 there was accepted although it
    /// is not JSON (RFC 8259 §8.1).
    #[test]
    fn a_body_that_is_not_utf8_is_invalid_json() {
        #[derive(Debug, serde::Deserialize)]
        struct Lenient {
            #[allow(dead_code)]
            n: u32,
        }
        let err = parse_json::<Lenient>(b"{\"n\":1,\"skipped\":\"\xc0\"}").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
    }

    /// Issue #19: a body cut off by the body timeout was answered in plain text (or as a
    /// 400); it is `408 RequestTimeout` with the ACS error body.
    #[tokio::test]
    async fn a_body_that_stalls_past_the_timeout_is_408_with_the_acs_error_body() {
        use axum::response::IntoResponse;
        use tower::ServiceExt;
        async fn handler(AcsJson(body): AcsJson<Body>) -> axum::response::Response {
            axum::Json(serde_json::json!({"n": body.n})).into_response()
        }
        let app = axum::Router::new()
            .route("/x", axum::routing::post(handler))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_millis(50)));
        let stalled = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let req = axum::http::Request::post("/x").body(axum::body::Body::from_stream(stalled)).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 408);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "RequestTimeout", "{json}");
        // A body in time is served.
        let req = axum::http::Request::post("/x").body(axum::body::Body::from("{\"n\":7}")).unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), 200);
    }

    #[test]
    fn api_version_check() {
        let accepted = ["2021-03-07", "2023-10-01"];
        assert_eq!(require_api_version(Some("api-version=2023-10-01"), &accepted).unwrap(), "2023-10-01");
        assert_eq!(require_api_version(Some("x=1&api-version=2021-03-07"), &accepted).unwrap(), "2021-03-07");
        for q in [None, Some(""), Some("api-version=2020-01-01"), Some("api-version"), Some("apiversion=2023-10-01")] {
            assert_eq!(require_api_version(q, &accepted).unwrap_err().code, ErrorCode::UnsupportedApiVersion, "{q:?}");
        }
    }
}
