//! Paging tokens for chat lists: the position after which the next page starts (and the
//! list's `startTime`), signed with a server key and bound to the list it came from, then
//! base64url-encoded — URL-safe (nothing a `nextLink` round trip can mangle), opaque, and
//! a forged or reused-elsewhere token fails to verify.

use super::ChatError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;
const MAC_BYTES: usize = 16;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    /// The list's ordering key of the last item returned.
    pub position: i64,
    /// A tie-breaker for orderings whose key is not unique (0 when unused).
    pub tie: i64,
    /// The `startTime` of the first request, in ms.
    pub start_ms: Option<i64>,
}

/// The key that signs page tokens (persisted, so tokens survive restarts).
#[derive(Clone)]
pub struct PageKeys {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKeys(..)")
    }
}

impl PageKeys {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, list: &str, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(list.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac
    }

    /// The token for `page` of the list named `list` (e.g. `messages:<thread id>`).
    pub fn sign(&self, list: &str, page: PageToken) -> String {
        let start = page.start_ms.map(|s| s.to_string()).unwrap_or_default();
        let payload = format!("{}.{}.{start}", page.position, page.tie);
        let tag = self.mac(list, &payload).finalize().into_bytes();
        format!("{}.{}", B64URL.encode(payload), B64URL.encode(&tag[..MAC_BYTES]))
    }

    /// Verify and decode a token of the list named `list`.
    pub fn verify(&self, list: &str, token: &str) -> Result<PageToken, ChatError> {
        let bad = || ChatError::InvalidPageToken;
        let (payload, tag) = token.split_once('.').ok_or_else(bad)?;
        let payload = String::from_utf8(B64URL.decode(payload).map_err(|_| bad())?).map_err(|_| bad())?;
        let tag = B64URL.decode(tag).map_err(|_| bad())?;
        if tag.len() != MAC_BYTES {
            return Err(bad());
        }
        self.mac(list, &payload).verify_truncated_left(&tag).map_err(|_| bad())?;
        let mut parts = payload.split('.');
        let (Some(pos), Some(tie), Some(start), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(PageToken {
            position: pos.parse().map_err(|_| bad())?,
            tie: tie.parse().map_err(|_| bad())?,
            start_ms: if start.is_empty() { None } else { Some(start.parse().map_err(|_| bad())?) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let keys = PageKeys::new(b"k1");
        let page = PageToken { position: 42, tie: -3, start_ms: Some(1_700_000_000_000) };
        let token = keys.sign("messages:19:a@thread.v2", page);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'), "{token}");
        assert_eq!(keys.verify("messages:19:a@thread.v2", &token), Ok(page));
        assert_eq!(keys.verify("messages:19:b@thread.v2", &token), Err(ChatError::InvalidPageToken));
        assert_eq!(PageKeys::new(b"k2").verify("messages:19:a@thread.v2", &token), Err(ChatError::InvalidPageToken));
        let forged = format!("{}.{}", B64URL.encode("1.0."), token.split_once('.').unwrap().1);
        assert_eq!(keys.verify("messages:19:a@thread.v2", &forged), Err(ChatError::InvalidPageToken));
        for junk in ["", "abc", "a.b", "!!.!!", "page2"] {
            assert_eq!(keys.verify("l", junk), Err(ChatError::InvalidPageToken), "{junk}");
        }
        let none = PageToken { position: 1, tie: 0, start_ms: None };
        assert_eq!(keys.verify("l", &keys.sign("l", none)), Ok(none));
    }
}
