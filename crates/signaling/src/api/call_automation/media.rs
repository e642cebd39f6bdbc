//! Media operations of a call connection (`play`, `recognize`, `cancelAllMediaOperations`,
//! continuous DTMF, `sendDtmfTones`, `hold`/`unhold`, media streaming, transcription),
//! forwarded here by the router in `mod.rs`. Owned by the media work (issue #15, ca-media);
//! until it lands every action answers an ACS error.

use super::{CallRequest, ca_error};
use crate::app::AppState;
use crate::domain::call_automation::CallAutomationError;
use axum::response::Response;

/// Carry out media action `action` (`play`, `hold`, ...) on call connection `ccid`.
pub async fn dispatch(state: AppState, ccid: String, action: String, request: CallRequest) -> Response {
    let _ = request;
    if let Err(e) = state.call_automation().connection(&ccid).and_then(|c| c.require_established()) {
        return ca_error(e);
    }
    ca_error(CallAutomationError::invalid_state(format!("media action `{action}` is not available on this server yet")))
}
