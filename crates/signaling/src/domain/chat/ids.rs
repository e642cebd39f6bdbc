//! Chat ids as ACS shapes them: thread ids `19:<opaque>@thread.v2` (meeting threads
//! `19:meeting_<opaque>@thread.v2`), and message ids that are epoch-millisecond numbers
//! strictly growing within a thread, so an id also orders its messages.

use rand::RngCore;

const THREAD_SUFFIX: &str = "@thread.v2";

/// A new random thread id (`19:<26 base32 chars>@thread.v2`).
pub fn new_thread_id() -> String {
    format!("19:{}{THREAD_SUFFIX}", random_base32())
}

/// How every meeting thread id starts.
pub const MEETING_THREAD_PREFIX: &str = "19:meeting_";

/// The thread id of a meeting's chat (`19:meeting_<base32 of the meeting id>@thread.v2`):
/// derived from the meeting id, so the meeting and its thread can always find each other.
pub fn meeting_thread_id(meeting_id: &str) -> String {
    format!("{MEETING_THREAD_PREFIX}{}{THREAD_SUFFIX}", base32(meeting_id.as_bytes()))
}

/// Whether `id` has the shape of a thread id (anything else is answered 404 unread).
pub fn is_thread_id(id: &str) -> bool {
    id.len() <= 256
        && id.strip_prefix("19:").and_then(|r| r.strip_suffix(THREAD_SUFFIX)).is_some_and(|body| {
            !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// The next message id in a thread whose last id is `last`: the current time in ms, or
/// one more than `last` if the clock has not moved past it.
pub fn next_message_id(now_ms: i64, last: Option<i64>) -> i64 {
    match last {
        Some(l) if l >= now_ms => l + 1,
        _ => now_ms,
    }
}

/// A message's new `version` after an edit: the edit time in ms, strictly above the old.
pub fn next_version(now_ms: i64, current: &str) -> String {
    let cur = current.parse::<i64>().unwrap_or(0);
    now_ms.max(cur + 1).to_string()
}

fn random_base32() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base32(&bytes)
}

/// Lower-case RFC 4648 base32 without padding (letters and digits only).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_have_the_acs_shape() {
        let id = new_thread_id();
        assert!(id.starts_with("19:") && id.ends_with("@thread.v2") && is_thread_id(&id), "{id}");
        assert_ne!(new_thread_id(), id);
        let m = meeting_thread_id("abc-123");
        assert_eq!(m, meeting_thread_id("abc-123"));
        assert!(m.starts_with("19:meeting_") && is_thread_id(&m), "{m}");
        for bad in ["", "19:@thread.v2", "x:abc@thread.v2", "19:a b@thread.v2", "19:abc"] {
            assert!(!is_thread_id(bad), "{bad}");
        }
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn message_ids_grow_even_when_the_clock_does_not() {
        assert_eq!(next_message_id(1000, None), 1000);
        assert_eq!(next_message_id(1000, Some(900)), 1000);
        assert_eq!(next_message_id(1000, Some(1000)), 1001);
        assert_eq!(next_message_id(1000, Some(1005)), 1006);
        assert_eq!(next_version(2000, "1000"), "2000");
        assert_eq!(next_version(2000, "2000"), "2001");
    }
}
