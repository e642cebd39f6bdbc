//! The HTTP layer: thin axum handlers that parse, authenticate, authorize and call the
//! domain; the route composition ([`router`]), the ACS-shaped error type ([`ApiError`]) and
//! request extractors.
//!
//! Each REST API lives in its own module and exposes `fn routes() -> Router<AppState>`;
//! [`router`] merges them: [`identity`], [`directory`] (directory-user token exchange and
//! the dev IdP), [`rooms`], [`chat`], [`call_automation`], [`meetings`], [`usage`], [`events`], [`webapp`], plus the gateway's socket
//! endpoints.

pub mod call_automation;
mod callers;
pub mod chat;
pub mod directory;
mod error;
pub mod events;
mod extract;
pub mod identity;
pub mod meetings;
pub mod rooms;
#[cfg(test)]
pub(crate) mod testing;
pub mod usage;
pub mod webapp;

use crate::app::AppState;
pub use callers::{Caller, HmacAuthenticated};
pub use error::{ApiError, body_of, status_of};
pub use extract::{
    AcsJson, Repeatability, body_read_error, parse_json, parse_json_or_default, repeatability, require_api_version,
};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use palaver_core::ErrorCode;
use tower_http::trace::TraceLayer;

/// Largest accepted request body (chat messages are at most 28 KB; nothing needs more).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A fresh router for one API module. ACS paths have segments that start with `:`
/// (`/identities/{id}/:issueAccessToken`); axum refuses those unless its 0.7-migration
/// checks are off, and merging a router with the checks on turns them back on, so every
/// API module starts from this.
pub fn api_router() -> Router<AppState> {
    Router::new().without_v07_checks()
}

/// All routes of the control plane, with state applied.
pub fn router(state: AppState) -> Router {
    api_router()
        .route("/health", get(health))
        .merge(identity::routes())
        .merge(directory::routes())
        .merge(rooms::routes())
        .merge(chat::routes())
        .merge(call_automation::routes())
        .merge(crate::gateway::routes())
        .merge(meetings::routes())
        .merge(usage::routes())
        .merge(events::routes())
        .merge(webapp::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::acs_error_bodies))
        .layer(axum::middleware::from_fn(echo_client_request_id))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Count every ACS error answered, by code (`palaver_signaling_errors_total{code}`).
async fn count_errors(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let resp = next.run(req).await;
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        state.telemetry.error_answered(*code);
    }
    resp
}

/// The SDKs send `x-ms-client-request-id` (and ask for it back); answer it on every response
/// so client and server logs can be correlated.
async fn echo_client_request_id(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = req.headers().get(CLIENT_REQUEST_ID).cloned();
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut().insert(CLIENT_REQUEST_ID, id);
    }
    resp
}

const CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Result<&'static str, ApiError> {
    state.store.call(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await?;
    Ok("ok")
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no resource at `{}`", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, format!("method {method} is not supported on `{}`", uri.path()))
}
