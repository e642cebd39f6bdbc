//! The call machine's operations for server-side participants (Call Automation call
//! connections) and for what they may do to others: take a participant out, withdraw one
//! invitation, end the call for everyone, join an answered call without ringing, and move a
//! participant from another call into theirs.

use super::{CallManager, Member, not_found};
use crate::domain::calls::model::{CallEndReason, CallError, CallEvent, Output, Party, is_server_leg};
use palaver_core::{CallType, ErrorCode};

impl CallManager {
    /// `by` takes `target` out of the call (both connected).
    pub(super) fn remove(
        &mut self,
        call_id: String,
        by: String,
        target: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &by)?;
        if !call.is_member(&target) {
            return Err(CallError::new(ErrorCode::NotFound, format!("`{target}` is not connected to this call")));
        }
        if target == by {
            return Err(CallError::new(ErrorCode::InvalidParameter, "hang up instead of removing yourself"));
        }
        self.leave(&call_id, &target, CallEndReason::Removed, out);
        Ok(())
    }

    /// `by` withdraws its invitation of `target` (other invitations keep ringing).
    pub(super) fn cancel_invite(
        &mut self,
        call_id: String,
        by: String,
        target: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &by)?;
        let Some(idx) = call.invites.iter().position(|i| i.by == by && i.target == target) else {
            return Err(CallError::new(ErrorCode::NotFound, format!("no invitation of `{target}` by you is ringing")));
        };
        let ringing = call.invites[idx].ringing.clone();
        out.push(Output::Notify {
            to: ringing,
            event: CallEvent::Ended { call_id: call_id.clone(), reason: CallEndReason::Cancelled },
        });
        self.fail_invite(&call_id, idx, CallEndReason::Cancelled, out);
        Ok(())
    }

    /// `by` ends the call for everyone: invitations are withdrawn, everyone is told.
    pub(super) fn terminate(&mut self, call_id: String, by: String, out: &mut Vec<Output>) -> Result<(), CallError> {
        self.connected_member(&call_id, &by)?;
        let call = self.calls.get_mut(&call_id).expect("checked");
        for invite in call.invites.drain(..) {
            out.push(Output::Notify {
                to: invite.ringing,
                event: CallEvent::Ended { call_id: call_id.clone(), reason: CallEndReason::Cancelled },
            });
        }
        let others: Vec<String> =
            call.members.iter().map(|m| m.party.raw_id.clone()).filter(|raw| *raw != by).collect();
        for raw in others {
            let call = self.calls.get_mut(&call_id).expect("checked");
            Self::remove_member(&mut self.engaged, call, &raw, CallEndReason::Terminated, out);
        }
        self.apply_lifetime(&call_id, CallEndReason::Terminated, out);
        Ok(())
    }

    /// Move `target` from `from_call` into `to_call` (where `by` is connected).
    pub(super) fn move_participant(
        &mut self,
        from_call: String,
        to_call: String,
        by: String,
        target: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let to = self.connected_member(&to_call, &by)?;
        if !to.answered {
            return Err(CallError::new(ErrorCode::InvalidState, "the call is not answered yet"));
        }
        if to.is_member(&target) {
            return Err(CallError::new(ErrorCode::InvalidState, format!("`{target}` is already in this call")));
        }
        if to.members.len() + to.invites.len() + 1 > self.config.max_participants {
            return Err(CallError::new(
                ErrorCode::CapacityReached,
                format!("a call holds at most {} participants", self.config.max_participants),
            ));
        }
        if from_call == to_call {
            return Err(CallError::new(ErrorCode::InvalidParameter, "the participant is already in this call"));
        }
        let from = self.calls.get(&from_call).ok_or_else(|| not_found(&from_call))?;
        let Some(member) = from.member(&target).cloned() else {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("`{target}` is not connected to call `{from_call}`"),
            ));
        };
        if !from.answered {
            return Err(CallError::new(ErrorCode::InvalidState, format!("call `{from_call}` is not answered yet")));
        }
        self.leave(&from_call, &target, CallEndReason::Transferred, out);
        let call = self.calls.get_mut(&to_call).expect("checked");
        call.notify_members(
            out,
            None,
            CallEvent::ParticipantJoined { call_id: to_call.clone(), participant: member.party.clone() },
        );
        call.members.push(Member { party: member.party.clone(), endpoint: member.endpoint.clone(), billed: true });
        if !is_server_leg(&member.endpoint) {
            self.engaged.insert(target.clone(), to_call.clone());
        }
        if call.members.len() > 2 && call.call_type == CallType::P2P {
            call.call_type = CallType::Group;
            out.push(Output::CallTypeChanged { call_id: to_call.clone(), call_type: CallType::Group });
        }
        out.push(Output::ParticipantConnected {
            call_id: to_call.clone(),
            participant: member.party,
            endpoint: member.endpoint,
            call_type: call.call_type,
        });
        let connected =
            CallEvent::Connected { call_id: to_call, participants: call.parties(), call_type: call.call_type };
        out.push(Output::Notify { to: target, event: connected });
        Ok(())
    }

    /// `target` leaves answered `call_id` for the conversation `join` names; its socket is
    /// told to join there (`Output::MovedToConversation` first, so the socket reads
    /// `call.moved` before `call.ended`). Server-side participants and phones have no socket
    /// to move: refused.
    pub(super) fn move_to_conversation(
        &mut self,
        call_id: String,
        target: String,
        join: palaver_core::protocol::JoinTarget,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.calls.get(&call_id).ok_or_else(|| not_found(&call_id))?;
        if !call.answered {
            return Err(CallError::new(ErrorCode::InvalidState, format!("call `{call_id}` is not answered yet")));
        }
        let Some(member) = call.member(&target) else {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("`{target}` is not connected to call `{call_id}`"),
            ));
        };
        if is_server_leg(&member.endpoint) || member.endpoint.is_empty() {
            return Err(CallError::new(
                ErrorCode::InvalidState,
                format!("`{target}` has no client connection that could join a conversation"),
            ));
        }
        out.push(Output::MovedToConversation {
            call_id: call_id.clone(),
            raw_id: target.clone(),
            endpoint: member.endpoint.clone(),
            join,
        });
        self.leave(&call_id, &target, CallEndReason::Transferred, out);
        Ok(())
    }

    /// A server-side participant joins an answered call directly.
    pub(super) fn join_server_leg(
        &mut self,
        call_id: String,
        party: Party,
        endpoint: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if !is_server_leg(&endpoint) {
            return Err(CallError::new(ErrorCode::Forbidden, "only server-side participants join without ringing"));
        }
        let call = self.calls.get_mut(&call_id).ok_or_else(|| not_found(&call_id))?;
        if !call.answered {
            return Err(CallError::new(ErrorCode::InvalidState, "the call is not answered yet"));
        }
        if call.is_member(&party.raw_id) {
            return Err(CallError::new(ErrorCode::InvalidState, format!("`{}` is already in this call", party.raw_id)));
        }
        if call.members.len() + call.invites.len() + 1 > self.config.max_participants {
            return Err(CallError::new(
                ErrorCode::CapacityReached,
                format!("a call holds at most {} participants", self.config.max_participants),
            ));
        }
        call.notify_members(
            out,
            None,
            CallEvent::ParticipantJoined { call_id: call_id.clone(), participant: party.clone() },
        );
        call.members.push(Member { party: party.clone(), endpoint: endpoint.clone(), billed: true });
        if call.members.len() > 2 && call.call_type == CallType::P2P {
            call.call_type = CallType::Group;
            out.push(Output::CallTypeChanged { call_id: call_id.clone(), call_type: CallType::Group });
        }
        out.push(Output::ParticipantConnected {
            call_id: call_id.clone(),
            participant: party.clone(),
            endpoint,
            call_type: call.call_type,
        });
        let connected = CallEvent::Connected { call_id, participants: call.parties(), call_type: call.call_type };
        out.push(Output::Notify { to: party.raw_id, event: connected });
        Ok(())
    }
}
