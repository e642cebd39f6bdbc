//! Phone participants (SIP trunk legs) in the call machinery. A phone caller or callee is a
//! [`Party`] with a `4:+E.164` raw id; it has no socket, so the call actor hands the call
//! events addressed to it to the SIP gateway through [`Gateway::take_phone_events`], and the
//! SIP gateway feeds the phone's side (place, answer, decline, hang up, transfer) back
//! through the methods here. Its media joins the call's conference through
//! [`MediaPlane::attach_trunk`](super::MediaPlane::attach_trunk); the SIP gateway releases it when the leg ends.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::Gateway;
use super::calls::session_id;
use super::media::{MediaFuture, MediaSession, TrunkAnswer};
use crate::domain::calls::{CallError, CallEvent, Input, Party};
use palaver_core::CommunicationIdentifier;

/// A call event addressed to a phone participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNotice {
    /// The phone's raw id (`4:+14255550100`).
    pub phone: String,
    pub event: CallEvent,
}

/// The channel from the call actor to the SIP gateway (taken once).
pub(crate) struct PhoneHook {
    tx: mpsc::UnboundedSender<PhoneNotice>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<PhoneNotice>>>,
}

impl Default for PhoneHook {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx: Mutex::new(Some(rx)) }
    }
}

/// True for a phone participant's raw id.
pub fn is_phone(raw_id: &str) -> bool {
    matches!(CommunicationIdentifier::parse(raw_id), Ok(CommunicationIdentifier::PhoneNumber { .. }))
}

impl Gateway {
    /// The call events for phone participants, for the SIP gateway; `None` after the first call.
    pub fn take_phone_events(&self) -> Option<mpsc::UnboundedReceiver<PhoneNotice>> {
        self.phone.rx.lock().ok()?.take()
    }

    /// Called by the call actor for every notification: phone parties go to the SIP gateway.
    pub(crate) fn notify_phone(&self, to: &str, event: &CallEvent) {
        if is_phone(to) {
            let _ = self.phone.tx.send(PhoneNotice { phone: to.to_owned(), event: event.clone() });
        }
    }

    /// A phone caller rings `target` (a directory user or a call queue); `endpoint` names
    /// the SIP leg (its Call-ID).
    pub async fn phone_place(
        &self,
        call_id: &str,
        caller: Party,
        endpoint: &str,
        target: &str,
    ) -> Result<(), CallError> {
        let input = Input::Place {
            call_id: call_id.to_owned(),
            caller,
            endpoint: endpoint.to_owned(),
            targets: vec![target.to_owned()],
        };
        self.call_request(input).await
    }

    /// The phone dialled out to answered.
    pub async fn phone_accept(&self, call_id: &str, callee: Party, endpoint: &str) -> Result<(), CallError> {
        self.call_request(Input::Accept { call_id: call_id.to_owned(), callee, endpoint: endpoint.to_owned() }).await
    }

    /// The phone dialled out to refused, was busy or could not be reached.
    pub async fn phone_decline(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::Decline { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The phone caller withdrew its call before an answer (SIP CANCEL).
    pub async fn phone_cancel(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::Cancel { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The connected phone hung up (SIP BYE).
    pub async fn phone_hang_up(&self, call_id: &str, phone: &str) -> Result<(), CallError> {
        self.call_request(Input::HangUp { call_id: call_id.to_owned(), user: phone.to_owned() }).await
    }

    /// The connected phone's side hands its place to `target` (SIP REFER from the trunk).
    pub async fn phone_transfer(&self, call_id: &str, phone: &str, target: &str) -> Result<(), CallError> {
        let input = Input::Transfer { call_id: call_id.to_owned(), by: phone.to_owned(), target: target.to_owned() };
        self.call_request(input).await
    }

    /// The phone leg's media session in the call (its conference is the call's).
    pub fn phone_media_session(call_id: &str, phone: &str) -> MediaSession {
        MediaSession {
            conversation_id: call_id.to_owned(),
            participant_id: session_id(call_id, phone),
            may_send_media: true,
        }
    }

    /// Joins the phone leg's plain RTP to the call's conference with the trunk's SDP.
    pub fn phone_attach(
        &self,
        call_id: &str,
        phone: &str,
        peer_sdp: String,
        codecs: Vec<String>,
    ) -> MediaFuture<TrunkAnswer> {
        self.media().attach_trunk(Self::phone_media_session(call_id, phone), peer_sdp, codecs)
    }

    /// The server's SDP offer for dialling the phone out through a trunk.
    pub fn phone_offer(&self, call_id: &str, phone: &str, codecs: Vec<String>) -> MediaFuture<String> {
        self.media().trunk_offer(Self::phone_media_session(call_id, phone), codecs)
    }

    /// Releases the phone leg's media.
    pub fn phone_detach(&self, call_id: &str, phone: &str) {
        self.media().leave(Self::phone_media_session(call_id, phone));
    }
}
