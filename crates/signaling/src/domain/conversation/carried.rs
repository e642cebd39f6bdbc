//! [`CarriedConversation`]: what a conversation carries to a new home when its home node dies
//! (issue #17, docs/cluster.md "Resume across a takeover"): the recording/transcription state
//! and, per participant identity, the participant id, role, lobby standing and raised hand.
//!
//! The home mirrors [`Conversation::carried`] durably on every change (the cluster crate writes
//! it to PostgreSQL, fenced by the home epoch); a node that takes the conversation over hands it
//! to [`Conversation::restore`] before the first join. Standing is keyed by the participant's
//! **authenticated identity** (raw id), so a participant who comes back through any node, with
//! a token for the same identity, keeps the role it had (a promotion included), skips the lobby
//! it had already passed and keeps its raised hand. The capture state is restored at once, and
//! every participant who joins the restored conversation gets the `capture.changed` notice right
//! after `joined` while recording or transcription is active.

use super::machine::Conversation;
use super::participant::Stage;
use crate::domain::Refusal;
use palaver_core::protocol::CaptureState;
use palaver_core::{ErrorCode, MeetingRole};
use serde::{Deserialize, Serialize};

/// The part of a conversation that survives its home.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedConversation {
    pub capture: CaptureState,
    pub participants: Vec<CarriedParticipant>,
}

/// One participant's standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedParticipant {
    pub raw_id: String,
    pub participant_id: String,
    pub role: MeetingRole,
    /// The name shown (proposed again when the identity joins without one: external users'
    /// and visitors' names are their own proposal).
    #[serde(default)]
    pub display_name: String,
    /// In the conversation (admitted, or never in a lobby), not waiting in the lobby.
    pub admitted: bool,
    pub hand_raised: bool,
}

impl CarriedConversation {
    /// Whether recording or transcription is on (the legal notice is due).
    pub fn capture_active(&self) -> bool {
        self.capture.recording.is_active() || self.capture.transcription.is_active()
    }
}

impl Conversation {
    /// What to mirror now.
    pub fn carried(&self) -> CarriedConversation {
        let mut participants: Vec<CarriedParticipant> = self
            .participants
            .values()
            .map(|p| CarriedParticipant {
                raw_id: p.identity.raw_id(),
                participant_id: p.participant_id.clone(),
                role: p.role,
                display_name: p.display_name.clone(),
                admitted: p.stage == Stage::InConversation,
                hand_raised: p.hand_raised,
            })
            .collect();
        // Participants who have not come back yet keep their standing in the mirror.
        participants.extend(self.carried.values().cloned());
        participants.sort_by(|a, b| a.raw_id.cmp(&b.raw_id).then_with(|| a.participant_id.cmp(&b.participant_id)));
        CarriedConversation { capture: self.capture, participants }
    }

    /// [`Conversation::restore`] at `now_ms`: a carried participant may then resume under its
    /// old participant id (continuing its billing session) for the reconnect grace.
    pub fn restore_at(&mut self, now_ms: i64, carried: CarriedConversation) {
        self.restore(carried);
        self.resume_until_ms = Some(now_ms.saturating_add(self.config.reconnect_grace_ms));
    }

    /// Why a `resume` on this new home cannot continue `req.participant_id` (`None`: it may).
    /// Only the identity the previous home seated under that id, within the grace: the id
    /// names a billing session the takeover kept open for it (docs/cluster.md, "Billing across
    /// a takeover"); anyone else, or later, joins afresh.
    pub(super) fn resume_refusal(&self, now_ms: i64, req: &super::JoinRequest) -> Option<Refusal> {
        let carried = self.carried.get(&req.identity.raw_id());
        if carried.is_none_or(|c| c.participant_id != req.participant_id) {
            return Some(Refusal::new(ErrorCode::NotFound, "no participant to resume here; join again"));
        }
        if self.resume_until_ms.is_some_and(|until| now_ms > until) {
            return Some(Refusal::new(ErrorCode::NotFound, "the reconnect grace has run out; join again"));
        }
        None
    }

    /// Take over what the previous home carried: the capture state now, each participant's
    /// standing when that identity joins again (once).
    pub fn restore(&mut self, carried: CarriedConversation) {
        self.capture = carried.capture;
        self.restored = true;
        for p in carried.participants {
            self.carried.insert(p.raw_id.clone(), p);
        }
    }

    /// The standing carried for `raw_id`, taken (a second join of the identity is a new one).
    pub(super) fn take_carried(&mut self, raw_id: &str) -> Option<CarriedParticipant> {
        self.carried.remove(raw_id)
    }

    /// Whether this conversation was restored from a previous home (the capture notice is
    /// re-sent to every joiner while capture is active).
    pub(super) fn notice_due(&self) -> bool {
        self.restored && (self.capture.recording.is_active() || self.capture.transcription.is_active())
    }

    /// The participant id carried for `raw_id`, if any.
    pub fn carried_participant_id(&self, raw_id: &str) -> Option<&str> {
        self.carried.get(raw_id).map(|p| p.participant_id.as_str())
    }

    /// Whether `participant_id` is carried for another identity than `raw_id` (a resume may
    /// only take back its own participant id).
    pub(super) fn carried_for_another(&self, participant_id: &str, raw_id: &str) -> bool {
        self.carried.values().any(|p| p.participant_id == participant_id && p.raw_id != raw_id)
    }
}

#[cfg(test)]
mod tests;
