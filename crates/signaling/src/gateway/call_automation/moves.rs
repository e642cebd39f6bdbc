//! Call Automation `participants:moveHere` into a group call or a room joined with
//! `connect`: each target, a user connected from a socket (WebSocket or QUIC) in a call
//! between users (`fromCall`: the application's call connection there, or its server call
//! id), leaves that call and is joined into the conversation on the same socket without
//! ringing (`call.moved`, `call.ended`, then `joined`; see docs/signaling.md "Moved into a
//! conversation"). `MoveParticipantSucceeded` follows once the target is in the connection's
//! roster; `MoveParticipantFailed` when the call refuses (not connected there, a phone or a
//! server-side participant) or the target has not arrived within [`MOVE_ARRIVAL_TIMEOUT`]
//! (e.g. the conversation's admission refused it). A phone participant moves the same way:
//! the SIP gateway seats it in the conversation and re-seats its trunk media there without
//! hanging the trunk up (`gateway/phone_moves.rs`).

use super::*;
use std::time::Duration;

/// How long a moved participant's socket has to show up in the conversation's roster.
pub(crate) const MOVE_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    /// `participants:moveHere` for a connection seated in a group call or a room; `from` is
    /// (`fromCall` as the application named it, that call's server call id).
    pub(super) async fn ca_move_into_conversation(
        &self,
        ccid: &str,
        targets: &[String],
        (from_call, from_server_call): (&str, &str),
        route: OperationRoute,
    ) -> Result<(), CallAutomationError> {
        let ca = self.call_automation();
        let (join, roster) = ca.conversation_scope(ccid).ok_or_else(|| CallAutomationError::call_not_found(ccid))?;
        ca.with_machine(|m| m.begin_move(ccid, targets, from_call, route))?;
        for target in targets {
            let refused = if roster.iter().any(|raw| raw == target) {
                Some(CallAutomationError::invalid_argument(format!("`{target}` is already in the call.")))
            } else {
                let input = Input::MoveToConversation {
                    call_id: from_server_call.to_string(),
                    target: target.clone(),
                    join: join.clone(),
                };
                self.call_request(input).await.err().map(call_automation_error)
            };
            if let Some(why) = refused {
                let outputs = ca.with_machine(|m| m.move_failed(ccid, target, &why));
                self.call_automation_outputs(outputs);
                continue;
            }
            tracing::info!(%ccid, %target, from = %from_server_call, "moving a participant into a conversation");
            let (gateway, ccid, target) = (self.clone(), ccid.to_string(), target.clone());
            tokio::spawn(async move {
                tokio::time::sleep(MOVE_ARRIVAL_TIMEOUT).await;
                let why = CallAutomationError::new(
                    408,
                    8587,
                    format!("`{target}` did not arrive in the call within {} s.", MOVE_ARRIVAL_TIMEOUT.as_secs()),
                );
                // Nothing when it arrived (the move was reported as succeeded).
                let outputs = gateway.call_automation().with_machine(|m| m.move_failed(&ccid, &target, &why));
                gateway.call_automation_outputs(outputs);
            });
        }
        Ok(())
    }
}
