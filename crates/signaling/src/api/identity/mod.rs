//! HTTP routes of the Identity API (HMAC-authenticated) and the bearer `whoami` check.

use crate::api::HmacAuthenticated;
use crate::api::{ApiError, api_router, repeatability, require_api_version};
use crate::app::AppState;
use crate::auth::Principal;
use crate::domain::identity::{self as service, Answer, CreateIdentityRequest, IssueTokenRequest};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
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

/// Run a store-touching operation on the blocking pool (SQLite calls block).
async fn blocking<R: Send + 'static>(op: impl FnOnce() -> Result<R, ApiError> + Send + 'static) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(op).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

fn json_answer(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
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
    let answer = blocking(move || service::create_identity(&state, &req, repeat.as_ref(), now_ms())).await?;
    Ok(json_answer(answer))
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
    let answer = blocking(move || service::issue_token(&state, &id, &req, repeat.as_ref(), now_ms())).await?;
    Ok(json_answer(answer))
}

async fn revoke_tokens(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<StatusCode, ApiError> {
    revoke(state, id, uri, service::revoke_tokens).await
}

async fn delete_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    _auth: HmacAuthenticated,
) -> Result<StatusCode, ApiError> {
    revoke(state, id, uri, service::delete_identity).await
}

/// Revoke the identity's tokens (`op`: revoke, or delete and revoke), then end the live
/// connections that hold one of them.
async fn revoke(
    state: AppState,
    id: String,
    uri: Uri,
    op: fn(&AppState, &str, i64) -> Result<service::Revocation, ApiError>,
) -> Result<StatusCode, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let gateway = state.gateway.clone();
    let revocation = blocking(move || op(&state, &id, now_ms())).await?;
    gateway.revoke_access(&revocation.raw_id, revocation.revoked_before_ms);
    Ok(StatusCode::NO_CONTENT)
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
