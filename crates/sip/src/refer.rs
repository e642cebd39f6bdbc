//! REFER from the trunk on a connected call (RFC 3515): its `Refer-To` read as a transfer
//! target of the call machinery (an owned number's user or queue, else the phone number,
//! dialled out), and the NOTIFYs of the implicit `refer` subscription: `message/sipfrag`
//! bodies with the transfer's progress — `SIP/2.0 100 Trying` once the REFER is accepted
//! (202), then the final status (`200 OK` when the target answered, the refusal's code when
//! it did not) with `Subscription-State: terminated;reason=noresource`. [`Referral`] runs
//! this for one phone leg, whichever side placed the call (the trunk's calls in
//! `inbound.rs`, palaver's calls out in `outbound.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use palaver_signaling::domain::calls::CallEvent;
use rsipstack::dialog::dialog::TransactionHandle;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Request, StatusCode};
use tokio::sync::Notify;

use crate::config::{Route, normalize_number};
use crate::gateway::Shared;

/// The REFERs of one connected phone leg: answers each (202 when the call machinery takes
/// the transfer) and keeps the implicit subscription told until the transfer's outcome.
pub(crate) struct Referral {
    sip_call_id: String,
    /// Told by the gateway when a REFER's response has gone out (the NOTIFYs follow it).
    answered: Arc<Notify>,
    /// A REFER was accepted and its final NOTIFY is still due.
    pending: bool,
}

impl Referral {
    /// Starts watching the leg of SIP dialog `sip_call_id`; [`Referral::finish`] ends it.
    pub(crate) fn new(shared: &Shared, sip_call_id: &str) -> Self {
        let answered = Arc::new(Notify::new());
        if let Ok(mut refers) = shared.refers.lock() {
            refers.insert(sip_call_id.to_owned(), answered.clone());
        }
        Self { sip_call_id: sip_call_id.to_owned(), answered, pending: false }
    }

    /// The trunk's REFER on the connected call `call_id`: the phone's place goes to the
    /// Refer-To target through the call machinery's transfer.
    pub(crate) async fn refer(
        &mut self,
        shared: &Shared,
        dialog: &InviteDialog,
        (call_id, phone): (&str, &str),
        refer: &Request,
        handle: TransactionHandle,
    ) {
        let target = refer_target(&shared.numbers, refer);
        let status = match &target {
            Some(target) => match shared.gateway.phone_transfer(call_id, phone, target).await {
                Ok(()) => StatusCode::Accepted,
                Err(error) => {
                    tracing::info!(call = %call_id, %target, %error, "REFER refused by the call machinery");
                    StatusCode::Forbidden
                }
            },
            None => StatusCode::BadRequest,
        };
        tracing::info!(call = %call_id, target = ?target, status = status.code(), "REFER from the trunk");
        shared.counters.response(status.code());
        let accepted = status == StatusCode::Accepted;
        let _ = handle.reply(status).await;
        if accepted {
            // RFC 3515 §2.4.4: the implicit subscription hears the progress, after the 202.
            self.pending = true;
            let _ = tokio::time::timeout(Duration::from_secs(2), self.answered.notified()).await;
            notify(dialog, &StatusCode::Trying, false).await;
        }
    }

    /// The final NOTIFY when `event` is the outcome of an accepted REFER's transfer;
    /// `refusal` is the SIP status of a failed one. True when `event` was that outcome.
    pub(crate) async fn outcome(
        &mut self,
        dialog: &InviteDialog,
        event: &CallEvent,
        refusal: impl Fn(&palaver_signaling::domain::calls::CallEndReason) -> StatusCode,
    ) -> bool {
        if !self.pending {
            return false;
        }
        let status = match event {
            CallEvent::TransferAccepted { target, .. } => {
                tracing::info!(%target, "the REFER's transfer target answered");
                StatusCode::OK
            }
            CallEvent::TransferFailed { target, reason, .. } => {
                tracing::info!(%target, ?reason, "the REFER's transfer failed");
                refusal(reason)
            }
            _ => return false,
        };
        self.pending = false;
        notify(dialog, &status, true).await;
        true
    }

    /// Stops watching the leg.
    pub(crate) fn finish(self, shared: &Shared) {
        if let Ok(mut refers) = shared.refers.lock() {
            refers.remove(&self.sip_call_id);
        }
    }
}

/// The transfer target of a REFER: its `Refer-To` number, as the owned number's user or
/// queue when it is one of ours, else as a phone number (dialled out through the trunk).
pub(crate) fn refer_target(numbers: &HashMap<String, Route>, refer: &Request) -> Option<String> {
    let value = refer.headers.iter().find_map(|h| match h {
        Header::ReferTo(value) => Some(value.to_string()),
        Header::Other(name, value) if name.eq_ignore_ascii_case("Refer-To") || name == "r" => Some(value.clone()),
        _ => None,
    })?;
    let value = value.trim();
    let value = value.strip_prefix("Refer-To:").unwrap_or(value).trim();
    let uri = value.trim_start_matches('<').split(['>', ';']).next()?.to_owned();
    let user = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:")).or_else(|| uri.strip_prefix("tel:"))?;
    let number = normalize_number(user.split('@').next()?)?;
    Some(match numbers.get(&number) {
        Some(Route::User(raw) | Route::Queue(raw)) => raw.clone(),
        _ => format!("4:{number}"),
    })
}

/// The `message/sipfrag` body of a progress NOTIFY.
pub(crate) fn sipfrag(status: &StatusCode) -> String {
    format!("SIP/2.0 {} {}\r\n", status.code(), status.text())
}

/// Sends the `refer` subscription's NOTIFY with `status`; `last` ends the subscription.
pub(crate) async fn notify(dialog: &InviteDialog, status: &StatusCode, last: bool) {
    let state = if last { "terminated;reason=noresource" } else { "active;expires=60" };
    let headers = vec![
        Header::Event("refer".into()),
        Header::SubscriptionState(state.into()),
        Header::ContentType(rsipstack::sip::headers::ContentType::new("message/sipfrag;version=2.0")),
    ];
    let body = sipfrag(status).into_bytes();
    match dialog.notify(Some(headers), Some(body)).await {
        Ok(response) => {
            tracing::debug!(code = status.code(), answer = ?response.map(|r| r.status_code.code()), "REFER progress NOTIFY")
        }
        Err(error) => tracing::info!(%error, "REFER progress NOTIFY not delivered"),
    }
}

#[cfg(test)]
mod tests;
