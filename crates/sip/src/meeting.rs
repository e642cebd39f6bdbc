//! An inbound phone call to a number routed `meeting:<meetingId>`: the caller joins the
//! meeting's conversation as a participant `4:+E.164` (display name from `From`), through
//! its lobby unless the meeting's lobby policy lets everyone in. While it waits in the lobby
//! the trunk hears 180; when it is admitted (or let in at once) its RTP joins the meeting's
//! conference and the trunk gets the 200. BYE or CANCEL from the trunk make it leave; being
//! denied, removed, or the meeting ending hangs the phone up (or refuses the INVITE).
//!
//! Meeting dial-out (`meeting.dialOut`, allowed by the meeting's policy): palaver calls the
//! number through the first trunk with its SDP offer; when the phone answers it joins the
//! meeting without the lobby (the conversation expects that number) and its RTP joins the
//! conference with the trunk's answer. A refusal or no answer ends the attempt, and the
//! participant who asked gets an `error` frame with the SIP outcome mapped to a code
//! (`PhoneBusy`, `PhoneNoAnswer`, `PhoneDeclined`, `PhoneNumberUnreachable`,
//! `PstnUnavailable`; [`crate::failure`]).

use std::sync::Arc;

use palaver_core::ErrorCode;
use palaver_signaling::gateway::MediaSession;
use palaver_signaling::gateway::phone::{MeetingDialOut, MeetingNotice};
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::sip::StatusCode;
use tokio::sync::mpsc;

use crate::answer::{AnswerError, answer, bye_after_ack, media_preference, refuse_media};
use crate::counters::{Direction, Outcome};
use crate::gateway::Shared;
use crate::hold::LegMedia;
use crate::inbound::InboundLeg;
use crate::ringing::Wake;

/// The SIP refusal of a meeting join the conversation refused.
fn join_refusal(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MeetingNotFound => StatusCode::NotFound,
        ErrorCode::ExternalUsersNotAllowed | ErrorCode::Forbidden => StatusCode::Forbidden,
        ErrorCode::CapacityReached => StatusCode::BusyHere,
        _ => StatusCode::TemporarilyUnavailable,
    }
}

/// Seats the phone caller of `leg` in meeting `meeting_id` (see the module docs).
pub(crate) async fn join(shared: Arc<Shared>, leg: InboundLeg, meeting_id: String) {
    let InboundLeg { trunk, called, phone, display, sip_call_id, offer, dialog, mut states, mut ringer } = leg;
    let gateway = shared.gateway.clone();
    let participant_id = uuid::Uuid::new_v4().to_string();
    gateway.name_phone_leg(&participant_id, crate::counters::phone_leg(&called, &trunk.name, Direction::Inbound));
    let mut seat = match gateway.phone_join_meeting(&meeting_id, &phone, &display, Some(participant_id.clone())).await {
        Ok(seat) => seat,
        Err(refusal) => {
            gateway.forget_phone_leg(&participant_id);
            tracing::info!(trunk = %trunk.name, %called, meeting = %meeting_id, code = %refusal.code, "phone caller may not join the meeting");
            let code = join_refusal(refusal.code);
            shared.counters.response(code.code());
            shared.counters.call(&trunk.name, Direction::Inbound, Outcome::Rejected);
            let _ = dialog.reject(Some(code), None);
            return;
        }
    };
    tracing::info!(trunk = %trunk.name, %sip_call_id, caller = %phone, %called, meeting = %meeting_id, participant = %seat.session.participant_id, "inbound phone call joins a meeting");
    let mut media: Option<LegMedia> = None;
    let mut early_answer = crate::gateway::EarlyAnswer::new(&shared);
    let outcome = loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(_, TerminatedReason::UacCancel)) => {
                    shared.counters.response(487);
                    break Outcome::Cancelled;
                }
                Some(DialogState::Terminated(..)) | None => {
                    break if media.is_some() { Outcome::Completed } else { Outcome::Failed };
                }
                Some(DialogState::Updated(_, request, handle)) => {
                    if let Some(media) = media.as_mut() {
                        crate::hold::update(&shared, media, &request, handle).await;
                    }
                }
                Some(_) => {}
            },
            wake = ringer.wake(&dialog), if media.is_none() => {
                if wake == Wake::GaveUp {
                    shared.counters.response(504);
                    let _ = dialog.reject(Some(StatusCode::ServerTimeOut), None);
                    break Outcome::Failed;
                }
            }
            notice = seat.notices.recv() => match notice {
                Some(MeetingNotice::Lobby) => {
                    tracing::info!(meeting = %meeting_id, caller = %phone, reliable = ringer.reliable(), "phone caller waits in the meeting's lobby");
                    // 183 with the lobby's hold audio (or ringback) while it waits, when configured.
                    let ringing = (&mut ringer, &mut early_answer);
                    let waiting = (&seat.session, crate::early::Waiting::Lobby);
                    crate::early::send_early_media(&shared, &trunk, &dialog, ringing, waiting, offer.as_deref()).await;
                }
                Some(MeetingNotice::Admitted) if media.is_none() => {
                    if !ringer.ready_to_answer(&dialog).await {
                        shared.counters.response(504);
                        let _ = dialog.reject(Some(StatusCode::ServerTimeOut), None);
                        break Outcome::Failed;
                    }
                    let session = seat.session.clone();
                    match answer(&shared, &dialog, &mut states, session, offer.as_deref(), media_preference(&trunk)).await {
                        Ok((agreed, codec)) => {
                            tracing::info!(meeting = %meeting_id, caller = %phone, %codec, "phone caller is in the meeting");
                            media = Some(agreed);
                        }
                        Err(AnswerError::Gone) => break Outcome::Failed,
                        Err(error) => {
                            tracing::warn!(meeting = %meeting_id, %error, "phone media not attached");
                            if dialog.state().waiting_ack() || dialog.state().is_confirmed() {
                                bye_after_ack(&dialog, &mut states).await;
                            } else {
                                refuse_media(&shared, &dialog);
                            }
                            break Outcome::Failed;
                        }
                    }
                }
                Some(MeetingNotice::Admitted) => {}
                Some(MeetingNotice::Ended { reason }) => {
                    tracing::info!(meeting = %meeting_id, caller = %phone, %reason, "the phone caller's meeting session is over");
                    break hang_up(&shared, &dialog, &mut states, media.is_some()).await;
                }
                None => break hang_up(&shared, &dialog, &mut states, media.is_some()).await,
            },
        }
    };
    gateway.phone_leave_meeting(&seat).await;
    gateway.forget_phone_leg(&participant_id);
    shared.counters.call(&trunk.name, Direction::Inbound, outcome);
    tracing::info!(meeting = %meeting_id, caller = %phone, outcome = outcome.as_str(), "phone caller left the meeting");
}

/// The meeting is over for the phone: BYE when it was answered, else the INVITE is refused.
async fn hang_up(
    shared: &Shared,
    dialog: &rsipstack::dialog::invite_dialog::InviteDialog,
    states: &mut rsipstack::dialog::dialog::DialogStateReceiver,
    answered: bool,
) -> Outcome {
    if answered {
        bye_after_ack(dialog, states).await;
        return Outcome::Completed;
    }
    shared.counters.response(480);
    let _ = dialog.reject(Some(StatusCode::TemporarilyUnavailable), None);
    Outcome::Rejected
}

/// Starts every meeting dial-out the conversations ask for.
pub(crate) async fn relay_dial_outs(shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<MeetingDialOut>) {
    while let Some(request) = requests.recv().await {
        tokio::spawn(dial_out(shared.clone(), request));
    }
}

/// Calls `request.phone_number` into its meeting (see the module docs).
async fn dial_out(shared: Arc<Shared>, request: MeetingDialOut) {
    let MeetingDialOut { meeting_id, conversation_id, phone_number, requested_by } = request;
    let gateway = shared.gateway.clone();
    // The participant who asked hears why a dial-out failed (an `error` frame).
    let tell = |status: Option<u16>| {
        let (code, message) = crate::failure::dial_out_failure(&phone_number, status);
        tracing::info!(meeting = %meeting_id, to = %phone_number, ?status, %code, "meeting dial-out failed: telling the requester");
        let (gateway, conversation_id, requested_by) = (gateway.clone(), conversation_id.clone(), requested_by.clone());
        async move { gateway.phone_dial_out_failed(&conversation_id, &requested_by, code, message).await }
    };
    let Some(trunk) = shared.trunks.primary().cloned() else {
        tracing::warn!(meeting = %meeting_id, "no trunk configured for a meeting dial-out");
        tell(None).await;
        return;
    };
    let phone = format!("4:{phone_number}");
    let participant_id = uuid::Uuid::new_v4().to_string();
    let session = MediaSession {
        conversation_id: conversation_id.clone(),
        participant_id: participant_id.clone(),
        may_send_media: true,
    };
    let offer = match gateway.phone_offer_session(session.clone(), media_preference(&trunk)).await {
        Ok(offer) => offer,
        Err(error) => {
            tracing::warn!(meeting = %meeting_id, %error, "no media offer for a meeting dial-out");
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Failed);
            tell(None).await;
            return;
        }
    };
    let presented = crate::outbound::presented_number(&shared, &trunk, None, None);
    let Some(option) = crate::outbound::invite_option(&shared, &trunk, &phone_number, &presented, None, offer) else {
        gateway.phone_leave_session(session);
        tell(None).await;
        return;
    };
    tracing::info!(trunk = %trunk.name, meeting = %meeting_id, to = %phone_number, from = %presented, "dialling a phone number into a meeting");
    let (state_tx, mut states) = shared.dialogs.new_dialog_state_channel();
    let (dialog, answer) = match shared.dialogs.do_invite(option, state_tx).await {
        Ok((dialog, Some(response))) if response.status_code.code() / 100 == 2 => {
            (dialog, String::from_utf8_lossy(&response.body).into_owned())
        }
        other => {
            let code = other.as_ref().ok().and_then(|(_, r)| r.as_ref()).map(|r| r.status_code.code());
            tracing::info!(meeting = %meeting_id, to = %phone_number, ?code, "the meeting dial-out was not answered");
            gateway.phone_leave_session(session);
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Rejected);
            tell(code).await;
            return;
        }
    };
    gateway.name_phone_leg(&participant_id, crate::counters::phone_leg(&presented, &trunk.name, Direction::Outbound));
    let mut seat = match gateway
        .phone_join_meeting(&meeting_id, &phone, &phone_number, Some(participant_id.clone()))
        .await
    {
        Ok(seat) => seat,
        Err(refusal) => {
            tracing::info!(meeting = %meeting_id, code = %refusal.code, "the dialled phone may not join the meeting");
            let _ = dialog.bye().await;
            gateway.phone_leave_session(session);
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Failed);
            return;
        }
    };
    // What was agreed once the phone is in, for the trunk's re-INVITEs and UPDATEs.
    let mut media: Option<LegMedia> = None;
    loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(..)) | None => break,
                Some(DialogState::Updated(_, request, handle)) => match media.as_mut() {
                    Some(media) => crate::hold::update(&shared, media, &request, handle).await,
                    // Still waiting to be let in: the leg's media is not agreed yet.
                    None => {
                        let _ = handle.reply(StatusCode::NotAcceptableHere).await;
                    }
                },
                Some(_) => {}
            },
            notice = seat.notices.recv() => match notice {
                Some(MeetingNotice::Admitted) if media.is_none() => {
                    match gateway.phone_attach_session(session.clone(), answer.clone(), media_preference(&trunk)).await {
                        Ok(agreed) => {
                            tracing::info!(meeting = %meeting_id, to = %phone_number, codec = %agreed.codec, "dialled phone is in the meeting");
                            media = Some(LegMedia::dialled(session.clone(), media_preference(&trunk), agreed, answer.clone()));
                        }
                        Err(error) => {
                            tracing::warn!(meeting = %meeting_id, %error, "the trunk's answer is not usable");
                            let _ = dialog.bye().await;
                            break;
                        }
                    }
                }
                Some(MeetingNotice::Ended { .. }) | None => {
                    let _ = dialog.bye().await;
                    break;
                }
                Some(_) => {}
            },
        }
    }
    gateway.phone_leave_meeting(&seat).await;
    gateway.forget_phone_leg(&participant_id);
    let outcome = if media.is_some() { Outcome::Completed } else { Outcome::Failed };
    shared.counters.call(&trunk.name, Direction::Outbound, outcome);
    tracing::info!(meeting = %meeting_id, to = %phone_number, outcome = outcome.as_str(), "meeting dial-out over");
}
