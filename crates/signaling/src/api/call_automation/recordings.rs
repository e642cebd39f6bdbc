//! Call recording (`/calling/recordings...`): start, pause, resume, stop, get, and the
//! recording files. Owned by the media work (issue #15, ca-media); until it lands every
//! route answers an ACS error.

use super::{CallRequest, ca_error};
use crate::api::api_router;
use crate::app::AppState;
use crate::domain::call_automation::CallAutomationError;
use axum::Router;
use axum::response::Response;
use axum::routing::{any, post};

pub fn routes() -> Router<AppState> {
    api_router().route("/calling/recordings", post(unavailable)).route("/calling/recordings/{seg}", any(unavailable))
}

async fn unavailable(request: CallRequest) -> Response {
    let _ = request;
    ca_error(CallAutomationError::invalid_state("call recording is not available on this server yet"))
}
