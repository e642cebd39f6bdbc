//! The call connections seated in a conversation (group call, room) by `connect`: their
//! roster comes from the conversation (the first one connects them), a removal or an
//! invitation is done when the roster says so, and the gateway reports how a ringing
//! invitation or transfer into the conversation ended.

use super::*;

impl CallAutomationMachine {
    /// The connection sits in a conversation (group call, room) as `participant_id`.
    pub fn set_conversation_participant(&mut self, ccid: &str, participant_id: &str) {
        if let Some(c) = self.connections.get_mut(ccid) {
            c.conversation_participant = Some(participant_id.to_string());
        }
    }

    /// A conversation connection's roster (raw id, muted) of connected participants: the
    /// first one connects it (`CallConnected`); each change is a `ParticipantsUpdated`.
    pub fn conversation_roster(&mut self, ccid: &str, roster: &[(String, bool)]) -> Vec<CaOutput> {
        let mut out = Vec::new();
        let Some(c) = self.connections.get_mut(ccid) else { return out };
        let same = c.roster.len() == roster.len()
            && c.roster.iter().zip(roster).all(|(a, (raw, muted))| a.raw_id == *raw && a.muted == *muted);
        if same && c.state != CallConnectionState::Connecting {
            return out;
        }
        let held = |raw: &str| c.roster.iter().any(|p| p.raw_id == raw && p.on_hold);
        let roster = roster
            .iter()
            .map(|(raw, muted)| RosterEntry { raw_id: raw.clone(), muted: *muted, on_hold: held(raw) })
            .collect();
        self.connected(ccid, roster, &mut out);
        // A removal is done once the target is no longer in the roster.
        let Some(c) = self.connections.get_mut(ccid) else { return out };
        let (done, pending): (Vec<_>, Vec<_>) =
            std::mem::take(&mut c.removes).into_iter().partition(|(t, _)| !c.roster.iter().any(|p| &p.raw_id == t));
        c.removes = pending;
        for (target, route) in done {
            let mut data = c.data(route.operation_context.as_deref());
            data["participant"] = identifier(&target);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&route), "RemoveParticipantSucceeded", data));
        }
        // An invitation into the conversation is answered once its target is in the roster.
        let (answered, ringing): (Vec<_>, Vec<_>) =
            std::mem::take(&mut c.adds).into_iter().partition(|a| c.roster.iter().any(|p| p.raw_id == a.target));
        c.adds = ringing;
        // A participant moved in from another call has arrived once it is in the roster.
        let (arrived, moving): (Vec<_>, Vec<_>) =
            std::mem::take(&mut c.moves).into_iter().partition(|(t, _, _)| c.roster.iter().any(|p| &p.raw_id == t));
        c.moves = moving;
        for (target, from_call, route) in arrived {
            let mut data = c.data(route.operation_context.as_deref());
            data["participant"] = identifier(&target);
            data["fromCall"] = json!(from_call);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&route), "MoveParticipantSucceeded", data));
        }
        for add in answered {
            let mut data = c.data(add.route.operation_context.as_deref());
            data["participant"] = identifier(&add.target);
            data["invitationId"] = json!(add.invitation_id);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&add.route), "AddParticipantSucceeded", data));
        }
        out
    }

    /// A conversation invitation to `target` ended unanswered: `AddParticipantFailed`
    /// (declined, not answered in time) or, when canceled, `CancelAddParticipantSucceeded`.
    pub fn conversation_invite_failed(&mut self, ccid: &str, target: &str, reason: CallEndReason) -> Vec<CaOutput> {
        let mut out = Vec::new();
        self.invite_failed(ccid, target, reason, &mut out);
        out
    }

    /// A transfer inside a conversation was answered by its target (the transferee is being
    /// removed): `CallTransferAccepted`; the connection stays in the call.
    pub fn conversation_transfer_accepted(&mut self, ccid: &str, target: &str) -> Vec<CaOutput> {
        let mut out = Vec::new();
        self.transfer_accepted(ccid, target, &mut out);
        if let Some(c) = self.connections.get_mut(ccid) {
            c.transfer = None;
            c.state = CallConnectionState::Connected;
        }
        out
    }

    /// A transfer inside a conversation to `target` was not answered: `CallTransferFailed`
    /// (a phone target's SIP failure, when the trunk gave one, as for an add).
    pub fn conversation_transfer_failed(&mut self, ccid: &str, target: &str, reason: CallEndReason) -> Vec<CaOutput> {
        let mut out = Vec::new();
        let Some(call_id) = self.connections.get(ccid).map(|c| c.call_id.clone()) else { return out };
        let result = self.declined(&call_id, target, reason);
        self.transfer_failed(ccid, result, &mut out);
        out
    }

    /// A conversation connection's session is over.
    pub fn conversation_ended(&mut self, ccid: &str, reason: CallEndReason) -> Vec<CaOutput> {
        self.end(ccid, reason)
    }
}
