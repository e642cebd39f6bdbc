//! Calls from palaver to a phone number (`4:+E.164` rung by the call machinery): dial-out
//! through a trunk is not carried yet, so the ring is declined at once (the caller sees
//! `call.ended` with `declined` instead of ringing until the timeout), with a log line.

use std::sync::Arc;

use palaver_signaling::domain::calls::CallEvent;

use crate::gateway::Shared;

/// The call machinery rings `phone` in `call_id`.
pub(crate) async fn dial(shared: Arc<Shared>, call_id: String, phone: String, _event: CallEvent) {
    tracing::warn!(call = %call_id, %phone, trunks = shared.trunks.all().len(), "dial-out to phone numbers is not carried yet: declined");
    let _ = shared.gateway.phone_decline(&call_id, &phone).await;
}
