//! The trunk side of answering an inbound phone leg, shared by every route (a call, Call
//! Automation, a meeting): the `200 OK` with the SDP answer to the trunk's offer, or — for an
//! INVITE without an offer (RFC 3261 §13.2.1) — with the server's offer, the trunk's answer
//! then arriving in the ACK; and the BYE that waits for the ACK of that `200`
//! (RFC 3261 §15: a UAS must not send BYE before the ACK arrives or its timer, 64·T1, ends).
//!
//! Why waiting for the ACK works here and did not before: rsipstack moves a server dialog
//! from `WaitAck` to `Confirmed` when the INVITE transaction receives the ACK
//! (`InviteDialog::handle` → `handle_invite`) and broadcasts that once on the dialog's
//! state channel. The call loops read that channel and drop states they do not act on, so a
//! later wait *on the channel* for `Confirmed` never sees it when the ACK came first (every
//! normal call). [`bye_after_ack`] asks the dialog for its current state instead and only
//! listens while the dialog is still waiting.

use std::time::Duration;

use palaver_signaling::gateway::MediaSession;
use rsipstack::dialog::dialog::DialogStateReceiver;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCode};

use crate::config::{SrtpPolicy, TrunkConfig};
use crate::gateway::Shared;
use crate::hold::LegMedia;
use palaver_sfu::control::sip::{self as trunk_media, TrunkPolicy};

/// RFC 3261's 64·T1 (T1 = 500 ms): how long a 2xx waits for its ACK.
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(32);

/// Why a phone leg could not be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    /// The media plane refused the trunk's SDP (or produced no offer): answered 488.
    #[error("media: {0}")]
    Media(String),
    /// The trunk hung up or never acknowledged the 200 with its SDP answer.
    #[error("the trunk went away before the media was agreed")]
    Gone,
    #[error("SIP: {0}")]
    Sip(String),
}

/// The trunk's media preference as the media plane reads it (`TrunkPolicy::from_names`):
/// its codec names in order, its `srtp=` policy and, with `rtp_latching`, its signaling
/// addresses (`rtp_latching=…`). Every SDP offer and answer of the
/// trunk's legs goes through the media plane with this list.
pub(crate) fn media_preference(trunk: &TrunkConfig) -> Vec<String> {
    let mut names = policy(trunk).names();
    if trunk.rtp_latching {
        // Latch to sources from the SDP's IP or the trunk's signaling addresses.
        names.push(trunk_media::latching::name(&trunk.allow_from));
    }
    names
}

/// The trunk's codecs and SRTP policy for `control::sip::negotiate`.
pub(crate) fn policy(trunk: &TrunkConfig) -> TrunkPolicy {
    let mut policy = TrunkPolicy::from_names(&trunk.codecs);
    policy.trunk = Some(trunk.name.clone());
    policy.srtp = match trunk.srtp_policy() {
        SrtpPolicy::Off => trunk_media::SrtpPolicy::Off,
        SrtpPolicy::Optional => trunk_media::SrtpPolicy::Optional,
        SrtpPolicy::Required => trunk_media::SrtpPolicy::Required,
        SrtpPolicy::Dtls => trunk_media::SrtpPolicy::Dtls,
    };
    policy
}

fn sdp_header() -> Header {
    Header::ContentType(rsipstack::sip::headers::ContentType::new("application/sdp"))
}

/// Answers `dialog` and joins the phone's RTP to `session` (see the module docs); returns
/// the media agreed (with the codec, for the log).
pub(crate) async fn answer(
    shared: &Shared,
    dialog: &InviteDialog,
    states: &mut DialogStateReceiver,
    session: MediaSession,
    offer: Option<&str>,
    codecs: Vec<String>,
) -> Result<(LegMedia, String), AnswerError> {
    let gateway = &shared.gateway;
    if let Some(offer) = offer {
        let answer = gateway
            .phone_attach_session(session.clone(), offer.to_owned(), codecs.clone())
            .await
            .map_err(|e| AnswerError::Media(e.to_string()))?;
        let body = answer.sdp.clone().into_bytes();
        dialog.accept(Some(vec![sdp_header()]), Some(body)).map_err(|e| AnswerError::Sip(e.to_string()))?;
        shared.counters.response(200);
        let media = LegMedia { session, codecs, local_sdp: answer.sdp, remote_sdp: offer.to_owned(), held: false };
        return Ok((media, answer.codec));
    }
    // No offer in the INVITE: ours goes in the 200, the trunk's answer comes in the ACK.
    let ours = gateway
        .phone_offer_session(session.clone(), codecs.clone())
        .await
        .map_err(|e| AnswerError::Media(e.to_string()))?;
    dialog
        .accept(Some(vec![sdp_header()]), Some(ours.clone().into_bytes()))
        .map_err(|e| AnswerError::Sip(e.to_string()))?;
    shared.counters.response(200);
    if !wait_for_ack(dialog, states).await {
        gateway.phone_leave_session(session);
        return Err(AnswerError::Gone);
    }
    let ack = dialog.last_remote_ack();
    let sdp = ack.map(|a| String::from_utf8_lossy(&a.body).into_owned()).unwrap_or_default();
    if sdp.trim().is_empty() {
        gateway.phone_leave_session(session);
        return Err(AnswerError::Media("the ACK carries no SDP answer".to_owned()));
    }
    let agreed = gateway
        .phone_attach_session(session.clone(), sdp.clone(), codecs.clone())
        .await
        .map_err(|e| AnswerError::Media(e.to_string()))?;
    Ok((LegMedia { session, codecs, local_sdp: ours, remote_sdp: sdp, held: false }, agreed.codec))
}

/// Waits (at most [`ACK_TIMEOUT`]) while the dialog waits for the ACK of its 2xx; true once
/// it is confirmed, false when it ended or the ACK never came.
pub(crate) async fn wait_for_ack(dialog: &InviteDialog, states: &mut DialogStateReceiver) -> bool {
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    loop {
        let state = dialog.state();
        if state.is_confirmed() {
            return true;
        }
        if !state.waiting_ack() {
            // Only `Terminated` follows `WaitAck` besides `Confirmed`.
            return false;
        }
        match tokio::time::timeout_at(deadline, states.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return dialog.state().is_confirmed(),
        }
    }
}

/// Hangs the phone up: BYE once the ACK of the 2xx arrived (or its timer ended); nothing
/// when the dialog already ended.
pub(crate) async fn bye_after_ack(dialog: &InviteDialog, states: &mut DialogStateReceiver) {
    if dialog.state().waiting_ack() {
        tracing::debug!(dialog = %dialog.id(), "hang-up before the trunk's ACK: the BYE waits for it");
        wait_for_ack(dialog, states).await;
    }
    if !dialog.state().is_terminated() {
        let _ = dialog.bye().await;
    }
}

/// The 488 of a leg whose media could not be agreed (before any 200).
pub(crate) fn refuse_media(shared: &Shared, dialog: &InviteDialog) {
    shared.counters.response(488);
    let _ = dialog.reject(Some(StatusCode::NotAcceptableHere), None);
}
