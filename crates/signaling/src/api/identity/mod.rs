//! HTTP routes of the Identity API (HMAC-authenticated) and the bearer `whoami` check.

use crate::api::HmacAuthenticated;
use crate::api::{ApiError, api_router, repeatability, require_api_version};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::identity::{CreateIdentityRequest, IssueTokenRequest, Revocation};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use palaver_core::time::now_ms;

/// api-versions the Identity API accepts.
pub const API_VERSIONS: &[&str] = &["2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01"];

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/identities", post(create_identity))
        .route("/identities/{id}", delete(delete_identity))
        .route("/identities/{id}/:issueAccessToken", post(issue_token))
        .route("/identities/{id}/:revokeAccessTokens", post(revoke_tokens))
        .route("/auth/whoami", get(whoami))
}

async fn create_identity(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let req: CreateIdentityRequest = auth.json_or_default()?;
    let repeat = repeatability(&method, &uri, &headers, &auth.body)?;
    let created = state.identities().create(&req, repeat.as_ref(), now_ms()).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn issue_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let req: IssueTokenRequest = auth.json()?;
    let repeat = repeatability(&method, &uri, &headers, &auth.body)?;
    let token = state.identities().issue_token(&id, &req, repeat.as_ref(), now_ms()).await?;
    Ok(Json(token).into_response())
}

async fn revoke_tokens(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<StatusCode, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let revocation = state.identities().revoke_tokens(&id, now_ms()).await?;
    end_revoked_sessions(&state, &revocation);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<StatusCode, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let revocation = state.identities().delete(&id, now_ms()).await?;
    end_revoked_sessions(&state, &revocation);
    Ok(StatusCode::NO_CONTENT)
}

/// End the live connections that hold one of the revoked tokens.
fn end_revoked_sessions(state: &AppState, revocation: &Revocation) {
    state.gateway.revoke_access(&revocation.raw_id, revocation.revoked_before_ms);
}

/// `GET /auth/whoami` with `Authorization: Bearer <access token>`: who the token belongs to.
async fn whoami(user: Principal) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "identifier": user.identifier.to_model(),
        "scopes": user.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "displayName": user.display_name,
        "expiresOn": crate::auth::token::rfc3339_ms(user.expires_at_ms),
        "native": user.native,
    }))
}
