//! What a failed call out to a phone number means to the person who asked for it: the SIP
//! final response (or its absence) mapped to an error code of palaver's protocol and a
//! message that names the number and the SIP status (RFC 3261 §21; the codes are those SBCs
//! and carriers use for the cases).

use palaver_core::ErrorCode;

/// The error code and message for a dial-out to `number` that ended with `status` (`None`:
/// no final response — the trunk did not answer or could not be reached).
pub(crate) fn dial_out_failure(number: &str, status: Option<u16>) -> (ErrorCode, String) {
    let Some(status) = status else {
        return (ErrorCode::PstnUnavailable, format!("dialling {number} failed: the SIP trunk did not respond"));
    };
    let code = match status {
        486 | 600 => ErrorCode::PhoneBusy,
        408 | 480 | 487 => ErrorCode::PhoneNoAnswer,
        603 | 607 => ErrorCode::PhoneDeclined,
        404 | 410 | 484 | 485 | 604 => ErrorCode::PhoneNumberUnreachable,
        _ => ErrorCode::PstnUnavailable,
    };
    let reason = rsipstack::sip::StatusCode::from(status);
    (code, format!("dialling {number} failed: the SIP trunk answered {status} {}", reason.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_outcomes_map_to_codes_the_requester_can_act_on() {
        let code = |s| dial_out_failure("+14255550123", s).0;
        assert_eq!(code(Some(486)), ErrorCode::PhoneBusy);
        assert_eq!(code(Some(600)), ErrorCode::PhoneBusy);
        assert_eq!(code(Some(480)), ErrorCode::PhoneNoAnswer);
        assert_eq!(code(Some(408)), ErrorCode::PhoneNoAnswer);
        assert_eq!(code(Some(603)), ErrorCode::PhoneDeclined);
        assert_eq!(code(Some(404)), ErrorCode::PhoneNumberUnreachable);
        assert_eq!(code(Some(484)), ErrorCode::PhoneNumberUnreachable);
        assert_eq!(code(Some(503)), ErrorCode::PstnUnavailable);
        assert_eq!(code(Some(403)), ErrorCode::PstnUnavailable, "the trunk refusing us is not the phone declining");
        assert_eq!(code(None), ErrorCode::PstnUnavailable);
        let (_, message) = dial_out_failure("+14255550123", Some(486));
        assert_eq!(message, "dialling +14255550123 failed: the SIP trunk answered 486 Busy Here");
    }
}
