//! `ApiError`: every REST failure, answered as the ACS error body with the code's status.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::{ErrorBody, ErrorCode};

/// An error answered to an HTTP client: `{"error":{"code","message","target"?}}` with the
/// status from [`ErrorCode::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub target: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), target: None }
    }

    /// Name the offending request member (`scopes`, `expiresInMinutes`, ...).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn body(&self) -> ErrorBody {
        let body = ErrorBody::new(self.code, self.message.clone());
        match &self.target {
            Some(t) => body.with_target(t.clone()),
            None => body,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = %self.code, message = %self.message, "request failed");
        } else {
            tracing::debug!(code = %self.code, message = %self.message, "request rejected");
        }
        let mut resp = (status, Json(self.body())).into_response();
        // Lets the router count errors by code without parsing bodies.
        resp.extensions_mut().insert(self.code);
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(ErrorCode::StorageUnavailable, "storage is unavailable, retry later")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn storage_errors_are_503() {
        let e: ApiError = StoreError::Worker("gone".into()).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, ErrorCode::StorageUnavailable);
    }
}
