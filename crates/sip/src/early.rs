//! Inbound early media: while an inbound call waits for its callee (a user or queue
//! ringing, Call Automation, a meeting's lobby), a trunk with `ringback` set gets a
//! 183 Session Progress whose SDP answers its offer, and the media plane plays the
//! ringback tone on that early session (`palaver_sfu::control::sip::legs`). The 183 is
//! reliable (100rel, PRACKed) when the trunk supports it and plain otherwise
//! ([`Ringer`]). The answer's `phone_attach_session` with the same offer continues on the
//! same transport (same port, SSRC and keys), so the 200 repeats the 183's SDP.

use palaver_signaling::gateway::MediaSession;
use rsipstack::dialog::invite_dialog::InviteDialog;

use crate::answer::{early_media, media_preference};
use crate::config::TrunkConfig;
use crate::gateway::{EarlyAnswer, Shared};
use crate::ringing::Ringer;

/// Sends the call's first 18x: a 183 with SDP and early media when the trunk has
/// `ringback` set and the INVITE carried an offer, else a 180. True when early media was
/// attached (the leg's media must then be released if the call is not answered). A
/// reliable 183 completes the INVITE's offer/answer early (`completed`, for the trunk's
/// early UPDATEs).
pub(crate) async fn send_early_media(
    shared: &Shared,
    trunk: &TrunkConfig,
    dialog: &InviteDialog,
    (ringer, completed): (&mut Ringer, &mut EarlyAnswer<'_>),
    session: &MediaSession,
    offer: Option<&str>,
) -> bool {
    let (Some(offer), Some(early)) = (offer, early_media(trunk)) else {
        ringer.ring(dialog, None);
        return false;
    };
    let mut names = media_preference(trunk);
    names.push(early);
    match shared.gateway.phone_attach_session(session.clone(), offer.to_owned(), names).await {
        Ok(answer) => {
            tracing::info!(participant = %session.participant_id, codec = %answer.codec, reliable = ringer.reliable(), "early media: 183 with ringback");
            ringer.ring(dialog, Some(answer.sdp.into_bytes()));
            if ringer.reliable() {
                completed.completed(&dialog.id().call_id);
            }
            true
        }
        Err(error) => {
            tracing::info!(participant = %session.participant_id, %error, "early media not attached: 180 instead");
            ringer.ring(dialog, None);
            false
        }
    }
}
