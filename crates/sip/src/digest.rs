//! SHA-256 digest authentication (RFC 8760) on the wire. rsipstack 0.7.14 computes SHA-256
//! digests but spells the algorithm `SHA256`: it refuses to parse the RFC's `SHA-256` in a
//! trunk's `WWW-Authenticate`/`Proxy-Authenticate` (so palaver could not answer an SBC's
//! SHA-256 challenge: the INVITE failed) or in an `Authorization` (so an SBC's SHA-256
//! answer to palaver's challenge would never verify), and it writes `algorithm=SHA256` in
//! its own answers, which RFC 8760 peers do not know. [`Rfc8760`] is the endpoint's message
//! inspector that translates the spelling at the edge: `SHA-256`/`SHA-256-sess` become
//! rsipstack's names on the way in and go back to the RFC's on the way out. The hash is
//! the same either way (the algorithm's name is not part of the digest).

use rsipstack::sip::{Header, SipMessage, headers};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

/// The inspector (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Rfc8760;

impl MessageInspector for Rfc8760 {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        rewrite(msg, to_rfc)
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        rewrite(msg, to_rsipstack)
    }
}

/// `msg` with `fix` applied to its authentication headers (untouched when none needs it).
fn rewrite(mut msg: SipMessage, fix: fn(&str) -> Option<String>) -> SipMessage {
    let headers = match &mut msg {
        SipMessage::Request(r) => &mut r.headers,
        SipMessage::Response(r) => &mut r.headers,
    };
    for header in headers.iter_mut() {
        let fixed = match &*header {
            Header::Authorization(h) => fix(h.value()).map(|v| Header::Authorization(headers::Authorization::new(v))),
            Header::ProxyAuthorization(h) => {
                fix(h.value()).map(|v| Header::ProxyAuthorization(headers::ProxyAuthorization::new(v)))
            }
            Header::WwwAuthenticate(h) => {
                fix(h.value()).map(|v| Header::WwwAuthenticate(headers::WwwAuthenticate::new(v)))
            }
            Header::ProxyAuthenticate(h) => {
                fix(h.value()).map(|v| Header::ProxyAuthenticate(headers::ProxyAuthenticate::new(v)))
            }
            _ => None,
        };
        if let Some(fixed) = fixed {
            *header = fixed;
        }
    }
    msg
}

/// The value of a header's `algorithm` parameter: its start and end in `value` (quotes
/// excluded) and the name.
fn algorithm(value: &str) -> Option<(usize, usize, &str)> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("algorithm") {
        let at = from + found;
        from = at + "algorithm".len();
        // A parameter name: at the start or after `,` / whitespace, then `=`.
        let before = lower[..at].trim_end();
        if !(before.is_empty() || before.ends_with(',') || before.ends_with("digest")) {
            continue;
        }
        let rest = &value[from..];
        let Some(eq) = rest.trim_start().strip_prefix('=') else { continue };
        let skipped = rest.len() - eq.len();
        let trimmed = eq.trim_start();
        let quoted = trimmed.starts_with('"');
        let start = from + skipped + (eq.len() - trimmed.len()) + usize::from(quoted);
        let len =
            value[start..].find(|c: char| c == ',' || c == '"' || c.is_whitespace()).unwrap_or(value.len() - start);
        return Some((start, start + len, &value[start..start + len]));
    }
    None
}

fn replace_algorithm(value: &str, map: &[(&str, &str)]) -> Option<String> {
    let (start, end, name) = algorithm(value)?;
    let (_, to) = map.iter().find(|(from, _)| from.eq_ignore_ascii_case(name))?;
    Some(format!("{}{to}{}", &value[..start], &value[end..]))
}

/// RFC 8760's names to rsipstack's.
pub(crate) fn to_rsipstack(value: &str) -> Option<String> {
    replace_algorithm(value, &[("SHA-256", "SHA256"), ("SHA-256-sess", "SHA256-sess")])
}

/// rsipstack's names to RFC 8760's.
fn to_rfc(value: &str) -> Option<String> {
    replace_algorithm(value, &[("SHA256", "SHA-256"), ("SHA256-sess", "SHA-256-sess")])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::typed::{Authorization, WwwAuthenticate};

    const CHALLENGE: &str = r#"Digest realm="sbc", nonce="abc", algorithm=SHA-256, qop="auth""#;

    #[test]
    fn rsipstack_refuses_the_rfc_spelling_and_the_translation_fixes_it() {
        // The bug this module works around (if rsipstack learns `SHA-256`, this tells).
        assert!(WwwAuthenticate::parse(CHALLENGE).is_err(), "rsipstack parses SHA-256 now: drop the inspector");
        let ours = to_rsipstack(CHALLENGE).unwrap();
        assert_eq!(ours, r#"Digest realm="sbc", nonce="abc", algorithm=SHA256, qop="auth""#);
        let typed = WwwAuthenticate::parse(&ours).unwrap();
        assert_eq!(typed.algorithm, Some(rsipstack::sip::headers::auth::Algorithm::Sha256));
        assert_eq!(to_rfc(&ours).as_deref(), Some(CHALLENGE));
        // Quoted, other case, `-sess`, and names that are not the algorithm parameter.
        assert_eq!(
            to_rsipstack(r#"Digest algorithm="sha-256-sess", realm="algorithm=SHA-256""#).as_deref(),
            Some(r#"Digest algorithm="SHA256-sess", realm="algorithm=SHA-256""#)
        );
        assert_eq!(to_rsipstack(r#"Digest realm="x", nonce="n", algorithm=MD5"#), None);
        assert_eq!(to_rsipstack(r#"Digest realm="x", nonce="n""#), None);
    }

    #[test]
    fn an_rfc_8760_answer_verifies_once_translated() {
        use rsipstack::dialog::authenticate::{compute_digest, verify_digest};
        use rsipstack::sip::Method;
        use rsipstack::sip::headers::auth::Algorithm;
        let uri = "sip:+14255550100@127.0.0.1:5061;transport=tls";
        let response = compute_digest("palaver", "s3cret", "sbc", "abc", &Method::Invite, uri, Algorithm::Sha256, None);
        assert_eq!(response.len(), 64, "a SHA-256 digest");
        let answer = format!(
            r#"Digest username="palaver", realm="sbc", nonce="abc", uri="{uri}", response="{response}", algorithm=SHA-256"#
        );
        assert!(Authorization::parse(&answer).is_err());
        let fixed = to_rsipstack(&answer).unwrap();
        let auth = Authorization::parse(&fixed).unwrap();
        assert!(verify_digest(&auth, "s3cret", &Method::Invite, &fixed));
        assert!(!verify_digest(&auth, "wrong", &Method::Invite, &fixed));
    }

    #[test]
    fn the_inspector_rewrites_authentication_headers_only() {
        let text = format!(
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             WWW-Authenticate: {CHALLENGE}\r\nSubject: algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n"
        );
        let msg = SipMessage::try_from(text.as_str()).unwrap();
        let received = Rfc8760.after_received(msg, None).to_string();
        assert!(
            received.contains("WWW-Authenticate: Digest realm=\"sbc\", nonce=\"abc\", algorithm=SHA256"),
            "{received}"
        );
        assert!(received.contains("Subject: algorithm=SHA-256"), "{received}");
        let sent = Rfc8760.before_send(SipMessage::try_from(received.as_str()).unwrap(), None).to_string();
        assert!(sent.contains(&format!("WWW-Authenticate: {CHALLENGE}")), "{sent}");
    }
}
