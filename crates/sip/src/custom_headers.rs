//! The `sipHeaders` of a Call Automation `customCallingContext` on the INVITE to a phone: an
//! `add_participant` or transfer to a `4:+E.164` target with `sip_headers` rings the phone
//! with those headers (the `call.incoming` the call machinery hands the SIP gateway carries
//! the context). Only custom headers pass: names starting with `X-` (ACS's are
//! `X-MS-Custom-…`) or `User-To-User`, made of SIP token characters, with values free of
//! line breaks; anything else is left out (logged), so an application cannot forge `Via`,
//! `Contact` or `Content-Length`.

use palaver_signaling::domain::calls::CallEvent;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::Header;

/// `option` with the custom SIP headers of `event`'s `customContext`, if any.
pub(crate) fn apply(mut option: InviteOption, event: &CallEvent) -> InviteOption {
    let CallEvent::Incoming { custom_context: Some(custom), .. } = event else { return option };
    let Some(sip_headers) = custom.get("sipHeaders").and_then(|h| h.as_object()) else { return option };
    let mut headers = option.headers.take().unwrap_or_default();
    for (name, value) in sip_headers {
        match value.as_str() {
            Some(value) if allowed(name, value) => headers.push(Header::Other(name.clone(), value.to_owned())),
            _ => tracing::warn!(header = %name, "customCallingContext SIP header left out (not a custom header)"),
        }
    }
    option.headers = (!headers.is_empty()).then_some(headers);
    option
}

fn allowed(name: &str, value: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let custom = (lower.starts_with("x-") && name.len() > 2) || lower == "user-to-user";
    let token = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
    custom && token && !value.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_signaling::domain::calls::Party;
    use serde_json::json;

    fn ring(custom: Option<serde_json::Value>) -> CallEvent {
        CallEvent::Incoming {
            call_id: "c1".into(),
            caller: Party::new("8:acs:app", "Bot"),
            participants: vec![],
            queue: None,
            transferred_by: None,
            ring_timeout_ms: 30_000,
            join: None,
            custom_context: custom,
            caller_id_number: None,
        }
    }

    fn names(option: &InviteOption) -> Vec<String> {
        option.headers.iter().flatten().map(|h| h.to_string()).collect()
    }

    #[test]
    fn custom_sip_headers_go_on_the_invite_and_nothing_else_does() {
        let custom = json!({"voipHeaders": {"x-voip": "no"}, "sipHeaders": {
            "X-MS-Custom-Ticket": "42", "User-To-User": "3d2a;encoding=hex", "Via": "SIP/2.0/UDP evil",
            "X-Bad": "a\r\nVia: x", "X-": "empty", "X-Num": 5}});
        let option = apply(InviteOption::default(), &ring(Some(custom)));
        assert_eq!(names(&option), vec!["User-To-User: 3d2a;encoding=hex", "X-MS-Custom-Ticket: 42"]);
        let untouched = apply(InviteOption::default(), &ring(None));
        assert!(untouched.headers.is_none());
        let no_sip = apply(InviteOption::default(), &ring(Some(json!({"voipHeaders": {"x-a": "1"}}))));
        assert!(no_sip.headers.is_none());
    }
}
