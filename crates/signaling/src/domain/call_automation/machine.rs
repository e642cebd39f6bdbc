//! [`CallAutomationMachine`]: the sans-IO state of every call connection.
//!
//! A call connection is a server-side participant (endpoint `ca:<ccid>`) in a call of the
//! call machine (`domain/calls`). The gateway feeds this machine the call events addressed
//! to such participants ([`CallAutomationMachine::on_call_event`]) and the application's
//! operations (`begin_*`, before the matching call input is sent; `abort_*` if that input is
//! refused, so nothing is left half-done); the machine answers [`CaOutput`]s: callbacks in
//! causal order (`CallDisconnected` last), the `IncomingCall` system event for calls to ACS
//! identities, and media-leg attach/detach. Time is milliseconds since the Unix epoch.

use super::context::{ContextSigner, IncomingCallClaim};
use super::events::{self, base_data, end_result, event_type, identifier, success};
use super::{CallAutomationError, CallConnectionState, CallConnectionView};
use crate::domain::calls::{CallEndReason, CallEvent, Party, SERVER_LEG_ENDPOINT_PREFIX};
use palaver_core::CommunicationIdentifier;
use serde_json::{Value, json};
use std::collections::HashMap;

mod conversation;
mod ring_context;

/// What the gateway must do after a machine step.
#[derive(Debug, Clone, PartialEq)]
pub enum CaOutput {
    /// POST one CloudEvent to `callback_uri` (in this order per call connection).
    Callback { call_connection_id: String, callback_uri: String, event_type: String, data: Value },
    /// Publish an Event Grid system event (`IncomingCall`).
    Publish { event_type: String, subject: String, data: Value },
    /// The call connection is established: attach its media leg.
    AttachLeg { call_connection_id: String, conversation_id: String, participant_id: String },
    /// The call connection ended: detach its media leg.
    DetachLeg { call_connection_id: String },
}

/// How a call connection came to be (which `*Failed` event an early end raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Create,
    Answer,
    Connect,
}

/// A new call connection's settings from the application's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    pub call_id: String,
    /// The identity the application acts as.
    pub source: String,
    pub source_display_name: Option<String>,
    /// `sourceCallerIdNumber` (createCall to phone numbers): an owned number, E.164.
    pub source_caller_id_number: Option<String>,
    pub callback_uri: String,
    pub operation_context: Option<String>,
    /// createCall's targets (raw ids).
    pub targets: Vec<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
struct RosterEntry {
    raw_id: String,
    muted: bool,
    /// Put on hold through Call Automation (`isOnHold`).
    on_hold: bool,
}

/// An operation waiting for its outcome: its context and where its events go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationRoute {
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
}

#[derive(Debug, Clone)]
struct PendingAdd {
    invitation_id: String,
    target: String,
    route: OperationRoute,
    /// `cancelAddParticipant` was asked: its route.
    cancel: Option<OperationRoute>,
}

#[derive(Debug, Clone)]
struct PendingTransfer {
    target: String,
    transferee: Option<String>,
    route: OperationRoute,
}

#[derive(Debug, Clone)]
struct Connection {
    ccid: String,
    call_id: String,
    correlation_id: String,
    source: String,
    source_display_name: Option<String>,
    source_caller_id_number: Option<String>,
    callback_uri: String,
    operation_context: Option<String>,
    targets: Vec<String>,
    origin: Origin,
    state: CallConnectionState,
    roster: Vec<RosterEntry>,
    sequence: u64,
    adds: Vec<PendingAdd>,
    removes: Vec<(String, OperationRoute)>,
    transfer: Option<PendingTransfer>,
    /// `participants:moveHere` targets: (raw id, from call, route).
    moves: Vec<(String, String, OperationRoute)>,
    /// In a conversation (group call, room): the media plane's participant id of the leg.
    conversation_participant: Option<String>,
}

impl Connection {
    fn leg_participant_id(&self) -> String {
        self.conversation_participant.clone().unwrap_or_else(|| leg_participant_id(&self.call_id, &self.source))
    }
    fn view(&self) -> CallConnectionView {
        CallConnectionView {
            call_connection_id: self.ccid.clone(),
            server_call_id: self.call_id.clone(),
            correlation_id: self.correlation_id.clone(),
            conversation_id: self.call_id.clone(),
            leg_participant_id: self.leg_participant_id(),
            callback_uri: self.callback_uri.clone(),
            state: self.state,
            source_raw_id: self.source.clone(),
        }
    }
    fn data(&self, operation_context: Option<&str>) -> Value {
        base_data(&self.ccid, &self.call_id, &self.correlation_id, operation_context)
    }
    fn callback(&self, route: Option<&OperationRoute>, name: &str, data: Value) -> CaOutput {
        let uri = route.and_then(|r| r.operation_callback_uri.clone()).unwrap_or_else(|| self.callback_uri.clone());
        CaOutput::Callback {
            call_connection_id: self.ccid.clone(),
            callback_uri: uri,
            event_type: event_type(name),
            data,
        }
    }
    fn participants(&self) -> Vec<Value> {
        self.roster.iter().map(|p| events::participant(&p.raw_id, p.muted, p.on_hold)).collect()
    }
    fn participants_updated(&mut self) -> CaOutput {
        self.sequence += 1;
        let mut data = self.data(None);
        data["sequenceNumber"] = json!(self.sequence);
        data["participants"] = Value::Array(self.participants());
        self.callback(None, "ParticipantsUpdated", data)
    }
    fn is_live(&self) -> bool {
        !matches!(self.state, CallConnectionState::Disconnected | CallConnectionState::Disconnecting)
    }
}

/// The media plane's participant id of a call participant (as the call actor names it).
pub fn leg_participant_id(call_id: &str, raw_id: &str) -> String {
    format!("{call_id}/{raw_id}")
}

/// The call machine's endpoint of a call connection.
pub fn leg_endpoint(ccid: &str) -> String {
    format!("{SERVER_LEG_ENDPOINT_PREFIX}{ccid}")
}

/// Every call connection, the contexts consumed, and each call's correlation id.
#[derive(Debug)]
pub struct CallAutomationMachine {
    signer: ContextSigner,
    connections: HashMap<String, Connection>,
    /// (call id, raw id of the server participant) -> call connection id.
    legs: HashMap<(String, String), String>,
    correlations: HashMap<String, String>,
    /// Consumed context ids -> their expiry (kept until then).
    used_contexts: HashMap<String, u64>,
    /// `customContext` for the IncomingCall of (call id, target), from add/transfer.
    custom_contexts: HashMap<(String, String), Value>,
    /// `sourceCallerIdNumber` for the phone ring of (call id, target), from create/add/transfer.
    caller_ids: HashMap<(String, String), String>,
    /// `callRejectReason` of (call id, callee): the result the caller's side reports.
    rejections: HashMap<(String, String), Value>,
}

impl CallAutomationMachine {
    pub fn new(signer: ContextSigner) -> Self {
        Self {
            signer,
            connections: HashMap::new(),
            legs: HashMap::new(),
            correlations: HashMap::new(),
            used_contexts: HashMap::new(),
            custom_contexts: HashMap::new(),
            caller_ids: HashMap::new(),
            rejections: HashMap::new(),
        }
    }

    /// Contexts outlive a restart: sign with the persisted `signer` and remember the ids an
    /// earlier run consumed (id, expiry ms).
    pub fn restore_contexts(&mut self, signer: ContextSigner, used: impl IntoIterator<Item = (String, u64)>) {
        self.signer = signer;
        self.used_contexts.extend(used);
    }

    /// The consumed context ids still kept (id, expiry ms).
    pub fn used_contexts(&self) -> Vec<(String, u64)> {
        self.used_contexts.iter().map(|(id, exp)| (id.clone(), *exp)).collect()
    }

    /// `reject` with `callRejectReason` (`none`, `busy`, `forbidden`): what the caller's
    /// call connection reports for the decline that follows.
    pub fn record_rejection(&mut self, call_id: &str, callee: &str, reason: Option<&str>) {
        let result = match reason {
            Some("busy") => events::result(486, 8539, "The callee is busy."),
            Some("forbidden") => events::result(403, 8538, "The callee rejected the call as forbidden."),
            _ => return,
        };
        self.rejections.insert((call_id.to_string(), callee.to_string()), result);
    }

    /// A phone number dialled in `call_id` through the SIP trunk failed with SIP `status`:
    /// the caller's connection reports it as ACS reports a direct-routing call the SBC
    /// refused — `code` the SIP status, `subCode` 560000 + status (outbound, SBC-generated),
    /// and the SBC's answer in `sipDetails`.
    pub fn record_phone_failure(&mut self, call_id: &str, phone: &str, status: u16, reason_phrase: &str) {
        let mut result = events::result(
            status,
            560_000 + u32::from(status),
            &format!("The phone call failed: {status} {reason_phrase}."),
        );
        result["sipDetails"] = json!({"code": status, "message": reason_phrase});
        self.rejections.insert((call_id.to_string(), phone.to_string()), result);
    }

    /// Forget the SIP failure recorded for `phone` in `call_id` once it was reported (a later
    /// invitation of the same number into the same conversation has its own outcome).
    pub fn forget_phone_failure(&mut self, call_id: &str, phone: &str) {
        self.rejections.remove(&(call_id.to_string(), phone.to_string()));
    }

    /// The result of a decline (or failure) of `target` in `call_id`.
    fn declined(&self, call_id: &str, target: &str, reason: CallEndReason) -> Value {
        match reason {
            CallEndReason::Declined
            | CallEndReason::Busy
            | CallEndReason::NoAnswer
            | CallEndReason::Unreachable
            | CallEndReason::Unavailable => self
                .rejections
                .get(&(call_id.to_string(), target.to_string()))
                .cloned()
                .unwrap_or_else(|| end_result(reason)),
            _ => end_result(reason),
        }
    }

    fn correlation(&mut self, call_id: &str) -> String {
        self.correlations.entry(call_id.to_string()).or_insert_with(|| uuid::Uuid::new_v4().to_string()).clone()
    }

    fn live(&self, ccid: &str) -> Result<&Connection, CallAutomationError> {
        self.connections.get(ccid).filter(|c| c.is_live()).ok_or_else(|| CallAutomationError::call_not_found(ccid))
    }

    fn live_mut(&mut self, ccid: &str) -> Result<&mut Connection, CallAutomationError> {
        self.connections.get_mut(ccid).filter(|c| c.is_live()).ok_or_else(|| CallAutomationError::call_not_found(ccid))
    }

    fn established_mut(&mut self, ccid: &str) -> Result<&mut Connection, CallAutomationError> {
        let c = self.live_mut(ccid)?;
        if c.state != CallConnectionState::Connected {
            return Err(CallAutomationError::not_established());
        }
        Ok(c)
    }

    /// The call connection `ccid`.
    pub fn view(&self, ccid: &str) -> Result<CallConnectionView, CallAutomationError> {
        self.live(ccid).map(Connection::view)
    }

    /// A live, connected call connection of call `server_call_id` (the recording API's
    /// `serverCallLocator`).
    pub fn connection_of_call(&self, server_call_id: &str) -> Option<CallConnectionView> {
        let mut views: Vec<CallConnectionView> = self
            .connections
            .values()
            .filter(|c| c.is_live() && c.state == CallConnectionState::Connected)
            .map(Connection::view)
            .filter(|v| v.server_call_id == server_call_id)
            .collect();
        views.sort_by(|a, b| a.call_connection_id.cmp(&b.call_connection_id));
        views.into_iter().next()
    }

    /// Number of live call connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// `CallConnectionProperties` of `ccid`.
    pub fn properties(&self, ccid: &str) -> Result<Value, CallAutomationError> {
        let c = self.live(ccid)?;
        let mut props = json!({
            "callConnectionId": c.ccid,
            "serverCallId": c.call_id,
            "targets": c.targets.iter().map(|t| identifier(t)).collect::<Vec<_>>(),
            "callConnectionState": c.state.as_str(),
            "callbackUri": c.callback_uri,
            "source": identifier(&c.source),
            "correlationId": c.correlation_id,
        });
        if let Some(number) = &c.source_caller_id_number {
            props["sourceCallerIdNumber"] = json!({"value": number});
        }
        if let Some(name) = &c.source_display_name {
            props["sourceDisplayName"] = json!(name);
        }
        if c.origin == Origin::Answer {
            props["answeredBy"] = json!({"id": c.source});
        }
        Ok(props)
    }

    /// The call's participants (`{value: [...]}` items).
    pub fn participants(&self, ccid: &str) -> Result<Vec<Value>, CallAutomationError> {
        Ok(self.live(ccid)?.participants())
    }

    /// One participant of the call (`404/8522` if it is not in it).
    pub fn participant(&self, ccid: &str, raw_id: &str) -> Result<Value, CallAutomationError> {
        let c = self.live(ccid)?;
        c.roster
            .iter()
            .find(|p| p.raw_id == raw_id)
            .map(|p| events::participant(&p.raw_id, p.muted, p.on_hold))
            .ok_or_else(|| CallAutomationError::participant_not_found(raw_id))
    }

    /// A call connection about to be created (createCall, answer, connect); `ccid` is new.
    pub fn open(&mut self, ccid: &str, new: NewConnection) -> Result<(), CallAutomationError> {
        if self.legs.contains_key(&(new.call_id.clone(), new.source.clone())) {
            return Err(CallAutomationError::conflict(format!("`{}` is already connected to this call", new.source)));
        }
        let correlation_id = self.correlation(&new.call_id);
        self.legs.insert((new.call_id.clone(), new.source.clone()), ccid.to_string());
        self.connections.insert(
            ccid.to_string(),
            Connection {
                ccid: ccid.to_string(),
                call_id: new.call_id,
                correlation_id,
                source: new.source,
                source_display_name: new.source_display_name,
                source_caller_id_number: new.source_caller_id_number,
                callback_uri: new.callback_uri,
                operation_context: new.operation_context,
                targets: new.targets,
                origin: new.origin,
                state: CallConnectionState::Connecting,
                roster: Vec::new(),
                sequence: 0,
                adds: Vec::new(),
                removes: Vec::new(),
                transfer: None,
                moves: Vec::new(),
                conversation_participant: None,
            },
        );
        Ok(())
    }

    /// The call refused the connection's input: forget it without a callback.
    pub fn abort(&mut self, ccid: &str) {
        if let Some(c) = self.connections.remove(ccid) {
            self.legs.remove(&(c.call_id, c.source));
        }
    }

    /// A createCall whose call could not ring anyone: `CreateCallFailed`, `CallDisconnected`.
    pub fn create_failed(&mut self, ccid: &str, reason: CallEndReason) -> Vec<CaOutput> {
        self.end(ccid, reason)
    }

    /// Consume an `incomingCallContext` (answer, reject, redirect): authentic, unexpired, unused.
    pub fn consume_context(&mut self, context: &str, now_ms: u64) -> Result<IncomingCallClaim, CallAutomationError> {
        self.used_contexts.retain(|_, exp| *exp > now_ms);
        let claim = self.signer.verify(context, now_ms)?;
        if self.used_contexts.contains_key(&claim.id) {
            return Err(CallAutomationError::conflict("The incomingCallContext was already used."));
        }
        self.used_contexts.insert(claim.id.clone(), claim.exp_ms);
        Ok(claim)
    }

    /// The call is over: forget its correlation id and any `customContext` left for it.
    pub fn call_ended(&mut self, call_id: &str) {
        if !self.legs.keys().any(|(call, _)| call == call_id) {
            self.correlations.remove(call_id);
        }
        self.custom_contexts.retain(|(call, _), _| call != call_id);
        self.caller_ids.retain(|(call, _), _| call != call_id);
        self.rejections.retain(|(call, _), _| call != call_id);
    }

    /// Calls with a correlation id kept (for tests of the clean-up).
    pub fn tracked_calls(&self) -> usize {
        self.correlations.len()
    }

    /// `participants:add`: remember the invitation before the call rings `target`.
    pub fn begin_add(
        &mut self,
        ccid: &str,
        target: &str,
        route: OperationRoute,
    ) -> Result<String, CallAutomationError> {
        let c = self.established_mut(ccid)?;
        if c.adds.iter().any(|a| a.target == target) {
            return Err(CallAutomationError::conflict(format!("`{target}` is already being added")));
        }
        let invitation_id = uuid::Uuid::new_v4().to_string();
        c.adds.push(PendingAdd {
            invitation_id: invitation_id.clone(),
            target: target.to_string(),
            route,
            cancel: None,
        });
        Ok(invitation_id)
    }

    /// The call refused the add: forget it.
    pub fn abort_add(&mut self, ccid: &str, invitation_id: &str) {
        if let Some(c) = self.connections.get_mut(ccid) {
            c.adds.retain(|a| a.invitation_id != invitation_id);
        }
    }

    /// `participants:cancelAddParticipant`: the target of the invitation (`404/8522` if unknown).
    pub fn begin_cancel_add(
        &mut self,
        ccid: &str,
        invitation_id: &str,
        route: OperationRoute,
    ) -> Result<String, CallAutomationError> {
        let c = self.established_mut(ccid)?;
        let add =
            c.adds.iter_mut().find(|a| a.invitation_id == invitation_id).ok_or_else(|| {
                CallAutomationError::new(404, 8522, format!("No pending invitation `{invitation_id}`."))
            })?;
        if add.cancel.is_some() {
            return Err(CallAutomationError::conflict("The invitation is already being canceled."));
        }
        add.cancel = Some(route);
        Ok(add.target.clone())
    }

    /// The call refused the cancel (e.g. the invitation was answered meanwhile): the
    /// invitation stays as it was, and the application hears `CancelAddParticipantFailed`
    /// (as ACS, which accepts the request and reports the outcome).
    pub fn fail_cancel_add(&mut self, ccid: &str, invitation_id: &str, error: &CallAutomationError) -> Vec<CaOutput> {
        let Some(c) = self.connections.get_mut(ccid) else { return Vec::new() };
        let Some(a) = c.adds.iter_mut().find(|a| a.invitation_id == invitation_id) else { return Vec::new() };
        let Some(route) = a.cancel.take() else { return Vec::new() };
        let mut data = c.data(route.operation_context.as_deref());
        data["invitationId"] = json!(invitation_id);
        data["resultInformation"] = events::result(error.status, error.subcode, &error.message);
        vec![c.callback(Some(&route), "CancelAddParticipantFailed", data)]
    }

    /// `participants:remove`: `target` must be in the call.
    pub fn begin_remove(&mut self, ccid: &str, target: &str, route: OperationRoute) -> Result<(), CallAutomationError> {
        let c = self.established_mut(ccid)?;
        if !c.roster.iter().any(|p| p.raw_id == target) {
            return Err(CallAutomationError::participant_not_found(target));
        }
        if target == c.source {
            return Err(CallAutomationError::invalid_argument("Use hangUp to leave the call."));
        }
        c.removes.push((target.to_string(), route));
        Ok(())
    }

    /// The call refused the removal: the application hears `RemoveParticipantFailed`.
    pub fn fail_remove(&mut self, ccid: &str, target: &str, error: &CallAutomationError) -> Vec<CaOutput> {
        let Some(c) = self.connections.get_mut(ccid) else { return Vec::new() };
        let Some(idx) = c.removes.iter().position(|(t, _)| t == target) else { return Vec::new() };
        let (_, route) = c.removes.remove(idx);
        let mut data = c.data(route.operation_context.as_deref());
        data["participant"] = identifier(target);
        data["resultInformation"] = events::result(error.status, error.subcode, &error.message);
        vec![c.callback(Some(&route), "RemoveParticipantFailed", data)]
    }

    /// `participants:mute`: marks `target` muted and tells the application the new roster.
    pub fn mute(&mut self, ccid: &str, target: &str) -> Result<Vec<CaOutput>, CallAutomationError> {
        let c = self.established_mut(ccid)?;
        let p = c
            .roster
            .iter_mut()
            .find(|p| p.raw_id == target)
            .ok_or_else(|| CallAutomationError::participant_not_found(target))?;
        if p.muted {
            return Ok(Vec::new());
        }
        p.muted = true;
        Ok(vec![c.participants_updated()])
    }

    /// `:hold` / `:unhold` of `target`: marks it (`isOnHold`) and tells the application the new
    /// roster when that changed.
    pub fn set_on_hold(
        &mut self,
        ccid: &str,
        target: &str,
        on_hold: bool,
    ) -> Result<Vec<CaOutput>, CallAutomationError> {
        let c = self.established_mut(ccid)?;
        let p = c
            .roster
            .iter_mut()
            .find(|p| p.raw_id == target)
            .ok_or_else(|| CallAutomationError::participant_not_found(target))?;
        if p.on_hold == on_hold {
            return Ok(Vec::new());
        }
        p.on_hold = on_hold;
        Ok(vec![c.participants_updated()])
    }

    /// `participants:moveHere`: remember the targets moved in from `from_call` (as the
    /// application named it: echoed as `fromCall`).
    pub fn begin_move(
        &mut self,
        ccid: &str,
        targets: &[String],
        from_call: &str,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let c = self.established_mut(ccid)?;
        for t in targets {
            c.moves.retain(|(raw, _, _)| raw != t);
            c.moves.push((t.clone(), from_call.to_string(), route.clone()));
        }
        Ok(())
    }

    /// The call refused to move `target`: `MoveParticipantFailed`.
    pub fn move_failed(&mut self, ccid: &str, target: &str, why: &CallAutomationError) -> Vec<CaOutput> {
        let Some(c) = self.connections.get_mut(ccid) else { return Vec::new() };
        let Some(idx) = c.moves.iter().position(|(raw, _, _)| raw == target) else { return Vec::new() };
        let (_, from_call, route) = c.moves.remove(idx);
        let mut data = c.data(route.operation_context.as_deref());
        data["participant"] = identifier(target);
        data["fromCall"] = json!(from_call);
        data["resultInformation"] = events::result(why.status, why.subcode, &why.message);
        vec![c.callback(Some(&route), "MoveParticipantFailed", data)]
    }

    /// `:transferToParticipant`: one transfer at a time.
    pub fn begin_transfer(
        &mut self,
        ccid: &str,
        target: &str,
        transferee: Option<String>,
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let c = self.established_mut(ccid)?;
        if c.transfer.is_some() {
            return Err(CallAutomationError::invalid_state("A transfer of this call is already in progress."));
        }
        if let Some(t) = &transferee
            && !c.roster.iter().any(|p| &p.raw_id == t)
        {
            return Err(CallAutomationError::participant_not_found(t));
        }
        c.transfer = Some(PendingTransfer { target: target.to_string(), transferee, route });
        c.state = CallConnectionState::Transferring;
        Ok(())
    }

    pub fn abort_transfer(&mut self, ccid: &str) {
        if let Some(c) = self.connections.get_mut(ccid)
            && c.transfer.take().is_some()
        {
            c.state = CallConnectionState::Connected;
        }
    }

    /// A call event addressed to `to`. Raises IncomingCall for ACS identities being rung;
    /// drives the call connection of `to` in that call, if there is one.
    pub fn on_call_event(&mut self, now_ms: u64, to: &str, event: &CallEvent) -> Vec<CaOutput> {
        let mut out = Vec::new();
        if let CallEvent::Incoming { call_id, caller, ring_timeout_ms, .. } = event {
            // ACS identities, and phone numbers: a number rings inside palaver only when an
            // inbound trunk call is routed to Call Automation (see `incoming_from_phone`).
            if matches!(
                CommunicationIdentifier::parse(to),
                Ok(CommunicationIdentifier::CommunicationUser { .. } | CommunicationIdentifier::PhoneNumber { .. })
            ) {
                out.push(self.incoming_call(now_ms, call_id, caller, to, *ring_timeout_ms));
            }
            return out;
        }
        let call_id = event.call_id();
        let Some(ccid) = self.legs.get(&(call_id.to_string(), to.to_string())).cloned() else { return out };
        match event {
            CallEvent::Connected { participants, .. } => {
                let roster =
                    participants.iter().map(|p| RosterEntry { raw_id: p.raw_id.clone(), muted: false, on_hold: false });
                self.connected(&ccid, roster.collect(), &mut out)
            }
            CallEvent::ParticipantJoined { participant, .. } => self.joined(&ccid, &participant.raw_id, &mut out),
            CallEvent::ParticipantLeft { participant, .. } => self.left(&ccid, participant, &mut out),
            CallEvent::InviteFailed { target, reason, .. } => self.invite_failed(&ccid, target, *reason, &mut out),
            CallEvent::TransferAccepted { target, .. } => self.transfer_accepted(&ccid, target, &mut out),
            CallEvent::TransferFailed { reason, .. } => self.transfer_failed(&ccid, end_result(*reason), &mut out),
            CallEvent::Ended { reason, .. } => out.extend(self.end(&ccid, *reason)),
            CallEvent::Incoming { .. }
            | CallEvent::Ringing { .. }
            | CallEvent::Moved { .. }
            | CallEvent::RecordingChanged { .. } => {}
        }
        out
    }

    fn incoming_call(&mut self, now_ms: u64, call_id: &str, caller: &Party, callee: &str, ring_ms: u64) -> CaOutput {
        let claim = IncomingCallClaim {
            id: uuid::Uuid::new_v4().to_string(),
            call_id: call_id.to_string(),
            callee: callee.to_string(),
            caller: caller.raw_id.clone(),
            exp_ms: now_ms + ring_ms.max(1),
        };
        let custom = self
            .custom_contexts
            .remove(&(call_id.to_string(), callee.to_string()))
            .unwrap_or_else(|| json!({"voipHeaders": {}, "sipHeaders": {}}));
        let data = json!({
            "to": identifier(callee),
            "from": identifier(&caller.raw_id),
            "serverCallId": call_id,
            "callerDisplayName": caller.display_name,
            "incomingCallContext": self.signer.sign(&claim),
            "correlationId": self.correlation(call_id),
            "customContext": custom,
        });
        CaOutput::Publish {
            event_type: event_type("IncomingCall"),
            subject: events::incoming_call_subject(&caller.raw_id, callee),
            data,
        }
    }

    fn connected(&mut self, ccid: &str, roster: Vec<RosterEntry>, out: &mut Vec<CaOutput>) {
        let Some(c) = self.connections.get_mut(ccid) else { return };
        c.roster = roster;
        if c.state == CallConnectionState::Connecting {
            c.state = CallConnectionState::Connected;
            let data = c.data(c.operation_context.as_deref());
            let mut data = data;
            data["resultInformation"] = success();
            out.push(c.callback(None, "CallConnected", data));
            out.push(CaOutput::AttachLeg {
                call_connection_id: c.ccid.clone(),
                conversation_id: c.call_id.clone(),
                participant_id: c.leg_participant_id(),
            });
        }
        out.push(c.participants_updated());
    }

    fn joined(&mut self, ccid: &str, raw_id: &str, out: &mut Vec<CaOutput>) {
        let Some(c) = self.connections.get_mut(ccid) else { return };
        if !c.roster.iter().any(|p| p.raw_id == raw_id) {
            c.roster.push(RosterEntry { raw_id: raw_id.to_string(), muted: false, on_hold: false });
        }
        out.push(c.participants_updated());
        if let Some(idx) = c.moves.iter().position(|(raw, _, _)| raw == raw_id) {
            let (_, from_call, route) = c.moves.remove(idx);
            let mut data = c.data(route.operation_context.as_deref());
            data["participant"] = identifier(raw_id);
            data["fromCall"] = json!(from_call);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&route), "MoveParticipantSucceeded", data));
            return;
        }
        // A queue invitation is answered by one of its members.
        let idx = c
            .adds
            .iter()
            .position(|a| a.target == raw_id)
            .or_else(|| c.adds.iter().position(|a| a.target.starts_with("28:")));
        if let Some(idx) = idx {
            let add = c.adds.remove(idx);
            let mut data = c.data(add.route.operation_context.as_deref());
            data["participant"] = identifier(raw_id);
            data["invitationId"] = json!(add.invitation_id);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&add.route), "AddParticipantSucceeded", data));
        }
    }

    fn left(&mut self, ccid: &str, raw_id: &str, out: &mut Vec<CaOutput>) {
        let Some(c) = self.connections.get_mut(ccid) else { return };
        c.roster.retain(|p| p.raw_id != raw_id);
        out.push(c.participants_updated());
        if let Some(idx) = c.removes.iter().position(|(t, _)| t == raw_id) {
            let (_, route) = c.removes.remove(idx);
            let mut data = c.data(route.operation_context.as_deref());
            data["participant"] = identifier(raw_id);
            data["resultInformation"] = success();
            out.push(c.callback(Some(&route), "RemoveParticipantSucceeded", data));
        }
    }

    fn invite_failed(&mut self, ccid: &str, target: &str, reason: CallEndReason, out: &mut Vec<CaOutput>) {
        let Some(call_id) = self.connections.get(ccid).map(|c| c.call_id.clone()) else { return };
        let result = self.declined(&call_id, target, reason);
        let Some(c) = self.connections.get_mut(ccid) else { return };
        let Some(idx) = c.adds.iter().position(|a| a.target == target) else { return };
        let add = c.adds.remove(idx);
        if let (Some(route), CallEndReason::Cancelled) = (&add.cancel, reason) {
            let mut data = c.data(route.operation_context.as_deref());
            data["invitationId"] = json!(add.invitation_id);
            data["resultInformation"] = success();
            out.push(c.callback(Some(route), "CancelAddParticipantSucceeded", data));
            return;
        }
        let mut data = c.data(add.route.operation_context.as_deref());
        data["participant"] = identifier(target);
        data["invitationId"] = json!(add.invitation_id);
        data["resultInformation"] = result;
        out.push(c.callback(Some(&add.route), "AddParticipantFailed", data));
    }

    fn transfer_accepted(&mut self, ccid: &str, target: &str, out: &mut Vec<CaOutput>) {
        let Some(c) = self.connections.get_mut(ccid) else { return };
        let Some(transfer) = c.transfer.clone() else { return };
        c.state = CallConnectionState::TransferAccepted;
        let transferee = transfer
            .transferee
            .clone()
            .or_else(|| c.roster.iter().map(|p| p.raw_id.clone()).find(|r| *r != c.source && r != target));
        let mut data = c.data(transfer.route.operation_context.as_deref());
        data["transferTarget"] = identifier(&transfer.target);
        if let Some(t) = transferee {
            data["transferee"] = identifier(&t);
        }
        data["resultInformation"] = success();
        out.push(c.callback(Some(&transfer.route), "CallTransferAccepted", data));
    }

    fn transfer_failed(&mut self, ccid: &str, result: Value, out: &mut Vec<CaOutput>) {
        let Some(c) = self.connections.get_mut(ccid) else { return };
        let Some(transfer) = c.transfer.take() else { return };
        c.state = CallConnectionState::Connected;
        let mut data = c.data(transfer.route.operation_context.as_deref());
        data["resultInformation"] = result;
        out.push(c.callback(Some(&transfer.route), "CallTransferFailed", data));
    }

    /// The call connection is over: an early end's `*Failed`, then `CallDisconnected` (last).
    fn end(&mut self, ccid: &str, reason: CallEndReason) -> Vec<CaOutput> {
        let mut out = Vec::new();
        let Some(c) = self.connections.remove(ccid) else { return out };
        // A createCall's callee that rejected with a reason: that reason.
        let result = c.targets.first().map_or_else(|| end_result(reason), |t| self.declined(&c.call_id, t, reason));
        self.legs.remove(&(c.call_id.clone(), c.source.clone()));
        if !self.legs.keys().any(|(call, _)| *call == c.call_id) {
            self.correlations.remove(&c.call_id);
        }
        if c.state == CallConnectionState::Connecting {
            let name = match c.origin {
                Origin::Create => "CreateCallFailed",
                Origin::Answer => "AnswerFailed",
                Origin::Connect => "ConnectFailed",
            };
            let mut data = c.data(c.operation_context.as_deref());
            data["resultInformation"] = result.clone();
            out.push(c.callback(None, name, data));
        } else {
            out.push(CaOutput::DetachLeg { call_connection_id: c.ccid.clone() });
        }
        let mut data = c.data(None);
        data["resultInformation"] = result;
        out.push(c.callback(None, "CallDisconnected", data));
        out
    }
}
