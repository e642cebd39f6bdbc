//! A call connection seated in a group call or a room (`connect`): it joins the conversation
//! as a participant, follows its roster (`ParticipantsUpdated`, the leg's participant-id
//! aliases, answered invitations) and its end (`CallDisconnected`); and how the recording API
//! finds that connection by the conversation's locator.

use super::*;

impl Gateway {
    /// `connect` to a group call or a room: the connection joins the conversation as a
    /// participant with the application's identity; it connects when the conversation
    /// answers the join (`CallConnected`), or fails (`ConnectFailed`, `CallDisconnected`).
    pub async fn ca_connect_conversation(
        &self,
        ccid: &str,
        key: String,
        setup: ConversationSetup,
        room_role: Option<palaver_core::RoomRole>,
        mut new: NewConnection,
    ) -> Result<Value, CallAutomationError> {
        let identifier = CommunicationIdentifier::parse(&new.source)
            .map_err(|e| CallAutomationError::invalid_source(format!("source: {e}")))?;
        let target = join_target(&key)
            .ok_or_else(|| CallAutomationError::invalid_argument(format!("`{key}` is not a group call or a room")))?;
        let (tx, rx) = mpsc::channel(256);
        let participant_id = uuid::Uuid::new_v4().to_string();
        let request = JoinRequest {
            participant_id: participant_id.clone(),
            resume_token: uuid::Uuid::new_v4().simple().to_string(),
            request_id: None,
            identity: JoinIdentity {
                identifier,
                directory_name: None,
                tenant_id: None,
                native_client: false,
                // A server-side participant has no access token to refresh.
                token_expires_at_ms: i64::MAX / 2,
            },
            proposed_display_name: Some(leg_display_name(new.source_display_name.as_deref())),
            room_role,
        };
        let handle = self.join(key, setup, request, leg_endpoint(ccid), tx).await;
        new.call_id = handle.conversation_id.clone();
        let ca = self.call_automation();
        let props = ca.with_machine(|m| {
            m.open(ccid, new)?;
            m.set_conversation_participant(ccid, &participant_id);
            m.properties(ccid)
        })?;
        let seat = Seat { handle, participant_id, target, aliases: Vec::new() };
        ca.seats().insert(ccid.to_string(), seat);
        tokio::spawn(follow_conversation(self.clone(), ccid.to_string(), rx));
        Ok(props)
    }
}

impl Gateway {
    /// The call connection seated in the live conversation `key` (`groupCall:{uuid}`,
    /// `room:{id}`): how the recording API finds a group call or room by its locator.
    pub fn ca_connection_in(&self, key: &str) -> Option<CallConnectionView> {
        let conversation_id = self.by_target.get(key).map(|h| h.conversation_id.clone())?;
        self.call_automation().with_machine(|m| m.connection_of_call(&conversation_id))
    }
}

/// Read what the conversation sends the connection's participant: its roster becomes
/// `ParticipantsUpdated`, the end of its session `CallDisconnected`.
async fn follow_conversation(gateway: Gateway, ccid: String, mut rx: mpsc::Receiver<Outbound>) {
    // participant id -> (raw id, connected, muted)
    let mut roster: Vec<(String, String, bool, bool)> = Vec::new();
    let mut reason = CallEndReason::HungUp;
    while let Some(outbound) = rx.recv().await {
        let frame = match outbound {
            Outbound::Frame(text) => text,
            Outbound::Detached { reason: Some(r), .. } => {
                reason = end_reason(r);
                break;
            }
            Outbound::Detached { reason: None, .. } => {
                reason = CallEndReason::Cancelled;
                break;
            }
            _ => break,
        };
        let Ok(message) = serde_json::from_str::<ServerMessage>(&frame) else { continue };
        let changed = match message {
            ServerMessage::Joined { snapshot, .. } | ServerMessage::Snapshot { snapshot } => {
                roster = snapshot.participants.iter().map(roster_entry).collect();
                true
            }
            ServerMessage::RosterDelta { delta, .. } => apply_delta(&mut roster, delta),
            ServerMessage::SessionEnded { reason: r, .. } => {
                reason = end_reason(r);
                break;
            }
            ServerMessage::Error { .. } => {
                reason = CallEndReason::Declined;
                break;
            }
            _ => false,
        };
        if changed {
            let ca = gateway.call_automation();
            if let Some(seat) = ca.seats().get_mut(&ccid) {
                seat.aliases = roster.iter().map(|(pid, raw, _, _)| (pid.clone(), raw.clone())).collect();
            }
            ca.push_aliases(&ccid);
            let view: Vec<(String, bool)> =
                roster.iter().filter(|p| p.2).map(|(_, raw, _, muted)| (raw.clone(), *muted)).collect();
            let outputs = gateway.call_automation().with_machine(|m| m.conversation_roster(&ccid, &view));
            gateway.call_automation_outputs(outputs);
            let connected: Vec<&str> = view.iter().map(|(raw, _)| raw.as_str()).collect();
            gateway.ca_invitations_answered(&ccid, &connected);
        }
    }
    gateway.call_automation().seats().remove(&ccid);
    gateway.ca_invitations_dropped(&ccid);
    let outputs = gateway.call_automation().with_machine(|m| m.conversation_ended(&ccid, reason));
    gateway.call_automation_outputs(outputs);
}

fn roster_entry(p: &ParticipantInfo) -> (String, String, bool, bool) {
    let raw = p.identifier.raw_id.clone().unwrap_or_default();
    (p.participant_id.clone(), raw, p.state != ParticipantState::Lobby, p.muted)
}

/// Apply a roster delta; true when who is connected (or muted) may have changed.
fn apply_delta(roster: &mut Vec<(String, String, bool, bool)>, delta: RosterChange) -> bool {
    match delta {
        RosterChange::Joined { participant } => {
            roster.retain(|p| p.0 != participant.participant_id);
            roster.push(roster_entry(&participant));
            true
        }
        RosterChange::Left { participant_id, .. } => {
            roster.retain(|p| p.0 != participant_id);
            true
        }
        RosterChange::StateChanged { participant_id, state } => {
            roster.iter_mut().filter(|p| p.0 == participant_id).for_each(|p| p.2 = state != ParticipantState::Lobby);
            true
        }
        RosterChange::Muted { participant_id, muted, .. } => {
            roster.iter_mut().filter(|p| p.0 == participant_id).for_each(|p| p.3 = muted);
            true
        }
        _ => false,
    }
}

fn end_reason(reason: EndReason) -> CallEndReason {
    match reason {
        EndReason::Removed => CallEndReason::Removed,
        EndReason::ConversationEnded => CallEndReason::Terminated,
        EndReason::ConnectionLost => CallEndReason::ConnectionLost,
        _ => CallEndReason::HungUp,
    }
}
