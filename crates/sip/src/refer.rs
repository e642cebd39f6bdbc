//! REFER from the trunk on a connected call (RFC 3515): its `Refer-To` read as a transfer
//! target of the call machinery (an owned number's user or queue, else the phone number,
//! dialled out), and the NOTIFYs of the implicit `refer` subscription: `message/sipfrag`
//! bodies with the transfer's progress — `SIP/2.0 100 Trying` once the REFER is accepted
//! (202), then the final status (`200 OK` when the target answered, the refusal's code when
//! it did not) with `Subscription-State: terminated;reason=noresource`.

use std::collections::HashMap;

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Request, StatusCode};

use crate::config::{Route, normalize_number};

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
