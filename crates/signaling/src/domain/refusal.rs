//! [`Refusal`]: why the control plane said no — an [`ErrorCode`] (which fixes the HTTP status
//! and the error-frame code), a human message and, for REST bodies, the offending member.
//! Domain rules, auth and the gateway return it; `api::ApiError` renders it as the ACS error
//! body and the gateway as an `error` frame.

use crate::store::StoreError;
use palaver_core::ErrorCode;

/// A refused request or command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The request member at fault (`scopes`, `expiresInMinutes`, ...), if one is.
    pub target: Option<String>,
    /// ACS's `details` entries (e.g. a Rooms `BadArgument` naming `ValidFrom`).
    pub details: Vec<RefusalDetail>,
}

/// One entry of the error body's `details`: ACS uses codes here that are not top-level codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalDetail {
    pub code: &'static str,
    pub message: String,
    pub target: Option<String>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), target: None, details: Vec::new() }
    }

    /// Add a `details` entry.
    pub fn with_detail(mut self, code: &'static str, message: impl Into<String>, target: Option<&str>) -> Self {
        self.details.push(RefusalDetail { code, message: message.into(), target: target.map(str::to_string) });
        self
    }

    /// Name the offending request member.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// A failure of the server itself (`InternalError`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(ErrorCode::StorageUnavailable, "storage is unavailable, retry later")
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from(e).into()
    }
}
