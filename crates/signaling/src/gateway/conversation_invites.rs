//! Call Automation `add_participant` / `cancel_add_participant` inside a group call or a room
//! joined with `connect`: the invited user's sockets (WebSocket and QUIC alike) get a
//! `call.incoming` frame whose `callId` is the invitation id and whose `join` names the
//! conversation; the client answers by sending `join` with that target (the conversation's
//! own rules admit it: a room's participant list, its roles) or declines with
//! `call.decline`. The invitation is answered when the target shows up in the connection's
//! roster (`AddParticipantSucceeded`); declined, unanswered within the ring time or
//! canceled, the target's sockets get `call.ended` and the application
//! `AddParticipantFailed` or `CancelAddParticipantSucceeded`. A transfer there (with a
//! `transferee`) rings its target the same way and removes the transferee once it joined.

use super::Gateway;
use super::call_automation::call_automation_error;
use crate::domain::call_automation::{CallAutomationError, OperationRoute};
use crate::domain::calls::{CallEndReason, CallEvent, Party, Target, resolve_target};
use crate::domain::conversation::{Authority, ServerCommand};
use palaver_core::CommunicationIdentifier;
use palaver_core::protocol::JoinTarget;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How an invitation rings: what to join, who rings, for how long, with which
/// `customCallingContext`.
struct Ring {
    join: JoinTarget,
    source: String,
    ring_timeout_secs: Option<u64>,
    custom: Option<Value>,
}

/// An invitation ringing `target` into the conversation of call connection `ccid`.
#[derive(Debug, Clone)]
pub(crate) struct ConversationInvitation {
    pub ccid: String,
    pub target: String,
    /// A transfer: the participant the target replaces once it joined.
    pub transferee: Option<String>,
}

impl Gateway {
    /// `participants:add` in a group call or a room: ring `target`'s clients.
    pub(super) fn ca_invite_to_conversation(
        &self,
        ccid: &str,
        target: &str,
        ring_timeout_secs: Option<u64>,
        route: OperationRoute,
        custom: Option<Value>,
    ) -> Result<String, CallAutomationError> {
        let join = self.ca_check_invitee(ccid, target)?;
        let (view, invitation_id) = self.call_automation().with_machine(|m| {
            let view = m.view(ccid)?;
            let invitation_id = m.begin_add(ccid, target, route)?;
            Ok::<_, CallAutomationError>((view, invitation_id))
        })?;
        let invitation =
            ConversationInvitation { ccid: ccid.to_string(), target: target.to_string(), transferee: None };
        let ring = Ring { join, source: view.source_raw_id, ring_timeout_secs, custom };
        self.ca_ring(invitation_id.clone(), invitation, ring);
        Ok(invitation_id)
    }

    /// `:transferToParticipant` in a group call or a room: `transferee` (required there, as
    /// in ACS's group calls) is replaced by `target`: the target rings, and once it joined
    /// the transferee is removed (`CallTransferAccepted`); the connection stays in the call.
    pub(super) fn ca_transfer_in_conversation(
        &self,
        ccid: &str,
        target: &str,
        transferee: Option<String>,
        route: OperationRoute,
        custom: Option<Value>,
    ) -> Result<(), CallAutomationError> {
        let transferee = transferee.ok_or_else(|| {
            CallAutomationError::invalid_argument(
                "The field Transferee is required to transfer in a group call or a room.",
            )
        })?;
        let join = self.ca_check_invitee(ccid, target)?;
        let view = self.call_automation().with_machine(|m| {
            let view = m.view(ccid)?;
            m.begin_transfer(ccid, target, Some(transferee.clone()), route)?;
            Ok::<_, CallAutomationError>(view)
        })?;
        let invitation =
            ConversationInvitation { ccid: ccid.to_string(), target: target.to_string(), transferee: Some(transferee) };
        let ring = Ring { join, source: view.source_raw_id, ring_timeout_secs: None, custom };
        self.ca_ring(uuid::Uuid::new_v4().to_string(), invitation, ring);
        Ok(())
    }

    /// Whether `target` may be rung into `ccid`'s conversation: not in it yet, and allowed
    /// by the seed's who-may-call-whom rules against everyone there. Answers what to join.
    fn ca_check_invitee(&self, ccid: &str, target: &str) -> Result<JoinTarget, CallAutomationError> {
        let (join, roster) =
            self.call_automation().conversation_scope(ccid).ok_or_else(|| CallAutomationError::call_not_found(ccid))?;
        if roster.iter().any(|raw| raw == target) {
            return Err(CallAutomationError::invalid_argument(format!("`{target}` is already in the call.")));
        }
        let counterparts: Vec<CommunicationIdentifier> =
            roster.iter().filter_map(|raw| CommunicationIdentifier::parse(raw).ok()).collect();
        match resolve_target(&self.calls_config(), target, &counterparts).map_err(call_automation_error)? {
            Target::Direct(raw) if !raw.starts_with("4:") => Ok(join),
            _ => Err(CallAutomationError::invalid_argument(
                "Only communication and directory users can be rung into a group call or a room on this server \
                 (call queues and phone numbers ring through calls between users).",
            )),
        }
    }

    /// Ring the invitation's target (`call.incoming` naming what to join) until it is
    /// answered, declined, canceled or its ring time is over.
    fn ca_ring(&self, invitation_id: String, invitation: ConversationInvitation, ring: Ring) {
        let Ring { join, source, ring_timeout_secs, custom } = ring;
        let ring = Duration::from_secs(ring_timeout_secs.unwrap_or(self.calls_config().ring_timeout_secs));
        let caller = Party::new(source, "Call Automation");
        let incoming = CallEvent::Incoming {
            call_id: invitation_id.clone(),
            caller: caller.clone(),
            participants: vec![caller.clone()],
            queue: None,
            transferred_by: invitation.transferee.is_some().then_some(caller),
            ring_timeout_ms: ring.as_millis() as u64,
            join: Some(join),
            custom_context: custom,
            caller_id_number: None,
        };
        let target = invitation.target.clone();
        tracing::info!(ccid = %invitation.ccid, %target, invitation = %invitation_id, "ringing a user into a conversation");
        self.call_automation().invitations().insert(invitation_id.clone(), invitation);
        self.notify_call_event(&target, &incoming);
        let gateway = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ring).await;
            gateway.ca_invitation_over(&invitation_id, CallEndReason::NoAnswer);
        });
    }

    /// `participants:cancelAddParticipant` in a group call or a room.
    pub(super) fn ca_cancel_conversation_invitation(
        &self,
        ccid: &str,
        invitation_id: &str,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let ca = self.call_automation();
        ca.with_machine(|m| m.begin_cancel_add(ccid, invitation_id, route))?;
        if !self.ca_invitation_over(invitation_id, CallEndReason::Cancelled) {
            // Answered meanwhile: the invitation stays answered.
            let why = CallAutomationError::conflict("The invitation was already answered.");
            let outputs = ca.with_machine(|m| m.fail_cancel_add(ccid, invitation_id, &why));
            self.call_automation_outputs(outputs);
        }
        Ok(())
    }

    /// `call.decline` of an invitation into a conversation by the invited `user`; false
    /// when `call_id` is no such invitation (a call between users).
    pub(crate) fn ca_decline_invitation(&self, call_id: &str, user: &str) -> bool {
        let is_theirs = self.call_automation().invitations().get(call_id).is_some_and(|i| i.target == user);
        is_theirs && self.ca_invitation_over(call_id, CallEndReason::Declined)
    }

    /// End a ringing invitation for `reason` (false if it no longer rings): the target's
    /// sockets stop ringing, the application hears the outcome.
    fn ca_invitation_over(&self, invitation_id: &str, reason: CallEndReason) -> bool {
        let ca = self.call_automation();
        let Some(invitation) = ca.invitations().remove(invitation_id) else { return false };
        self.notify_call_event(&invitation.target, &CallEvent::Ended { call_id: invitation_id.to_string(), reason });
        let outputs = ca.with_machine(|m| match invitation.transferee {
            Some(_) => m.conversation_transfer_failed(&invitation.ccid, reason),
            None => m.conversation_invite_failed(&invitation.ccid, &invitation.target, reason),
        });
        self.call_automation_outputs(outputs);
        true
    }

    /// The roster of `ccid` now has `connected`: their invitations are answered (the machine
    /// reports `AddParticipantSucceeded`); the target's other devices stop ringing.
    pub(super) fn ca_invitations_answered(&self, ccid: &str, connected: &[&str]) {
        let answered: Vec<(String, ConversationInvitation)> = {
            let mut invitations = self.call_automation().invitations();
            let ids: Vec<String> = invitations
                .iter()
                .filter(|(_, i)| i.ccid == ccid && connected.contains(&i.target.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter().filter_map(|id| invitations.remove(&id).map(|i| (id, i))).collect()
        };
        for (id, invitation) in answered {
            let ended = CallEvent::Ended { call_id: id, reason: CallEndReason::AnsweredElsewhere };
            self.notify_call_event(&invitation.target, &ended);
            if let Some(transferee) = invitation.transferee {
                let ca = self.call_automation();
                let outputs = ca.with_machine(|m| m.conversation_transfer_accepted(ccid, &invitation.target));
                self.call_automation_outputs(outputs);
                if let Some(handle) = ca.conversation_handle_of(ccid) {
                    let gateway = self.clone();
                    tokio::spawn(async move {
                        let command = ServerCommand::RemoveParticipant { raw_id: transferee.clone() };
                        if let Err(refusal) = gateway.server_command(&handle, Authority::Server, command).await {
                            tracing::warn!(%transferee, ?refusal, "the transferee was not removed");
                        }
                    });
                }
            }
        }
    }

    /// The connection `ccid` left its conversation: its invitations stop ringing.
    pub(super) fn ca_invitations_dropped(&self, ccid: &str) {
        let dropped: Vec<(String, ConversationInvitation)> = {
            let mut invitations = self.call_automation().invitations();
            let ids: Vec<String> =
                invitations.iter().filter(|(_, i)| i.ccid == ccid).map(|(id, _)| id.clone()).collect();
            ids.into_iter().filter_map(|id| invitations.remove(&id).map(|i| (id, i))).collect()
        };
        for (id, invitation) in dropped {
            self.notify_call_event(
                &invitation.target,
                &CallEvent::Ended { call_id: id, reason: CallEndReason::Cancelled },
            );
        }
    }

    fn notify_call_event(&self, to: &str, event: &CallEvent) {
        match serde_json::to_string(event) {
            Ok(text) => self.notify_user(to, Arc::from(text)),
            Err(e) => tracing::warn!(error = %e, "call event not serialized"),
        }
    }
}

/// The `join` target of a conversation key (`groupCall:{uuid}`, `room:{id}`).
pub(super) fn join_target(key: &str) -> Option<JoinTarget> {
    match key.split_once(':')? {
        ("groupCall", id) => Some(JoinTarget::GroupCall { group_id: id.to_string() }),
        ("room", id) => Some(JoinTarget::Room { room_id: id.to_string() }),
        _ => None,
    }
}
