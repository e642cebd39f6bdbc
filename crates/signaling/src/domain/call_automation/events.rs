//! What Call Automation tells the application: callback event data in ACS's shape
//! (reference §3.6), the `IncomingCall` system event (§3.8), and the `resultInformation`
//! codes (§3.7) for each way a call or an invitation ends.

use crate::domain::calls::CallEndReason;
use palaver_core::CommunicationIdentifier;
use serde_json::{Value, json};

/// `Microsoft.Communication.<name>`.
pub fn event_type(name: &str) -> String {
    format!("Microsoft.Communication.{name}")
}

/// The identifier model of a raw id, with `kind` and `rawId` (events carry both).
pub fn identifier(raw_id: &str) -> Value {
    match CommunicationIdentifier::parse(raw_id) {
        Ok(id) => serde_json::to_value(id.to_model()).unwrap_or(Value::Null),
        Err(_) => json!({"kind": "unknown", "rawId": raw_id}),
    }
}

/// `resultInformation`.
pub fn result(code: u16, sub_code: u32, message: &str) -> Value {
    json!({"code": code, "subCode": sub_code, "message": message})
}

/// 200/0: the action succeeded.
pub fn success() -> Value {
    result(200, 0, "Action completed successfully.")
}

/// Why a call connection or an invitation ended, as ACS reports it.
pub fn end_result(reason: CallEndReason) -> Value {
    match reason {
        CallEndReason::HungUp | CallEndReason::Transferred => result(200, 7000, "The conversation has ended."),
        CallEndReason::Terminated | CallEndReason::Removed => result(200, 8528, "The call was terminated."),
        CallEndReason::Declined => result(603, 8538, "The callee declined the call."),
        CallEndReason::Busy => result(486, 8539, "The callee is busy."),
        CallEndReason::NoAnswer => result(408, 8587, "The call was not answered in time."),
        CallEndReason::QueueExhausted => result(480, 8541, "No queue member was available."),
        CallEndReason::Cancelled | CallEndReason::AnsweredElsewhere => result(487, 8542, "The call was canceled."),
        CallEndReason::ConnectionLost => result(500, 8528, "The call was terminated: a connection was lost."),
        // A phone number dialled through the SIP trunk; the exact SIP status (560xxx) is
        // recorded per invitation when the trunk gave one (`record_phone_failure`).
        CallEndReason::Unreachable => result(404, 560404, "The phone number could not be reached."),
        CallEndReason::Unavailable => result(503, 560503, "The phone network could not place the call."),
    }
}

/// One participant of `ParticipantsUpdated` / `list_participants`.
pub fn participant(raw_id: &str, muted: bool, on_hold: bool) -> Value {
    json!({"identifier": identifier(raw_id), "isMuted": muted, "isOnHold": on_hold})
}

/// The `data` every callback carries.
pub fn base_data(ccid: &str, server_call_id: &str, correlation_id: &str, operation_context: Option<&str>) -> Value {
    let mut data = json!({"callConnectionId": ccid, "serverCallId": server_call_id, "correlationId": correlation_id});
    if let Some(ctx) = operation_context {
        data["operationContext"] = json!(ctx);
    }
    data
}

/// The Event Grid subject of an IncomingCall: `/caller/{from}/recipient/{to}`.
pub fn incoming_call_subject(caller: &str, callee: &str) -> String {
    format!("/caller/{caller}/recipient/{callee}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_carry_kind_and_raw_id() {
        let id = identifier("8:acs:r_1");
        assert_eq!(id, json!({"kind":"communicationUser","rawId":"8:acs:r_1","communicationUser":{"id":"8:acs:r_1"}}));
        assert_eq!(identifier("4:+14255550123")["phoneNumber"]["value"], "+14255550123");
    }

    #[test]
    fn end_results_use_acs_codes() {
        assert_eq!(end_result(CallEndReason::Declined)["subCode"], 8538);
        assert_eq!(end_result(CallEndReason::Busy)["code"], 486);
        assert_eq!(end_result(CallEndReason::Cancelled)["subCode"], 8542);
        assert_eq!(end_result(CallEndReason::Unreachable)["subCode"], 560404);
        assert_eq!(end_result(CallEndReason::Unavailable)["code"], 503);
        assert_eq!(success(), json!({"code":200,"subCode":0,"message":"Action completed successfully."}));
    }
}
