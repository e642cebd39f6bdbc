//! The gateway's Call Automation glue: the registry of live call connections
//! ([`CallAutomation`]) shared by the REST handlers (`api/call_automation`), the media
//! operations and the call actor, and the I/O around the sans-IO
//! [`CallAutomationMachine`]: each operation opens its call connection (or pending
//! operation) in the machine, sends the matching input to the call actor and, if the call
//! refuses it, takes it back; call events addressed to users are fed to the machine by the
//! call actor ([`Gateway::call_automation_event`]); the machine's outputs (callbacks, the
//! IncomingCall event, leg attach/detach) are carried out by one task, in order.

mod conversation;
mod moves;

pub(super) use moves::MOVE_ARRIVAL_TIMEOUT;

use super::Gateway;
use super::actor::{ActorMsg, ConversationHandle};
use super::connection::Outbound;
use super::context_journal::ContextJournal;
use super::conversation_invites::{ConversationInvitation, join_target};
use super::legs::ServerLeg;
use super::media::MediaSession;
use crate::domain::call_automation::{
    CaOutput, CallAutomationError, CallAutomationMachine, CallConnectionView, ContextSigner, IncomingCallClaim,
    NewConnection, OperationRoute, leg_endpoint,
};
use crate::domain::calls::{CallEndReason, CallError, CallEvent, Input, Party};
use crate::domain::conversation::{
    Authority, Command, ConversationSetup, Input as ConversationInput, JoinIdentity, JoinRequest, ServerCommand,
};
use palaver_core::protocol::{JoinTarget, ParticipantInfo, ParticipantState, RosterChange, ServerMessage};
use palaver_core::time::now_ms;
use palaver_core::{CallbackEvent, ErrorCode, SystemEvent};
use palaver_core::{CommunicationIdentifier, EndReason};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// The live call connections; cheap to clone.
#[derive(Clone)]
pub struct CallAutomation(Arc<CallAutomationInner>);

pub struct CallAutomationInner {
    machine: Mutex<CallAutomationMachine>,
    /// Attached media legs by call connection id.
    legs: Mutex<HashMap<String, Arc<dyn ServerLeg>>>,
    /// The machine's outputs, carried out in order by one task.
    outputs: OnceLock<mpsc::UnboundedSender<CaOutput>>,
    /// First answers of repeatable requests (`Repeatability-Request-ID`).
    replays: Mutex<HashMap<String, Replay>>,
    /// Connections seated in a conversation (group call, room), by call connection id.
    conversations: Mutex<HashMap<String, Seat>>,
    /// Invitations ringing users into a seated connection's conversation, by invitation id.
    invitations: Mutex<HashMap<String, ConversationInvitation>>,
    /// Callbacks a leg still owes when its connection ends (a stream's
    /// `MediaStreamingStopped`, a canceled play...): the leg's event pump hands them over when
    /// the leg's events end, and the connection's `DetachLeg` step delivers them before
    /// `CallDisconnected`.
    leg_finals: Mutex<HashMap<String, oneshot::Receiver<Vec<CaOutput>>>>,
    /// The consumed `incomingCallContext`s on disk (none: kept in memory only).
    journal: Mutex<Option<ContextJournal>>,
    /// Other legs in a seated connection's conversation (its recordings), by call connection
    /// id: they are told who is who as the connection's own leg is.
    followers: Mutex<HashMap<String, Vec<std::sync::Weak<dyn ServerLeg>>>>,
}

/// How long the end of a call connection waits for its leg's last callbacks.
const LEG_FINALS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A call connection seated in a conversation (group call, room).
#[derive(Clone)]
struct Seat {
    /// The conversation's actor.
    handle: ConversationHandle,
    /// The connection's participant id there (its leg's media name).
    participant_id: String,
    /// What a client sends in `join` to enter it (invitations carry it).
    target: JoinTarget,
    /// (participant id, raw id) of everyone in its roster: the leg needs them to match the
    /// raw ids the API names (targets, DTMF senders, unmixed sources) to media names.
    aliases: Vec<(String, String)>,
}

/// A stored answer of a repeatable request.
#[derive(Debug, Clone)]
pub struct Replay {
    pub fingerprint: String,
    pub status: u16,
    pub body: bytes::Bytes,
    pub at_ms: i64,
}

/// How long a first answer is replayed.
const REPLAY_WINDOW_MS: i64 = 10 * 60 * 1000;

impl Default for CallAutomation {
    fn default() -> Self {
        Self(Arc::new(CallAutomationInner {
            machine: Mutex::new(CallAutomationMachine::new(ContextSigner::random())),
            legs: Mutex::new(HashMap::new()),
            outputs: OnceLock::new(),
            replays: Mutex::new(HashMap::new()),
            conversations: Mutex::new(HashMap::new()),
            invitations: Mutex::new(HashMap::new()),
            leg_finals: Mutex::new(HashMap::new()),
            journal: Mutex::new(None),
            followers: Mutex::new(HashMap::new()),
        }))
    }
}

impl std::fmt::Debug for CallAutomation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallAutomation").finish_non_exhaustive()
    }
}

impl CallAutomation {
    fn machine(&self) -> std::sync::MutexGuard<'_, CallAutomationMachine> {
        self.0.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the machine (short, no I/O).
    pub fn with_machine<T>(&self, f: impl FnOnce(&mut CallAutomationMachine) -> T) -> T {
        f(&mut self.machine())
    }

    /// The call connection `ccid` (`404/8522` when unknown or over).
    pub fn connection(&self, ccid: &str) -> Result<CallConnectionView, CallAutomationError> {
        self.machine().view(ccid)
    }

    /// The media leg of call connection `ccid`, once it is attached.
    pub fn leg(&self, ccid: &str) -> Option<Arc<dyn ServerLeg>> {
        self.0.legs.lock().unwrap_or_else(|e| e.into_inner()).get(ccid).cloned()
    }

    /// The conversation a connection sits in (group calls and rooms only).
    fn conversation(&self, ccid: &str) -> Option<(ConversationHandle, String)> {
        self.seats().get(ccid).map(|s| (s.handle.clone(), s.participant_id.clone()))
    }

    fn seats(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seat>> {
        self.0.conversations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The conversation actor of a seated connection.
    pub(super) fn conversation_handle_of(&self, ccid: &str) -> Option<ConversationHandle> {
        self.conversation(ccid).map(|(handle, _)| handle)
    }

    /// The invitations ringing users into seated connections' conversations.
    pub(super) fn invitations(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConversationInvitation>> {
        self.0.invitations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The conversation a seated connection is in (what a client joins) and the raw ids of
    /// its roster; `None` for a connection in a call between users.
    pub fn conversation_scope(&self, ccid: &str) -> Option<(JoinTarget, Vec<String>)> {
        let seats = self.seats();
        let seat = seats.get(ccid)?;
        Some((seat.target.clone(), seat.aliases.iter().map(|(_, raw)| raw.clone()).collect()))
    }

    /// Tell the leg of a conversation connection (and the legs following it) who is who
    /// (participant id -> raw id).
    fn push_aliases(&self, ccid: &str) {
        let aliases = self.seats().get(ccid).map(|s| s.aliases.clone()).unwrap_or_default();
        let mut legs: Vec<Arc<dyn ServerLeg>> = self.leg(ccid).into_iter().collect();
        {
            let mut followers = self.0.followers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = followers.get_mut(ccid) {
                list.retain(|leg| leg.strong_count() > 0);
                legs.extend(list.iter().filter_map(std::sync::Weak::upgrade));
            }
            followers.retain(|_, list| !list.is_empty());
        }
        for leg in legs {
            for (participant_id, raw_id) in &aliases {
                leg.alias(participant_id.clone(), raw_id.clone());
            }
        }
    }

    /// Another leg in `ccid`'s conversation (a recording): it learns the raw ids of the
    /// conversation's participants now and as they join, so an unmixed recording names its
    /// channels by raw id (and `channelAffinity` / ordering match) in group calls and rooms.
    pub fn follow_aliases(&self, ccid: &str, leg: &Arc<dyn ServerLeg>) {
        if self.conversation(ccid).is_none() {
            return; // calls between users name participants `{call}/{raw id}` already
        }
        self.0
            .followers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(ccid.to_string())
            .or_default()
            .push(Arc::downgrade(leg));
        self.push_aliases(ccid);
    }

    /// Where the event pump of `ccid`'s leg hands over the callbacks the leg emits after the
    /// connection ended (see `leg_finals`).
    pub fn final_callbacks(&self, ccid: &str) -> oneshot::Sender<Vec<CaOutput>> {
        let (tx, rx) = oneshot::channel();
        self.0.leg_finals.lock().unwrap_or_else(|e| e.into_inner()).insert(ccid.to_string(), rx);
        tx
    }

    /// `incomingCallContext`s outlive a restart: they are signed with a key derived from
    /// `secret` (persisted by the caller), and the ones consumed are journaled at
    /// `journal` (when given) and remembered from an earlier run.
    pub fn restore_contexts(&self, secret: &str, journal: Option<&std::path::Path>) -> std::io::Result<()> {
        let now = now_ms().max(0) as u64;
        let (journal, used) = match journal {
            Some(path) => {
                let (journal, used) = ContextJournal::open(path, now)?;
                (Some(journal), used)
            }
            None => (None, Vec::new()),
        };
        self.with_machine(|m| m.restore_contexts(ContextSigner::from_secret(secret), used));
        *self.0.journal.lock().unwrap_or_else(|e| e.into_inner()) = journal;
        Ok(())
    }

    /// The first answer to repeatable request `request_id`, if it is still kept.
    pub fn replay(&self, request_id: &str) -> Option<Replay> {
        let mut replays = self.0.replays.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        replays.retain(|_, r| now - r.at_ms < REPLAY_WINDOW_MS);
        replays.get(request_id).cloned()
    }

    /// Keep the first answer to `request_id`.
    pub fn remember(&self, request_id: String, replay: Replay) {
        self.0.replays.lock().unwrap_or_else(|e| e.into_inner()).entry(request_id).or_insert(replay);
    }
}

/// A call-machine refusal as Call Automation answers it.
pub fn call_automation_error(e: CallError) -> CallAutomationError {
    match e.code {
        ErrorCode::CallNotFound | ErrorCode::NotFound => CallAutomationError::new(404, 8522, e.message),
        ErrorCode::Busy | ErrorCode::InvalidState => CallAutomationError::invalid_state(e.message),
        ErrorCode::InternalError | ErrorCode::StorageUnavailable => CallAutomationError::internal(e.message),
        ErrorCode::PhoneTargetNotAllowed => CallAutomationError::invalid_argument(format!(
            "{}: calling phone numbers needs a SIP trunk and `allow_phone_targets` on this server.",
            e.message
        )),
        code if code.http_status() == 403 => CallAutomationError::new(403, 8523, e.message),
        _ => CallAutomationError::invalid_argument(e.message),
    }
}

/// A conversation's refusal of a Call Automation command.
fn conversation_refusal(refusal: crate::domain::Refusal) -> CallAutomationError {
    match refusal.code {
        ErrorCode::NotFound => CallAutomationError::new(404, 8522, refusal.message),
        _ => CallAutomationError::invalid_state(refusal.message),
    }
}

impl Gateway {
    /// A call event addressed to user `to` (from the call actor, in its order).
    pub(crate) fn call_automation_event(&self, to: &str, event: &CallEvent) {
        let outputs = self.call_automation().with_machine(|m| m.on_call_event(now_ms().max(0) as u64, to, event));
        self.call_automation_outputs(outputs);
    }

    /// A call of the call machine is over (from the call actor).
    pub(crate) fn call_automation_call_ended(&self, call_id: &str) {
        self.call_automation().with_machine(|m| m.call_ended(call_id));
    }

    /// Hand machine outputs to the task that carries them out in order.
    pub(crate) fn call_automation_outputs(&self, outputs: Vec<CaOutput>) {
        if outputs.is_empty() {
            return;
        }
        let tx = self.call_automation().0.outputs.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(deliver(self.clone(), rx));
            tx
        });
        for o in outputs {
            let _ = tx.send(o);
        }
    }

    /// Open call connection `ccid` and send `input` for it; a refused input leaves nothing.
    async fn open_connection(
        &self,
        ccid: &str,
        new: NewConnection,
        input: Input,
    ) -> Result<Value, CallAutomationError> {
        let ca = self.call_automation();
        let props = ca.with_machine(|m| {
            m.open(ccid, new)?;
            m.properties(ccid)
        })?;
        if let Err(e) = self.call_request(input).await {
            ca.with_machine(|m| m.abort(ccid));
            return Err(call_automation_error(e));
        }
        Ok(props)
    }

    /// `createCall`: the source calls `targets` from a new call connection.
    pub async fn ca_create_call(&self, ccid: &str, new: NewConnection) -> Result<Value, CallAutomationError> {
        // Phone targets are shown `sourceCallerIdNumber` as the caller (checked as owned).
        if let Some(number) = &new.source_caller_id_number {
            let phones: Vec<&String> = new.targets.iter().filter(|t| super::phone::is_phone(t)).collect();
            self.call_automation().with_machine(|m| {
                for phone in phones {
                    m.set_caller_id(&new.call_id, phone, number.clone());
                }
            });
        }
        let input = Input::Place {
            call_id: new.call_id.clone(),
            caller: Party::new(new.source.clone(), leg_display_name(new.source_display_name.as_deref())),
            endpoint: leg_endpoint(ccid),
            targets: new.targets.clone(),
        };
        self.open_connection(ccid, new, input).await
    }

    /// `answer`: the callee of `claim` answers as a new call connection.
    pub async fn ca_answer(
        &self,
        ccid: &str,
        claim: &IncomingCallClaim,
        new: NewConnection,
    ) -> Result<Value, CallAutomationError> {
        let input = Input::Accept {
            call_id: claim.call_id.clone(),
            callee: Party::new(claim.callee.clone(), leg_display_name(None)),
            endpoint: leg_endpoint(ccid),
        };
        self.open_connection(ccid, new, input).await
    }

    /// `connect` to a server call: joins it without ringing.
    pub async fn ca_connect(&self, ccid: &str, new: NewConnection) -> Result<Value, CallAutomationError> {
        let input = Input::JoinServerLeg {
            call_id: new.call_id.clone(),
            party: Party::new(new.source.clone(), leg_display_name(None)),
            endpoint: leg_endpoint(ccid),
        };
        self.open_connection(ccid, new, input).await
    }

    /// Consume an `incomingCallContext` (journaled durably first when there is a journal:
    /// it stays single use across a restart).
    pub async fn ca_consume_context(&self, context: &str) -> Result<IncomingCallClaim, CallAutomationError> {
        let ca = self.call_automation().clone();
        let claim = ca.with_machine(|m| m.consume_context(context, now_ms().max(0) as u64))?;
        let (id, exp) = (claim.id.clone(), claim.exp_ms);
        let written = tokio::task::spawn_blocking(move || {
            let mut journal = ca.0.journal.lock().unwrap_or_else(|e| e.into_inner());
            let Some(journal) = journal.as_mut() else { return Ok(()) };
            journal.append(&id, exp)?;
            let live = ca.with_machine(|m| m.used_contexts());
            if journal.wants_compaction(live.len()) {
                journal.compact(&live)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(claim),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the consumed incomingCallContext could not be journaled");
                Err(CallAutomationError::internal("The incomingCallContext could not be recorded."))
            }
            Err(e) => Err(CallAutomationError::internal(format!("journal task failed: {e}"))),
        }
    }

    /// `reject`: the callee declines.
    pub async fn ca_reject(&self, claim: &IncomingCallClaim, reason: Option<&str>) -> Result<(), CallAutomationError> {
        self.call_automation().with_machine(|m| m.record_rejection(&claim.call_id, &claim.callee, reason));
        let input = Input::Decline { call_id: claim.call_id.clone(), user: claim.callee.clone() };
        self.call_request(input).await.map_err(call_automation_error)
    }

    /// `redirect`: the call rings `target` instead of the callee.
    pub async fn ca_redirect(&self, claim: &IncomingCallClaim, target: &str) -> Result<(), CallAutomationError> {
        let add = Input::AddParticipant {
            call_id: claim.call_id.clone(),
            by: claim.caller.clone(),
            target: target.to_string(),
        };
        self.call_request(add).await.map_err(call_automation_error)?;
        let decline = Input::Decline { call_id: claim.call_id.clone(), user: claim.callee.clone() };
        self.call_request(decline).await.map_err(call_automation_error)
    }

    /// `DELETE` (the connection leaves) or `:terminate` (the call ends for everyone).
    pub async fn ca_hang_up(&self, ccid: &str, for_everyone: bool) -> Result<(), CallAutomationError> {
        let view = self.call_automation().connection(ccid)?;
        if let Some((handle, participant_id)) = self.call_automation().conversation(ccid) {
            // Its rings end with the hang-up, not when the conversation later reports the
            // connection gone: a phone answering in between is refused (the dial task hangs it
            // up) instead of being moved into the call the connection left.
            self.ca_invitations_dropped(ccid);
            if for_everyone {
                return self
                    .server_command(&handle, Authority::Server, ServerCommand::End)
                    .await
                    .map_err(|r| CallAutomationError::invalid_state(r.message));
            }
            let leave = ConversationInput::Command { participant_id, request_id: None, command: Command::Leave };
            return handle
                .tx
                .send(ActorMsg::Input(leave))
                .await
                .map_err(|_| CallAutomationError::call_not_found(&view.call_connection_id));
        }
        let input = if for_everyone {
            Input::Terminate { call_id: view.server_call_id, by: view.source_raw_id }
        } else {
            Input::HangUp { call_id: view.server_call_id, user: view.source_raw_id }
        };
        self.call_request(input).await.map_err(call_automation_error)
    }

    /// `participants:add`: rings `target`; answers the invitation id.
    pub async fn ca_add_participant(
        &self,
        ccid: &str,
        target: &str,
        ring_timeout_secs: Option<u64>,
        route: OperationRoute,
        custom: Option<Value>,
    ) -> Result<String, CallAutomationError> {
        if self.call_automation().conversation(ccid).is_some() {
            return self.ca_invite_to_conversation(ccid, target, ring_timeout_secs, route, custom);
        }
        let ca = self.call_automation();
        let (view, invitation) = ca.with_machine(|m| {
            let view = m.view(ccid)?;
            let invitation = m.begin_add(ccid, target, route)?;
            if let Some(custom) = custom {
                m.set_custom_context(&view.server_call_id, target, custom);
            }
            Ok::<_, CallAutomationError>((view, invitation))
        })?;
        let call_id_for_abort = view.server_call_id.clone();
        let (call_id, by, target_raw) = (view.server_call_id, view.source_raw_id, target.to_string());
        let input = match ring_timeout_secs {
            Some(secs) => Input::AddParticipantRinging { call_id, by, target: target_raw, ring_timeout_secs: secs },
            None => Input::AddParticipant { call_id, by, target: target_raw },
        };
        if let Err(e) = self.call_request(input).await {
            ca.with_machine(|m| {
                m.abort_add(ccid, &invitation);
                m.clear_custom_context(&call_id_for_abort, target);
            });
            return Err(call_automation_error(e));
        }
        Ok(invitation)
    }

    /// `participants:remove`.
    pub async fn ca_remove_participant(
        &self,
        ccid: &str,
        target: &str,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let ca = self.call_automation();
        let view = ca.with_machine(|m| {
            let view = m.view(ccid)?;
            m.begin_remove(ccid, target, route)?;
            Ok::<_, CallAutomationError>(view)
        })?;
        if let Some((handle, _)) = ca.conversation(ccid) {
            // The target's sessions end; `RemoveParticipantSucceeded` follows when the roster
            // no longer has it.
            let command = ServerCommand::RemoveParticipant { raw_id: target.to_string() };
            if let Err(refusal) = self.server_command(&handle, Authority::Server, command).await {
                let outputs = ca.with_machine(|m| m.fail_remove(ccid, target, &conversation_refusal(refusal)));
                self.call_automation_outputs(outputs);
            }
            return Ok(());
        }
        let input = Input::RemoveParticipant {
            call_id: view.server_call_id,
            by: view.source_raw_id,
            target: target.to_string(),
        };
        // Validated and accepted (202): what the call refuses now is reported as ACS does,
        // by `RemoveParticipantFailed`.
        if let Err(e) = self.call_request(input).await {
            let outputs = ca.with_machine(|m| m.fail_remove(ccid, target, &call_automation_error(e)));
            self.call_automation_outputs(outputs);
        }
        Ok(())
    }

    /// `participants:cancelAddParticipant`.
    pub async fn ca_cancel_add(
        &self,
        ccid: &str,
        invitation_id: &str,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        if self.call_automation().conversation(ccid).is_some() {
            return self.ca_cancel_conversation_invitation(ccid, invitation_id, route);
        }
        let ca = self.call_automation();
        let (view, target) = ca.with_machine(|m| {
            let view = m.view(ccid)?;
            let target = m.begin_cancel_add(ccid, invitation_id, route)?;
            Ok::<_, CallAutomationError>((view, target))
        })?;
        let input = Input::CancelInvite { call_id: view.server_call_id, by: view.source_raw_id, target };
        // Accepted (202): a refusal by the call (the invitation was answered or ended
        // meanwhile) is reported by `CancelAddParticipantFailed`.
        if let Err(e) = self.call_request(input).await {
            let outputs = ca.with_machine(|m| m.fail_cancel_add(ccid, invitation_id, &call_automation_error(e)));
            self.call_automation_outputs(outputs);
        }
        Ok(())
    }

    /// `participants:moveHere`: each target's outcome is a `MoveParticipantSucceeded` or
    /// `MoveParticipantFailed` callback.
    pub async fn ca_move(
        &self,
        ccid: &str,
        targets: &[String],
        from_call: &str,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let ca = self.call_automation();
        // `fromCall` is the application's call connection in the other call (as the SDK
        // documents it) or that call's server call id.
        let from_server_call =
            ca.connection(from_call).map(|v| v.server_call_id).unwrap_or_else(|_| from_call.to_string());
        if ca.conversation(ccid).is_some() {
            let from = (from_call, from_server_call.as_str());
            return self.ca_move_into_conversation(ccid, targets, from, route).await;
        }
        let view = ca.with_machine(|m| {
            let view = m.view(ccid)?;
            if view.server_call_id == from_server_call {
                return Err(CallAutomationError::invalid_argument("The field FromCall names this call."));
            }
            m.begin_move(ccid, targets, from_call, route)?;
            Ok::<_, CallAutomationError>(view)
        })?;
        for target in targets {
            let input = Input::MoveParticipant {
                from_call: from_server_call.clone(),
                to_call: view.server_call_id.clone(),
                by: view.source_raw_id.clone(),
                target: target.clone(),
            };
            if let Err(e) = self.call_request(input).await {
                let why = call_automation_error(e);
                let outputs = ca.with_machine(|m| m.move_failed(ccid, target, &why));
                self.call_automation_outputs(outputs);
            }
        }
        Ok(())
    }

    /// `participants:mute`. In a group call or a room the conversation mutes the target's
    /// sessions first (its clients see it in the roster).
    pub async fn ca_mute(&self, ccid: &str, target: &str) -> Result<(), CallAutomationError> {
        let ca = self.call_automation();
        if let Some((handle, _)) = ca.conversation(ccid) {
            ca.with_machine(|m| m.participant(ccid, target))?;
            let command = ServerCommand::MuteParticipant { raw_id: target.to_string() };
            self.server_command(&handle, Authority::Server, command).await.map_err(conversation_refusal)?;
        }
        let outputs = self.call_automation().with_machine(|m| m.mute(ccid, target))?;
        self.call_automation_outputs(outputs);
        Ok(())
    }

    /// `:hold` / `:unhold`: `isOnHold` in the roster (`ParticipantsUpdated` when it changed).
    pub fn ca_set_on_hold(&self, ccid: &str, target: &str, on_hold: bool) -> Result<(), CallAutomationError> {
        let outputs = self.call_automation().with_machine(|m| m.set_on_hold(ccid, target, on_hold))?;
        self.call_automation_outputs(outputs);
        Ok(())
    }

    /// `:transferToParticipant`: the connection hands its place to `target`.
    pub async fn ca_transfer(
        &self,
        ccid: &str,
        target: &str,
        transferee: Option<String>,
        route: OperationRoute,
        custom: Option<Value>,
    ) -> Result<(), CallAutomationError> {
        if self.call_automation().conversation(ccid).is_some() {
            return self.ca_transfer_in_conversation(ccid, target, transferee, route, custom);
        }
        let ca = self.call_automation();
        let view = ca.with_machine(|m| {
            let view = m.view(ccid)?;
            m.begin_transfer(ccid, target, transferee, route)?;
            if let Some(custom) = custom {
                m.set_custom_context(&view.server_call_id, target, custom);
            }
            Ok::<_, CallAutomationError>(view)
        })?;
        let input =
            Input::Transfer { call_id: view.server_call_id, by: view.source_raw_id, target: target.to_string() };
        if let Err(e) = self.call_request(input).await {
            ca.with_machine(|m| m.abort_transfer(ccid));
            return Err(call_automation_error(e));
        }
        Ok(())
    }
}

/// The name other participants see for a server-side participant.
fn leg_display_name(given: Option<&str>) -> String {
    given.filter(|n| !n.trim().is_empty()).unwrap_or("Call Automation").to_string()
}

/// POST one callback through the events port (other outputs are ignored here).
async fn send_callback(gateway: &Gateway, output: CaOutput) {
    let CaOutput::Callback { call_connection_id, callback_uri, event_type, data } = output else { return };
    tracing::debug!(ccid = %call_connection_id, event = %event_type, "call automation callback");
    let event = CallbackEvent { callback_uri, call_connection_id, event_type, data };
    if let Err(e) = gateway.events().callback(event).await {
        tracing::warn!(error = %e, "call automation callback not accepted");
    }
}

/// Carry out the machine's outputs in order: callbacks and events through the events port,
/// legs through the media port.
async fn deliver(gateway: Gateway, mut rx: mpsc::UnboundedReceiver<CaOutput>) {
    while let Some(output) = rx.recv().await {
        match output {
            CaOutput::Callback { .. } => send_callback(&gateway, output).await,
            CaOutput::Publish { event_type, subject, data } => {
                tracing::debug!(event = %event_type, %subject, "call automation system event");
                if let Err(e) = gateway.events().publish(SystemEvent { event_type, subject, data }).await {
                    tracing::warn!(error = %e, "call automation system event not accepted");
                }
            }
            CaOutput::AttachLeg { call_connection_id, conversation_id, participant_id } => {
                let session = MediaSession { conversation_id, participant_id, may_send_media: true };
                match gateway.media().attach_leg(session).await {
                    Ok(leg) => {
                        gateway
                            .call_automation()
                            .0
                            .legs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(call_connection_id.clone(), leg);
                        gateway.call_automation().push_aliases(&call_connection_id);
                    }
                    Err(e) => {
                        tracing::warn!(ccid = %call_connection_id, code = %e.code, message = %e.message, "call connection has no media leg");
                    }
                }
            }
            CaOutput::DetachLeg { call_connection_id } => {
                let ca = gateway.call_automation();
                let leg = ca.0.legs.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_connection_id);
                let finals = ca.0.leg_finals.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_connection_id);
                if let Some(leg) = leg {
                    leg.detach();
                }
                // What the leg says as it stops (MediaStreamingStopped for a stream the call's
                // end stopped, ...) goes out before CallDisconnected, which comes next.
                if let Some(finals) = finals {
                    match tokio::time::timeout(LEG_FINALS_WAIT, finals).await {
                        Ok(Ok(outputs)) => {
                            for output in outputs {
                                send_callback(&gateway, output).await;
                            }
                        }
                        _ => {
                            tracing::warn!(ccid = %call_connection_id, "the leg's last callbacks did not come in time")
                        }
                    }
                }
            }
        }
    }
}
