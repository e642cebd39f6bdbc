//! The request-body checks of every Call Automation operation, without a call: the same
//! parsing ([`CallRequest::json`]) and the same `wire` and media validators the handlers run,
//! in the handlers' order, stopping where a handler reaches the call machinery (a context
//! claim, a gateway command). For the fuzz target `ca_request` (fuzz/, docs/fuzzing.md),
//! which feeds every operation's body through it; the handlers do not call it.

use super::wire::{
    self, AddParticipantRequest, AnswerCallRequest, CancelAddParticipantRequest, ConnectRequest, CreateCallRequest,
    MoveParticipantsRequest, MuteParticipantsRequest, RedirectCallRequest, RejectCallRequest, RemoveParticipantRequest,
    TransferRequest,
};
use super::{CallRequest, MEDIA_ACTIONS};
use crate::domain::call_automation::CallAutomationError;
use axum::http::{HeaderMap, Method, Uri};
use bytes::Bytes;

/// The operations with a request body: the call-level ones, the call connection's, its
/// participants' (`participants:<action>`) and the media operations.
pub const OPERATIONS: &[&str] = &[
    "create",
    "answer",
    "reject",
    "redirect",
    "connect",
    "transferToParticipant",
    "participants:add",
    "participants:remove",
    "participants:mute",
    "participants:cancelAddParticipant",
    "participants:moveHere",
];

/// Every operation [`check_body`] knows: [`OPERATIONS`] and [`MEDIA_ACTIONS`].
pub fn operations() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().chain(MEDIA_ACTIONS).copied()
}

/// Checks `body` as operation `operation` (one of [`operations`]) would before it reaches the
/// call machinery.
pub fn check_body(operation: &str, body: &[u8]) -> Result<(), CallAutomationError> {
    let request = CallRequest {
        method: Method::POST,
        uri: Uri::from_static("/calling/callConnections"),
        headers: HeaderMap::new(),
        body: Bytes::copy_from_slice(body),
    };
    match operation {
        "create" => {
            let body: CreateCallRequest = request.json()?;
            let targets = wire::required(body.targets, "Targets")?;
            if targets.is_empty() {
                return Err(CallAutomationError::invalid_argument("The field Targets must not be empty."));
            }
            for t in &targets {
                wire::target(t, "Targets")?;
            }
            wire::callback_uri(body.callback_uri, "CallbackUri")?;
        }
        "answer" => {
            let body: AnswerCallRequest = request.json()?;
            wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
            wire::callback_uri(body.callback_uri, "CallbackUri")?;
        }
        "reject" => {
            let body: RejectCallRequest = request.json()?;
            wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
            if let Some(reason) = &body.call_reject_reason
                && !matches!(reason.as_str(), "none" | "busy" | "forbidden")
            {
                return Err(CallAutomationError::invalid_argument(format!(
                    "The field CallRejectReason `{reason}` is invalid."
                )));
            }
        }
        "redirect" => {
            let body: RedirectCallRequest = request.json()?;
            wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
            wire::target(&wire::required(body.target, "Target")?, "Target")?;
        }
        "connect" => {
            let body: ConnectRequest = request.json()?;
            wire::required(body.call_locator, "CallLocator")?;
            wire::callback_uri(body.callback_uri, "CallbackUri")?;
        }
        "transferToParticipant" => {
            let body: TransferRequest = request.json()?;
            wire::target(&wire::required(body.target_participant, "TargetParticipant")?, "TargetParticipant")?;
            body.transferee.as_ref().map(|t| wire::raw_id(t, "Transferee")).transpose()?;
            wire::route(body.operation_context, body.operation_callback_uri)?;
        }
        "participants:add" => {
            let body: AddParticipantRequest = request.json()?;
            wire::target(&wire::required(body.participant_to_add, "ParticipantToAdd")?, "ParticipantToAdd")?;
            if let Some(t) = body.invitation_timeout_in_seconds
                && !(0..=180).contains(&t)
            {
                return Err(CallAutomationError::invalid_argument(
                    "The field InvitationTimeoutInSeconds must be between 0 and 180.",
                ));
            }
            wire::route(body.operation_context, body.operation_callback_uri)?;
        }
        "participants:remove" => {
            let body: RemoveParticipantRequest = request.json()?;
            wire::raw_id(&wire::required(body.participant_to_remove, "ParticipantToRemove")?, "ParticipantToRemove")?;
            wire::route(body.operation_context, body.operation_callback_uri)?;
        }
        "participants:mute" => {
            let body: MuteParticipantsRequest = request.json()?;
            let targets = wire::required(body.target_participants, "TargetParticipants")?;
            let [target] = targets.as_slice() else {
                return Err(CallAutomationError::invalid_argument(
                    "The field TargetParticipants must hold exactly one participant.",
                ));
            };
            wire::raw_id(target, "TargetParticipants")?;
        }
        "participants:cancelAddParticipant" => {
            let body: CancelAddParticipantRequest = request.json()?;
            wire::required_str(body.invitation_id, "InvitationId")?;
            wire::route(body.operation_context, body.operation_callback_uri)?;
        }
        "participants:moveHere" => {
            let body: MoveParticipantsRequest = request.json()?;
            let targets = wire::required(body.target_participants, "TargetParticipants")?;
            if targets.is_empty() {
                return Err(CallAutomationError::invalid_argument("The field TargetParticipants must not be empty."));
            }
            for t in &targets {
                wire::raw_id(t, "TargetParticipants")?;
            }
            wire::required_str(body.from_call, "FromCall")?;
            wire::route(body.operation_context, body.operation_callback_uri)?;
        }
        action if MEDIA_ACTIONS.contains(&action) => super::media::validate::check_body(action, &request)?,
        other => return Err(CallAutomationError::new(404, 8522, format!("No Call Automation operation `{other}`."))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `ca_request` fuzz target's seed test (a mutation of the SDK's `unhold`
    /// body): serde_json does not check UTF-8 inside a member it skips, so a body with invalid
    /// UTF-8 there was accepted although it is not JSON (RFC 8259 §8.1).
    #[test]
    fn a_body_that_is_not_utf8_is_refused_by_every_operation() {
        let body =
            b"{\"targetParticipant\":{\"rawId\":\"8:acs:r_u\",\"communicationUser\":{\"id\":\"\xc0\"}},\"x\":\"\xc0\"}";
        for operation in operations() {
            let e = check_body(operation, body).expect_err(operation);
            assert_eq!((e.status, e.subcode), (400, 8523), "{operation}: {e:?}");
        }
    }

    /// What the SDK sends passes (fuzz/corpus/ca_request holds its captured bodies).
    #[test]
    fn the_sdk_bodies_pass() {
        let target = r#"{"rawId":"8:acs:r_u","communicationUser":{"id":"8:acs:r_u"}}"#;
        let cases = [
            ("create", format!(r#"{{"targets":[{target}],"callbackUri":"https://app.example/cb"}}"#)),
            ("participants:add", format!(r#"{{"participantToAdd":{target},"invitationTimeoutInSeconds":30}}"#)),
            ("participants:mute", format!(r#"{{"targetParticipants":[{target}]}}"#)),
            ("sendDtmfTones", format!(r#"{{"tones":["one","pound"],"targetParticipant":{target}}}"#)),
            ("play", r#"{"playSources":[{"kind":"file","file":{"uri":"https://app.example/a.wav"}}]}"#.to_owned()),
            ("cancelAllMediaOperations", String::new()),
        ];
        for (operation, body) in cases {
            assert_eq!(check_body(operation, body.as_bytes()), Ok(()), "{operation}");
        }
    }
}
