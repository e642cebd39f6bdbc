//! `ApiError`: every REST failure, answered as the ACS error body with the code's status.
//!
//! It is the domain's [`Refusal`] seen from HTTP: the domain and auth layers say why they
//! refuse (code, message, offending member); this module alone knows that the code's HTTP
//! status and `{"error":{"code","message","target"?}}` body are how HTTP clients hear it.

use crate::domain::Refusal;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::ErrorBody;

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
    use crate::store::StoreError;
    use palaver_core::ErrorCode;

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
}
