//! Participant operations of a call connection: list, get, add, remove, mute, cancel add
//! (reference §3.2).

use super::CallRequest;
use super::wire::{
    self, AddParticipantRequest, CancelAddParticipantRequest, MuteParticipantsRequest, RemoveParticipantRequest,
};
use crate::app::AppState;
use crate::domain::call_automation::{CallAutomationError, events};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::protocol::JoinTarget;
use palaver_core::time::now_ms;
use serde_json::json;

type Answer = Result<Response, CallAutomationError>;

/// Longest ring ACS accepts for an added participant.
const MAX_INVITATION_TIMEOUT_SECS: i64 = 180;

/// `GET .../participants/{rawId}` → 200.
pub fn get(state: &AppState, ccid: &str, raw_id: &str) -> Answer {
    let participant = state.call_automation().with_machine(|m| m.participant(ccid, raw_id))?;
    Ok(Json(participant).into_response())
}

/// `participants:add` → 202.
pub async fn add(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: AddParticipantRequest = request.json()?;
    let target = wire::target(&wire::required(body.participant_to_add, "ParticipantToAdd")?, "ParticipantToAdd")?;
    if let Some(t) = body.invitation_timeout_in_seconds
        && !(0..=MAX_INVITATION_TIMEOUT_SECS).contains(&t)
    {
        return Err(CallAutomationError::invalid_argument(format!(
            "The field InvitationTimeoutInSeconds must be between 0 and {MAX_INVITATION_TIMEOUT_SECS}."
        )));
    }
    let route = wire::route(body.operation_context, body.operation_callback_uri)?;
    // A room rings only the users on its participant list (the join would refuse anyone else).
    check_room_member(state, ccid, &target).await?;
    let operation_context = route.operation_context.clone();
    let custom = body.custom_calling_context.filter(|c| !c.is_null());
    if let Some(number) = super::connections::owned_caller_id(state, body.source_caller_id_number)? {
        super::connections::remember_caller_id(state, ccid, &target, number)?;
    }
    // 0 (or none): the configured ring time.
    let ring_timeout_secs = body.invitation_timeout_in_seconds.filter(|t| *t > 0).map(|t| t as u64);
    let invitation_id = state.gateway.ca_add_participant(ccid, &target, ring_timeout_secs, route, custom).await?;
    let body = json!({
        "participant": events::participant(&target, false, false),
        "operationContext": operation_context,
        "invitationId": invitation_id,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// In a room, `target` must be on the room's participant list (`403/8523`); a phone number
/// (never on a room's list: it joins as an attendee) needs the room's `pstnDialOutEnabled`.
pub(super) async fn check_room_member(state: &AppState, ccid: &str, target: &str) -> Result<(), CallAutomationError> {
    let Some((JoinTarget::Room { room_id }, _)) = state.call_automation().conversation_scope(ccid) else {
        return Ok(());
    };
    if crate::gateway::phone::is_phone(target) {
        let room = state.rooms.store().room_access(&room_id, target).await.map_err(|e| {
            tracing::error!(error = %e, %room_id, "room lookup failed");
            CallAutomationError::internal("The room could not be read.")
        })?;
        return match room {
            Some((room, _)) if room.pstn_dial_out_enabled => Ok(()),
            Some(_) => Err(CallAutomationError::new(
                403,
                8523,
                format!("Room `{room_id}` does not allow dialling phone numbers out (pstnDialOutEnabled is false)."),
            )),
            None => Err(CallAutomationError::call_not_found(ccid)),
        };
    }
    if let Err(code) = state.rooms.participant_role(&room_id, target, now_ms()).await {
        return Err(CallAutomationError::new(
            403,
            8523,
            format!("`{target}` cannot join room `{room_id}` ({code}): only its participants can be added or moved."),
        ));
    }
    Ok(())
}

/// `participants:remove` → 202.
pub async fn remove(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: RemoveParticipantRequest = request.json()?;
    let target =
        wire::raw_id(&wire::required(body.participant_to_remove, "ParticipantToRemove")?, "ParticipantToRemove")?;
    let route = wire::route(body.operation_context, body.operation_callback_uri)?;
    let operation_context = route.operation_context.clone();
    state.gateway.ca_remove_participant(ccid, &target, route).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"operationContext": operation_context}))).into_response())
}

/// `participants:mute` → 200 (exactly one participant, as the SDK sends).
pub async fn mute(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: MuteParticipantsRequest = request.json()?;
    let targets = wire::required(body.target_participants, "TargetParticipants")?;
    let [target] = targets.as_slice() else {
        return Err(CallAutomationError::invalid_argument(
            "The field TargetParticipants must hold exactly one participant.",
        ));
    };
    let target = wire::raw_id(target, "TargetParticipants")?;
    state.gateway.ca_mute(ccid, &target).await?;
    // The roster says muted; the connection's media leg silences the participant in the mix
    // (it answers at once; the worker applies it within a tick).
    if let Some(leg) = state.call_automation().leg(ccid) {
        tokio::spawn(async move {
            if let Err(refusal) = leg.mute(target, true).await {
                tracing::warn!(%refusal, "mute not applied to the mix");
            }
        });
    }
    Ok(Json(json!({"operationContext": body.operation_context})).into_response())
}

/// `participants:cancelAddParticipant` → 202.
pub async fn cancel_add(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: CancelAddParticipantRequest = request.json()?;
    let invitation_id = wire::required_str(body.invitation_id, "InvitationId")?;
    let route = wire::route(body.operation_context, body.operation_callback_uri)?;
    let operation_context = route.operation_context.clone();
    state.gateway.ca_cancel_add(ccid, &invitation_id, route).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"invitationId": invitation_id, "operationContext": operation_context})))
        .into_response())
}

/// `participants:moveHere` → 202: participants connected in `fromCall` (the application's
/// call connection there, or its server call id) move into this call, group call or room
/// without ringing; each outcome is a callback.
pub async fn move_here(state: &AppState, ccid: &str, request: &CallRequest) -> Answer {
    let body: wire::MoveParticipantsRequest = request.json()?;
    let targets = wire::required(body.target_participants, "TargetParticipants")?;
    if targets.is_empty() {
        return Err(CallAutomationError::invalid_argument("The field TargetParticipants must not be empty."));
    }
    let targets = targets.iter().map(|t| wire::raw_id(t, "TargetParticipants")).collect::<Result<Vec<_>, _>>()?;
    let from_call = wire::required_str(body.from_call, "FromCall")?;
    let route = wire::route(body.operation_context, body.operation_callback_uri)?;
    // Into a room: only users on its participant list (the join would refuse anyone else).
    for target in &targets {
        check_room_member(state, ccid, target).await?;
    }
    let operation_context = route.operation_context.clone();
    state.gateway.ca_move(ccid, &targets, &from_call, route).await?;
    let participants: Vec<_> = targets.iter().map(|t| events::participant(t, false, false)).collect();
    let body = json!({"participants": participants, "operationContext": operation_context, "fromCall": from_call});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
