//! Routes: the directory-user token exchange, the revocation of a directory user's exchanged
//! tokens (palaver's own, beside ACS's), and the dev IdP's JWKS and token endpoints.

use crate::api::HmacAuthenticated;
use crate::api::identity::API_VERSIONS;
use crate::api::{ApiError, api_router, require_api_version};
use crate::app::AppState;
use crate::auth::directory::{DevTokenRequest, exchange};
use crate::domain::identity::AccessTokenResponse;
use axum::extract::{Path, State};
use axum::http::{Uri, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use palaver_core::ErrorCode;
use palaver_core::time::now_ms;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/teamsUser/:exchangeAccessToken", post(exchange_token))
        .route("/teamsUser/:revokeAccessTokens", post(revoke_tokens))
        .route("/dev-idp/{tenant}/discovery/v2.0/keys", get(dev_jwks))
        .route("/dev-idp/token", post(dev_token))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeRequest {
    token: Option<String>,
    app_id: Option<String>,
    user_id: Option<String>,
}

async fn exchange_token(
    State(state): State<AppState>,
    uri: Uri,
    auth: HmacAuthenticated,
) -> Result<Json<AccessTokenResponse>, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let req: ExchangeRequest = auth.json()?;
    // Absent members are checked in ACS's order inside `exchange` (token, appId, userId).
    let (token, app_id, user_id) =
        (req.token.unwrap_or_default(), req.app_id.unwrap_or_default(), req.user_id.unwrap_or_default());
    let issued = exchange(&state, &token, &app_id, &user_id, now_ms()).await?;
    tracing::info!(identity = %issued.claims.raw_id(), "directory user token exchanged");
    Ok(Json(AccessTokenResponse::from(&issued)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeRequest {
    user_id: String,
    tenant_id: String,
}

/// `POST /teamsUser/:revokeAccessTokens` `{"userId": oid, "tenantId"}` (HMAC): every access
/// token exchanged for that directory user so far is refused from now on, through the same
/// revocation marks as communication identities, and its live signaling sessions end
/// (`TokenRevoked`, close code 4001). A new exchange issues a valid token again. The user must
/// be one of that tenant's on this server (`404 IdentityNotFound` otherwise).
async fn revoke_tokens(
    State(state): State<AppState>,
    uri: Uri,
    auth: HmacAuthenticated,
) -> Result<axum::http::StatusCode, ApiError> {
    require_api_version(uri.query(), API_VERSIONS)?;
    let req: RevokeRequest = auth.json()?;
    let oid = uuid::Uuid::try_parse(&req.user_id)
        .map_err(|_| {
            ApiError::new(ErrorCode::ValidationError, "Provided UserId has invalid format.").with_target("userId")
        })?
        .hyphenated()
        .to_string();
    if state.auth.directory.bindings.tenant_of(&oid).as_deref() != Some(req.tenant_id.as_str()) {
        return Err(ApiError::new(
            ErrorCode::IdentityNotFound,
            format!("no directory user `{oid}` of tenant `{}` has signed in here", req.tenant_id),
        ));
    }
    // Raw ids carry the oid as the IdP wrote it; GUIDs are lower case, but mark the spelling
    // the caller used too.
    let mut raw_ids = vec![format!("8:orgid:{oid}")];
    if req.user_id != oid {
        raw_ids.push(format!("8:orgid:{}", req.user_id));
    }
    let now = now_ms();
    for raw_id in raw_ids {
        let mark = state
            .identity_store
            .revoke(&raw_id, now, crate::store::identity_store::RevokeAction::MarkOnly)
            .await?
            .expect("a mark-only revocation always writes its mark");
        state.auth.revocations.apply(&raw_id, mark);
        let ended = state.gateway.revoke_access(&raw_id, mark);
        tracing::info!(identity = %raw_id, tenant = %req.tenant_id, connections = ended, "directory user's tokens revoked");
    }
    Ok(axum::http::StatusCode::NO_CONTENT)
}

fn dev_idp_off() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "the development identity provider is not enabled")
}

async fn dev_jwks(State(state): State<AppState>, Path(tenant): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let idp = state.auth.directory.dev_idp.as_ref().ok_or_else(dev_idp_off)?;
    if tenant != crate::auth::directory::dev_idp::DEV_TENANT_ID {
        return Err(ApiError::new(ErrorCode::UnknownTenant, format!("the dev IdP has no tenant `{tenant}`")));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], idp.jwks_json()))
}

/// Mint a dev IdP token (HMAC-authenticated: only the resource's owner may mint).
async fn dev_token(
    State(state): State<AppState>,
    auth: HmacAuthenticated,
) -> Result<Json<crate::auth::directory::DevToken>, ApiError> {
    let idp = state.auth.directory.dev_idp.as_ref().ok_or_else(dev_idp_off)?;
    let req: DevTokenRequest = auth.json()?;
    if req.oid.is_empty() || req.name.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "`oid` and `name` are required"));
    }
    let minted = idp.mint(&req, now_ms().div_euclid(1000)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(minted))
}
