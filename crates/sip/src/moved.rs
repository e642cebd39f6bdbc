//! An answered inbound phone leg that Call Automation moved out of its call into a group call
//! or a room (`moveParticipants`, the contact-center hand-over from the backend's 1:1 call to
//! an agent's call). The call machine took the phone out of its call without a hang-up and
//! told us where it goes ([`CallEvent::Moved`](palaver_signaling::domain::calls::CallEvent)):
//! the dialog with the trunk stays as it is (no BYE), the phone joins the target as a
//! participant `4:+E.164` under a new participant id (its minutes go on as a new session
//! there, with the same number, trunk and direction), and its media is re-seated:
//!
//! - the target conference is served by the worker socket the trunk already sends to: the
//!   trunk transport moves between conferences inside the media plane, the RTP address does
//!   not change, so no re-INVITE (RFC 3264 §8 asks for a new offer only when the session
//!   changes; it does not);
//! - it is served by another worker's socket: palaver re-INVITEs the trunk with an offer for
//!   that socket, and the trunk's answer joins the leg there (the old one is released after
//!   the 200).
//!
//! From then on the leg lives in the conversation: BYE from the trunk makes the phone leave
//! it; being removed, or the conversation ending, hangs the phone up; re-INVITEs and UPDATEs
//! (hold, resume) work as before, on the new session.

use std::sync::Arc;

use palaver_core::PhoneLeg;
use palaver_core::protocol::JoinTarget;
use palaver_signaling::gateway::phone::MeetingNotice;
use palaver_signaling::gateway::{MediaSession, TrunkReseat};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::Header;

use crate::answer::bye_after_ack;
use crate::counters::Outcome;
use crate::gateway::Shared;
use crate::hold::LegMedia;

/// The answered leg being moved, as its call task holds it.
pub(crate) struct MovedLeg<'a> {
    pub shared: &'a Arc<Shared>,
    pub dialog: &'a InviteDialog,
    pub states: &'a mut DialogStateReceiver,
    pub media: &'a mut LegMedia,
    /// `4:+E.164`.
    pub phone: &'a str,
    pub display: &'a str,
    /// Its trunk leg, for billing.
    pub billed: PhoneLeg,
}

/// Follows the moved leg until it ends (see the module docs).
pub(crate) async fn follow(leg: MovedLeg<'_>, join: JoinTarget) -> Outcome {
    let MovedLeg { shared, dialog, states, media, phone, display, billed } = leg;
    let gateway = &shared.gateway;
    let participant_id = uuid::Uuid::new_v4().to_string();
    gateway.name_phone_leg(&participant_id, billed);
    let mut seat = match gateway.phone_join_moved(&join, phone, display, participant_id.clone()).await {
        Ok(seat) => seat,
        Err(refusal) => {
            tracing::warn!(%phone, code = %refusal.code, message = %refusal.message, "the moved phone may not join: hanging up");
            gateway.forget_phone_leg(&participant_id);
            bye_after_ack(dialog, states).await;
            return Outcome::Completed;
        }
    };
    tracing::info!(%phone, conversation = %seat.session.conversation_id, participant = %participant_id, "phone leg moved into a conversation");
    let mut seated = false;
    let outcome = loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(..)) | None => break Outcome::Completed,
                Some(DialogState::Updated(_, request, handle)) => {
                    crate::hold::update(shared, media, &request, handle).await;
                }
                Some(_) => {}
            },
            notice = seat.notices.recv() => match notice {
                Some(MeetingNotice::Admitted) if !seated => {
                    seated = true;
                    if let Err(error) = reseat(shared, dialog, media, seat.session.clone()).await {
                        tracing::warn!(%phone, %error, "the moved phone's media could not follow: hanging up");
                        bye_after_ack(dialog, states).await;
                        break Outcome::Failed;
                    }
                }
                Some(MeetingNotice::Ended { reason }) => {
                    tracing::info!(%phone, %reason, "the moved phone's session is over");
                    bye_after_ack(dialog, states).await;
                    break Outcome::Completed;
                }
                None => {
                    bye_after_ack(dialog, states).await;
                    break Outcome::Completed;
                }
                Some(_) => {}
            },
        }
    };
    gateway.phone_leave_meeting(&seat).await;
    // Not re-seated: the media is still in the call it left.
    gateway.phone_leave_session(media.session.clone());
    gateway.forget_phone_leg(&participant_id);
    outcome
}

/// Moves the leg's media to `to`: in place when the media plane can, else by re-INVITE.
/// A leg the trunk holds is held on its transport: it moves in place and stays held (the
/// media plane carries the hold); when that cannot be done (another worker, or the hold
/// released the media) its media leaves the call and the trunk's resume attaches it to the
/// new session, whose answer names the new socket.
async fn reseat(shared: &Shared, dialog: &InviteDialog, media: &mut LegMedia, to: MediaSession) -> Result<(), String> {
    let gateway = &shared.gateway;
    let reseated =
        gateway.phone_reseat(media.session.clone(), to.clone(), media.remote_sdp.clone(), media.codecs.clone()).await;
    match reseated {
        Ok(TrunkReseat::Moved) => {
            tracing::info!(participant = %to.participant_id, held = media.held, "phone media re-seated in place: no re-INVITE");
            media.session = to;
            Ok(())
        }
        Ok(TrunkReseat::Reoffer) | Err(_) if media.held => {
            tracing::info!(participant = %to.participant_id, "held phone moved: its resume attaches the media");
            gateway.phone_leave_session(std::mem::replace(&mut media.session, to));
            Ok(())
        }
        Ok(TrunkReseat::Reoffer) => reoffer(shared, dialog, media, to).await,
        Err(error) => Err(error.to_string()),
    }
}

/// Offers the trunk the target conference's socket in a re-INVITE and joins its answer there.
async fn reoffer(shared: &Shared, dialog: &InviteDialog, media: &mut LegMedia, to: MediaSession) -> Result<(), String> {
    let gateway = &shared.gateway;
    let offer = gateway.phone_offer_session(to.clone(), media.codecs.clone()).await.map_err(|e| e.to_string())?;
    let content_type = Header::ContentType(rsipstack::sip::headers::ContentType::new("application/sdp"));
    let response = dialog.reinvite(Some(vec![content_type]), Some(offer.clone().into_bytes())).await;
    let answer = match response {
        Ok(Some(r)) if r.status_code.code() / 100 == 2 => String::from_utf8_lossy(&r.body).into_owned(),
        other => {
            // Drops the keys of the offer; the leg stays in the call's conference.
            gateway.phone_leave_session(to);
            let status = other.as_ref().ok().and_then(|r| r.as_ref()).map(|r| r.status_code.code());
            return Err(format!("the trunk did not accept the re-INVITE ({status:?})"));
        }
    };
    gateway.phone_leave_session(media.session.clone());
    let agreed = gateway
        .phone_attach_session(to.clone(), answer.clone(), media.codecs.clone())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(participant = %to.participant_id, codec = %agreed.codec, "phone media re-seated by re-INVITE");
    media.session = to;
    media.local_sdp = offer;
    media.remote_sdp = answer;
    Ok(())
}
