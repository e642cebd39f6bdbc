//! What a Call Automation ring carries to its target: the `customCallingContext` of an add
//! or transfer (to a client as `customContext`, to a phone as SIP headers) and the
//! `sourceCallerIdNumber` a phone target is shown, kept per (call id, target) until the ring
//! goes out or the call ends.

use super::*;

impl CallAutomationMachine {
    /// Remember the `customContext` the IncomingCall of `target` in `call_id` will carry.
    pub fn set_custom_context(&mut self, call_id: &str, target: &str, custom: Value) {
        self.custom_contexts.insert((call_id.to_string(), target.to_string()), custom);
    }

    /// Remember the number a phone `target` of `call_id` is shown as the caller
    /// (`sourceCallerIdNumber`, an owned number the API checked).
    pub fn set_caller_id(&mut self, call_id: &str, target: &str, number: String) {
        self.caller_ids.insert((call_id.to_string(), target.to_string()), number);
    }

    /// `event` for `to` with the `customContext` and caller id kept for it: a ring
    /// (`call.incoming`) from a Call Automation create, add or transfer carries them to the
    /// client or the SIP gateway (kept until the call's IncomingCall event takes the context).
    pub fn with_custom_context(&self, to: &str, mut event: CallEvent) -> CallEvent {
        if let CallEvent::Incoming { call_id, custom_context, caller_id_number, .. } = &mut event {
            let key = (call_id.clone(), to.to_string());
            if custom_context.is_none() {
                *custom_context = self.custom_contexts.get(&key).cloned();
            }
            if caller_id_number.is_none() {
                *caller_id_number = self.caller_ids.get(&key).cloned();
            }
        }
        event
    }

    /// The caller id kept for phone `target` of `call_id` (taken: a ring into a group call or
    /// a room carries it on its own `call.incoming`).
    pub fn take_caller_id(&mut self, call_id: &str, target: &str) -> Option<String> {
        self.caller_ids.remove(&(call_id.to_string(), target.to_string()))
    }

    /// Forget the `customContext` kept for `target` (its add or transfer was refused).
    pub fn clear_custom_context(&mut self, call_id: &str, target: &str) {
        self.custom_contexts.remove(&(call_id.to_string(), target.to_string()));
        self.caller_ids.remove(&(call_id.to_string(), target.to_string()));
    }
}
