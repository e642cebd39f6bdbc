//! [`CallManager`]: the sans-IO state machine over every call between users.
//!
//! Lifetime rule: a call ends when nobody is connected, or when one participant is
//! left and nothing is ringing. A transfer keeps the transferor connected while the
//! target rings; a failed transfer leaves the call as it was, and a transfer whose
//! transferee hung up is withdrawn.

mod server_legs;

use super::config::CallsConfig;
use super::invite::{Invite, Purpose, QueueCursor, Target, check_caller, resolve_target};
use super::model::{CallEndReason, CallError, CallEvent, CallSnapshot, CallState, Input, Output, Party, is_server_leg};
use palaver_core::{CallType, CommunicationIdentifier, EndReason, ErrorCode};
use std::collections::HashMap;

/// A phone participant (`4:+E.164`): a SIP trunk leg, never busy.
fn is_phone(raw_id: &str) -> bool {
    matches!(CommunicationIdentifier::parse(raw_id), Ok(CommunicationIdentifier::PhoneNumber { .. }))
}

/// A connected participant.
#[derive(Debug, Clone)]
struct Member {
    party: Party,
    endpoint: String,
    /// A billing session was started (from the first answer on).
    billed: bool,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    caller: Party,
    answered: bool,
    call_type: CallType,
    members: Vec<Member>,
    invites: Vec<Invite>,
}

impl Call {
    fn member(&self, raw_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.party.raw_id == raw_id)
    }
    fn is_member(&self, raw_id: &str) -> bool {
        self.member(raw_id).is_some()
    }
    fn invite_ringing(&self, raw_id: &str) -> Option<usize> {
        self.invites.iter().position(|i| i.ringing == raw_id)
    }
    fn parties(&self) -> Vec<Party> {
        self.members.iter().map(|m| m.party.clone()).collect()
    }
    fn identities_except(&self, except: Option<&str>) -> Vec<CommunicationIdentifier> {
        self.members
            .iter()
            .filter(|m| Some(m.party.raw_id.as_str()) != except)
            .filter_map(|m| CommunicationIdentifier::parse(&m.party.raw_id).ok())
            .collect()
    }
    fn notify_members(&self, out: &mut Vec<Output>, except: Option<&str>, event: CallEvent) {
        for m in self.members.iter().filter(|m| Some(m.party.raw_id.as_str()) != except) {
            out.push(Output::Notify { to: m.party.raw_id.clone(), event: event.clone() });
        }
    }
}

/// Every call between users, and who is busy in which call.
#[derive(Debug)]
pub struct CallManager {
    config: CallsConfig,
    calls: HashMap<String, Call>,
    /// Connected user -> the call they are in (a user is in at most one call).
    engaged: HashMap<String, String>,
    /// Users in a call on another node of a cluster, as the shell looked them up for the
    /// input being handled ([`CallManager::set_engaged_elsewhere`]): busy as if engaged here.
    engaged_elsewhere: std::collections::HashSet<String>,
    next_invite_id: u64,
}

fn not_found(call_id: &str) -> CallError {
    CallError::new(ErrorCode::CallNotFound, format!("no call `{call_id}` for you"))
}

impl CallManager {
    pub fn new(config: CallsConfig) -> Self {
        Self {
            config,
            calls: HashMap::new(),
            engaged: HashMap::new(),
            engaged_elsewhere: Default::default(),
            next_invite_id: 1,
        }
    }

    /// The users engaged in a call on another node, for the next input (a cluster's shell sets
    /// them before an input that rings, accepts or places, and clears them after).
    pub fn set_engaged_elsewhere(&mut self, users: impl IntoIterator<Item = String>) {
        self.engaged_elsewhere = users.into_iter().collect();
    }

    /// The users connected in a call here (what a cluster publishes as engaged on this node).
    pub fn engaged_users(&self) -> impl Iterator<Item = &str> {
        self.engaged.keys().map(String::as_str)
    }

    pub fn config(&self) -> &CallsConfig {
        &self.config
    }

    /// Apply one input at `now_ms`. On `Err` nothing changed.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Result<Vec<Output>, CallError> {
        let mut out = Vec::new();
        match input {
            Input::Place { call_id, caller, endpoint, targets } => {
                self.place(now_ms, call_id, caller, endpoint, targets, &mut out)?
            }
            Input::Accept { call_id, callee, endpoint } => self.accept(call_id, callee, endpoint, &mut out)?,
            Input::Decline { call_id, user } => {
                self.decline(now_ms, call_id, user, CallEndReason::Declined, &mut out)?
            }
            Input::Fail { call_id, user, reason } => self.decline(now_ms, call_id, user, reason, &mut out)?,
            Input::Cancel { call_id, user } => self.cancel(call_id, user, &mut out)?,
            Input::HangUp { call_id, user } => self.hang_up(call_id, user, &mut out)?,
            Input::AddParticipant { call_id, by, target } => self.add(now_ms, call_id, by, target, None, &mut out)?,
            Input::AddParticipantRinging { call_id, by, target, ring_timeout_secs } => {
                self.add(now_ms, call_id, by, target, Some(ring_timeout_secs), &mut out)?
            }
            Input::Transfer { call_id, by, target } => self.transfer(now_ms, call_id, by, target, &mut out)?,
            Input::RemoveParticipant { call_id, by, target } => self.remove(call_id, by, target, &mut out)?,
            Input::CancelInvite { call_id, by, target } => self.cancel_invite(call_id, by, target, &mut out)?,
            Input::Terminate { call_id, by } => self.terminate(call_id, by, &mut out)?,
            Input::JoinServerLeg { call_id, party, endpoint } => {
                self.join_server_leg(call_id, party, endpoint, &mut out)?
            }
            Input::MoveParticipant { from_call, to_call, by, target } => {
                self.move_participant(from_call, to_call, by, target, &mut out)?
            }
            Input::MoveToConversation { call_id, target, join } => {
                self.move_to_conversation(call_id, target, join, &mut out)?
            }
            Input::UserGone { user } => self.user_gone(now_ms, &user, &mut out),
            Input::UserGoneFrom { call_id, user } => self.user_gone_from(now_ms, &call_id, &user, &mut out),
            Input::Tick => self.tick(now_ms, &mut out),
        }
        Ok(out)
    }

    /// The earliest ring deadline, if anything is ringing.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.calls.values().flat_map(|c| c.invites.iter().map(|i| i.deadline)).min()
    }

    pub fn snapshot(&self, call_id: &str) -> Option<CallSnapshot> {
        let c = self.calls.get(call_id)?;
        Some(CallSnapshot {
            call_id: c.id.clone(),
            state: if c.answered { CallState::Connected } else { CallState::Ringing },
            call_type: c.call_type,
            caller: c.caller.clone(),
            participants: c.parties(),
            ringing: c.invites.iter().map(|i| i.ringing.clone()).collect(),
            transfer_target: c
                .invites
                .iter()
                .find(|i| matches!(i.purpose, Purpose::Transfer { .. }))
                .map(|i| i.target.clone()),
        })
    }

    /// Calls `raw_id` is connected to or being rung for.
    pub fn calls_of(&self, raw_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .calls
            .values()
            .filter(|c| c.is_member(raw_id) || c.invite_ringing(raw_id).is_some())
            .map(|c| c.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Number of live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    fn is_engaged(&self, raw_id: &str) -> bool {
        // A phone number (a SIP trunk's caller or callee) carries any number of calls at once.
        !is_phone(raw_id) && (self.engaged.contains_key(raw_id) || self.engaged_elsewhere.contains(raw_id))
    }

    /// The first queue member at or after `from` who is free for `call`.
    fn free_member(&self, app_id: &str, from: usize, call: &Call) -> Option<(usize, String)> {
        let queue = self.config.queue(app_id)?;
        queue.members.iter().enumerate().skip(from).find_map(|(i, m)| {
            let free = !self.is_engaged(m) && !call.is_member(m) && call.invite_ringing(m).is_none();
            free.then(|| (i, m.clone()))
        })
    }

    /// Is a checked target reachable right now (not busy, or a queue with a free member)?
    fn reachable(&self, target: &Target, call: &Call) -> bool {
        match target {
            Target::Direct(raw) => !self.is_engaged(raw),
            Target::Queue(app_id) => self.free_member(app_id, 0, call).is_some(),
        }
    }

    fn busy_error(target: &str) -> CallError {
        CallError::new(ErrorCode::Busy, format!("`{target}` is busy in another call"))
    }

    fn place(
        &mut self,
        now: u64,
        call_id: String,
        caller: Party,
        endpoint: String,
        targets: Vec<String>,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        if call_id.is_empty() {
            return Err(CallError::new(ErrorCode::InvalidParameter, "call id is empty"));
        }
        if self.calls.contains_key(&call_id) {
            return Err(CallError::new(ErrorCode::Conflict, format!("call `{call_id}` already exists")));
        }
        let caller_id = check_caller(&caller.raw_id)?;
        let server_leg = is_server_leg(&endpoint);
        if !server_leg && self.is_engaged(&caller.raw_id) {
            return Err(CallError::new(ErrorCode::InvalidState, "you are already in a call; hang up first"));
        }
        let mut unique: Vec<String> = Vec::new();
        for t in targets {
            if !unique.contains(&t) {
                unique.push(t);
            }
        }
        if unique.is_empty() {
            return Err(CallError::new(ErrorCode::InvalidParameter, "a call needs at least one target"));
        }
        if unique.len() + 1 > self.config.max_participants {
            return Err(CallError::new(
                ErrorCode::CapacityReached,
                format!("a call holds at most {} participants", self.config.max_participants),
            ));
        }
        let mut checked = Vec::with_capacity(unique.len());
        for t in &unique {
            if *t == caller.raw_id {
                return Err(CallError::new(ErrorCode::InvalidParameter, "you cannot call yourself"));
            }
            // A phone caller ringing a phone number is the SIP gateway's `call-automation`
            // route: the number is one palaver owns (only the gateway places calls as a phone,
            // to its own numbers), so the dial-out policy does not apply.
            let target = if is_phone(&caller.raw_id) && is_phone(t) {
                Target::Direct(t.clone())
            } else {
                resolve_target(&self.config, t, std::slice::from_ref(&caller_id))?
            };
            checked.push((t.clone(), target));
        }
        let call = Call {
            id: call_id.clone(),
            caller: caller.clone(),
            answered: false,
            call_type: if checked.len() > 1 { CallType::Group } else { CallType::P2P },
            members: vec![Member { party: caller, endpoint, billed: false }],
            invites: Vec::new(),
        };
        if !checked.iter().any(|(_, t)| self.reachable(t, &call)) {
            return Err(Self::busy_error(&checked[0].0));
        }
        if !server_leg && !is_phone(&call.caller.raw_id) {
            self.engaged.insert(call.caller.raw_id.clone(), call_id.clone());
        }
        let by = call.caller.raw_id.clone();
        self.calls.insert(call_id.clone(), call);
        // Users called directly ring first; a queue then hunts among the members left.
        checked.sort_by_key(|(_, t)| matches!(t, Target::Queue(_)));
        for (raw, target) in checked {
            if self.reachable(&target, &self.calls[&call_id]) {
                self.start_invite(now, &call_id, (raw, target, None), by.clone(), Purpose::Join, out);
            } else {
                let call = &self.calls[&call_id];
                call.notify_members(
                    out,
                    None,
                    CallEvent::InviteFailed { call_id: call_id.clone(), target: raw, reason: CallEndReason::Busy },
                );
            }
        }
        Ok(())
    }

    /// Create an invitation and ring its first user (a user rings for `ring_timeout_secs`, or the
    /// configured time). The target must be reachable.
    fn start_invite(
        &mut self,
        now: u64,
        call_id: &str,
        (raw, target, ring_timeout_secs): (String, Target, Option<u64>),
        by: String,
        purpose: Purpose,
        out: &mut Vec<Output>,
    ) {
        let id = self.next_invite_id;
        self.next_invite_id += 1;
        let (ringing, queue, deadline) = match &target {
            Target::Direct(user) => {
                (user.clone(), None, now + ring_timeout_secs.unwrap_or(self.config.ring_timeout_secs) * 1000)
            }
            Target::Queue(app_id) => {
                let call = &self.calls[call_id];
                let (idx, member) = self.free_member(app_id, 0, call).expect("reachable() checked a free member");
                let ring_ms = self.config.queue(app_id).map_or(15, |q| q.member_ring_timeout_secs) * 1000;
                (member, Some(QueueCursor { app_id: app_id.clone(), next_index: idx + 1 }), now + ring_ms)
            }
        };
        let invite = Invite { id, target: raw, by, purpose, queue, ringing, deadline };
        let call = self.calls.get_mut(call_id).expect("call exists");
        call.invites.push(invite);
        let invite = call.invites.last().expect("just pushed").clone();
        Self::ring(call, &invite, now, out);
    }

    /// Tell the rung user and the connected participants that `invite` rings.
    fn ring(call: &Call, invite: &Invite, now: u64, out: &mut Vec<Output>) {
        let queue_raw = invite.queue.as_ref().map(|q| format!("28:orgid:{}", q.app_id));
        let transferred_by = match &invite.purpose {
            Purpose::Transfer { transferor } => call.member(transferor).map(|m| m.party.clone()),
            Purpose::Join => None,
        };
        out.push(Output::Notify {
            to: invite.ringing.clone(),
            event: CallEvent::Incoming {
                call_id: call.id.clone(),
                caller: call.caller.clone(),
                participants: call.parties(),
                queue: queue_raw.clone(),
                transferred_by,
                ring_timeout_ms: invite.deadline.saturating_sub(now),
                join: None,
                custom_context: None,
                caller_id_number: None,
            },
        });
        call.notify_members(
            out,
            None,
            CallEvent::Ringing { call_id: call.id.clone(), target: invite.ringing.clone(), queue: queue_raw },
        );
    }

    fn accept(
        &mut self,
        call_id: String,
        callee: Party,
        endpoint: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.calls.get(&call_id).ok_or_else(|| not_found(&call_id))?;
        let Some(idx) = call.invite_ringing(&callee.raw_id) else {
            if call.is_member(&callee.raw_id) {
                return Err(CallError::new(ErrorCode::InvalidState, "you are already connected to this call"));
            }
            return Err(not_found(&call_id));
        };
        if !is_server_leg(&endpoint) && self.is_engaged(&callee.raw_id) {
            return Err(CallError::new(ErrorCode::InvalidState, "you are already in another call; hang up first"));
        }
        let call = self.calls.get_mut(&call_id).expect("checked");
        let invite = call.invites.remove(idx);
        if let Purpose::Transfer { transferor } = &invite.purpose
            && call.is_member(transferor)
        {
            // A transferor who already hung up (blind transfer) is not told again.
            out.push(Output::Notify {
                to: transferor.clone(),
                event: CallEvent::TransferAccepted {
                    call_id: call_id.clone(),
                    target: invite.target.clone(),
                    accepted_by: callee.clone(),
                },
            });
            Self::remove_member(&mut self.engaged, call, transferor, CallEndReason::Transferred, out);
        }
        let first_answer = !call.answered;
        if first_answer {
            call.answered = true;
            for m in call.members.iter_mut() {
                m.billed = true;
                out.push(Output::ParticipantConnected {
                    call_id: call_id.clone(),
                    participant: m.party.clone(),
                    endpoint: m.endpoint.clone(),
                    call_type: call.call_type,
                });
            }
        } else {
            call.notify_members(
                out,
                None,
                CallEvent::ParticipantJoined { call_id: call_id.clone(), participant: callee.clone() },
            );
        }
        call.members.push(Member { party: callee.clone(), endpoint: endpoint.clone(), billed: true });
        if !is_server_leg(&endpoint) && !is_phone(&callee.raw_id) {
            self.engaged.insert(callee.raw_id.clone(), call_id.clone());
        }
        if call.members.len() > 2 && call.call_type == CallType::P2P {
            call.call_type = CallType::Group;
            out.push(Output::CallTypeChanged { call_id: call_id.clone(), call_type: CallType::Group });
        }
        out.push(Output::ParticipantConnected {
            call_id: call_id.clone(),
            participant: callee.clone(),
            endpoint,
            call_type: call.call_type,
        });
        let connected =
            CallEvent::Connected { call_id: call_id.clone(), participants: call.parties(), call_type: call.call_type };
        if first_answer {
            // The caller learns the call is up; later joiners are announced with participantJoined.
            out.push(Output::Notify { to: call.caller.raw_id.clone(), event: connected.clone() });
        }
        out.push(Output::Notify { to: callee.raw_id, event: connected });
        Ok(())
    }

    /// Take a connected participant out of `call`, telling them and the others.
    fn remove_member(
        engaged: &mut HashMap<String, String>,
        call: &mut Call,
        raw_id: &str,
        reason: CallEndReason,
        out: &mut Vec<Output>,
    ) {
        let Some(pos) = call.members.iter().position(|m| m.party.raw_id == raw_id) else { return };
        let member = call.members.remove(pos);
        // Only this call's engagement (a server leg of the same identity is never engaged).
        if engaged.get(raw_id) == Some(&call.id) {
            engaged.remove(raw_id);
        }
        if member.billed {
            out.push(Output::ParticipantDisconnected {
                call_id: call.id.clone(),
                raw_id: raw_id.to_string(),
                reason: reason.session_end_reason(),
            });
        }
        out.push(Output::Notify {
            to: raw_id.to_string(),
            event: CallEvent::Ended { call_id: call.id.clone(), reason },
        });
        call.notify_members(
            out,
            None,
            CallEvent::ParticipantLeft { call_id: call.id.clone(), participant: raw_id.to_string(), reason },
        );
    }

    fn decline(
        &mut self,
        now: u64,
        call_id: String,
        user: String,
        reason: CallEndReason,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.calls.get(&call_id).ok_or_else(|| not_found(&call_id))?;
        let Some(idx) = call.invite_ringing(&user) else {
            if call.is_member(&user) {
                return Err(CallError::new(ErrorCode::InvalidState, "you are connected; hang up instead of declining"));
            }
            return Err(not_found(&call_id));
        };
        let invite_id = call.invites[idx].id;
        out.push(Output::Notify { to: user, event: CallEvent::Ended { call_id: call_id.clone(), reason } });
        self.ring_over(now, &call_id, invite_id, reason, out);
        Ok(())
    }

    /// The current ring of an invitation is over without an answer: a queue tries its
    /// next free member, anything else fails with `reason`.
    fn ring_over(&mut self, now: u64, call_id: &str, invite_id: u64, reason: CallEndReason, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get(call_id) else { return };
        let Some(idx) = call.invites.iter().position(|i| i.id == invite_id) else { return };
        if let Some(cursor) = call.invites[idx].queue.clone() {
            // Members before `next_index` (including the one who stopped ringing) are skipped.
            if let Some((member_idx, member)) = self.free_member(&cursor.app_id, cursor.next_index, call) {
                let ring_ms = self.config.queue(&cursor.app_id).map_or(15, |q| q.member_ring_timeout_secs) * 1000;
                let call = self.calls.get_mut(call_id).expect("checked");
                let invite = &mut call.invites[idx];
                invite.ringing = member;
                invite.deadline = now + ring_ms;
                invite.queue = Some(QueueCursor { app_id: cursor.app_id, next_index: member_idx + 1 });
                let invite = invite.clone();
                Self::ring(call, &invite, now, out);
                return;
            }
            self.fail_invite(call_id, idx, CallEndReason::QueueExhausted, out);
        } else {
            self.fail_invite(call_id, idx, reason, out);
        }
    }

    /// Drop invitation `idx` as failed, tell the participants, then apply the lifetime rule.
    fn fail_invite(&mut self, call_id: &str, idx: usize, reason: CallEndReason, out: &mut Vec<Output>) {
        let call = self.calls.get_mut(call_id).expect("caller checked");
        let invite = call.invites.remove(idx);
        let event = match invite.purpose {
            Purpose::Join => CallEvent::InviteFailed { call_id: call_id.to_string(), target: invite.target, reason },
            Purpose::Transfer { .. } => {
                CallEvent::TransferFailed { call_id: call_id.to_string(), target: invite.target, reason }
            }
        };
        call.notify_members(out, None, event);
        self.apply_lifetime(call_id, reason, out);
    }

    /// End the call if nobody is connected, or one participant is left and nothing rings.
    fn apply_lifetime(&mut self, call_id: &str, reason: CallEndReason, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get(call_id) else { return };
        let over = call.members.is_empty() || (call.members.len() == 1 && call.invites.is_empty());
        if !over {
            return;
        }
        let mut call = self.calls.remove(call_id).expect("checked");
        for invite in call.invites.drain(..) {
            out.push(Output::Notify {
                to: invite.ringing,
                event: CallEvent::Ended { call_id: call_id.to_string(), reason: CallEndReason::Cancelled },
            });
        }
        for m in call.members.drain(..) {
            if self.engaged.get(&m.party.raw_id) == Some(&call.id) {
                self.engaged.remove(&m.party.raw_id);
            }
            if m.billed {
                out.push(Output::ParticipantDisconnected {
                    call_id: call_id.to_string(),
                    raw_id: m.party.raw_id.clone(),
                    reason: EndReason::ConversationEnded,
                });
            }
            out.push(Output::Notify {
                to: m.party.raw_id,
                event: CallEvent::Ended { call_id: call_id.to_string(), reason },
            });
        }
        out.push(Output::CallEnded { call_id: call_id.to_string(), reason });
    }

    fn connected_member<'a>(&'a self, call_id: &str, user: &str) -> Result<&'a Call, CallError> {
        let call = self.calls.get(call_id).ok_or_else(|| not_found(call_id))?;
        if call.is_member(user) {
            return Ok(call);
        }
        if call.invite_ringing(user).is_some() {
            return Err(CallError::new(ErrorCode::InvalidState, "you are being rung; accept or decline first"));
        }
        Err(not_found(call_id))
    }

    fn cancel(&mut self, call_id: String, user: String, out: &mut Vec<Output>) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &user)?;
        if !call.answered {
            // Only the caller is connected before an answer: withdraw the whole call.
            let call = self.calls.get_mut(&call_id).expect("checked");
            for invite in call.invites.drain(..) {
                out.push(Output::Notify {
                    to: invite.ringing,
                    event: CallEvent::Ended { call_id: call_id.clone(), reason: CallEndReason::Cancelled },
                });
            }
            self.apply_lifetime(&call_id, CallEndReason::Cancelled, out);
            return Ok(());
        }
        if !call.invites.iter().any(|i| i.by == user) {
            return Err(CallError::new(
                ErrorCode::InvalidState,
                "you have no pending invitation or transfer to cancel",
            ));
        }
        while let Some(idx) = self.calls.get(&call_id).and_then(|c| c.invites.iter().position(|i| i.by == user)) {
            let ringing = self.calls[&call_id].invites[idx].ringing.clone();
            out.push(Output::Notify {
                to: ringing,
                event: CallEvent::Ended { call_id: call_id.clone(), reason: CallEndReason::Cancelled },
            });
            self.fail_invite(&call_id, idx, CallEndReason::Cancelled, out);
        }
        Ok(())
    }

    fn hang_up(&mut self, call_id: String, user: String, out: &mut Vec<Output>) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &user)?;
        if !call.answered {
            return self.cancel(call_id, user, out);
        }
        self.leave(&call_id, &user, CallEndReason::HungUp, out);
        Ok(())
    }

    fn leave(&mut self, call_id: &str, user: &str, reason: CallEndReason, out: &mut Vec<Output>) {
        let call = self.calls.get_mut(call_id).expect("caller checked");
        Self::remove_member(&mut self.engaged, call, user, reason, out);
        // A transfer whose transferor is now alone has nobody left to hand over.
        if let [only] = call.members.as_slice() {
            let only = only.party.raw_id.clone();
            if let Some(idx) = call
                .invites
                .iter()
                .position(|i| matches!(&i.purpose, Purpose::Transfer { transferor } if *transferor == only))
            {
                let invite = call.invites.remove(idx);
                out.push(Output::Notify {
                    to: invite.ringing,
                    event: CallEvent::Ended { call_id: call_id.to_string(), reason: CallEndReason::Cancelled },
                });
                call.notify_members(
                    out,
                    None,
                    CallEvent::TransferFailed { call_id: call_id.to_string(), target: invite.target, reason },
                );
            }
        }
        self.apply_lifetime(call_id, reason, out);
    }

    fn check_new_target(
        &self,
        call: &Call,
        by: &str,
        target: &str,
        exclude: Option<&str>,
    ) -> Result<Target, CallError> {
        if target == by {
            return Err(CallError::new(ErrorCode::InvalidParameter, "you cannot invite yourself"));
        }
        if call.is_member(target)
            || call.invite_ringing(target).is_some()
            || call.invites.iter().any(|i| i.target == target)
        {
            return Err(CallError::new(
                ErrorCode::InvalidState,
                format!("`{target}` is already in or invited to this call"),
            ));
        }
        if call.members.len() + call.invites.len() + 1 > self.config.max_participants {
            return Err(CallError::new(
                ErrorCode::CapacityReached,
                format!("a call holds at most {} participants", self.config.max_participants),
            ));
        }
        let checked = resolve_target(&self.config, target, &call.identities_except(exclude))?;
        if !self.reachable(&checked, call) {
            return Err(Self::busy_error(target));
        }
        Ok(checked)
    }

    fn add(
        &mut self,
        now: u64,
        call_id: String,
        by: String,
        target: String,
        ring_timeout_secs: Option<u64>,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &by)?;
        let checked = self.check_new_target(call, &by, &target, None)?;
        self.start_invite(now, &call_id, (target, checked, ring_timeout_secs), by, Purpose::Join, out);
        Ok(())
    }

    fn transfer(
        &mut self,
        now: u64,
        call_id: String,
        by: String,
        target: String,
        out: &mut Vec<Output>,
    ) -> Result<(), CallError> {
        let call = self.connected_member(&call_id, &by)?;
        if !call.answered || call.members.len() < 2 {
            return Err(CallError::new(
                ErrorCode::InvalidState,
                "only a connected call with someone else in it can be transferred",
            ));
        }
        if call.invites.iter().any(|i| matches!(i.purpose, Purpose::Transfer { .. })) {
            return Err(CallError::new(ErrorCode::InvalidState, "a transfer of this call is already in progress"));
        }
        let checked = self.check_new_target(call, &by, &target, Some(&by))?;
        self.start_invite(
            now,
            &call_id,
            (target, checked, None),
            by.clone(),
            Purpose::Transfer { transferor: by },
            out,
        );
        Ok(())
    }

    fn user_gone(&mut self, now: u64, user: &str, out: &mut Vec<Output>) {
        for call_id in self.calls_of(user) {
            self.user_gone_from(now, &call_id, user, out);
        }
    }

    /// `user` lost its connection to call `call_id`: connected, it leaves (the call ends when
    /// it placed an unanswered call); ringing, its invitation is over.
    fn user_gone_from(&mut self, now: u64, call_id: &str, user: &str, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get(call_id) else { return };
        if call.member(user).is_some_and(|m| is_server_leg(&m.endpoint)) {
            return;
        }
        if call.is_member(user) {
            if call.answered {
                self.leave(call_id, user, CallEndReason::ConnectionLost, out);
            } else {
                let call = self.calls.get_mut(call_id).expect("checked");
                for invite in call.invites.drain(..) {
                    out.push(Output::Notify {
                        to: invite.ringing,
                        event: CallEvent::Ended { call_id: call_id.to_string(), reason: CallEndReason::Cancelled },
                    });
                }
                self.apply_lifetime(call_id, CallEndReason::Cancelled, out);
            }
        } else if let Some(idx) = call.invite_ringing(user) {
            let invite_id = call.invites[idx].id;
            self.ring_over(now, call_id, invite_id, CallEndReason::NoAnswer, out);
        }
    }

    fn tick(&mut self, now: u64, out: &mut Vec<Output>) {
        let mut due: Vec<(u64, u64, String, String)> = self
            .calls
            .values()
            .flat_map(|c| {
                c.invites
                    .iter()
                    .filter(|i| i.deadline <= now)
                    .map(|i| (i.deadline, i.id, c.id.clone(), i.ringing.clone()))
            })
            .collect();
        due.sort();
        for (_, invite_id, call_id, ringing) in due {
            // An earlier expiry in this tick may have ended the call or re-armed this invite.
            let still_due = self
                .calls
                .get(&call_id)
                .and_then(|c| c.invites.iter().find(|i| i.id == invite_id))
                .is_some_and(|i| i.deadline <= now && i.ringing == ringing);
            if !still_due {
                continue;
            }
            out.push(Output::Notify {
                to: ringing,
                event: CallEvent::Ended { call_id: call_id.clone(), reason: CallEndReason::NoAnswer },
            });
            self.ring_over(now, &call_id, invite_id, CallEndReason::NoAnswer, out);
        }
    }

    /// Check the machine's internal consistency (tests drive long random stories with it).
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        for (user, call_id) in &self.engaged {
            let call = self.calls.get(call_id).unwrap_or_else(|| panic!("{user} engaged in missing call {call_id}"));
            assert!(call.is_member(user), "{user} engaged in {call_id} but not a member");
        }
        for call in self.calls.values() {
            assert!(!call.members.is_empty(), "call {} has nobody connected", call.id);
            assert!(call.members.len() >= 2 || !call.invites.is_empty(), "call {} should have ended", call.id);
            for m in call.members.iter().filter(|m| !is_server_leg(&m.endpoint) && !is_phone(&m.party.raw_id)) {
                assert_eq!(self.engaged.get(&m.party.raw_id), Some(&call.id), "member {} not engaged", m.party.raw_id);
                assert_eq!(m.billed, call.answered, "billing state of {}", m.party.raw_id);
            }
            for (i, invite) in call.invites.iter().enumerate() {
                assert!(!call.is_member(&invite.ringing), "{} rung while connected", invite.ringing);
                assert!(
                    call.invites[i + 1..].iter().all(|o| o.ringing != invite.ringing),
                    "{} rung twice in {}",
                    invite.ringing,
                    call.id
                );
            }
            let transfers = call.invites.iter().filter(|i| matches!(i.purpose, Purpose::Transfer { .. })).count();
            assert!(transfers <= 1, "two transfers in {}", call.id);
        }
    }
}
