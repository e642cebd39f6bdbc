//! `ApiError`: every REST failure, answered as the ACS error body with the code's status.
//!
//! It is the domain's [`Refusal`] seen from HTTP: the domain and auth layers say why they
//! refuse (code, message, offending member); this module alone knows that the code's HTTP
//! status and `{"error":{"code","message","target"?}}` body are how HTTP clients hear it.
//! [`acs_error_bodies`] gives the same shape to the errors axum answers before any handler.

use crate::domain::Refusal;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::{ErrorBody, ErrorCode};

/// An error answered to an HTTP client (the status comes from [`palaver_core::ErrorCode::http_status`]).
pub type ApiError = Refusal;

/// The HTTP status of a refusal.
pub fn status_of(e: &Refusal) -> StatusCode {
    StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The ACS error body of a refusal.
pub fn body_of(e: &Refusal) -> ErrorBody {
    let mut body = ErrorBody::new(e.code, e.message.clone());
    if let Some(t) = &e.target {
        body = body.with_target(t.clone());
    }
    body.error.details = e
        .details
        .iter()
        .map(|d| palaver_core::ErrorDetail {
            code: d.code.to_string(),
            message: d.message.clone(),
            target: d.target.clone(),
            details: Vec::new(),
            innererror: None,
        })
        .collect();
    body
}

/// Longest plain-text error body read back to build the ACS body.
const MAX_PLAIN_ERROR_BYTES: usize = 4096;

/// Middleware: an error answered by something other than a handler (axum's extractor
/// rejections: body over [`MAX_BODY_BYTES`](crate::api::MAX_BODY_BYTES) `413`, a path or query
/// that does not parse, a JSON content type missing; the WebSocket upgrade's) is plain text;
/// answer it as the ACS error body instead, keeping its status and its text as the message.
pub async fn acs_error_bodies(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || resp.extensions().get::<ErrorCode>().is_some() {
        return resp;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::InvalidAuthentication,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 | 422 => ErrorCode::InvalidJson,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::StorageUnavailable,
        500..=599 => ErrorCode::InternalError,
        _ => ErrorCode::BadRequest,
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message =
        if text.is_empty() { status.canonical_reason().unwrap_or("request refused").to_string() } else { text };
    let mut resp = (status, Json(ErrorBody::new(code, message))).into_response();
    for (name, value) in parts
        .headers
        .iter()
        .filter(|(n, _)| *n != axum::http::header::CONTENT_TYPE && *n != axum::http::header::CONTENT_LENGTH)
    {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp.extensions_mut().insert(code);
    resp
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        if status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request rejected");
        }
        let mut resp = (status, Json(body_of(&self))).into_response();
        // Lets the router count errors by code without parsing bodies.
        resp.extensions_mut().insert(self.code);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{error_code, send, signed, test_state};
    use crate::store::StoreError;

    #[tokio::test]
    async fn renders_acs_error_body_with_status() {
        let resp = ApiError::new(ErrorCode::InvalidScope, "unknown scope `x`").with_target("scopes").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error":{"code":"InvalidScope","message":"unknown scope `x`","target":"scopes"}})
        );
    }

    #[test]
    fn details_are_rendered_in_the_acs_shape() {
        let e = ApiError::new(ErrorCode::BadRequest, "Invalid request.").with_detail(
            "BadArgument",
            "bad",
            Some("ValidFrom"),
        );
        let json = serde_json::to_value(body_of(&e)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error":{"code":"BadRequest","message":"Invalid request.",
                "details":[{"code":"BadArgument","message":"bad","target":"ValidFrom"}]}})
        );
    }

    #[test]
    fn storage_errors_are_503() {
        let e: ApiError = StoreError::Worker("gone".into()).into();
        assert_eq!(status_of(&e), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, ErrorCode::StorageUnavailable);
    }

    /// Issue #19 (low): 413s, unparsable paths and wrong content types were plain text.
    #[tokio::test]
    async fn every_error_answer_is_an_acs_error_body() {
        use axum::body::Body;
        use axum::http::Request;
        let state = test_state();
        let huge = "x".repeat(crate::api::MAX_BODY_BYTES + 10);
        let mut dev = crate::app::SignalingConfig::default();
        dev.directory.dev_sign_in = true;
        let dev = crate::app::AppState::open(dev, crate::store::Store::open_in_memory().unwrap(), Default::default())
            .unwrap();
        let cases: Vec<(&crate::app::AppState, Request<Body>, StatusCode, &str)> = vec![
            (
                &state,
                signed(&state, "POST", "/identities?api-version=2023-10-01", &huge),
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
            ),
            (
                &dev,
                Request::post("/dev/web/external-user").body(Body::from(huge.clone())).unwrap(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
            ),
            (&state, Request::get("/app/%ff%fe").body(Body::empty()).unwrap(), StatusCode::BAD_REQUEST, "BadRequest"),
            (&state, Request::get("/no/such/route").body(Body::empty()).unwrap(), StatusCode::NOT_FOUND, "NotFound"),
            (&state, Request::put("/health").body(Body::empty()).unwrap(), StatusCode::BAD_REQUEST, "BadRequest"),
            (
                &state,
                Request::get("/signaling/v1").header("authorization", "Bearer x").body(Body::empty()).unwrap(),
                StatusCode::UNAUTHORIZED,
                "InvalidToken",
            ),
        ];
        for (state, req, status, code) in cases {
            let target = req.uri().to_string();
            let (got, body) = send(state, req).await;
            assert_eq!((got, error_code(&body)), (status, code), "{target}: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{target}: {body}");
        }
    }
}
