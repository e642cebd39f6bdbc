//! An inbound phone call to a number routed `meeting:<meetingId>`: the caller joins the
//! meeting's conversation as a participant `4:+E.164` (display name from `From`), through
//! its lobby unless the meeting's lobby policy lets everyone in. While it waits in the lobby
//! the trunk hears 180; when it is admitted (or let in at once) its RTP joins the meeting's
//! conference and the trunk gets the 200. BYE or CANCEL from the trunk make it leave; being
//! denied, removed, or the meeting ending hangs the phone up (or refuses the INVITE).

use std::sync::Arc;

use palaver_core::ErrorCode;
use palaver_signaling::gateway::phone::MeetingNotice;
use rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use rsipstack::sip::StatusCode;

use crate::answer::{AnswerError, answer, bye_after_ack, refuse_media};
use crate::counters::{Direction, Outcome};
use crate::gateway::Shared;
use crate::hold::LegMedia;
use crate::inbound::InboundLeg;

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
    let InboundLeg { trunk, called, phone, display, sip_call_id, offer, dialog, mut states } = leg;
    let gateway = shared.gateway.clone();
    let mut seat = match gateway.phone_join_meeting(&meeting_id, &phone, &display).await {
        Ok(seat) => seat,
        Err(refusal) => {
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
            notice = seat.notices.recv() => match notice {
                Some(MeetingNotice::Lobby) => {
                    tracing::info!(meeting = %meeting_id, caller = %phone, "phone caller waits in the meeting's lobby");
                    let _ = dialog.ringing(None, None);
                }
                Some(MeetingNotice::Admitted) if media.is_none() => {
                    let session = seat.session.clone();
                    match answer(&shared, &dialog, &mut states, session, offer.as_deref(), trunk.codecs.clone()).await {
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
