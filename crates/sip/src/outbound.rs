//! Calls from palaver to a phone number: when the call machinery rings a `4:+E.164` party
//! (a directory user's `call.place`, `call.addParticipant` or transfer to a number, with
//! `[signaling.calls] allow_phone_targets = true`), the first trunk is dialled with an
//! INVITE carrying the server's SDP offer (rsipstack answers the trunk's digest challenge
//! with the trunk's credentials). 200 → the phone accepts in the call machinery and its RTP
//! joins the call's conference with the trunk's answer; any other final response ends the
//! invitation with the reason its SIP status says (busy, no answer, declined, unreachable,
//! unavailable: `Gateway::phone_fail`). Afterwards BYE from the trunk hangs the phone up, and the call ending in
//! palaver sends BYE; the trunk's re-INVITEs and UPDATEs (hold, resume, refresh) are
//! answered as on its own calls, and its REFER transfers the phone's place. The presented number follows the trunk's caller-id policy.

use std::sync::Arc;

use palaver_signaling::domain::calls::{CallEvent, Party};
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::Uri;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::transport::SipAddr;

use crate::answer::media_preference;
use crate::config::{TrunkConfig, TrunkTransport};
use crate::counters::{Direction, Outcome};
use crate::gateway::Shared;
use crate::hold::LegMedia;

/// The number presented to the called phone: the application's `sourceCallerIdNumber`
/// (`requested`, when it is an owned number), else the trunk's `caller_id`, else the caller's
/// own number when the caller is a phone, else the first owned number.
pub(crate) fn presented_number(
    shared: &Shared,
    trunk: &TrunkConfig,
    caller: Option<&Party>,
    requested: Option<&str>,
) -> String {
    match requested.filter(|n| shared.numbers.contains_key(*n)) {
        Some(number) => number.to_owned(),
        None => caller_id_policy(trunk.caller_id.as_deref(), caller, shared.numbers.keys()),
    }
}

/// The caller-id policy itself: the trunk's configured `caller_id`, else a phone caller's
/// own number, else the lowest of `owned` numbers (`anonymous` when palaver owns none).
fn caller_id_policy<'a>(
    trunk_caller_id: Option<&str>,
    caller: Option<&Party>,
    owned: impl Iterator<Item = &'a String>,
) -> String {
    if let Some(id) = trunk_caller_id {
        return id.to_owned();
    }
    if let Some(number) = caller.and_then(|c| c.raw_id.strip_prefix("4:")).filter(|n| crate::config::is_e164(n)) {
        return number.to_owned();
    }
    owned.min().cloned().unwrap_or_else(|| "anonymous".to_owned())
}

/// The INVITE to `number` through `trunk`, presenting `presented`, with palaver's SDP
/// `offer` (and the trunk's credentials for its digest challenges).
pub(crate) fn invite_option(
    shared: &Shared,
    trunk: &TrunkConfig,
    number: &str,
    presented: &str,
    display: Option<String>,
    offer: String,
) -> Option<InviteOption> {
    let uri = |text: String| Uri::try_from(text.as_str()).ok();
    // On a TCP or TLS trunk the request URI and palaver's Contact say so, so the trunk's
    // requests in the dialog (BYE, re-INVITE, REFER) come back over TCP or TLS too (TLS to
    // `listen_tls`); a TLS trunk's URI host is its `tls_server_name` when it has one.
    let transport = trunk.transport.uri_param().map(|t| format!(";transport={t}")).unwrap_or_default();
    let from = uri(format!("sip:{presented}@{}", shared.local))?;
    let to = uri(format!("sip:{number}@{}{transport}", trunk.uri_host()))?;
    let contact = uri(format!("sip:palaver@{}{transport}", local_contact_addr(shared, trunk)))?;
    let credential = match (&trunk.username, &trunk.password) {
        (Some(username), Some(password)) => {
            Some(Credential { username: username.clone(), password: password.clone(), ..Credential::default() })
        }
        _ => None,
    };
    Some(InviteOption {
        caller_display_name: display,
        caller: from,
        callee: to,
        destination: Some(trunk_destination(trunk)),
        content_type: Some("application/sdp".to_owned()),
        offer: Some(offer.into_bytes()),
        contact,
        credential,
        // `Supported: 100rel`: a trunk may send its early media (183 with SDP) reliably;
        // rsipstack's client dialog PRACKs each reliable 18x (RFC 3262).
        support_prack: true,
        ..InviteOption::default()
    })
}

/// Where requests to `trunk` go: its address, on its transport. A TLS trunk with a
/// `tls_server_name` is addressed by that name (the SNI and the name its certificate is
/// checked against; `crate::tls::TrunkNames` resolves it to `address`).
pub(crate) fn trunk_destination(trunk: &TrunkConfig) -> SipAddr {
    let mut destination = SipAddr::from(trunk.address);
    match trunk.transport {
        TrunkTransport::Udp => {}
        TrunkTransport::Tcp => destination.r#type = Some(rsipstack::sip::Transport::Tcp),
        TrunkTransport::Tls => {
            destination.r#type = Some(rsipstack::sip::Transport::Tls);
            if let Some(name) = &trunk.tls_server_name {
                destination.addr.host = rsipstack::sip::Host::Domain(name.as_str().into());
            }
        }
    }
    destination
}

/// palaver's own address on `trunk`'s transport: `listen_tls` for a TLS trunk (validated
/// to be set), else `listen` (UDP and TCP).
pub(crate) fn local_contact_addr(shared: &Shared, trunk: &TrunkConfig) -> std::net::SocketAddr {
    match (trunk.transport, shared.tls) {
        (TrunkTransport::Tls, Some(tls)) => tls,
        _ => shared.local,
    }
}

/// The call machinery rings `phone` in `call_id` (`event` is its `call.incoming`).
pub(crate) async fn dial(shared: Arc<Shared>, call_id: String, phone: String, event: CallEvent) {
    let gateway = shared.gateway.clone();
    let Some(trunk) = shared.trunks.primary().cloned() else {
        tracing::warn!(call = %call_id, %phone, "no trunk configured to dial a phone number: declined");
        let _ = gateway.phone_fail(&call_id, &phone, None).await;
        return;
    };
    let number = phone.strip_prefix("4:").unwrap_or(&phone).to_owned();
    let (caller, requested) = match &event {
        CallEvent::Incoming { caller, caller_id_number, .. } => (Some(caller.clone()), caller_id_number.clone()),
        _ => (None, None),
    };
    let presented = presented_number(&shared, &trunk, caller.as_ref(), requested.as_deref());
    let mut events = shared.register(&call_id, &phone);
    let offer = match gateway.phone_offer(&call_id, &phone, media_preference(&trunk)).await {
        Ok(sdp) => sdp,
        Err(error) => {
            tracing::warn!(call = %call_id, %error, "no media offer for the trunk: declined");
            shared.unregister(&call_id, &phone);
            let _ = gateway.phone_fail(&call_id, &phone, None).await;
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Failed);
            return;
        }
    };
    let display = caller.as_ref().map(|c| c.display_name.clone());
    // Kept for a move into a conversation (`crate::moved`): palaver's SDP on this leg.
    let local_sdp = offer.clone();
    let Some(option) = invite_option(&shared, &trunk, &number, &presented, display, offer) else {
        shared.unregister(&call_id, &phone);
        let _ = gateway.phone_fail(&call_id, &phone, None).await;
        return;
    };
    let option = crate::custom_headers::apply(option, &event);
    if let Err(why) = crate::tls::connect(&shared, &trunk).await {
        // An untrusted or misnamed certificate (or no TLS listener at the address).
        tracing::warn!(call = %call_id, trunk = %trunk.name, "{why}");
        shared.unregister(&call_id, &phone);
        let _ = gateway.phone_fail(&call_id, &phone, None).await;
        shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Failed);
        return;
    }
    let (state_tx, mut states) = shared.dialogs.new_dialog_state_channel();
    tracing::info!(trunk = %trunk.name, call = %call_id, to = %number, from = %presented, "dialling a phone number");
    // While the phone rings, the call may end for it (the caller gives up, the ring time
    // runs out, the invitation is withdrawn): the INVITE is then cancelled (CANCEL, 487).
    let invite = shared.dialogs.do_invite(option, state_tx);
    tokio::pin!(invite);
    let mut dialog_id = None;
    let mut cancelled = false;
    // Early media: the SDP of a 18x (carrier ringback, announcements) joins the phone's RTP
    // to the call's conference before the answer; the 200 then continues on it.
    let mut early_sdp: Option<String> = None;
    let mut early_media: Option<palaver_signaling::gateway::TrunkAnswer> = None;
    // A reliable 18x with SDP completes the INVITE's offer/answer early (for the trunk's
    // early UPDATEs, `crate::hold::early_update`).
    let mut early_answer = crate::gateway::EarlyAnswer::new(&shared);
    let answered = loop {
        tokio::select! {
            result = &mut invite => break result,
            Some(state) = states.recv() => {
                if dialog_id.is_none() {
                    dialog_id = Some(state.id().clone());
                }
                if let DialogState::Early(id, response) = &state
                    && response.header_value("RSeq").is_some()
                    && sdp_body(&response.body).is_some()
                {
                    early_answer.completed(&id.call_id);
                }
                if let DialogState::Early(_, response) = &state
                    && early_sdp.is_none()
                    && !cancelled
                    && let Some(sdp) = sdp_body(&response.body)
                {
                    match gateway.phone_attach(&call_id, &phone, sdp.clone(), media_preference(&trunk)).await {
                        Ok(media) => {
                            tracing::info!(call = %call_id, status = response.status_code.code(), codec = %media.codec, "early media from the trunk");
                            early_sdp = Some(sdp);
                            early_media = Some(media);
                        }
                        Err(error) => tracing::info!(call = %call_id, %error, "the trunk's early media is not usable"),
                    }
                }
            }
            event = events.recv(), if !cancelled => {
                if matches!(event, Some(CallEvent::Ended { .. }) | None) {
                    cancelled = true;
                    let dialog = dialog_id.as_ref().and_then(|id| shared.dialogs.get_dialog(id));
                    match dialog {
                        Some(Dialog::Invite(dialog)) => {
                            tracing::info!(call = %call_id, to = %number, "the call ended while the phone rang: CANCEL");
                            if let Err(error) = dialog.cancel().await {
                                tracing::debug!(call = %call_id, %error, "CANCEL not sent");
                            }
                        }
                        _ => tracing::debug!(call = %call_id, "no dialog to cancel yet: the answer will get BYE"),
                    }
                }
            }
        }
    };
    if cancelled {
        if let Ok((dialog, Some(response))) = &answered
            && response.status_code.code() / 100 == 2
        {
            // The 2xx crossed the CANCEL: the phone answered a call that is gone.
            let _ = dialog.bye().await;
        }
        gateway.phone_detach(&call_id, &phone);
        shared.unregister(&call_id, &phone);
        shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Cancelled);
        return;
    }
    let (dialog, answer) = match answered {
        Ok((dialog, Some(response))) if response.status_code.code() / 100 == 2 => {
            (dialog, String::from_utf8_lossy(&response.body).into_owned())
        }
        Ok((_, response)) => {
            let code = response.map(|r| r.status_code.code());
            tracing::info!(call = %call_id, ?code, "the trunk did not answer the call");
            if early_sdp.is_some() {
                gateway.phone_detach(&call_id, &phone);
            }
            shared.unregister(&call_id, &phone);
            let _ = gateway.phone_fail(&call_id, &phone, code).await;
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Rejected);
            return;
        }
        Err(error) => {
            match crate::tls::describe_failure(&trunk, &error.to_string()) {
                Some(why) => tracing::warn!(call = %call_id, trunk = %trunk.name, "{why}"),
                None => tracing::warn!(call = %call_id, %error, "dialling through the trunk failed"),
            }
            if early_sdp.is_some() {
                gateway.phone_detach(&call_id, &phone);
            }
            shared.unregister(&call_id, &phone);
            let _ = gateway.phone_fail(&call_id, &phone, None).await;
            shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Failed);
            return;
        }
    };
    let endpoint = dialog.id().to_string();
    let party = Party::new(phone.clone(), number.clone());
    let billed_session = palaver_signaling::gateway::Gateway::phone_call_session_id(&call_id, &phone);
    gateway.name_phone_leg(&billed_session, crate::counters::phone_leg(&presented, &trunk.name, Direction::Outbound));
    // The 200 continues on the early media when it repeats its SDP (or has none); a
    // different answer re-attaches the leg.
    // The trunk's SDP this leg runs on (its answer, or the early media it continues).
    let remote_sdp = if answer.trim().is_empty() { early_sdp.clone().unwrap_or_default() } else { answer.clone() };
    let attached = match &early_sdp {
        Some(early) if answer.trim().is_empty() || answer == *early => Ok(None),
        _ => gateway.phone_attach(&call_id, &phone, answer.clone(), media_preference(&trunk)).await.map(Some),
    };
    // What was agreed, for the trunk's later re-INVITEs and UPDATEs (hold, resume).
    let mut media = None;
    let accepted = match attached {
        Ok(agreed) => {
            let remote = early_sdp.clone().filter(|_| agreed.is_none()).unwrap_or_else(|| answer.clone());
            let agreed = agreed.or(early_media);
            let codec = agreed.as_ref().map(|m| m.codec.to_string()).unwrap_or_default();
            tracing::info!(call = %call_id, %codec, "phone number answered");
            media = agreed.map(|agreed| {
                let session = palaver_signaling::gateway::Gateway::phone_media_session(&call_id, &phone);
                LegMedia::dialled(session, media_preference(&trunk), agreed, remote)
            });
            gateway.phone_accept(&call_id, party, &endpoint).await
        }
        Err(error) => {
            tracing::warn!(call = %call_id, %error, "the trunk's answer is not usable");
            let _ = gateway.phone_fail(&call_id, &phone, None).await;
            Err(palaver_signaling::domain::calls::CallError::new(
                palaver_core::ErrorCode::MediaUnavailable,
                "bad answer",
            ))
        }
    };
    if let Err(error) = accepted {
        // The call ended (or was answered elsewhere) while the phone rang.
        tracing::info!(call = %call_id, %error, "the call is gone: hanging the phone up");
        let _ = dialog.bye().await;
        gateway.phone_detach(&call_id, &phone);
        gateway.forget_phone_leg(&billed_session);
        shared.unregister(&call_id, &phone);
        shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Cancelled);
        return;
    }
    // The trunk may hand the phone's place on with REFER (RFC 3515), as on its own calls.
    let mut referral = crate::refer::Referral::new(&shared, &dialog.id().call_id);
    loop {
        tokio::select! {
            state = states.recv() => match state {
                Some(DialogState::Terminated(..)) | None => {
                    let _ = gateway.phone_hang_up(&call_id, &phone).await;
                    break;
                }
                Some(DialogState::Refer(_, refer, handle)) => {
                    referral.refer(&shared, &dialog, (&call_id, &phone), &refer, handle).await;
                }
                Some(DialogState::Updated(_, request, handle)) => match media.as_mut() {
                    Some(media) => crate::hold::update(&shared, media, &request, handle).await,
                    None => {
                        let _ = handle.reply(rsipstack::sip::StatusCode::NotAcceptableHere).await;
                    }
                },
                Some(_) => {}
            },
            event = events.recv() => match event {
                Some(CallEvent::Ended { .. }) | None => {
                    let _ = dialog.bye().await;
                    break;
                }
                Some(CallEvent::ParticipantLeft { participant, .. }) if participant == phone => {
                    let _ = dialog.bye().await;
                    break;
                }
                Some(event @ (CallEvent::TransferAccepted { .. } | CallEvent::TransferFailed { .. })) => {
                    referral.outcome(&dialog, &event, |reason| crate::inbound::refusal(*reason)).await;
                }
                Some(CallEvent::Moved { join, .. }) => {
                    // Call Automation moved the phone into a group call or a room: the dialog
                    // goes on there, without a BYE (`crate::moved`).
                    shared.unregister(&call_id, &phone);
                    let mut media = media.take().unwrap_or_else(|| crate::hold::LegMedia {
                        session: palaver_signaling::gateway::Gateway::phone_media_session(&call_id, &phone),
                        codecs: media_preference(&trunk),
                        local_sdp: local_sdp.clone(),
                        remote_sdp: remote_sdp.clone(),
                        held: false,
                    });
                    let billed = crate::counters::phone_leg(&presented, &trunk.name, Direction::Outbound);
                    let leg = crate::moved::MovedLeg { shared: &shared, dialog: &dialog, states: &mut states, media: &mut media, phone: &phone, display: &number, billed };
                    crate::moved::follow(leg, join).await;
                    break;
                }
                Some(_) => {}
            },
        }
    }
    referral.finish(&shared);
    shared.unregister(&call_id, &phone);
    gateway.phone_detach(&call_id, &phone);
    gateway.forget_phone_leg(&billed_session);
    shared.counters.call(&trunk.name, Direction::Outbound, Outcome::Completed);
    tracing::info!(call = %call_id, "outbound phone call over");
}

/// The SDP of a provisional response, if it has one (early media).
fn sdp_body(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.lines().any(|l| l.starts_with("m=audio")).then(|| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::{Party, caller_id_policy, sdp_body};

    #[test]
    fn the_presented_number_follows_the_trunks_caller_id_policy() {
        let owned = ["+14255550188".to_owned(), "+14255550100".to_owned()];
        let user = Party::new("8:orgid:uma", "Uma");
        let phone = Party::new("4:+14255550199", "Carla");
        // A trunk with `caller_id` presents it, whoever calls.
        assert_eq!(caller_id_policy(Some("+18005550100"), Some(&phone), owned.iter()), "+18005550100");
        assert_eq!(caller_id_policy(Some("+18005550100"), Some(&user), owned.iter()), "+18005550100");
        // Else a phone caller (a transfer or forward) keeps its own number...
        assert_eq!(caller_id_policy(None, Some(&phone), owned.iter()), "+14255550199");
        // ...and a user presents palaver's lowest owned number.
        assert_eq!(caller_id_policy(None, Some(&user), owned.iter()), "+14255550100");
        assert_eq!(caller_id_policy(None, None, [].iter()), "anonymous");
    }

    #[test]
    fn only_a_provisional_response_with_an_audio_sdp_brings_early_media() {
        assert_eq!(sdp_body(b""), None);
        assert_eq!(sdp_body(b"not sdp"), None);
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(sdp_body(sdp.as_bytes()).as_deref(), Some(sdp));
    }
}
