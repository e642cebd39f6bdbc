//! Inbound early media: while an inbound call waits for its callee (a user or queue
//! ringing, Call Automation, a meeting's lobby), a trunk with `ringback` set gets a
//! 183 Session Progress whose SDP answers its offer, and the media plane plays the
//! ringback tone on that early session (`palaver_sfu::control::sip::legs`). A caller who
//! waits in a call queue or a lobby with **hold audio** (the queue's `hold_audio`, `[sip]
//! lobby_hold_audio`, else the trunk's `hold_audio`) hears that file looped instead, on the
//! same 183 path, whatever the trunk's `ringback` says ([`early_media`]). The 183 is
//! reliable (100rel, PRACKed) when the trunk supports it and plain otherwise
//! ([`Ringer`]). The answer's `phone_attach_session` with the same offer continues on the
//! same transport (same port, SSRC and keys), so the 200 repeats the 183's SDP.
//!
//! An INVITE without an offer gets 180 without media whatever is configured: palaver would
//! have to offer in a reliable 18x and take the answer from the PRACK, which trunks
//! seldom support; the trunk plays its own ringback then.

use std::path::Path;

use palaver_sfu::control::sip::legs::EarlyMedia;
use palaver_sfu::engine::early_media::Ringback;
use palaver_signaling::gateway::MediaSession;
use rsipstack::dialog::invite_dialog::InviteDialog;

use crate::answer::media_preference;
use crate::config::TrunkConfig;
use crate::gateway::{EarlyAnswer, Shared};
use crate::ringing::Ringer;

/// What an inbound caller is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting<'a> {
    /// A directory user's (or Call Automation's) answer: ringback.
    Ringing,
    /// A call queue (its raw id `28:orgid:<appId>`): its hold audio.
    Queue(&'a str),
    /// A meeting's lobby: `[sip] lobby_hold_audio`.
    Lobby,
}

/// The name under which the media plane knows the hold audio file `path` (the server
/// registers every configured file under it at start).
pub fn hold_audio_name(path: &Path) -> String {
    path.display().to_string()
}

/// The early media of a caller from `trunk` waiting for `waiting`, whose queue or lobby has
/// `own` hold audio, as a media name for `EarlyMedia::from_names`: hold audio (the queue's
/// or lobby's own, else the trunk's `hold_audio`) for a queue or a lobby, else the trunk's
/// ringback; `None`: 180 without media.
pub(crate) fn early_media(trunk: &TrunkConfig, waiting: Waiting<'_>, own: Option<&Path>) -> Option<String> {
    let hold = match waiting {
        Waiting::Ringing => None,
        Waiting::Queue(_) | Waiting::Lobby => own.or(trunk.hold_audio.as_deref()),
    };
    if let Some(path) = hold {
        return Some(EarlyMedia::HoldAudio(hold_audio_name(path)).name());
    }
    let tone = Ringback::from_name(&trunk.ringback)?;
    Some(EarlyMedia::Ringback(tone).name())
}

/// Sends the call's first 18x: a 183 with SDP and early media when the INVITE carried an
/// offer and the wait has early media ([`early_media`]), else a 180. True when early media
/// was attached (the leg's media must then be released if the call is not answered). A
/// reliable 183 completes the INVITE's offer/answer early (`completed`, for the trunk's
/// early UPDATEs).
pub(crate) async fn send_early_media(
    shared: &Shared,
    trunk: &TrunkConfig,
    dialog: &InviteDialog,
    (ringer, completed): (&mut Ringer, &mut EarlyAnswer<'_>),
    (session, waiting): (&MediaSession, Waiting<'_>),
    offer: Option<&str>,
) -> bool {
    let own = match waiting {
        Waiting::Ringing => None,
        Waiting::Queue(raw) => shared.gateway.queue_hold_audio(raw),
        Waiting::Lobby => shared.lobby_hold_audio.clone(),
    };
    let (Some(offer), Some(early)) = (offer, early_media(trunk, waiting, own.as_deref())) else {
        ringer.ring(dialog, None);
        return false;
    };
    let mut names = media_preference(trunk);
    names.push(early.clone());
    match shared.gateway.phone_attach_session(session.clone(), offer.to_owned(), names).await {
        Ok(answer) => {
            tracing::info!(participant = %session.participant_id, codec = %answer.codec, reliable = ringer.reliable(), %early, "early media: 183 with SDP");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_and_lobbies_play_hold_audio_and_ringing_calls_ringback() {
        let mut trunk: TrunkConfig =
            toml::from_str("name = \"carrier\"\naddress = \"127.0.0.1:5080\"\nallow_from = [\"127.0.0.1\"]").unwrap();
        let queue = Path::new("/srv/hold/support.wav");
        // ringback = "off" and no hold audio anywhere: 180.
        assert_eq!(early_media(&trunk, Waiting::Ringing, None), None);
        assert_eq!(early_media(&trunk, Waiting::Lobby, None), None);
        // The queue's own file plays even with ringback off; a user's call stays silent.
        assert_eq!(
            early_media(&trunk, Waiting::Queue("28:orgid:support"), Some(queue)).as_deref(),
            Some("early=audio:/srv/hold/support.wav")
        );
        trunk.ringback = "eu".into();
        assert_eq!(early_media(&trunk, Waiting::Ringing, None).as_deref(), Some("early=ringback-eu"));
        assert_eq!(early_media(&trunk, Waiting::Lobby, None).as_deref(), Some("early=ringback-eu"));
        // The trunk's hold audio is the default of queues and lobbies, never of ringing.
        trunk.hold_audio = Some("/srv/hold/trunk.wav".into());
        assert_eq!(early_media(&trunk, Waiting::Lobby, None).as_deref(), Some("early=audio:/srv/hold/trunk.wav"));
        assert_eq!(
            early_media(&trunk, Waiting::Queue("28:orgid:other"), None).as_deref(),
            Some("early=audio:/srv/hold/trunk.wav")
        );
        assert_eq!(
            early_media(&trunk, Waiting::Queue("28:orgid:support"), Some(queue)).as_deref(),
            Some("early=audio:/srv/hold/support.wav")
        );
        assert_eq!(early_media(&trunk, Waiting::Ringing, None).as_deref(), Some("early=ringback-eu"));
        let names = [early_media(&trunk, Waiting::Lobby, None).unwrap()];
        assert_eq!(EarlyMedia::from_names(&names), Some(EarlyMedia::HoldAudio("/srv/hold/trunk.wav".into())));
    }
}
