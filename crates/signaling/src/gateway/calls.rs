//! The call actor: one task owning the sans-IO [`CallManager`] for every 1:1/group call
//! between users; it turns call outputs into frames for every socket of the notified
//! user and into billing session events.

use super::Gateway;
use crate::domain::calls::{CallError, CallManager, Input, Output};
use palaver_core::time::now_ms;
use palaver_core::{CommunicationIdentifier, EndpointType, ErrorCode, ParticipantType, SessionEnded, SessionStarted};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(crate) enum CallsMsg {
    Request {
        input: Input,
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Fire-and-forget (e.g. `UserGone`).
    Notice(Input),
    /// Is `raw_id` a connected participant of `call_id`?
    IsConnected {
        call_id: String,
        raw_id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Billing (and media) session id of one participant in one call.
pub(crate) fn session_id(call_id: &str, raw_id: &str) -> String {
    format!("{call_id}/{raw_id}")
}

impl Gateway {
    fn calls_tx(&self) -> &mpsc::UnboundedSender<CallsMsg> {
        self.calls.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let manager = CallManager::new(self.calls_config());
            tokio::spawn(run(self.clone(), manager, rx));
            tx
        })
    }

    /// Feed a call input; `Err` carries the code for the error frame.
    pub(crate) async fn call_request(&self, input: Input) -> Result<(), CallError> {
        let (reply, rx) = oneshot::channel();
        let down = || CallError::new(ErrorCode::InternalError, "the call service is not running");
        self.calls_tx().send(CallsMsg::Request { input, reply }).map_err(|_| down())?;
        rx.await.map_err(|_| down())?
    }

    /// Is the user connected in that call (media may be negotiated)?
    pub(crate) async fn connected_in_call(&self, call_id: &str, raw_id: &str) -> bool {
        let (reply, rx) = oneshot::channel();
        let msg = CallsMsg::IsConnected { call_id: call_id.to_string(), raw_id: raw_id.to_string(), reply };
        self.calls_tx().send(msg).is_ok() && rx.await.unwrap_or(false)
    }

    /// The user's last socket is gone and stayed gone for the grace period.
    pub(crate) fn schedule_user_gone(&self, raw_id: String) {
        let gateway = self.clone();
        let grace = Duration::from_millis(self.config().reconnect_grace_ms.max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if gateway.presence_of(&raw_id).is_empty() && gateway.calls.get().is_some() {
                let _ = gateway.calls_tx().send(CallsMsg::Notice(Input::UserGone { user: raw_id }));
            }
        });
    }
}

async fn run(gateway: Gateway, mut manager: CallManager, mut rx: mpsc::UnboundedReceiver<CallsMsg>) {
    loop {
        let now = now_ms().max(0) as u64;
        let wait = manager.poll_timeout().map(|t| Duration::from_millis(t.saturating_sub(now)));
        let result = tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(CallsMsg::Request { input, reply }) => {
                    let r = manager.handle(now_ms().max(0) as u64, input);
                    let (outputs, answer) = match r {
                        Ok(o) => (o, Ok(())),
                        Err(e) => (Vec::new(), Err(e)),
                    };
                    let _ = reply.send(answer);
                    outputs
                }
                Some(CallsMsg::Notice(input)) => manager.handle(now_ms().max(0) as u64, input).unwrap_or_default(),
                Some(CallsMsg::IsConnected { call_id, raw_id, reply }) => {
                    let connected = manager.snapshot(&call_id).is_some_and(|c| {
                        c.state == crate::domain::calls::CallState::Connected && c.participants.iter().any(|p| p.raw_id == raw_id)
                    });
                    let _ = reply.send(connected);
                    Vec::new()
                }
            },
            _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                manager.handle(now_ms().max(0) as u64, Input::Tick).unwrap_or_default()
            }
        };
        execute(&gateway, result);
    }
}

fn execute(gateway: &Gateway, outputs: Vec<Output>) {
    let observer = gateway.observer();
    for output in outputs {
        match output {
            Output::Notify { to, event } => {
                let text: Arc<str> = serde_json::to_string(&event).unwrap_or_default().into();
                gateway.notify_user(&to, text);
            }
            Output::ParticipantConnected { call_id, participant, endpoint, call_type } => {
                let native = gateway.presence_of(&participant.raw_id).iter().any(|e| e.conn_id == endpoint && e.native);
                let directory =
                    CommunicationIdentifier::parse(&participant.raw_id).is_ok_and(|i| i.is_directory_user());
                let participant_type = match (directory, native) {
                    (true, true) => ParticipantType::Teams,
                    (true, false) => ParticipantType::AcsAsM365User,
                    (false, _) => ParticipantType::Acs,
                };
                observer.session_started(SessionStarted {
                    session_id: session_id(&call_id, &participant.raw_id),
                    conversation_id: call_id,
                    call_type,
                    participant_raw_id: participant.raw_id,
                    participant_type,
                    endpoint_type: EndpointType::Voip,
                    thread_id: None,
                    at_ms: now_ms(),
                });
            }
            Output::ParticipantDisconnected { call_id, raw_id, reason } => {
                let media_session = session_id(&call_id, &raw_id);
                if gateway.call_media.remove(&media_session).is_some() {
                    gateway.media().leave(crate::gateway::MediaSession {
                        conversation_id: call_id.clone(),
                        participant_id: media_session,
                        may_send_media: true,
                    });
                }
                observer.session_ended(SessionEnded {
                    session_id: session_id(&call_id, &raw_id),
                    conversation_id: call_id,
                    reason,
                    at_ms: now_ms(),
                });
            }
            Output::CallTypeChanged { call_id, call_type } => observer.call_type_changed(&call_id, call_type),
            Output::CallEnded { call_id, reason } => {
                tracing::info!(call = %call_id, reason = ?reason, "call ended");
            }
        }
    }
}
