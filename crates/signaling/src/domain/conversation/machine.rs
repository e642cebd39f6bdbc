//! The conversation state machine (meeting, group call or room): joins, lobby
//! placement, roster versioning, reconnect grace, token-expiry deadlines, session
//! events for billing. Sans-IO: driven by `handle(now_ms, input) -> Vec<Output>` with
//! `now_ms` in milliseconds since the Unix epoch (virtual in tests); the shell re-arms
//! one timer at [`Conversation::next_deadline`]. Commands live in `commands.rs`.

use super::participant::{JoinIdentity, Link, Participant, Stage, display_name_for, participant_type_for};
use crate::domain::Refusal;
use palaver_core::protocol::{
    CaptureState, ConversationKind, ConversationSnapshot, IceCandidate, MediaTrack, MeetingPolicy, ParticipantState,
    RosterChange, ServerMessage,
};
use palaver_core::{
    CallType, CommunicationIdentifier, EndReason, EndpointType, ErrorCode, MeetingRole, RoomRole, SessionEnded,
    SessionStarted,
};
use std::collections::BTreeMap;

/// Timing knobs of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationConfig {
    /// How long a dropped participant stays `reconnecting` before their session ends.
    pub reconnect_grace_ms: i64,
    /// How long before token expiry the client is asked to refresh.
    pub token_refresh_lead_ms: i64,
    /// Longest lobby wait: nobody admitted them, so they leave (reason `Removed`) instead of
    /// accruing lobby minutes in a meeting nobody attends.
    pub lobby_timeout_ms: i64,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self { reconnect_grace_ms: 30_000, token_refresh_lead_ms: 120_000, lobby_timeout_ms: 15 * 60_000 }
    }
}

/// The static definition of a directory-style meeting (created through the REST API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingSetup {
    pub subject: Option<String>,
    pub organizer_raw_id: String,
    pub organizer_tenant_id: Option<String>,
    pub co_organizers: Vec<String>,
    pub presenters: Vec<String>,
    pub policy: MeetingPolicy,
    /// The meeting's chat thread id.
    pub thread_id: Option<String>,
}

impl MeetingSetup {
    /// The role someone joins with: organizer, listed co-organizers and presenters;
    /// otherwise presenter for directory users of the organizer's tenant, attendee for everyone else.
    /// Listed directory users are the organizer's tenant's: a directory identity of another
    /// tenant never takes a listed role (issue #19; the oid is bound to one tenant as well).
    pub fn role_for(&self, identity: &JoinIdentity) -> MeetingRole {
        let raw = identity.raw_id();
        let tenant_ok = !identity.is_directory()
            || identity.tenant_id.is_none()
            || self.organizer_tenant_id.is_none()
            || identity.tenant_id == self.organizer_tenant_id;
        if raw == self.organizer_raw_id && tenant_ok {
            MeetingRole::Organizer
        } else if self.co_organizers.contains(&raw) && identity.is_directory() && tenant_ok {
            MeetingRole::CoOrganizer
        } else if (self.presenters.contains(&raw) && tenant_ok) || self.same_tenant(identity) {
            MeetingRole::Presenter
        } else {
            MeetingRole::Attendee
        }
    }
    fn same_tenant(&self, identity: &JoinIdentity) -> bool {
        identity.is_directory() && identity.tenant_id == self.organizer_tenant_id
    }
}

/// What kind of conversation to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationSetup {
    Meeting(MeetingSetup),
    GroupCall,
    Room,
}

/// A participant asks to join (the shell verified the token and made up the ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub participant_id: String,
    pub resume_token: String,
    pub request_id: Option<String>,
    pub identity: JoinIdentity,
    pub proposed_display_name: Option<String>,
    /// The participant's Rooms role (rooms only; looked up by the shell).
    pub room_role: Option<RoomRole>,
}

/// A participant's request, already parsed from its WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Leave,
    Admit {
        participant_id: String,
    },
    Deny {
        participant_id: String,
    },
    Remove {
        participant_id: String,
    },
    MuteOther {
        participant_id: String,
    },
    SetRole {
        participant_id: String,
        role: MeetingRole,
    },
    SelfMute {
        muted: bool,
    },
    RaiseHand {
        raised: bool,
    },
    ScreenShare {
        active: bool,
    },
    Recording {
        active: bool,
    },
    Transcription {
        active: bool,
    },
    UpdatePolicy(palaver_core::protocol::PolicyUpdate),
    EndMeeting,
    DialOut {
        phone_number: String,
    },
    MediaOffer {
        sdp: String,
        /// Echoed on the answer's error, so a client waiting on it hears the failure.
        request_id: Option<String>,
    },
    MediaIceCandidate(IceCandidate),
    /// Size or pause the participant's video receive slots (`media.subscribe`).
    MediaSubscribe {
        slots: Vec<palaver_core::protocol::SlotSubscription>,
    },
    /// QUIC only: plain RTP over the connection's datagram `path`; answered with `media.attached`.
    MediaAttach {
        path: palaver_core::MediaPathId,
        tracks: Vec<MediaTrack>,
        receive: palaver_core::protocol::MediaReceive,
        request_id: Option<String>,
    },
}

/// Inputs of [`Conversation::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Join(JoinRequest),
    /// A `resume` that reached this conversation's new home after a takeover: a join under the
    /// participant id the previous home gave (`carried.rs`), which continues that participant's
    /// billing session; refused `NotFound` unless that id is carried for this identity and the
    /// reconnect grace since the restore has not run out.
    Resumed(JoinRequest),
    /// The socket is back (the shell ran [`Conversation::check_resume`] first).
    Resume {
        participant_id: String,
    },
    /// The participant's socket dropped (or stopped answering heartbeats).
    ConnectionLost {
        participant_id: String,
    },
    Command {
        participant_id: String,
        request_id: Option<String>,
        command: Command,
    },
    /// The participant presented a fresh token for the same identity.
    TokenRefreshed {
        participant_id: String,
        expires_at_ms: i64,
    },
    /// The participant's access was revoked (tokens revoked or identity deleted): the session
    /// ends now with `TokenRevoked`.
    AccessRevoked {
        participant_id: String,
    },
    /// Loudest participants from the media plane.
    ActiveSpeakers {
        participant_ids: Vec<String>,
    },
    /// Timers only (every input also runs expired timers first).
    Tick,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one message to each listed participant's socket.
    Send {
        to: Vec<String>,
        message: ServerMessage,
    },
    SessionStarted(SessionStarted),
    SessionEnded(SessionEnded),
    /// The participant's session is over: stop routing their socket to this conversation.
    /// The shell closes the socket when `reason` is `TokenExpired` or `TokenRevoked`.
    Detach {
        participant_id: String,
        reason: EndReason,
    },
    /// A join was refused (an error frame was sent): the socket is not attached.
    JoinRefused {
        participant_id: String,
    },
    /// Hand an SDP offer to the media plane; send its answer as `media.answer`.
    MediaOffer {
        participant_id: String,
        sdp: String,
        may_send_media: bool,
        request_id: Option<String>,
    },
    MediaIceCandidate {
        participant_id: String,
        candidate: IceCandidate,
    },
    /// Attach the participant's media to a datagram path; send the result as `media.attached`.
    MediaAttach {
        participant_id: String,
        path: palaver_core::MediaPathId,
        tracks: Vec<MediaTrack>,
        receive: palaver_core::protocol::MediaReceive,
        may_send_media: bool,
        request_id: Option<String>,
    },
    MediaLeave {
        participant_id: String,
    },
    /// Ring `phone_number` (`+E.164`) through the SIP trunk into this meeting, for
    /// `participant_id`; the phone joins without the lobby when it answers.
    DialOut {
        participant_id: String,
        phone_number: String,
    },
    /// Apply the participant's slot subscriptions in the media plane.
    MediaSubscribe {
        participant_id: String,
        slots: Vec<palaver_core::protocol::SlotSubscription>,
    },
    /// Nobody is left (or the meeting was ended): the shell drops the conversation.
    ConversationEnded,
}

/// Who is acting on a REST call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// The server API (HMAC-authenticated): always allowed.
    Server,
    /// A user, by raw id (bearer token): their role in the conversation decides.
    User(String),
}

/// A conversation: the whole control-plane state of one meeting, group call or room.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub(super) id: String,
    pub(super) kind: ConversationKind,
    pub(super) meeting: Option<MeetingSetup>,
    pub(super) policy: MeetingPolicy,
    pub(super) config: ConversationConfig,
    pub(super) participants: BTreeMap<String, Participant>,
    pub(super) capture: CaptureState,
    pub(super) roster_version: u64,
    /// Group calls: whether the first joiner was an external user.
    pub(super) started_by_external: Option<bool>,
    pub(super) ended: bool,
    /// Phone numbers dialled out from this meeting (`4:+E.164`), each let in without the
    /// lobby once when it answers and joins.
    pub(super) dialed_out: Vec<String>,
    /// Standing carried from a previous home, by raw id, until that identity joins again
    /// (`carried.rs`).
    pub(super) carried: BTreeMap<String, super::carried::CarriedParticipant>,
    /// Restored from a previous home: the capture notice goes to every joiner.
    pub(super) restored: bool,
    /// Until when a carried participant may resume under its old participant id (the restore
    /// plus the reconnect grace; `None`: no limit, or nothing restored).
    pub(super) resume_until_ms: Option<i64>,
}

impl Conversation {
    pub fn new(id: impl Into<String>, setup: ConversationSetup, config: ConversationConfig) -> Self {
        let (kind, meeting) = match setup {
            ConversationSetup::Meeting(m) => (ConversationKind::Meeting, Some(m)),
            ConversationSetup::GroupCall => (ConversationKind::GroupCall, None),
            ConversationSetup::Room => (ConversationKind::Room, None),
        };
        let policy = meeting.as_ref().map(|m| m.policy).unwrap_or_default();
        Self {
            id: id.into(),
            kind,
            meeting,
            policy,
            config,
            participants: BTreeMap::new(),
            capture: CaptureState::default(),
            roster_version: 0,
            started_by_external: None,
            ended: false,
            dialed_out: Vec::new(),
            carried: BTreeMap::new(),
            restored: false,
            resume_until_ms: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn kind(&self) -> ConversationKind {
        self.kind
    }
    pub fn policy(&self) -> MeetingPolicy {
        self.policy
    }
    pub fn capture(&self) -> CaptureState {
        self.capture
    }
    pub fn is_ended(&self) -> bool {
        self.ended
    }
    pub fn participant(&self, participant_id: &str) -> Option<&Participant> {
        self.participants.get(participant_id)
    }
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// Earliest time at which `handle(.., Input::Tick)` has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.participants
            .values()
            .flat_map(|p| {
                let grace = match p.link {
                    Link::Dropped { grace_deadline_ms } => Some(grace_deadline_ms),
                    Link::Live => None,
                };
                let exp = p.identity.token_expires_at_ms;
                let warn = (!p.token_warned && p.link == Link::Live).then(|| exp - self.config.token_refresh_lead_ms);
                let lobby = (p.stage == Stage::Lobby).then(|| p.joined_at_ms + self.config.lobby_timeout_ms);
                [grace, Some(exp), warn, lobby]
            })
            .flatten()
            .min()
    }

    /// May this socket take over `participant_id`? (Same identity, right secret.)
    pub fn check_resume(&self, participant_id: &str, resume_token: &str, raw_id: &str) -> Result<(), Refusal> {
        let p = self
            .participants
            .get(participant_id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "no such participant session (grace period over?)"))?;
        let token_ok: bool = subtle::ConstantTimeEq::ct_eq(p.resume_token.as_bytes(), resume_token.as_bytes()).into();
        if !token_ok || p.identity.raw_id() != raw_id {
            return Err(Refusal::new(ErrorCode::Forbidden, "resume token or identity does not match"));
        }
        Ok(())
    }

    /// Feed one input; expired timers run first.
    pub fn handle(&mut self, now_ms: i64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.run_timers(now_ms, &mut out);
        match input {
            Input::Tick => {}
            Input::Join(req) => self.join(now_ms, req, &mut out),
            Input::Resumed(req) => match self.resume_refusal(now_ms, &req) {
                None => self.join(now_ms, req, &mut out),
                Some(r) => {
                    let pid = req.participant_id;
                    out.push(send_one(&pid, ServerMessage::error(r.code, r.message, req.request_id)));
                    out.push(Output::JoinRefused { participant_id: pid });
                }
            },
            Input::Resume { participant_id } => self.resume(&participant_id, &mut out),
            Input::ConnectionLost { participant_id } => self.connection_lost(now_ms, &participant_id, &mut out),
            Input::Command { participant_id, request_id, command } => {
                self.command(now_ms, &participant_id, request_id, command, &mut out)
            }
            Input::TokenRefreshed { participant_id, expires_at_ms } => {
                if let Some(p) = self.participants.get_mut(&participant_id) {
                    p.identity.token_expires_at_ms = expires_at_ms;
                    p.token_warned = false;
                    out.push(send_one(&participant_id, ServerMessage::TokenRefreshed { expires_at_ms }));
                }
            }
            Input::AccessRevoked { participant_id } => {
                self.end_session(now_ms, &participant_id, EndReason::TokenRevoked, &mut out);
            }
            Input::ActiveSpeakers { participant_ids } => {
                let ids = participant_ids.into_iter().filter(|id| self.participants.contains_key(id)).collect();
                self.delta(RosterChange::ActiveSpeakers { participant_ids: ids }, None, &mut out);
            }
        }
        out
    }

    fn run_timers(&mut self, now: i64, out: &mut Vec<Output>) {
        let ids: Vec<String> = self.participants.keys().cloned().collect();
        for id in ids {
            let Some(p) = self.participants.get_mut(&id) else { continue };
            if let Link::Dropped { grace_deadline_ms } = p.link
                && now >= grace_deadline_ms
            {
                self.end_session(now, &id, EndReason::ConnectionLost, out);
                continue;
            }
            let exp = p.identity.token_expires_at_ms;
            if now >= exp {
                self.end_session(now, &id, EndReason::TokenExpired, out);
                continue;
            }
            if p.stage == Stage::Lobby && now >= p.joined_at_ms + self.config.lobby_timeout_ms {
                self.end_session(now, &id, EndReason::Removed, out);
                continue;
            }
            if !p.token_warned && p.link == Link::Live && now >= exp - self.config.token_refresh_lead_ms {
                p.token_warned = true;
                out.push(send_one(&id, ServerMessage::TokenExpiring { expires_at_ms: exp }));
            }
        }
    }

    fn join(&mut self, now: i64, req: JoinRequest, out: &mut Vec<Output>) {
        let pid = req.participant_id.clone();
        if let Err(r) = self.admission_check(&req) {
            out.push(send_one(&pid, ServerMessage::error(r.code, r.message, req.request_id)));
            out.push(Output::JoinRefused { participant_id: pid });
            return;
        }
        let identity = req.identity;
        // Standing carried from the previous home of this conversation (a takeover).
        let carried = self.take_carried(&identity.raw_id());
        let role = match (&self.meeting, self.kind) {
            (Some(m), _) => m.role_for(&identity),
            (None, ConversationKind::Room) => match req.room_role {
                Some(RoomRole::Presenter) => MeetingRole::Presenter,
                _ => MeetingRole::Attendee,
            },
            // Group calls have no roles: everyone may moderate (recording rules still apply).
            (None, _) => MeetingRole::Presenter,
        };
        let role = carried.as_ref().map_or(role, |c| c.role);
        let dialed_out = match self.dialed_out.iter().position(|raw| *raw == identity.identifier.raw_id()) {
            Some(i) => {
                self.dialed_out.remove(i);
                true
            }
            None => false,
        };
        let stage = if self.kind == ConversationKind::Meeting
            && !dialed_out
            && !carried.as_ref().is_some_and(|c| c.admitted)
            && !(self.bypasses_lobby(&identity, role) && (identity.is_directory() || self.directory_user_present()))
        {
            Stage::Lobby
        } else {
            Stage::InConversation
        };
        if self.kind == ConversationKind::GroupCall && self.started_by_external.is_none() {
            self.started_by_external = Some(identity.is_external());
        }
        let participant = Participant {
            participant_id: pid.clone(),
            resume_token: req.resume_token.clone(),
            display_name: display_name_for(
                &identity,
                req.proposed_display_name.as_deref().or(carried.as_ref().map(|c| c.display_name.as_str())),
            ),
            participant_type: participant_type_for(self.kind, &identity),
            role,
            room_role: req.room_role.filter(|_| self.kind == ConversationKind::Room),
            stage,
            link: Link::Live,
            muted: false,
            hand_raised: carried.as_ref().is_some_and(|c| c.hand_raised),
            screen_sharing: false,
            media_active: false,
            token_warned: false,
            joined_at_ms: now,
            identity,
        };
        out.push(Output::SessionStarted(SessionStarted {
            session_id: pid.clone(),
            conversation_id: self.id.clone(),
            call_type: CallType::Group,
            participant_raw_id: participant.identity.raw_id(),
            participant_type: participant.participant_type,
            // A phone caller (SIP trunk, `4:+E.164`) is billed as a PSTN endpoint.
            endpoint_type: if matches!(participant.identity.identifier, CommunicationIdentifier::PhoneNumber { .. }) {
                EndpointType::Pstn
            } else {
                EndpointType::Voip
            },
            thread_id: self.meeting.as_ref().and_then(|m| m.thread_id.clone()),
            at_ms: now,
            // The shell names a phone's trunk leg (`Gateway::phone_leg_of`).
            phone: None,
        }));
        let info = participant.info();
        let directory_entered = stage == Stage::InConversation && participant.identity.is_directory();
        self.participants.insert(pid.clone(), participant);
        self.delta(RosterChange::Joined { participant: info }, Some(&pid), out);
        let snapshot = self.snapshot_for(&pid);
        out.push(send_one(
            &pid,
            ServerMessage::Joined { request_id: req.request_id, resume_token: req.resume_token, snapshot },
        ));
        if self.notice_due() {
            // The legal notice again, on the new home, for everyone who comes back.
            out.push(send_one(&pid, ServerMessage::CaptureChanged { capture: self.capture, changed_by: None }));
        }
        if directory_entered {
            self.release_lobby(out);
        }
        // A token that is already inside the refresh window is flagged at once.
        self.run_timers(now, out);
    }

    fn admission_check(&self, req: &JoinRequest) -> Result<(), Refusal> {
        if self.ended {
            return Err(Refusal::new(ErrorCode::InvalidState, "the conversation has ended"));
        }
        if self.participants.contains_key(&req.participant_id)
            || self.carried_for_another(&req.participant_id, &req.identity.raw_id())
        {
            return Err(Refusal::new(ErrorCode::Conflict, "participant id already in use"));
        }
        let identity = &req.identity;
        match self.kind {
            ConversationKind::GroupCall => {
                if self.started_by_external == Some(true) && identity.is_directory() {
                    return Err(Refusal::new(
                        ErrorCode::DirectoryUserCannotJoinExternalCall,
                        "a directory user cannot join a group call started by an external user",
                    ));
                }
            }
            ConversationKind::Meeting => {
                if identity.is_external() && !self.policy.allow_external_users {
                    return Err(Refusal::new(
                        ErrorCode::ExternalUsersNotAllowed,
                        "this meeting does not admit external users",
                    ));
                }
            }
            ConversationKind::Room => {
                if req.room_role.is_none() {
                    return Err(Refusal::new(ErrorCode::NotRoomParticipant, "not a participant of this room"));
                }
            }
        }
        let total = self.participants.len() as u32;
        let calling_path = self.participants.values().filter(|p| !p.identity.native_client).count() as u32;
        if total >= MeetingPolicy::HARD_MAX_PARTICIPANTS
            || (!identity.native_client && calling_path >= self.policy.max_participants)
        {
            return Err(Refusal::new(ErrorCode::CapacityReached, "the conversation is full"));
        }
        Ok(())
    }

    /// Does the meeting's lobby policy let this identity in directly? Organizers and
    /// co-organizers always do.
    pub(super) fn bypasses_lobby(&self, identity: &JoinIdentity, role: MeetingRole) -> bool {
        use palaver_core::protocol::LobbyBypass;
        let Some(meeting) = &self.meeting else { return true };
        if role.is_organizer_like() {
            return true;
        }
        match self.policy.lobby_bypass {
            LobbyBypass::Everyone => true,
            LobbyBypass::Organization => meeting.same_tenant(identity),
            LobbyBypass::OrganizerOnly => false,
        }
    }

    pub(super) fn directory_user_present(&self) -> bool {
        self.participants.values().any(|p| p.in_conversation() && p.identity.is_directory())
    }

    /// Let in everyone in the lobby whom the policy lets bypass it, now that a directory user is present.
    pub(super) fn release_lobby(&mut self, out: &mut Vec<Output>) {
        if !self.directory_user_present() {
            return;
        }
        let waiting: Vec<String> = self
            .participants
            .values()
            .filter(|p| p.stage == Stage::Lobby && self.bypasses_lobby(&p.identity, p.role))
            .map(|p| p.participant_id.clone())
            .collect();
        for id in waiting {
            self.move_into_conversation(&id, out);
        }
    }

    /// Lobby → conversation: others see the state change, the participant gets a snapshot.
    pub(super) fn move_into_conversation(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(p) = self.participants.get_mut(id) else { return };
        p.stage = Stage::InConversation;
        let state = p.state();
        self.delta(RosterChange::StateChanged { participant_id: id.to_string(), state }, Some(id), out);
        let snapshot = self.snapshot_for(id);
        out.push(send_one(id, ServerMessage::Snapshot { snapshot }));
    }

    fn resume(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(p) = self.participants.get_mut(id) else { return };
        let was_dropped = p.link != Link::Live;
        p.link = Link::Live;
        if was_dropped && p.in_conversation() {
            self.delta(
                RosterChange::StateChanged { participant_id: id.to_string(), state: ParticipantState::Connected },
                Some(id),
                out,
            );
        }
        let snapshot = self.snapshot_for(id);
        out.push(send_one(id, ServerMessage::Snapshot { snapshot }));
    }

    fn connection_lost(&mut self, now: i64, id: &str, out: &mut Vec<Output>) {
        let grace = self.config.reconnect_grace_ms;
        let Some(p) = self.participants.get_mut(id) else { return };
        if p.link != Link::Live {
            return;
        }
        p.link = Link::Dropped { grace_deadline_ms: now + grace };
        if p.in_conversation() {
            self.delta(
                RosterChange::StateChanged { participant_id: id.to_string(), state: ParticipantState::Reconnecting },
                Some(id),
                out,
            );
        }
    }

    /// End one participant's session: tell them, detach, bill, tell the others.
    pub(super) fn end_session(&mut self, now: i64, id: &str, reason: EndReason, out: &mut Vec<Output>) {
        let Some(p) = self.participants.remove(id) else { return };
        if p.link == Link::Live {
            out.push(send_one(id, ServerMessage::SessionEnded { conversation_id: self.id.clone(), reason }));
        }
        out.push(Output::Detach { participant_id: id.to_string(), reason });
        if p.media_active {
            out.push(Output::MediaLeave { participant_id: id.to_string() });
        }
        out.push(Output::SessionEnded(SessionEnded {
            session_id: id.to_string(),
            conversation_id: self.id.clone(),
            reason,
            at_ms: now,
        }));
        self.delta(RosterChange::Left { participant_id: id.to_string(), reason }, None, out);
        if self.participants.is_empty() && !self.ended {
            self.ended = true;
            out.push(Output::ConversationEnded);
        }
    }

    /// End everyone's session (meeting ended).
    pub(super) fn end_all(&mut self, now: i64, reason: EndReason, out: &mut Vec<Output>) {
        let ids: Vec<String> = self.participants.keys().cloned().collect();
        for id in ids {
            self.end_session(now, &id, reason, out);
        }
        if !self.ended {
            self.ended = true;
            out.push(Output::ConversationEnded);
        }
    }

    /// The node is draining: tell every live participant to reconnect and `resume`, detach
    /// everyone without ending a session (no `SessionEnded`: the usage sessions stay open for
    /// the next home to adopt), and end the conversation here.
    pub(super) fn hand_over_all(&mut self, out: &mut Vec<Output>) {
        let participants = std::mem::take(&mut self.participants);
        for (id, p) in participants {
            if p.link == Link::Live {
                let message = ServerMessage::error(
                    palaver_core::ErrorCode::NodeDraining,
                    "this node is draining: reconnect through another node and resume",
                    None,
                );
                out.push(send_one(&id, message));
            }
            out.push(Output::Detach { participant_id: id.clone(), reason: EndReason::ServerShutdown });
            if p.media_active {
                out.push(Output::MediaLeave { participant_id: id });
            }
        }
        if !self.ended {
            self.ended = true;
            out.push(Output::ConversationEnded);
        }
    }

    /// Live sockets of participants in the conversation (lobby excluded), minus `except`.
    pub(super) fn roster_audience(&self, except: Option<&str>) -> Vec<String> {
        self.participants
            .values()
            .filter(|p| p.in_conversation() && p.link == Link::Live && Some(p.participant_id.as_str()) != except)
            .map(|p| p.participant_id.clone())
            .collect()
    }

    /// Live sockets of everyone, lobby included.
    pub(super) fn everyone(&self) -> Vec<String> {
        self.participants.values().filter(|p| p.link == Link::Live).map(|p| p.participant_id.clone()).collect()
    }

    /// Bump the roster version and send the change to the roster audience.
    pub(super) fn delta(&mut self, change: RosterChange, except: Option<&str>, out: &mut Vec<Output>) {
        self.roster_version += 1;
        let to = self.roster_audience(except);
        if !to.is_empty() {
            out.push(Output::Send {
                to,
                message: ServerMessage::RosterDelta { roster_version: self.roster_version, delta: change },
            });
        }
    }

    /// The view `participant_id` gets: the full roster once in the conversation, none in the lobby.
    pub fn snapshot_for(&self, participant_id: &str) -> ConversationSnapshot {
        let me = self.participants.get(participant_id);
        let in_conversation = me.is_some_and(Participant::in_conversation);
        ConversationSnapshot {
            conversation_id: self.id.clone(),
            kind: self.kind,
            subject: self.meeting.as_ref().and_then(|m| m.subject.clone()),
            participant_id: participant_id.to_string(),
            state: me.map_or(ParticipantState::Lobby, Participant::state),
            role: me.map_or(MeetingRole::Attendee, |p| p.role),
            capture: self.capture,
            policy: self.meeting.as_ref().map(|_| self.policy),
            roster_version: self.roster_version,
            participants: if in_conversation {
                self.participants.values().map(Participant::info).collect()
            } else {
                vec![]
            },
            thread_id: self.meeting.as_ref().and_then(|m| m.thread_id.clone()).filter(|_| in_conversation),
        }
    }
}

pub(super) fn send_one(to: &str, message: ServerMessage) -> Output {
    Output::Send { to: vec![to.to_string()], message }
}
