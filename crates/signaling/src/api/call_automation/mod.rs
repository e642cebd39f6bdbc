//! The Call Automation REST API (`/calling/...`, HMAC-authenticated, reference §3.2, §4).
//!
//! ACS puts the action inside a path segment (`/calling/callConnections/{id}:play`,
//! `/calling/callConnections:answer`, `.../participants:add`), and matchit has no dynamic
//! suffixes, so the router captures the whole segment and [`split_action`] splits it on the
//! last `:`. Media actions go to [`media::dispatch`], `/calling/recordings...` to
//! [`recordings::routes`]; the call-connection operations are answered here.
//! Errors are ACS's: the HTTP status with the numeric sub-code as `error.code`
//! ([`ca_error`]).

mod connections;
#[cfg(test)]
mod flow_tests;
pub mod media;
mod participants;
#[cfg(test)]
mod phone_flow_tests;
pub mod recordings;
mod streaming;
pub mod validate;
mod wire;

use crate::api::{HmacAuthenticated, api_router, require_api_version};
use crate::app::AppState;
use crate::domain::call_automation::CallAutomationError;
use axum::Router;
use axum::extract::{FromRequest, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

/// api-versions the Call Automation API accepts (reference §1.2).
pub const API_VERSIONS: &[&str] =
    &["2023-03-06", "2023-10-15", "2024-04-15", "2024-09-15", "2025-05-15", "2025-06-15", "2026-03-12"];

/// Actions of a call connection that are media operations ([`media::dispatch`]).
pub const MEDIA_ACTIONS: &[&str] = &[
    "play",
    "recognize",
    "cancelAllMediaOperations",
    "startContinuousDtmfRecognition",
    "stopContinuousDtmfRecognition",
    "sendDtmfTones",
    "hold",
    "unhold",
    "startMediaStreaming",
    "stopMediaStreaming",
    "startTranscription",
    "updateTranscription",
    "stopTranscription",
];

pub fn routes() -> Router<AppState> {
    api_router()
        .route("/calling/callConnections", post(create_call))
        .route("/calling/{op}", post(call_operation))
        .route("/calling/callConnections/{seg}", get(get_call).delete(hang_up).post(connection_action))
        .route("/calling/callConnections/{ccid}/participants", get(list_participants))
        .route("/calling/callConnections/{ccid}/{pseg}", post(participants_action))
        .route("/calling/callConnections/{ccid}/participants/{raw_id}", get(get_participant))
        .merge(recordings::routes())
}

/// An HMAC-verified Call Automation request with an accepted `api-version`: what a handler
/// (or [`media::dispatch`]) needs to read it. Must be the last handler argument.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub method: Method,
    /// As the client sent it (path percent-encoded, query kept).
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl CallRequest {
    /// The body as JSON (`400/8523` naming what did not parse).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CallAutomationError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(CallAutomationError::invalid_argument("The request body is empty; a JSON object is required."));
        }
        // serde_json does not check UTF-8 inside members it skips: check the whole body first.
        let text = std::str::from_utf8(&self.body)
            .map_err(|e| CallAutomationError::invalid_argument(format!("The request body is not UTF-8: {e}")))?;
        serde_json::from_str(text)
            .map_err(|e| CallAutomationError::invalid_argument(format!("The request body is invalid: {e}")))
    }
    /// The body as JSON, or `T::default()` when there is none.
    pub fn json_or_default<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, CallAutomationError> {
        if self.body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { self.json() }
    }
}

impl FromRequest<AppState> for CallRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let method = req.method().clone();
        let uri = req.extensions().get::<OriginalUri>().map(|o| o.0.clone()).unwrap_or_else(|| req.uri().clone());
        let headers = req.headers().clone();
        let auth = HmacAuthenticated::from_request(req, state).await.map_err(hmac_refusal)?;
        require_api_version(uri.query(), API_VERSIONS).map_err(IntoResponse::into_response)?;
        Ok(Self { method, uri, headers, body: auth.body })
    }
}

/// A request whose HMAC signature does not verify: ACS's Call Automation answers `401` with
/// sub-code `7509` (reference §3.7); other refusals of the extractor keep their ACS body.
fn hmac_refusal(e: crate::api::ApiError) -> Response {
    if e.code.http_status() == 401 {
        ca_error(CallAutomationError::new(401, 7509, e.message))
    } else {
        e.into_response()
    }
}

/// Render a Call Automation refusal: `{"error":{"code":"<subcode>","message":...}}` with its status.
pub fn ca_error(e: CallAutomationError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(status = e.status, subcode = e.subcode, message = %e.message, "call automation request failed");
    } else {
        tracing::debug!(status = e.status, subcode = e.subcode, message = %e.message, "call automation request refused");
    }
    let body = serde_json::json!({"error": {"code": e.subcode.to_string(), "message": e.message}});
    let mut resp = (status, axum::Json(body)).into_response();
    // Marks the body as an ACS error already (and lets the router count it).
    resp.extensions_mut().insert(e.counted_as());
    resp
}

/// Split `{id}:{action}` on the last `:` (`("cc1", Some("play"))`; `("cc1", None)` without one).
pub fn split_action(segment: &str) -> (&str, Option<&str>) {
    match segment.rsplit_once(':') {
        Some((id, action)) => (id, Some(action)),
        None => (segment, None),
    }
}

fn unknown_action(action: &str) -> Response {
    ca_error(CallAutomationError::new(404, 8522, format!("No Call Automation operation `{action}`.")))
}

fn respond(answer: Result<Response, CallAutomationError>) -> Response {
    answer.unwrap_or_else(ca_error)
}

/// Answer a request that carries `Repeatability-Request-ID` (reference §1.4): a replay with
/// the same id and request gets the first successful answer again; the same id with a
/// different request is refused (`409/8519`).
async fn repeatable(
    state: &AppState,
    request: &CallRequest,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let repeat = match crate::api::repeatability(&request.method, &request.uri, &request.headers, &request.body) {
        Ok(Some(r)) => r,
        Ok(None) => return run.await,
        Err(_) => {
            return ca_error(CallAutomationError::invalid_argument("The Repeatability-Request-ID header is invalid."));
        }
    };
    let ca = state.call_automation();
    if let Some(first) = ca.replay(&repeat.request_id) {
        if first.fingerprint != repeat.fingerprint {
            return ca_error(CallAutomationError::conflict(
                "The Repeatability-Request-ID was already used for a different request.",
            ));
        }
        return replayed(first.status, first.body);
    }
    let resp = run.await;
    if !resp.status().is_success() {
        return resp;
    }
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), crate::api::MAX_BODY_BYTES).await.unwrap_or_default();
    ca.remember(
        repeat.request_id,
        crate::gateway::CallAutomationReplay {
            fingerprint: repeat.fingerprint,
            status,
            body: body.clone(),
            at_ms: palaver_core::time::now_ms(),
        },
    );
    replayed(status, body)
}

fn replayed(status: u16, body: Bytes) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if body.is_empty() {
        return status.into_response();
    }
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /calling/callConnections` (createCall).
async fn create_call(State(state): State<AppState>, request: CallRequest) -> Response {
    repeatable(&state, &request, async { respond(connections::create(&state, &request).await) }).await
}

/// `POST /calling/callConnections:{answer|reject|redirect|connect}`.
async fn call_operation(State(state): State<AppState>, Path(op): Path<String>, request: CallRequest) -> Response {
    let run = async {
        respond(match split_action(&op) {
            ("callConnections", Some("answer")) => connections::answer(&state, &request).await,
            ("callConnections", Some("reject")) => connections::reject(&state, &request).await,
            ("callConnections", Some("redirect")) => connections::redirect(&state, &request).await,
            ("callConnections", Some("connect")) => connections::connect(&state, &request).await,
            _ => return unknown_action(&op),
        })
    };
    repeatable(&state, &request, run).await
}

/// `GET /calling/callConnections/{ccid}`.
async fn get_call(State(state): State<AppState>, Path(seg): Path<String>, request: CallRequest) -> Response {
    let _ = request;
    match split_action(&seg) {
        (ccid, None) => respond(connections::get(&state, ccid)),
        (_, Some(action)) => unknown_action(action),
    }
}

/// `DELETE /calling/callConnections/{ccid}` (hang up this connection).
async fn hang_up(State(state): State<AppState>, Path(seg): Path<String>, request: CallRequest) -> Response {
    let _ = request;
    match split_action(&seg) {
        (ccid, None) => respond(connections::hang_up(&state, ccid, false).await),
        (_, Some(action)) => unknown_action(action),
    }
}

/// `POST /calling/callConnections/{ccid}:{action}`.
async fn connection_action(State(state): State<AppState>, Path(seg): Path<String>, request: CallRequest) -> Response {
    let (ccid, action) = split_action(&seg);
    let Some(action) = action else { return unknown_action(&seg) };
    if MEDIA_ACTIONS.contains(&action) {
        return media::dispatch(state, ccid.to_string(), action.to_string(), request).await;
    }
    if let Err(e) = state.call_automation().connection(ccid) {
        return ca_error(e);
    }
    let run = async {
        respond(match action {
            "terminate" => connections::hang_up(&state, ccid, true).await,
            "transferToParticipant" => connections::transfer(&state, ccid, &request).await,
            _ => return unknown_action(action),
        })
    };
    repeatable(&state, &request, run).await
}

/// Participants per page of `GET .../participants` (ACS pages the list; the SDK follows
/// `nextLink`). `maxPageSize` (1..=100) asks for smaller pages.
const PARTICIPANTS_PAGE: usize = 100;

/// `GET /calling/callConnections/{ccid}/participants[?skip=N&maxPageSize=M]` → 200
/// `{value, nextLink?}`: `nextLink` (relative, this path with the next `skip`, the request's
/// other query kept) while more remain.
async fn list_participants(State(state): State<AppState>, Path(ccid): Path<String>, request: CallRequest) -> Response {
    let answer = (|| {
        let all = state.call_automation().with_machine(|m| m.participants(&ccid))?;
        let parsed = reqwest::Url::parse(&format!("http://host{}", request.uri))
            .map_err(|_| CallAutomationError::invalid_argument("The request's query does not parse."))?;
        let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let number = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.parse::<usize>());
        let skip =
            number("skip").transpose().map_err(|_| CallAutomationError::invalid_argument("skip must be a number."))?;
        let size = match number("maxPageSize") {
            None => PARTICIPANTS_PAGE,
            Some(Ok(n)) if (1..=PARTICIPANTS_PAGE).contains(&n) => n,
            Some(_) => return Err(CallAutomationError::invalid_argument("maxPageSize must be 1 to 100.")),
        };
        let skip = skip.unwrap_or(0);
        let page: Vec<_> = all.iter().skip(skip).take(size).cloned().collect();
        let mut body = serde_json::json!({"value": page});
        if skip + size < all.len() {
            let mut next = parsed.clone();
            next.query_pairs_mut().clear().append_pair("skip", &(skip + size).to_string());
            for (k, v) in query.iter().filter(|(k, _)| k != "skip") {
                next.query_pairs_mut().append_pair(k, v);
            }
            body["nextLink"] = format!("{}?{}", request.uri.path(), next.query().unwrap_or_default()).into();
        }
        Ok(axum::Json(body).into_response())
    })();
    respond(answer)
}

/// `POST /calling/callConnections/{ccid}/participants:{add|remove|mute|cancelAddParticipant|moveHere}`.
async fn participants_action(
    State(state): State<AppState>,
    Path((ccid, pseg)): Path<(String, String)>,
    request: CallRequest,
) -> Response {
    if let Err(e) = state.call_automation().connection(&ccid) {
        return ca_error(e);
    }
    let run = async {
        respond(match split_action(&pseg) {
            ("participants", Some("add")) => participants::add(&state, &ccid, &request).await,
            ("participants", Some("remove")) => participants::remove(&state, &ccid, &request).await,
            ("participants", Some("mute")) => participants::mute(&state, &ccid, &request).await,
            ("participants", Some("cancelAddParticipant")) => participants::cancel_add(&state, &ccid, &request).await,
            ("participants", Some("moveHere")) => participants::move_here(&state, &ccid, &request).await,
            _ => return unknown_action(&pseg),
        })
    };
    repeatable(&state, &request, run).await
}

/// `GET /calling/callConnections/{ccid}/participants/{rawId}` (the raw id percent-decoded).
async fn get_participant(
    State(state): State<AppState>,
    Path((ccid, raw_id)): Path<(String, String)>,
    request: CallRequest,
) -> Response {
    let _ = request;
    respond(participants::get(&state, &ccid, &raw_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{error_code, send, signed, test_state};

    #[test]
    fn segments_split_on_the_last_colon() {
        assert_eq!(split_action("cc1:play"), ("cc1", Some("play")));
        assert_eq!(split_action("callConnections:answer"), ("callConnections", Some("answer")));
        assert_eq!(split_action("a:b:terminate"), ("a:b", Some("terminate")));
        assert_eq!(split_action("cc1"), ("cc1", None));
    }

    #[tokio::test]
    async fn unknown_call_connections_are_8522_under_every_api_version() {
        let state = test_state();
        for v in API_VERSIONS {
            for (method, path) in [
                ("GET", format!("/calling/callConnections/nope?api-version={v}")),
                ("POST", format!("/calling/callConnections/nope:play?api-version={v}")),
                ("GET", format!("/calling/callConnections/nope/participants?api-version={v}")),
                ("POST", format!("/calling/callConnections/nope/participants:add?api-version={v}")),
            ] {
                let (status, body) = send(&state, signed(&state, method, &path, "{}")).await;
                assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "8522"), "{method} {path}: {body}");
            }
        }
        let (status, body) =
            send(&state, signed(&state, "GET", "/calling/callConnections/nope?api-version=2020-01-01", "")).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "UnsupportedApiVersion"));
    }

    #[tokio::test]
    async fn requests_must_be_signed() {
        let state = test_state();
        let req = axum::http::Request::get("/calling/callConnections/x?api-version=2026-03-12")
            .body(axum::body::Body::empty())
            .unwrap();
        let (status, body) = send(&state, req).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "7509"), "{body}");
    }
}
