//! Participant commands (admit, deny, remove, mute, roles, sharing, recording,
//! policy, end, dial-out, media negotiation) and server-API commands, each checked by
//! `authz::authorize` and by the conversation's current state before anything changes.

use super::authz::{Action, ActorView, authorize};
use super::machine::{Authority, Command, Conversation, Output, send_one};
use super::participant::Stage;
use crate::domain::Refusal;
use palaver_core::protocol::{
    CaptureStatus, ConversationKind, MeetingPolicy, PolicyUpdate, RosterChange, ServerMessage,
};
use palaver_core::{EndReason, ErrorCode, MeetingRole};

/// Most tracks one `media.attach` may declare (audio, camera in up to three layers, screen, spare).
pub const MAX_ATTACHED_TRACKS: usize = 8;

/// A `media.subscribe`: bounded, each entry names a mid (at most 32 bytes) and a non-zero height.
fn check_slot_subscriptions(slots: &[palaver_core::protocol::SlotSubscription]) -> Result<(), Refusal> {
    use palaver_core::protocol::MAX_SLOT_SUBSCRIPTIONS;
    if slots.len() > MAX_SLOT_SUBSCRIPTIONS {
        let message = format!("at most {MAX_SLOT_SUBSCRIPTIONS} slots per media.subscribe");
        return Err(Refusal::new(ErrorCode::InvalidParameter, message));
    }
    for s in slots {
        if s.mid.is_empty() || s.mid.len() > 32 {
            return Err(Refusal::new(ErrorCode::InvalidParameter, "each slot needs a mid of 1 to 32 bytes"));
        }
        if s.max_height == Some(0) {
            return Err(Refusal::new(ErrorCode::InvalidParameter, "maxHeight must be at least 1 (use paused)"));
        }
    }
    Ok(())
}

/// The tracks a `media.attach` declares: non-zero, distinct SSRCs, dynamic payload types, bounded,
/// and valid simulcast groups (`group_sent_tracks`: rid layers of one kind, ≤ 3, distinct rids).
fn check_media_tracks(tracks: &[palaver_core::protocol::MediaTrack]) -> Result<(), Refusal> {
    if tracks.len() > MAX_ATTACHED_TRACKS {
        return Err(Refusal::new(
            ErrorCode::InvalidParameter,
            format!("at most {MAX_ATTACHED_TRACKS} tracks per media.attach"),
        ));
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.ssrc == 0 || tracks[..i].iter().any(|o| o.ssrc == t.ssrc) {
            return Err(Refusal::new(
                ErrorCode::InvalidParameter,
                format!("track ssrc {} is zero or repeated", t.ssrc),
            ));
        }
        if !(96..=127).contains(&t.payload_type) {
            return Err(Refusal::new(
                ErrorCode::InvalidParameter,
                format!("payloadType {} is not a dynamic payload type (96..=127)", t.payload_type),
            ));
        }
    }
    palaver_core::protocol::group_sent_tracks(tracks).map_err(|m| Refusal::new(ErrorCode::InvalidParameter, m))?;
    Ok(())
}

/// Server-API (REST) commands on a live conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    SetRecording(bool),
    SetTranscription(bool),
    UpdatePolicy(PolicyUpdate),
    End,
    /// Call Automation `participants:mute` in a group call or room: every session of the
    /// identity `raw_id` is muted (as `MuteOther` does), with the server's authority.
    MuteParticipant {
        raw_id: String,
    },
    /// Call Automation `participants:remove` in a group call or room: every session of the
    /// identity `raw_id` ends as `Removed`.
    RemoveParticipant {
        raw_id: String,
    },
    /// The server is shutting down cleanly: every session ends with `ServerShutdown`.
    /// Only the server itself may send it.
    Shutdown,
    /// A cluster node is draining (a planned stop): every participant is told to reconnect
    /// and `resume` (`NodeDraining`) and is detached **without** its session ending, so its
    /// usage session stays open for the next home to adopt (docs/cluster.md, "Drain").
    /// Only the server itself may send it.
    HandOver,
}

impl Conversation {
    pub(super) fn command(
        &mut self,
        now: i64,
        actor_id: &str,
        request_id: Option<String>,
        command: Command,
        out: &mut Vec<Output>,
    ) {
        let acknowledges = !matches!(
            command,
            Command::Leave | Command::MediaOffer { .. } | Command::MediaAttach { .. } | Command::EndMeeting
        );
        let mut effects = Vec::new();
        match self.run_command(now, actor_id, command, &mut effects) {
            Ok(()) => {
                if acknowledges {
                    out.push(send_one(actor_id, ServerMessage::Ack { request_id }));
                }
                out.extend(effects);
            }
            Err(r) => out.push(send_one(actor_id, ServerMessage::error(r.code, r.message, request_id))),
        }
    }

    fn run_command(
        &mut self,
        now: i64,
        actor_id: &str,
        command: Command,
        out: &mut Vec<Output>,
    ) -> Result<(), Refusal> {
        let actor = self
            .participants
            .get(actor_id)
            .ok_or_else(|| Refusal::new(ErrorCode::InvalidState, "not in this conversation"))?;
        let view = ActorView::of(actor);
        let actor_in_lobby = actor.stage == Stage::Lobby;
        let lobby_refusal = || Refusal::new(ErrorCode::Forbidden, "participants waiting in the lobby cannot do this");
        match command {
            Command::Leave => {
                self.end_session(now, actor_id, EndReason::Left, out);
                Ok(())
            }
            Command::Admit { participant_id } => {
                authorize(&view, Action::Admit, &self.policy)?;
                self.lobby_target(&participant_id)?;
                self.move_into_conversation(&participant_id, out);
                if self.participants[&participant_id].identity.is_directory() {
                    self.release_lobby(out);
                }
                Ok(())
            }
            Command::Deny { participant_id } => {
                authorize(&view, Action::Deny, &self.policy)?;
                self.lobby_target(&participant_id)?;
                self.end_session(now, &participant_id, EndReason::Removed, out);
                Ok(())
            }
            Command::Remove { participant_id } => {
                authorize(&view, Action::Remove, &self.policy)?;
                let target = self.target(&participant_id)?;
                if participant_id == actor_id {
                    return Err(Refusal::new(ErrorCode::InvalidParameter, "use `leave` to leave"));
                }
                if target.role == MeetingRole::Organizer || target.role > view.role {
                    return Err(Refusal::new(ErrorCode::RoleNotAllowed, "cannot remove someone with a higher role"));
                }
                self.end_session(now, &participant_id, EndReason::Removed, out);
                Ok(())
            }
            Command::MuteOther { participant_id } => {
                authorize(&view, Action::MuteOthers, &self.policy)?;
                let target = self.in_conversation_target(&participant_id)?;
                if !target.muted {
                    self.set_flag(&participant_id, |p| p.muted = true);
                    let by = Some(actor_id.to_string());
                    self.delta(RosterChange::Muted { participant_id, muted: true, by }, None, out);
                }
                Ok(())
            }
            Command::SetRole { participant_id, role } => {
                authorize(&view, Action::ChangeRole, &self.policy)?;
                if self.kind != ConversationKind::Meeting {
                    return Err(Refusal::new(ErrorCode::InvalidState, "roles can be changed in meetings only"));
                }
                let target = self.in_conversation_target(&participant_id)?;
                if role == MeetingRole::Organizer {
                    return Err(Refusal::new(ErrorCode::InvalidParameter, "a meeting has exactly one organizer"));
                }
                if target.role == MeetingRole::Organizer {
                    return Err(Refusal::new(ErrorCode::RoleNotAllowed, "the organizer's role cannot change"));
                }
                if role == MeetingRole::CoOrganizer && !target.identity.is_directory() {
                    return Err(Refusal::new(ErrorCode::RoleNotAllowed, "co-organizers must be directory users"));
                }
                if target.role != role {
                    let stop_sharing = target.screen_sharing && !role.is_presenter_or_above();
                    self.set_flag(&participant_id, |p| p.role = role);
                    self.delta(RosterChange::RoleChanged { participant_id: participant_id.clone(), role }, None, out);
                    if stop_sharing {
                        self.set_flag(&participant_id, |p| p.screen_sharing = false);
                        self.delta(RosterChange::ScreenShare { participant_id, active: false }, None, out);
                    }
                }
                Ok(())
            }
            Command::SelfMute { muted } => {
                if actor_in_lobby {
                    return Err(lobby_refusal());
                }
                if !muted && !actor.may_send_media() {
                    return Err(Refusal::new(ErrorCode::RoleNotAllowed, "room consumers cannot send audio"));
                }
                if actor.muted != muted {
                    self.set_flag(actor_id, |p| p.muted = muted);
                    let change = RosterChange::Muted { participant_id: actor_id.to_string(), muted, by: None };
                    self.delta(change, None, out);
                }
                Ok(())
            }
            Command::RaiseHand { raised } => {
                if actor_in_lobby {
                    return Err(lobby_refusal());
                }
                if actor.hand_raised != raised {
                    self.set_flag(actor_id, |p| p.hand_raised = raised);
                    self.delta(RosterChange::HandRaised { participant_id: actor_id.to_string(), raised }, None, out);
                }
                Ok(())
            }
            Command::ScreenShare { active } => {
                if active {
                    authorize(&view, Action::ShareScreen, &self.policy)?;
                    if actor.screen_sharing {
                        return Err(Refusal::new(ErrorCode::InvalidState, "already sharing"));
                    }
                    if let Some(other) = self.participants.values().find(|p| p.screen_sharing) {
                        let msg = format!("{} is already sharing", other.display_name);
                        return Err(Refusal::new(ErrorCode::Conflict, msg));
                    }
                } else if !actor.screen_sharing {
                    return Err(Refusal::new(ErrorCode::InvalidState, "not sharing"));
                }
                self.set_flag(actor_id, |p| p.screen_sharing = active);
                self.delta(RosterChange::ScreenShare { participant_id: actor_id.to_string(), active }, None, out);
                Ok(())
            }
            Command::Recording { active } => {
                let action = if active { Action::StartRecording } else { Action::StopRecording };
                authorize(&view, action, &self.policy)?;
                self.set_capture(Some(active), None, Some(actor_id.to_string()), out)
            }
            Command::Transcription { active } => {
                let action = if active { Action::StartTranscription } else { Action::StopTranscription };
                authorize(&view, action, &self.policy)?;
                self.set_capture(None, Some(active), Some(actor_id.to_string()), out)
            }
            Command::UpdatePolicy(update) => {
                authorize(&view, Action::ChangePolicy, &self.policy)?;
                self.update_policy(update, out)
            }
            Command::EndMeeting => {
                authorize(&view, Action::EndMeeting, &self.policy)?;
                if self.kind != ConversationKind::Meeting {
                    return Err(Refusal::new(ErrorCode::InvalidState, "only meetings can be ended for everyone"));
                }
                self.end_all(now, EndReason::ConversationEnded, out);
                Ok(())
            }
            Command::DialOut { phone_number } => {
                authorize(&view, Action::DialOutToPhone, &self.policy)?;
                let digits = phone_number.strip_prefix('+').unwrap_or("");
                if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Refusal::new(ErrorCode::InvalidIdentifier, "expected a +E.164 phone number"));
                }
                // The shell hands it to the SIP gateway (PstnUnavailable when there is none).
                let raw = format!("4:{phone_number}");
                if !self.dialed_out.contains(&raw) {
                    self.dialed_out.push(raw);
                }
                out.push(Output::DialOut { participant_id: actor_id.to_string(), phone_number });
                Ok(())
            }
            Command::MediaOffer { sdp, request_id } => {
                if actor_in_lobby {
                    return Err(Refusal::new(ErrorCode::Forbidden, "media starts after admission from the lobby"));
                }
                if sdp.trim().is_empty() {
                    return Err(Refusal::new(ErrorCode::InvalidParameter, "empty SDP offer"));
                }
                let may_send_media = actor.may_send_media();
                self.set_flag(actor_id, |p| p.media_active = true);
                out.push(Output::MediaOffer { participant_id: actor_id.to_string(), sdp, may_send_media, request_id });
                Ok(())
            }
            Command::MediaAttach { path, tracks, receive, request_id } => {
                if actor_in_lobby {
                    return Err(Refusal::new(ErrorCode::Forbidden, "media starts after admission from the lobby"));
                }
                check_media_tracks(&tracks)?;
                receive.check().map_err(|m| Refusal::new(ErrorCode::InvalidParameter, m))?;
                let may_send_media = actor.may_send_media();
                self.set_flag(actor_id, |p| p.media_active = true);
                let participant_id = actor_id.to_string();
                out.push(Output::MediaAttach { participant_id, path, tracks, receive, may_send_media, request_id });
                Ok(())
            }
            Command::MediaSubscribe { slots } => {
                if !actor.media_active {
                    return Err(Refusal::new(ErrorCode::InvalidState, "send `media.offer` first"));
                }
                check_slot_subscriptions(&slots)?;
                out.push(Output::MediaSubscribe { participant_id: actor_id.to_string(), slots });
                Ok(())
            }
            Command::MediaIceCandidate(candidate) => {
                if !actor.media_active {
                    return Err(Refusal::new(ErrorCode::InvalidState, "send `media.offer` first"));
                }
                out.push(Output::MediaIceCandidate { participant_id: actor_id.to_string(), candidate });
                Ok(())
            }
        }
    }

    /// A REST command: by the server API, or by a user whose role is checked like on the socket.
    pub fn server_command(
        &mut self,
        now: i64,
        authority: &Authority,
        cmd: ServerCommand,
    ) -> Result<Vec<Output>, Refusal> {
        let mut out = Vec::new();
        let (view, changed_by) = match authority {
            Authority::Server => (None, None),
            Authority::User(raw_id) => {
                let (view, pid) = self.user_view(raw_id)?;
                (Some(view), pid)
            }
        };
        let check = |action: Action, policy: &MeetingPolicy| match &view {
            Some(v) => authorize(v, action, policy),
            None => Ok(()),
        };
        match cmd {
            ServerCommand::SetRecording(on) => {
                check(if on { Action::StartRecording } else { Action::StopRecording }, &self.policy)?;
                self.set_capture(Some(on), None, changed_by, &mut out)?;
            }
            ServerCommand::SetTranscription(on) => {
                check(if on { Action::StartTranscription } else { Action::StopTranscription }, &self.policy)?;
                self.set_capture(None, Some(on), changed_by, &mut out)?;
            }
            ServerCommand::UpdatePolicy(update) => {
                check(Action::ChangePolicy, &self.policy)?;
                self.update_policy(update, &mut out)?;
            }
            ServerCommand::End => {
                check(Action::EndMeeting, &self.policy)?;
                self.end_all(now, EndReason::ConversationEnded, &mut out);
            }
            ServerCommand::MuteParticipant { raw_id } => {
                check(Action::MuteOthers, &self.policy)?;
                for participant_id in self.sessions_of(&raw_id)? {
                    if !self.participants[&participant_id].muted {
                        self.set_flag(&participant_id, |p| p.muted = true);
                        let change = RosterChange::Muted { participant_id, muted: true, by: changed_by.clone() };
                        self.delta(change, None, &mut out);
                    }
                }
            }
            ServerCommand::RemoveParticipant { raw_id } => {
                check(Action::Remove, &self.policy)?;
                for participant_id in self.sessions_of(&raw_id)? {
                    self.end_session(now, &participant_id, EndReason::Removed, &mut out);
                }
            }
            ServerCommand::Shutdown => {
                if view.is_some() {
                    return Err(Refusal::new(ErrorCode::Forbidden, "only the server shuts conversations down"));
                }
                self.end_all(now, EndReason::ServerShutdown, &mut out);
            }
            ServerCommand::HandOver => {
                if view.is_some() {
                    return Err(Refusal::new(ErrorCode::Forbidden, "only the server hands conversations over"));
                }
                self.hand_over_all(&mut out);
            }
        }
        Ok(out)
    }

    /// The sessions of identity `raw_id` that are in the conversation (not the lobby);
    /// `NotFound` when there is none.
    fn sessions_of(&self, raw_id: &str) -> Result<Vec<String>, Refusal> {
        let ids: Vec<String> = self
            .participants
            .values()
            .filter(|p| p.identity.raw_id() == raw_id && p.in_conversation())
            .map(|p| p.participant_id.clone())
            .collect();
        if ids.is_empty() {
            return Err(Refusal::new(ErrorCode::NotFound, format!("`{raw_id}` is not in this conversation")));
        }
        Ok(ids)
    }

    /// How a REST caller is seen: as their highest-ranked participant session, or, for a
    /// meeting's organizer/co-organizers not currently joined, as that role.
    fn user_view(&self, raw_id: &str) -> Result<(ActorView, Option<String>), Refusal> {
        let joined = self
            .participants
            .values()
            .filter(|p| p.identity.raw_id() == raw_id && p.in_conversation())
            .max_by_key(|p| p.role);
        if let Some(p) = joined {
            return Ok((ActorView::of(p), Some(p.participant_id.clone())));
        }
        if let Some(m) = &self.meeting {
            let role = if m.organizer_raw_id == raw_id {
                Some(MeetingRole::Organizer)
            } else if m.co_organizers.iter().any(|c| c == raw_id) {
                Some(MeetingRole::CoOrganizer)
            } else {
                None
            };
            if let Some(role) = role {
                let view = ActorView { role, room_role: None, in_lobby: false, is_directory: true, is_external: false };
                return Ok((view, None));
            }
        }
        Err(Refusal::new(ErrorCode::Forbidden, "the caller is not in this conversation"))
    }

    fn set_capture(
        &mut self,
        recording: Option<bool>,
        transcription: Option<bool>,
        changed_by: Option<String>,
        out: &mut Vec<Output>,
    ) -> Result<(), Refusal> {
        let mut next = self.capture;
        if let Some(on) = recording {
            if self.capture.recording.is_active() == on {
                return Err(Refusal::new(ErrorCode::InvalidState, format!("recording is already {}", word(on))));
            }
            next.recording = CaptureStatus::from_active(on);
        }
        if let Some(on) = transcription {
            if self.capture.transcription.is_active() == on {
                return Err(Refusal::new(ErrorCode::InvalidState, format!("transcription is already {}", word(on))));
            }
            next.transcription = CaptureStatus::from_active(on);
        }
        self.capture = next;
        // The legal notice: everyone with a live socket, lobby included.
        out.push(Output::Send {
            to: self.everyone(),
            message: ServerMessage::CaptureChanged { capture: next, changed_by },
        });
        Ok(())
    }

    fn update_policy(&mut self, update: PolicyUpdate, out: &mut Vec<Output>) -> Result<(), Refusal> {
        if self.kind != ConversationKind::Meeting {
            return Err(Refusal::new(ErrorCode::InvalidState, "policies apply to meetings only"));
        }
        let next = apply_policy_update(self.policy, update)?;
        self.policy = next;
        if let Some(m) = &mut self.meeting {
            m.policy = next;
        }
        out.push(Output::Send {
            to: self.roster_audience(None),
            message: ServerMessage::PolicyChanged { policy: next },
        });
        self.release_lobby(out);
        Ok(())
    }

    fn target(&self, id: &str) -> Result<&super::participant::Participant, Refusal> {
        self.participants.get(id).ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no participant `{id}`")))
    }
    fn lobby_target(&self, id: &str) -> Result<(), Refusal> {
        if self.target(id)?.stage != Stage::Lobby {
            return Err(Refusal::new(ErrorCode::InvalidState, "that participant is not waiting in the lobby"));
        }
        Ok(())
    }
    fn in_conversation_target(&self, id: &str) -> Result<&super::participant::Participant, Refusal> {
        let t = self.target(id)?;
        if t.stage == Stage::Lobby {
            return Err(Refusal::new(ErrorCode::InvalidState, "that participant is still in the lobby"));
        }
        Ok(t)
    }
    fn set_flag(&mut self, id: &str, f: impl FnOnce(&mut super::participant::Participant)) {
        if let Some(p) = self.participants.get_mut(id) {
            f(p);
        }
    }
}

/// Apply a partial policy change, validating the participant cap.
pub fn apply_policy_update(current: MeetingPolicy, update: PolicyUpdate) -> Result<MeetingPolicy, Refusal> {
    let mut next = current;
    if let Some(v) = update.lobby_bypass {
        next.lobby_bypass = v;
    }
    if let Some(v) = update.allow_external_users {
        next.allow_external_users = v;
    }
    if let Some(v) = update.external_dial_out {
        next.external_dial_out = v;
    }
    if let Some(v) = update.max_participants {
        if !(2..=MeetingPolicy::HARD_MAX_PARTICIPANTS).contains(&v) {
            return Err(Refusal::new(
                ErrorCode::InvalidParameter,
                format!("maxParticipants must be 2..={}", MeetingPolicy::HARD_MAX_PARTICIPANTS),
            ));
        }
        next.max_participants = v;
    }
    Ok(next)
}

fn word(on: bool) -> &'static str {
    if on { "active" } else { "inactive" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_core::protocol::{MediaKind, MediaTrack};

    #[test]
    fn attached_tracks_need_distinct_ssrcs_dynamic_payload_types_and_a_bound() {
        let video = MediaTrack::vp8(MediaKind::Video, 2);
        assert!(check_media_tracks(&[]).is_ok());
        assert!(check_media_tracks(&[MediaTrack::opus(1), video.clone()]).is_ok());
        let refused = |tracks: &[MediaTrack]| check_media_tracks(tracks).unwrap_err().code;
        assert_eq!(refused(&[MediaTrack::opus(0)]), ErrorCode::InvalidParameter);
        assert_eq!(refused(&[MediaTrack::opus(3), MediaTrack::opus(3)]), ErrorCode::InvalidParameter);
        assert_eq!(refused(&[MediaTrack { payload_type: 0, ..video }]), ErrorCode::InvalidParameter);
        let many: Vec<MediaTrack> = (1..=MAX_ATTACHED_TRACKS as u32 + 1).map(MediaTrack::opus).collect();
        assert_eq!(refused(&many), ErrorCode::InvalidParameter);
        assert!(check_media_tracks(&many[..MAX_ATTACHED_TRACKS]).is_ok());
        let layer = |ssrc, rid: &str| MediaTrack::vp8_layer(MediaKind::Video, ssrc, rid);
        assert!(check_media_tracks(&[layer(4, "q"), layer(5, "h"), layer(6, "f")]).is_ok());
        assert_eq!(refused(&[layer(4, "q"), layer(5, "q")]), ErrorCode::InvalidParameter);
    }
}
