//! Bearer access-token authentication: [`AuthenticatedUser`] (an axum extractor) checks a
//! palaver access token's signature, resource, expiry and revocation.

use crate::auth::token::TokenError;
use crate::http::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use palaver_core::{AccessTokenClaims, CommunicationIdentifier, ErrorCode, Scope, ScopeSet};

/// The holder of a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    pub claims: AccessTokenClaims,
    pub identifier: CommunicationIdentifier,
}

impl AuthenticatedUser {
    pub fn scopes(&self) -> ScopeSet {
        self.claims.scopes()
    }

    /// `InsufficientScope` (403) unless the token carries `scope`.
    pub fn require_scope(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes().contains(scope) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::InsufficientScope, format!("the access token lacks the `{scope}` scope")))
        }
    }

    /// Display name carried by the token (directory users), if any.
    pub fn display_name(&self) -> Option<&str> {
        self.claims.name.as_deref()
    }
}

/// Map a token check failure to its API error.
pub fn token_error(e: TokenError) -> ApiError {
    let code = match e {
        TokenError::Expired => ErrorCode::TokenExpired,
        _ => ErrorCode::InvalidToken,
    };
    ApiError::new(code, e.to_string())
}

/// Verify a raw access token (no `Bearer ` prefix) at `now_ms`: signature, resource,
/// expiry, revocation. Use this where no header is available (e.g. a WebSocket query).
pub fn authenticate_token(state: &AppState, token: &str, now_ms: i64) -> Result<AuthenticatedUser, ApiError> {
    let claims = state.tokens.verify(token.trim(), now_ms).map_err(token_error)?;
    if state.revocations.is_revoked(&claims) {
        return Err(ApiError::new(ErrorCode::TokenRevoked, "the access token has been revoked"));
    }
    let identifier = CommunicationIdentifier::parse(&claims.raw_id())
        .map_err(|e| ApiError::new(ErrorCode::InvalidToken, format!("token subject is not valid: {e}")))?;
    Ok(AuthenticatedUser { claims, identifier })
}

/// The token from an `Authorization: Bearer <token>` header.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(ErrorCode::MissingAuthentication, "an `Authorization: Bearer <token>` header is required")
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidAuthentication, "the Authorization header is not ASCII"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::new(ErrorCode::InvalidAuthentication, "the Authorization scheme must be Bearer")),
    }
}

impl FromRequestParts<AppState> for AuthenticatedUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        authenticate_token(state, token, crate::http::now_ms())
    }
}
