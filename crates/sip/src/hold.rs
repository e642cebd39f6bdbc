//! Re-INVITE and UPDATE on an answered phone leg: hold, resume and media changes
//! (RFC 3264 §8). An offer with `a=sendonly` or `a=inactive` puts the phone on hold: the
//! media plane holds its leg in place (it is neither heard nor sent the mix; the transport,
//! its DTLS association and keys stay) and the answer says `recvonly` / `inactive`. An offer
//! that sends again resumes it on the same transport; a new address, codec, key or DTLS
//! fingerprint/role makes a new transport (`palaver_sfu::control::sip::legs`). A re-INVITE
//! without an offer gets the current SDP as palaver's offer; an UPDATE without an offer (a
//! session refresh, RFC 4028, or a target refresh) gets a 200 without a body: an UPDATE's
//! response may only carry an answer, and there is no offer to answer (RFC 3311 §5.2).
//! Anything unusable gets 488 and the leg stays as it was. The same code serves the legs the
//! trunk called in and the legs palaver dialled out ([`LegMedia::dialled`]).
//!
//! In an early dialog (before palaver's 200, or before the trunk's 200 on a call palaver
//! placed) rsipstack leaves an UPDATE unanswered; [`early_update`] answers it (RFC 3311
//! §5.2): 200 without a body for a refresh; for an offer while the INVITE's own
//! offer/answer is incomplete, **491** when the outstanding offer is palaver's (a call it
//! placed: the trunk has not answered reliably yet) and **500 with `Retry-After`** (uniform
//! 0–10 s) when it is the trunk's (palaver has not answered it yet); once the early
//! offer/answer completed (a reliable 18x carried the answer), **488**: palaver does not
//! renegotiate an early session by design (its ringback or the trunk's early media goes on
//! as agreed, and a re-offer after the answer is served as above).

use palaver_signaling::gateway::{MediaSession, TrunkAnswer};
use rsipstack::dialog::dialog::TransactionHandle;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::transaction::Transaction;

use crate::gateway::Shared;

/// A media direction of an SDP (`a=sendrecv` when none is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction of an SDP: the last direction attribute (media level wins, as it comes
    /// after the session level for a single audio stream).
    pub(crate) fn of(sdp: &str) -> Direction {
        let mut found = Direction::SendRecv;
        for line in sdp.lines().map(str::trim) {
            found = match line {
                "a=sendrecv" => Direction::SendRecv,
                "a=sendonly" => Direction::SendOnly,
                "a=recvonly" => Direction::RecvOnly,
                "a=inactive" => Direction::Inactive,
                _ => continue,
            };
        }
        found
    }

    /// The direction an answer gives to an offer with this one.
    pub(crate) fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }
}

/// `sdp` with its direction attributes replaced by one `a=<direction>` at the end.
pub(crate) fn with_direction(sdp: &str, direction: Direction) -> String {
    let mut out = String::with_capacity(sdp.len() + 16);
    for line in sdp.lines() {
        if matches!(line.trim(), "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("a=");
    out.push_str(direction.attribute());
    out.push_str("\r\n");
    out
}

/// The media of one answered phone leg, as the trunk and palaver agreed it last.
#[derive(Debug, Clone)]
pub(crate) struct LegMedia {
    pub session: MediaSession,
    pub codecs: Vec<String>,
    /// palaver's last SDP (answer or offer) on this leg.
    pub local_sdp: String,
    /// The trunk's last SDP.
    pub remote_sdp: String,
    /// On hold: the RTP is out of the conference.
    pub held: bool,
}

impl LegMedia {
    /// The media of a leg palaver dialled: `agreed` is what the media plane made of the
    /// trunk's answer `remote_sdp` (its SDP lists the one codec in use).
    pub(crate) fn dialled(session: MediaSession, codecs: Vec<String>, agreed: TrunkAnswer, remote_sdp: String) -> Self {
        Self { session, codecs, local_sdp: agreed.sdp, remote_sdp, held: false }
    }
}

/// The `m=` and `c=` lines of an SDP: what must change for the RTP to be re-attached.
fn transport_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().map(str::trim).filter(|l| l.starts_with("m=") || l.starts_with("c=")).collect()
}

/// Answers a re-INVITE or UPDATE (see the module docs).
pub(crate) async fn update(shared: &Shared, media: &mut LegMedia, request: &Request, handle: TransactionHandle) {
    let offer = String::from_utf8_lossy(&request.body).into_owned();
    let content_type = || vec![Header::ContentType(rsipstack::sip::headers::ContentType::new("application/sdp"))];
    if offer.trim().is_empty() && request.method == Method::Update {
        // A refresh: nothing to answer, so no body (RFC 3311 §5.2).
        shared.counters.response(200);
        let _ = handle.respond(StatusCode::OK, None, None).await;
        return;
    }
    if offer.trim().is_empty() {
        // An offerless re-INVITE: our SDP as it is, as palaver's offer.
        shared.counters.response(200);
        let _ = handle.respond(StatusCode::OK, Some(content_type()), Some(media.local_sdp.clone().into_bytes())).await;
        return;
    }
    let direction = Direction::of(&offer);
    let gateway = &shared.gateway;
    let reply = match direction {
        Direction::SendOnly | Direction::Inactive => {
            if !media.held {
                // The media plane holds the leg on its transport (out of the mix, nothing
                // sent), so a DTLS-SRTP association and SDES keys outlive the hold; an offer
                // it cannot keep the leg with releases the media as before.
                let kept = gateway.phone_attach_session(media.session.clone(), offer.clone(), media.codecs.clone());
                if kept.await.is_err() {
                    gateway.phone_leave_session(media.session.clone());
                }
                media.held = true;
                tracing::info!(participant = %media.session.participant_id, "phone leg on hold");
            }
            media.remote_sdp = offer;
            Some(with_direction(&media.local_sdp, direction.answer()))
        }
        Direction::SendRecv | Direction::RecvOnly => {
            let changed = transport_lines(&offer) != transport_lines(&media.remote_sdp);
            if media.held || changed {
                match gateway.phone_attach_session(media.session.clone(), offer.clone(), media.codecs.clone()).await {
                    Ok(answer) => {
                        if media.held {
                            tracing::info!(participant = %media.session.participant_id, codec = %answer.codec, "phone leg resumed");
                        }
                        media.held = false;
                        media.local_sdp = answer.sdp;
                        media.remote_sdp = offer;
                        Some(with_direction(&media.local_sdp, direction.answer()))
                    }
                    Err(error) => {
                        tracing::info!(participant = %media.session.participant_id, %error, "re-INVITE offer not usable: 488");
                        None
                    }
                }
            } else {
                media.remote_sdp = offer;
                Some(with_direction(&media.local_sdp, direction.answer()))
            }
        }
    };
    match reply {
        Some(sdp) => {
            shared.counters.response(200);
            let _ = handle.respond(StatusCode::OK, Some(content_type()), Some(sdp.into_bytes())).await;
        }
        None => {
            shared.counters.response(488);
            let _ = handle.reply(StatusCode::NotAcceptableHere).await;
        }
    }
}

/// Where an early dialog's INVITE offer/answer stands, for an UPDATE with an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EarlyOffer {
    /// palaver's INVITE offer awaits the trunk's reliable answer (a call palaver placed).
    Ours,
    /// The trunk's offer awaits palaver's answer (a call the trunk placed).
    Theirs,
    /// A reliable 18x carried the answer.
    Completed,
}

/// Answers an UPDATE the trunk sends in an early dialog (see the module docs); `ours`:
/// palaver placed the call.
pub(crate) async fn early_update(shared: &Shared, tx: &mut Transaction, ours: bool) {
    let call_id = tx.original.call_id_header().map(|c| c.value().to_string()).unwrap_or_default();
    let offer = match (shared.early_answered(&call_id), ours) {
        (true, _) => EarlyOffer::Completed,
        (false, true) => EarlyOffer::Ours,
        (false, false) => EarlyOffer::Theirs,
    };
    let retry_after = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=10);
    let (status, headers) = early_update_answer(&tx.original.body, offer, retry_after);
    tracing::info!(sip_call_id = %call_id, status = status.code(), ?offer, "UPDATE in an early dialog");
    if tx.reply_with(status.clone(), headers, None).await.is_ok() {
        shared.counters.response(status.code());
    }
}

/// The status (and headers) of an early UPDATE with `body` (`retry_after` seconds for a 500).
fn early_update_answer(body: &[u8], offer: EarlyOffer, retry_after: u32) -> (StatusCode, Vec<Header>) {
    if String::from_utf8_lossy(body).trim().is_empty() {
        return (StatusCode::OK, vec![]);
    }
    match offer {
        // RFC 3311 §5.2: an offer crossing our own unanswered offer.
        EarlyOffer::Ours => (StatusCode::RequestPending, vec![]),
        // An offer while the trunk's own awaits our answer: 500, retried after the answer.
        EarlyOffer::Theirs => (
            StatusCode::ServerInternalError,
            vec![Header::RetryAfter(rsipstack::sip::headers::RetryAfter::new(retry_after.to_string()))],
        ),
        EarlyOffer::Completed => (
            StatusCode::NotAcceptableHere,
            vec![Header::Warning(rsipstack::sip::headers::Warning::new(
                "399 palaver \"an early session is not renegotiated; offer again after the answer\"",
            ))],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";

    #[test]
    fn the_direction_of_an_offer_and_its_answer() {
        assert_eq!(Direction::of(SDP), Direction::SendRecv);
        assert_eq!(Direction::of("v=0\r\nm=audio 1 RTP/AVP 0\r\n"), Direction::SendRecv);
        let held = with_direction(SDP, Direction::SendOnly);
        assert_eq!(Direction::of(&held), Direction::SendOnly);
        assert_eq!(held.matches("a=").count(), 1, "{held}");
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.answer(), Direction::Inactive);
        assert_eq!(Direction::of("a=inactive\r\nm=audio 1 RTP/AVP 0\r\na=sendonly\r\n"), Direction::SendOnly);
    }

    #[test]
    fn an_early_update_is_answered_by_where_the_invites_offer_stands() {
        for offer in [EarlyOffer::Ours, EarlyOffer::Theirs, EarlyOffer::Completed] {
            let (refresh, headers) = early_update_answer(b"", offer, 3);
            assert_eq!((refresh, headers.len()), (StatusCode::OK, 0), "a refresh is always fine");
        }
        let (status, headers) = early_update_answer(SDP.as_bytes(), EarlyOffer::Theirs, 7);
        assert_eq!(status, StatusCode::ServerInternalError);
        assert_eq!(headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(), vec!["Retry-After: 7"]);
        let (status, headers) = early_update_answer(SDP.as_bytes(), EarlyOffer::Ours, 7);
        assert_eq!((status.code(), headers.len()), (491, 0));
        let (status, headers) = early_update_answer(SDP.as_bytes(), EarlyOffer::Completed, 7);
        assert_eq!(status.code(), 488);
        assert!(headers[0].to_string().starts_with("Warning: 399 palaver"), "{headers:?}");
    }

    #[test]
    fn only_a_new_address_port_or_format_list_reattaches() {
        let moved = SDP.replace("m=audio 4000", "m=audio 4002");
        assert_ne!(transport_lines(SDP), transport_lines(&moved));
        assert_eq!(transport_lines(SDP), transport_lines(&with_direction(SDP, Direction::SendOnly)));
    }
}
