//! One inbound call from a trunk: digest challenge when the trunk has credentials, the
//! called number's route, the SDP checked before anyone rings, then the call machinery rings
//! the directory user or the queue (caller `4:+E.164`, display name from `From`) while the
//! trunk hears 180; the answer attaches the phone's plain RTP to the call's conference and
//! sends 200 with the SDP answer; BYE or CANCEL from the trunk and a hang-up or refusal on
//! palaver's side end it on both. Also the relay of the call machinery's events to the
//! calls waiting for them.

use std::sync::Arc;
use std::time::Instant;

use palaver_core::ErrorCode;
use palaver_sfu::control::sip::negotiate;
use palaver_sfu::webrtc::sdp::Description;
use palaver_signaling::domain::calls::{CallEndReason, CallError, CallEvent, Party};
use palaver_signaling::gateway::PhoneNotice;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::From as FromHeader;
use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::mpsc;

use crate::answer::{AnswerError, answer, bye_after_ack, media_preference, policy, refuse_media};
use crate::config::{Route, TrunkConfig, normalize_number};
use crate::counters::{Direction, Outcome, SipCounters};
use crate::early::{Waiting, send_early_media};
use crate::gateway::{Shared, source_ip};
use crate::hold::LegMedia;
use crate::ringing::{Ringer, Wake};
use crate::trunks::Authentication;

/// The SIP final response for a call that ended before it was answered.
pub(crate) fn refusal(reason: CallEndReason) -> StatusCode {
    match reason {
        CallEndReason::Declined => StatusCode::Decline,
        CallEndReason::Busy => StatusCode::BusyHere,
        CallEndReason::Cancelled => StatusCode::RequestTerminated,
        _ => StatusCode::TemporarilyUnavailable,
    }
}

/// The SIP final response for a call the machinery refused to place.
fn place_refusal(error: &CallError) -> StatusCode {
    match error.code {
        ErrorCode::Busy => StatusCode::BusyHere,
        ErrorCode::CallQueueNotFound | ErrorCode::InvalidIdentifier => StatusCode::NotFound,
        ErrorCode::Forbidden | ErrorCode::ExternalUserCannotCallDirectoryUser => StatusCode::Forbidden,
        _ => StatusCode::TemporarilyUnavailable,
    }
}

/// True for an owned number routed to Call Automation: a phone caller rings it inside
/// palaver (`IncomingCall`), and the application answers it; it is never dialled out.
fn answered_by_call_automation(shared: &Shared, phone: &str) -> bool {
    let number = phone.strip_prefix("4:").unwrap_or(phone);
    matches!(shared.numbers.get(number), Some(Route::CallAutomation))
}

/// Hands each phone party's call event to the call task waiting for it.
pub(crate) async fn relay_phone_events(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<PhoneNotice>) {
    while let Some(PhoneNotice { phone, event }) = events.recv().await {
        let call_id = event.call_id().to_owned();
        let key = (call_id.clone(), phone.clone());
        let waiting = shared.calls.lock().ok().and_then(|calls| calls.get(&key).cloned());
        match waiting {
            Some(tx) => {
                let _ = tx.send(event);
            }
            None if matches!(event, CallEvent::Incoming { .. }) && !answered_by_call_automation(&shared, &phone) => {
                tokio::spawn(crate::outbound::dial(shared.clone(), call_id, phone, event));
            }
            None => tracing::debug!(call = %call_id, %phone, "call event for a phone leg nobody waits for"),
        }
    }
}

/// Answers a new INVITE (spawned per INVITE; see the module docs).
pub(crate) async fn handle_invite(shared: Arc<Shared>, mut tx: Transaction) {
    let request = tx.original.clone();
    let Some(trunk) = source_ip(&request).and_then(|ip| shared.trunks.by_source(ip)).cloned() else {
        // Only allow-listed sources get here; a Via naming no trunk is not worth an answer.
        SipCounters::inc(&shared.counters.unknown_source);
        return;
    };
    if let Authentication::Challenge(challenge) = shared.trunks.authenticate(&trunk, &request, Instant::now()) {
        SipCounters::inc(&shared.counters.challenges);
        let headers = challenge
            .into_iter()
            .map(|value| Header::WwwAuthenticate(rsipstack::sip::headers::WwwAuthenticate::new(value)))
            .collect();
        if tx.reply_with(StatusCode::Unauthorized, headers, None).await.is_ok() {
            shared.counters.response(401);
        }
        return;
    }
    let reject = |code: StatusCode, outcome: Outcome| {
        shared.counters.call(&trunk.name, Direction::Inbound, outcome);
        code
    };
    // The called number and its route.
    let called = request.uri.user().and_then(normalize_number);
    let Some(called) = called else {
        SipCounters::inc(&shared.counters.malformed);
        let code = reject(StatusCode::BadRequest, Outcome::Rejected);
        return shared.reply(&mut tx, code).await;
    };
    let Some(route) = shared.numbers.get(&called).cloned() else {
        let code = reject(StatusCode::NotFound, Outcome::Rejected);
        return shared.reply(&mut tx, code).await;
    };
    // The offer must be usable before anyone rings; an INVITE without one gets our offer
    // in the 200 and answers it in the ACK.
    let offer = String::from_utf8_lossy(&request.body).into_owned();
    let offer = (!offer.trim().is_empty()).then_some(offer);
    if let Some(offer) = &offer {
        match Description::parse(offer).map(|d| negotiate(&d, &policy(&trunk))) {
            Err(_) | Ok(Err(palaver_sfu::control::sip::TrunkSdpError::NoAddress)) => {
                SipCounters::inc(&shared.counters.malformed);
                let code = reject(StatusCode::BadRequest, Outcome::Rejected);
                return shared.reply(&mut tx, code).await;
            }
            Ok(Err(error)) => {
                tracing::info!(trunk = %trunk.name, %called, %error, "offer not acceptable");
                let code = reject(StatusCode::NotAcceptableHere, Outcome::Rejected);
                return shared.reply(&mut tx, code).await;
            }
            Ok(Ok(_)) => {}
        }
    }
    // The caller, as palaver shows it.
    let from = request.from_header().ok().and_then(|f| FromHeader::parse(f.value()).ok());
    let caller_number = from.as_ref().and_then(|f| f.uri.user()).and_then(normalize_number);
    let phone = format!("4:{}", caller_number.as_deref().unwrap_or("anonymous"));
    let display = from
        .as_ref()
        .and_then(|f| f.display_name.clone())
        .map(|d| d.trim_matches('"').to_owned())
        .filter(|d| !d.is_empty())
        .or(caller_number.clone())
        .unwrap_or_else(|| "Unknown caller".to_owned());
    let sip_call_id = request.call_id_header().map(|c| c.value().to_string()).unwrap_or_default();

    let (state_tx, states) = shared.dialogs.new_dialog_state_channel();
    let contact = crate::gateway::local_contact(&shared, &request);
    let dialog = match shared.dialogs.get_or_create_server_invite(&tx, state_tx, None, contact) {
        Ok(d) => d,
        Err(error) => {
            tracing::warn!(%error, "server dialog not created");
            let code = reject(StatusCode::ServerInternalError, Outcome::Failed);
            return shared.reply(&mut tx, code).await;
        }
    };
    let mut handler = dialog.clone();
    tokio::spawn(async move {
        let _ = handler.handle(&mut tx).await;
    });
    let ringer = Ringer::new(shared.clone(), &request, &sip_call_id);
    let leg = InboundLeg { trunk, called, phone, display, sip_call_id, offer, dialog, states, ringer };
    match route {
        Route::Meeting(meeting_id) => crate::meeting::join(shared, leg, meeting_id).await,
        Route::User(raw) | Route::Queue(raw) => ring(shared, leg, Target::Machinery(raw)).await,
        Route::CallAutomation => ring(shared, leg, Target::CallAutomation).await,
    }
}

/// An inbound INVITE that passed the checks: its dialog (already handled by rsipstack) and
/// who is calling.
pub(crate) struct InboundLeg {
    pub trunk: TrunkConfig,
    /// The owned number called (E.164).
    pub called: String,
    /// The caller, `4:+E.164` (or `4:anonymous`).
    pub phone: String,
    pub display: String,
    pub sip_call_id: String,
    /// The trunk's SDP offer; `None` for an INVITE without one.
    pub offer: Option<String>,
    pub dialog: InviteDialog,
    pub states: DialogStateReceiver,
    /// Its 18x: refreshed while it waits, reliable when the trunk asks (PRACK).
    pub ringer: Ringer,
}

/// Who an inbound call rings through the call machinery.
enum Target {
    /// A directory user or a call queue (its raw id).
    Machinery(String),
    /// The called number itself, which raises `IncomingCall` for Call Automation.
    CallAutomation,
}

/// Rings the route's target through the call machinery while the trunk hears 180; the
/// answer joins the phone's RTP to the call's conference and sends the 200.
async fn ring(shared: Arc<Shared>, leg: InboundLeg, target: Target) {
    let InboundLeg { trunk, called, phone, display, sip_call_id, offer, dialog, mut states, mut ringer } = leg;
    let call_id = uuid::Uuid::new_v4().to_string();
    let mut events = shared.register(&call_id, &phone);
    let gateway = shared.gateway.clone();
    let party = Party::new(phone.clone(), display.clone());
    let billed_session = palaver_signaling::gateway::Gateway::phone_call_session_id(&call_id, &phone);
    gateway.name_phone_leg(&billed_session, crate::counters::phone_leg(&called, &trunk.name, Direction::Inbound));
    let placed = match &target {
        Target::Machinery(raw) => {
            tracing::info!(trunk = %trunk.name, call = %call_id, sip_call_id = %sip_call_id, caller = %phone, %called, target = %raw, "inbound phone call");
            gateway.phone_place(&call_id, party, &sip_call_id, raw).await
        }
        Target::CallAutomation => {
            tracing::info!(trunk = %trunk.name, call = %call_id, sip_call_id = %sip_call_id, caller = %phone, %called, "inbound phone call for Call Automation");
            gateway.phone_ring_call_automation(&call_id, party, &sip_call_id, &format!("4:{called}")).await
        }
    };
    if let Err(error) = placed {
        tracing::info!(call = %call_id, %error, "inbound phone call refused by the call machinery");
        shared.unregister(&call_id, &phone);
        gateway.forget_phone_leg(&billed_session);
        let code = place_refusal(&error);
        shared.counters.call(&trunk.name, Direction::Inbound, Outcome::Rejected);
        shared.counters.response(code.code());
        let _ = dialog.reject(Some(code), None);
        return;
    }
    let session = palaver_signaling::gateway::Gateway::phone_media_session(&call_id, &phone);
    // 183 with ringback or hold audio on the early dialog when configured, else 180.
    let mut early_answer = crate::gateway::EarlyAnswer::new(&shared);
    let ringing = (&mut ringer, &mut early_answer);
    // A caller waiting in a call queue hears its hold audio (`early::early_media`).
    let waiting = match &target {
        Target::Machinery(raw) if raw.starts_with("28:") => Waiting::Queue(raw),
        _ => Waiting::Ringing,
    };
    let early = send_early_media(&shared, &trunk, &dialog, ringing, (&session, waiting), offer.as_deref()).await;
    let mut answered = false;
    // REFERs from the trunk once it is connected (RFC 3515).
    let mut referral = crate::refer::Referral::new(&shared, &sip_call_id);
    let mut media: Option<LegMedia> = None;
    let outcome = loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(_, reason)) => {
                    match reason {
                        TerminatedReason::UacCancel => {
                            let _ = gateway.phone_cancel(&call_id, &phone).await;
                            shared.counters.response(487);
                            break Outcome::Cancelled;
                        }
                        _ if answered => {
                            let _ = gateway.phone_hang_up(&call_id, &phone).await;
                            break Outcome::Completed;
                        }
                        _ => {
                            let _ = gateway.phone_cancel(&call_id, &phone).await;
                            break Outcome::Failed;
                        }
                    }
                }
                Some(DialogState::Refer(_, refer, handle)) if answered => {
                    referral.refer(&shared, &dialog, (&call_id, &phone), &refer, handle).await;
                }
                Some(DialogState::Updated(_, request, handle)) if answered => {
                    if let Some(media) = media.as_mut() {
                        crate::hold::update(&shared, media, &request, handle).await;
                    }
                }
                Some(_) => {}
                None => break if answered { Outcome::Completed } else { Outcome::Failed },
            },
            wake = ringer.wake(&dialog), if !answered => {
                if wake == Wake::GaveUp {
                    let _ = gateway.phone_cancel(&call_id, &phone).await;
                    shared.counters.response(504);
                    let _ = dialog.reject(Some(StatusCode::ServerTimeOut), None);
                    break Outcome::Failed;
                }
            }
            event = events.recv() => match event {
                Some(CallEvent::Connected { .. }) if !answered => {
                    if !ringer.ready_to_answer(&dialog).await {
                        let _ = gateway.phone_hang_up(&call_id, &phone).await;
                        shared.counters.response(504);
                        let _ = dialog.reject(Some(StatusCode::ServerTimeOut), None);
                        break Outcome::Failed;
                    }
                    match answer(&shared, &dialog, &mut states, session.clone(), offer.as_deref(), media_preference(&trunk)).await {
                        Ok((agreed, codec)) => {
                            media = Some(agreed);
                            answered = true;
                            tracing::info!(call = %call_id, %codec, "inbound phone call answered");
                        }
                        Err(AnswerError::Gone) => {
                            let _ = gateway.phone_hang_up(&call_id, &phone).await;
                            break Outcome::Failed;
                        }
                        Err(error) => {
                            tracing::warn!(call = %call_id, %error, "phone media not attached");
                            let _ = gateway.phone_hang_up(&call_id, &phone).await;
                            if dialog.state().waiting_ack() || dialog.state().is_confirmed() {
                                bye_after_ack(&dialog, &mut states).await;
                            } else {
                                refuse_media(&shared, &dialog);
                            }
                            break Outcome::Failed;
                        }
                    }
                }
                Some(CallEvent::Ended { reason, .. }) => {
                    if answered {
                        bye_after_ack(&dialog, &mut states).await;
                        break Outcome::Completed;
                    }
                    let code = refusal(reason);
                    shared.counters.response(code.code());
                    let _ = dialog.reject(Some(code), None);
                    break Outcome::Rejected;
                }
                Some(event @ (CallEvent::TransferAccepted { .. } | CallEvent::TransferFailed { .. })) => {
                    referral.outcome(&dialog, &event, |reason| refusal(*reason)).await;
                }
                Some(CallEvent::Moved { join, .. }) if answered => {
                    // Call Automation moved the phone into a group call or a room: the dialog
                    // goes on there, without a BYE (`crate::moved`).
                    if let Some(agreed) = media.as_mut() {
                        shared.unregister(&call_id, &phone);
                        let billed = crate::counters::phone_leg(&called, &trunk.name, Direction::Inbound);
                        let leg = crate::moved::MovedLeg { shared: &shared, dialog: &dialog, states: &mut states, media: agreed, phone: &phone, display: &display, billed };
                        break crate::moved::follow(leg, join).await;
                    }
                }
                Some(CallEvent::ParticipantLeft { participant, .. }) if participant == phone => {
                    // Transferred away or removed from a call that goes on.
                    if answered {
                        bye_after_ack(&dialog, &mut states).await;
                    }
                    break Outcome::Completed;
                }
                Some(_) => {}
                None => break Outcome::Failed,
            },
        }
    };
    shared.unregister(&call_id, &phone);
    referral.finish(&shared);
    if answered || early {
        gateway.phone_detach(&call_id, &phone);
    }
    gateway.forget_phone_leg(&billed_session);
    shared.counters.call(&trunk.name, Direction::Inbound, outcome);
    tracing::info!(call = %call_id, outcome = outcome.as_str(), "inbound phone call over");
}
