//! Who is calling a REST API, as axum extractors over the one [`Authenticator`]:
//! [`HmacAuthenticated`] (the server API: an HMAC-signed request, body included),
//! [`Principal`] (a user: `Authorization: Bearer <access token>`), and [`Caller`] (either).
//!
//! [`Authenticator`]: crate::auth::Authenticator

use super::{ApiError, MAX_BODY_BYTES, body_read_error};
use crate::app::AppState;
use crate::auth::hmac::{SignedRequest, verify_request};
use crate::auth::{Principal, bearer_token};
use crate::domain::conversation::Authority;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use palaver_core::ErrorCode;
use palaver_core::time::now_ms;
use std::time::SystemTime;

/// Extractor: the request carried a valid HMAC signature for this resource. Holds the body
/// (already read to check its hash); parse it with [`HmacAuthenticated::json`]. Must be the
/// last handler argument (it consumes the body).
#[derive(Debug, Clone)]
pub struct HmacAuthenticated {
    pub body: Bytes,
}

impl HmacAuthenticated {
    /// The body as JSON (`InvalidJson` on failure or when empty).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        super::parse_json(&self.body)
    }
    /// The body as JSON, or `T::default()` when empty.
    pub fn json_or_default<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        super::parse_json_or_default(&self.body)
    }
}

impl FromRequest<AppState> for HmacAuthenticated {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        // Nested routers rewrite the URI; the signature covers what the client sent.
        let uri = parts.extensions.get::<OriginalUri>().map(|o| o.0.clone()).unwrap_or_else(|| parts.uri.clone());
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let body =
            Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(body_read_error)?;
        let signed = SignedRequest {
            method: &parts.method,
            path_and_query,
            headers: &parts.headers,
            authority: uri.authority().map(|a| a.as_str()),
            body: &body,
        };
        verify_request(&signed, &state.hmac_keys, SystemTime::now())?;
        Ok(Self { body })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(ErrorCode::MissingAuthentication, "an `Authorization: Bearer <token>` header is required")
        })?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::InvalidAuthentication, "the Authorization header is not ASCII"))?;
        state.auth.verify_access_token(bearer_token(value)?, now_ms())
    }
}

/// Who calls an API both users and the server may call: a user with an access token, or
/// the server API (HMAC). Carries the body.
pub struct Caller {
    pub user: Option<Principal>,
    pub body: Bytes,
}

impl Caller {
    /// Whose authority a command on a live conversation carries.
    pub fn authority(&self) -> Authority {
        match &self.user {
            Some(u) => Authority::User(u.raw_id()),
            None => Authority::Server,
        }
    }
    /// The calling user's raw id (`None`: the server API).
    pub fn raw_id(&self) -> Option<String> {
        self.user.as_ref().map(Principal::raw_id)
    }
}

impl FromRequest<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let hmac = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("HMAC-SHA256"));
        if hmac {
            let auth = HmacAuthenticated::from_request(req, state).await?;
            return Ok(Self { user: None, body: auth.body });
        }
        let (mut parts, body) = req.into_parts();
        let user = Principal::from_request_parts(&mut parts, state).await?;
        let body = Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(body_read_error)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"));
        }
        Ok(Self { user: Some(user), body })
    }
}
