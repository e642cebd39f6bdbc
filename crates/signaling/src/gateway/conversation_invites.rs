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
//!
//! A **phone number** (`4:+E.164`) has no socket: its ring goes to the SIP gateway as a
//! [`PhoneNotice`](super::phone::PhoneNotice) (`call.incoming` with the invitation id as the
//! call id), which dials it through the trunk like any call to a number
//! (`crates/sip/src/outbound.rs`): `call.ended` while it rings (cancel, ring time over, the
//! connection left) sends CANCEL; a final failure comes back through
//! [`Gateway::phone_fail`] (`AddParticipantFailed` with the SIP status, as for `createCall`);
//! the answer comes back through [`Gateway::phone_accept`], which hands the answered leg a
//! [`CallEvent::Moved`] into the conversation — the same path a phone moved by
//! `moveParticipants` takes (`crate::moved` in the SIP gateway seats it as a participant and
//! re-seats its media), so it is metered as a PSTN session there. Answered, the invitation
//! waits for the phone in the roster (`AddParticipantSucceeded`); a phone that does not get
//! there within [`super::call_automation::MOVE_ARRIVAL_TIMEOUT`] fails it.

use super::Gateway;
use super::call_automation::call_automation_error;
use super::phone::is_phone;
use crate::domain::call_automation::{CallAutomationError, OperationRoute};
use crate::domain::calls::{CallEndReason, CallError, CallEvent, Party, Target, resolve_target};
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
    /// A phone target answered (SIP 200) and is on its way into the conversation: it no
    /// longer rings, so neither the ring time nor a cancel ends it.
    pub answered: bool,
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
        let invitation = ConversationInvitation {
            ccid: ccid.to_string(),
            target: target.to_string(),
            transferee: None,
            answered: false,
        };
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
        let invitation = ConversationInvitation {
            ccid: ccid.to_string(),
            target: target.to_string(),
            transferee: Some(transferee),
            answered: false,
        };
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
            Target::Direct(raw) if !is_phone(&raw) => Ok(join),
            // A phone number is dialled through the SIP trunk (`allow_phone_targets` is on).
            Target::Direct(_) if self.phone_gateway_listening() => Ok(join),
            Target::Direct(_) => Err(CallAutomationError::invalid_argument(
                "Calling phone numbers needs a SIP trunk on this server: no SIP gateway is running.",
            )),
            Target::Queue(_) => Err(CallAutomationError::invalid_argument(
                "Call queues cannot be rung into a group call or a room on this server \
                 (they hunt through calls between users).",
            )),
        }
    }

    /// Ring the invitation's target (`call.incoming` naming what to join) until it is
    /// answered, declined, canceled or its ring time is over.
    fn ca_ring(&self, invitation_id: String, invitation: ConversationInvitation, ring: Ring) {
        let Ring { join, source, ring_timeout_secs, custom } = ring;
        let ring = Duration::from_secs(ring_timeout_secs.unwrap_or(self.calls_config().ring_timeout_secs));
        // A phone is shown the application's `sourceCallerIdNumber` (checked as owned).
        let caller_id_number = is_phone(&invitation.target)
            .then(|| {
                self.call_automation().with_machine(|m| {
                    let call_id = m.view(&invitation.ccid).ok()?.server_call_id;
                    m.take_caller_id(&call_id, &invitation.target)
                })
            })
            .flatten();
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
            caller_id_number,
        };
        let target = invitation.target.clone();
        if is_phone(&target)
            && let Some(handle) = self.call_automation().conversation_handle_of(&invitation.ccid)
        {
            // The ring's media (the trunk's early media, then its answer) is placed on the
            // conversation's worker: the answered leg moves in without a re-INVITE.
            self.media().colocate(&invitation_id, &handle.conversation_id);
        }
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
        let invitation = {
            let mut invitations = ca.invitations();
            // An answered phone is joining: the invitation is no longer ringing.
            if invitations.get(invitation_id).is_none_or(|i| i.answered) {
                return false;
            }
            invitations.remove(invitation_id)
        };
        let Some(invitation) = invitation else { return false };
        // To a phone still ringing this is a CANCEL (the SIP gateway's dial task).
        self.notify_call_event(&invitation.target, &CallEvent::Ended { call_id: invitation_id.to_string(), reason });
        self.ca_invitation_failed(invitation, reason);
        true
    }

    /// The application hears that `invitation` ended unanswered for `reason` (with the SIP
    /// status a phone's trunk gave, recorded by [`Gateway::ca_phone_invitation_failed`]).
    fn ca_invitation_failed(&self, invitation: ConversationInvitation, reason: CallEndReason) {
        let outputs = self.call_automation().with_machine(|m| {
            let outputs = match invitation.transferee {
                Some(_) => m.conversation_transfer_failed(&invitation.ccid, &invitation.target, reason),
                None => m.conversation_invite_failed(&invitation.ccid, &invitation.target, reason),
            };
            if let Ok(view) = m.view(&invitation.ccid) {
                m.forget_phone_failure(&view.server_call_id, &invitation.target);
            }
            outputs
        });
        self.call_automation_outputs(outputs);
    }

    /// The trunk answered the phone rung by invitation `invitation_id` (the SIP gateway's
    /// [`Gateway::phone_accept`]): the answered leg is handed a [`CallEvent::Moved`] into the
    /// conversation (the SIP gateway seats it there and re-seats its media, as for a moved
    /// phone). `None` when `invitation_id` is no phone invitation of `phone`.
    pub(crate) fn ca_phone_invitation_answered(
        &self,
        invitation_id: &str,
        phone: &str,
    ) -> Option<Result<(), CallError>> {
        let ca = self.call_automation();
        let ccid = {
            let mut invitations = ca.invitations();
            let invitation = invitations.get_mut(invitation_id).filter(|i| i.target == phone)?;
            if invitation.answered {
                return Some(Err(CallError::new(palaver_core::ErrorCode::InvalidState, "already answered")));
            }
            invitation.answered = true;
            invitation.ccid.clone()
        };
        let Some((join, _)) = ca.conversation_scope(&ccid) else {
            ca.invitations().remove(invitation_id);
            return Some(Err(CallError::new(palaver_core::ErrorCode::CallNotFound, "the call connection left")));
        };
        tracing::info!(%ccid, %phone, invitation = %invitation_id, "the phone answered: joining it into the conversation");
        self.notify_phone(phone, &CallEvent::Moved { call_id: invitation_id.to_string(), join });
        // The leg may still not get there (a BYE crossing the answer, the join refused):
        // the application hears `AddParticipantFailed` then.
        let (gateway, invitation_id) = (self.clone(), invitation_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(super::call_automation::MOVE_ARRIVAL_TIMEOUT).await;
            let lost = gateway.call_automation().invitations().remove(&invitation_id);
            if let Some(invitation) = lost {
                tracing::warn!(ccid = %invitation.ccid, phone = %invitation.target, "the answered phone never reached the conversation");
                gateway.ca_invitation_failed(invitation, CallEndReason::ConnectionLost);
            }
        });
        Some(Ok(()))
    }

    /// The trunk refused the phone rung by invitation `invitation_id` with SIP `status`
    /// (`None`: no final response, or no trunk): `AddParticipantFailed` (or, for a transfer,
    /// `CallTransferFailed`) with the SIP status as ACS reports a direct-routing failure.
    /// False when `invitation_id` is no phone invitation of `phone` ringing.
    pub(crate) fn ca_phone_invitation_failed(
        &self,
        invitation_id: &str,
        phone: &str,
        status: Option<u16>,
        phrase: &str,
    ) -> bool {
        let ca = self.call_automation();
        let invitation = {
            let mut invitations = ca.invitations();
            if !invitations.get(invitation_id).is_some_and(|i| i.target == phone && !i.answered) {
                return false;
            }
            invitations.remove(invitation_id)
        };
        let Some(invitation) = invitation else { return false };
        if let Some(status) = status {
            ca.with_machine(|m| {
                if let Ok(view) = m.view(&invitation.ccid) {
                    m.record_phone_failure(&view.server_call_id, phone, status, phrase);
                }
            });
        }
        tracing::info!(ccid = %invitation.ccid, %phone, ?status, "the phone rung into the conversation was not reached");
        self.ca_invitation_failed(invitation, super::phone::phone_failure_reason(status));
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
            // A phone's leg is in the conversation now (its dial task no longer listens).
            if !is_phone(&invitation.target) {
                let ended = CallEvent::Ended { call_id: id, reason: CallEndReason::AnsweredElsewhere };
                self.notify_call_event(&invitation.target, &ended);
            }
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

    /// A user's sockets get `event`; a phone's goes to the SIP gateway.
    fn notify_call_event(&self, to: &str, event: &CallEvent) {
        if is_phone(to) {
            self.notify_phone(to, event);
            return;
        }
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
