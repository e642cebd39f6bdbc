//! Call-connection operations: create, answer, reject, redirect, connect, get, hang up,
//! terminate, transfer (reference §3.2 for the exact success statuses).

use super::CallRequest;
use super::wire::{
    self, AnswerCallRequest, ConnectRequest, CreateCallRequest, RedirectCallRequest, RejectCallRequest, TransferRequest,
};
use crate::app::AppState;
use crate::domain::call_automation::{CallAutomationError, NewConnection, Origin};
use crate::domain::conversation::ConversationSetup;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, ErrorCode, RoomRole};
use serde_json::{Value, json};

type Answer = Result<Response, CallAutomationError>;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The identity the application acts as: `source.id` (an ACS user of this resource), or
/// the resource's own application identity when none is given.
fn source(state: &AppState, given: Option<wire::UserModel>) -> Result<String, CallAutomationError> {
    let Some(id) = given.and_then(|s| s.id).filter(|id| !id.is_empty()) else {
        return Ok(format!("8:acs:{}_callautomation", state.resource.resource_id));
    };
    match CommunicationIdentifier::parse(&id) {
        Ok(parsed @ CommunicationIdentifier::CommunicationUser { .. })
            if parsed.resource_id() == Some(state.resource.resource_id.as_str()) =>
        {
            Ok(id)
        }
        _ => Err(CallAutomationError::invalid_source(format!(
            "The source identity `{id}` is not a communication user of this resource."
        ))),
    }
}

/// `sourceCallerIdNumber` of a create, add or transfer: E.164 and one of the server's own
/// numbers (`[[phone_numbers]]`), else 400 naming it. It is what a phone target sees as the
/// caller (before the trunk's `caller_id` policy, see docs/sip.md).
pub(super) fn owned_caller_id(state: &AppState, value: Option<Value>) -> Result<Option<String>, CallAutomationError> {
    let number = wire::caller_id_number(value)?;
    if let Some(number) = &number
        && !state.gateway.owns_phone_number(number)
    {
        return Err(CallAutomationError::invalid_argument(format!(
            "The SourceCallerIdNumber `{number}` is not a phone number of this resource."
        )));
    }
    Ok(number)
}

/// Keeps `number` as the caller id `target` (a phone) is rung with from connection `ccid`.
pub(super) fn remember_caller_id(
    state: &AppState,
    ccid: &str,
    target: &str,
    number: String,
) -> Result<(), CallAutomationError> {
    state.call_automation().with_machine(|m| {
        let view = m.view(ccid)?;
        m.set_caller_id(&view.server_call_id, target, number);
        Ok(())
    })
}

/// `POST /calling/callConnections` → 201.
pub async fn create(state: &AppState, request: &CallRequest) -> Answer {
    let body: CreateCallRequest = request.json()?;
    let targets = wire::required(body.targets, "Targets")?;
    if targets.is_empty() {
        return Err(CallAutomationError::invalid_argument("The field Targets must not be empty."));
    }
    let targets = targets.iter().map(|t| wire::target(t, "Targets")).collect::<Result<Vec<_>, _>>()?;
    let source_caller_id_number = owned_caller_id(state, body.source_caller_id_number)?;
    let new = NewConnection {
        call_id: new_id(),
        source: source(state, body.source)?,
        source_display_name: body.source_display_name,
        source_caller_id_number,
        callback_uri: wire::callback_uri(body.callback_uri, "CallbackUri")?,
        operation_context: body.operation_context,
        targets,
        origin: Origin::Create,
    };
    let props = state.gateway.ca_create_call(&new_id(), new).await?;
    super::media::remember_streaming(state, &props, &request.body);
    Ok((StatusCode::CREATED, Json(props)).into_response())
}

/// `POST /calling/callConnections:answer` → 200.
pub async fn answer(state: &AppState, request: &CallRequest) -> Answer {
    let body: AnswerCallRequest = request.json()?;
    let context = wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
    let callback_uri = wire::callback_uri(body.callback_uri, "CallbackUri")?;
    let claim = state.gateway.ca_consume_context(&context).await?;
    // `answeredBy` (the SDK's `source`) is not who the call rang: the connection takes the
    // callee's place in the call, as that identity.
    let _ = body.answered_by;
    let new = NewConnection {
        call_id: claim.call_id.clone(),
        source: claim.callee.clone(),
        source_display_name: None,
        source_caller_id_number: None,
        callback_uri,
        operation_context: body.operation_context,
        targets: vec![claim.caller.clone()],
        origin: Origin::Answer,
    };
    let props = state.gateway.ca_answer(&new_id(), &claim, new).await?;
    super::media::remember_streaming(state, &props, &request.body);
    Ok(Json(props).into_response())
}

/// `POST /calling/callConnections:reject` → 204.
pub async fn reject(state: &AppState, request: &CallRequest) -> Answer {
    let body: RejectCallRequest = request.json()?;
    let context = wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
    if let Some(reason) = &body.call_reject_reason
        && !matches!(reason.as_str(), "none" | "busy" | "forbidden")
    {
        return Err(CallAutomationError::invalid_argument(format!(
            "The field CallRejectReason `{reason}` is invalid."
        )));
    }
    let claim = state.gateway.ca_consume_context(&context).await?;
    state.gateway.ca_reject(&claim, body.call_reject_reason.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections:redirect` → 204.
pub async fn redirect(state: &AppState, request: &CallRequest) -> Answer {
    let body: RedirectCallRequest = request.json()?;
    let context = wire::required_str(body.incoming_call_context, "IncomingCallContext")?;
    let target = wire::target(&wire::required(body.target, "Target")?, "Target")?;
    let claim = state.gateway.ca_consume_context(&context).await?;
    state.gateway.ca_redirect(&claim, &target).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections:connect` → 200: joins a server call (a call between
/// users) without ringing, or a group call or a room as a participant with the application's
/// identity.
pub async fn connect(state: &AppState, request: &CallRequest) -> Answer {
    let body: ConnectRequest = request.json()?;
    let locator = wire::required(body.call_locator, "CallLocator")?;
    let callback_uri = wire::callback_uri(body.callback_uri, "CallbackUri")?;
    let mut new = NewConnection {
        call_id: String::new(),
        source: source(state, None)?,
        source_display_name: None,
        source_caller_id_number: None,
        callback_uri,
        operation_context: body.operation_context,
        targets: vec![],
        origin: Origin::Connect,
    };
    let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let kind = locator.kind.as_deref();
    let props =
        match (kind, non_empty(locator.server_call_id), non_empty(locator.group_call_id), non_empty(locator.room_id)) {
            (Some("serverCallLocator") | None, Some(id), None, None) => {
                new.call_id = id;
                state.gateway.ca_connect(&new_id(), new).await?
            }
            (Some("groupCallLocator") | None, None, Some(id), None) => {
                let id = uuid::Uuid::parse_str(id.trim())
                    .map_err(|_| CallAutomationError::invalid_argument("The field GroupCallId must be a UUID."))?;
                let key = format!("groupCall:{id}");
                state.gateway.ca_connect_conversation(&new_id(), key, ConversationSetup::GroupCall, None, new).await?
            }
            (Some("roomCallLocator") | None, None, None, Some(room_id)) => {
                let role = match state.rooms.participant_role(&room_id, &new.source, now_ms()).await {
                    Ok(role) => role,
                    // The application joins any room of its resource, as an attendee unless listed.
                    Err(ErrorCode::NotRoomParticipant) => RoomRole::Attendee,
                    Err(ErrorCode::RoomNotFound) => {
                        return Err(CallAutomationError::new(404, 8522, format!("Room `{room_id}` was not found.")));
                    }
                    Err(code) => {
                        return Err(CallAutomationError::invalid_state(format!(
                            "Room `{room_id}` cannot be joined now ({code})."
                        )));
                    }
                };
                let key = format!("room:{room_id}");
                state.gateway.ca_connect_conversation(&new_id(), key, ConversationSetup::Room, Some(role), new).await?
            }
            _ => return Err(CallAutomationError::invalid_argument("The field CallLocator is invalid.")),
        };
    super::media::remember_streaming(state, &props, &request.body);
    Ok(Json(props).into_response())
}

/// `GET /calling/callConnections/{ccid}` → 200.
pub fn get(state: &AppState, ccid: &str) -> Answer {
    let props = state.call_automation().with_machine(|m| m.properties(ccid))?;
    Ok(Json(props).into_response())
}

/// `DELETE /calling/callConnections/{ccid}` and `:terminate` → 204.
pub async fn hang_up(state: &AppState, ccid: &str, for_everyone: bool) -> Answer {
    state.gateway.ca_hang_up(ccid, for_everyone).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /calling/callConnections/{ccid}:transferToParticipant` → 202.
pub async fn transfer(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: TransferRequest = request.json()?;
    let target = wire::target(&wire::required(body.target_participant, "TargetParticipant")?, "TargetParticipant")?;
    let transferee = body.transferee.as_ref().map(|t| wire::raw_id(t, "Transferee")).transpose()?;
    let route = wire::route(body.operation_context, body.operation_callback_uri)?;
    let operation_context = route.operation_context.clone();
    let custom = body.custom_calling_context.filter(|c| !c.is_null());
    if crate::gateway::phone::is_phone(&target) {
        // In a room: only when the room allows dialling numbers out.
        super::participants::check_room_member(state, ccid, &target).await?;
    }
    if let Some(number) = owned_caller_id(state, body.source_caller_id_number)? {
        remember_caller_id(state, ccid, &target, number)?;
    }
    state.gateway.ca_transfer(ccid, &target, transferee, route, custom).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"operationContext": operation_context}))).into_response())
}
