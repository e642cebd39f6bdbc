//! Event Grid subscriptions REST API (HMAC-authenticated, like the Identity and usage APIs),
//! the subscription validation URL, and the Call Automation callback signing keys.
//!
//! - `GET /events/subscriptions` → `{"value": [subscription]}`
//! - `GET /events/subscriptions/{name}` → subscription (404 `NotFound`)
//! - `PUT /events/subscriptions/{name}` `{endpoint, schema?, eventTypes?, subjectBeginsWith?,
//!   subjectEndsWith?, caFile?, validationHandshake?}` → 201 created / 200 replaced
//!   (400 `InvalidParameter` with a `target`; 409 `Conflict` for a subscription from the file)
//! - `DELETE /events/subscriptions/{name}` → 204 (404, 409 as above)
//! - `GET /events/deadletters[?top=N]` → `{"value": [row]}` deliveries given up on
//! - `GET /events/subscriptions/{name}/validate?code=…` (no auth: the code is the secret) —
//!   the `validationUrl` of the handshake, for a manual validation
//! - `GET /calling/keys` (JWKS) and `GET /calling/.well-known/acsopenidconfiguration` (no auth)
//!
//! The events service ([`palaver_events::Events`]) is supplied by the binary as an axum
//! `Extension` layer; without it these routes answer 503 `StorageUnavailable`.

#[cfg(test)]
mod tests;

use crate::api::HmacAuthenticated;
use crate::api::{ApiError, api_router};
use crate::app::AppState;
use crate::store::run_blocking;
use axum::extract::{Extension, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use palaver_core::ErrorCode;
use palaver_events::{AdminError, Events, JWKS_PATH, OPENID_CONFIGURATION_PATH, SubscriptionRequest};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/events/subscriptions", get(list))
        .route("/events/subscriptions/{name}", get(get_one).put(put).delete(delete))
        .route("/events/subscriptions/{name}/validate", get(validate))
        .route("/events/deadletters", get(dead_letters))
        .route(JWKS_PATH, get(jwks))
        .route(OPENID_CONFIGURATION_PATH, get(openid_configuration))
}

type EventsHandle = Option<Extension<Events>>;

fn service(events: EventsHandle) -> Result<Events, ApiError> {
    events
        .map(|Extension(e)| e)
        .ok_or_else(|| ApiError::new(ErrorCode::StorageUnavailable, "events are not configured on this server"))
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "events database");
    ApiError::new(ErrorCode::StorageUnavailable, "the events database is unavailable")
}

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::Invalid(i) => ApiError::new(ErrorCode::InvalidParameter, i.message).with_target(i.target),
        AdminError::ReadOnly(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
        AdminError::Store(s) => store_error(s),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no event subscription `{name}`"))
}

/// Run an events-database call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    run_blocking(f).await.map_err(store_error)?
}

async fn list(events: EventsHandle, _auth: HmacAuthenticated) -> Result<Response, ApiError> {
    let events = service(events)?;
    let value = blocking(move || events.subscriptions().map_err(store_error)).await?;
    Ok(Json(json!({ "value": value })).into_response())
}

async fn get_one(
    events: EventsHandle,
    Path(name): Path<String>,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    let events = service(events)?;
    let found = blocking({
        let name = name.clone();
        move || events.subscription(&name).map_err(store_error)
    })
    .await?;
    found.map(|s| Json(s).into_response()).ok_or_else(|| not_found(&name))
}

async fn put(events: EventsHandle, Path(name): Path<String>, auth: HmacAuthenticated) -> Result<Response, ApiError> {
    let events = service(events)?;
    let request: SubscriptionRequest = auth.json()?;
    let (view, created) = blocking(move || events.put_subscription(&name, request).map_err(admin_error)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)).into_response())
}

async fn delete(
    events: EventsHandle,
    Path(name): Path<String>,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    let events = service(events)?;
    let deleted = blocking({
        let name = name.clone();
        move || events.delete_subscription(&name).map_err(admin_error)
    })
    .await?;
    if deleted { Ok(StatusCode::NO_CONTENT.into_response()) } else { Err(not_found(&name)) }
}

#[derive(serde::Deserialize)]
struct ValidateQuery {
    code: String,
}

async fn validate(
    events: EventsHandle,
    Path(name): Path<String>,
    Query(query): Query<ValidateQuery>,
) -> Result<Response, ApiError> {
    let events = service(events)?;
    let validated = blocking({
        let name = name.clone();
        move || events.validate_manually(&name, &query.code).map_err(store_error)
    })
    .await?;
    if validated {
        Ok(Json(json!({ "subscription": name, "validationState": "Validated" })).into_response())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no subscription is waiting for this validation code"))
    }
}

#[derive(serde::Deserialize)]
struct DeadLetterQuery {
    top: Option<usize>,
}

async fn dead_letters(
    events: EventsHandle,
    Query(query): Query<DeadLetterQuery>,
    _auth: HmacAuthenticated,
) -> Result<Response, ApiError> {
    let events = service(events)?;
    let top = query.top.unwrap_or(100).clamp(1, 1000);
    let value = blocking(move || events.dead_letters(top).map_err(store_error)).await?;
    Ok(Json(json!({ "value": value })).into_response())
}

async fn jwks(events: EventsHandle) -> Result<Response, ApiError> {
    Ok(Json(service(events)?.jwks()).into_response())
}

async fn openid_configuration(events: EventsHandle) -> Result<Response, ApiError> {
    Ok(Json(service(events)?.openid_configuration()).into_response())
}
