//! The limits of the meetings API (issue #19): how long each list in `POST /meetings` may
//! be, and how many meetings one organizer may create per minute and hold at once. Lists are
//! checked for length before any entry is parsed, and de-duplicated in one pass, so a
//! maximal 1 MiB body costs microseconds of checking. See `docs/security.md` ("Meetings").

use palaver_core::ErrorCode;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::Refusal;

/// Co-organizers per meeting (Teams allows 10).
pub const MAX_CO_ORGANIZERS: usize = 10;
/// Listed presenters per meeting.
pub const MAX_PRESENTERS: usize = 100;
/// Characters of a meeting subject (as before: 256).
pub const MAX_SUBJECT_CHARS: usize = 256;
/// Meetings one organizer may create per minute (a token bucket of this size, refilled evenly).
pub const CREATIONS_PER_MINUTE: u32 = 20;
/// Meetings one organizer may hold at once (delete old ones to create more).
pub const MAX_MEETINGS_PER_ORGANIZER: usize = 1000;
/// Organizers whose creation rate is remembered at once; beyond this, organizers with a full
/// bucket (idle for a minute or more) are forgotten first.
const MAX_TRACKED_ORGANIZERS: usize = 10_000;

/// Per-organizer creation rate: a token bucket per organizer raw id.
#[derive(Debug, Default)]
pub struct CreationLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

const REFILL_PER_MS: f64 = CREATIONS_PER_MINUTE as f64 / 60_000.0;

impl Bucket {
    fn refilled(self, now_ms: i64) -> Self {
        let elapsed = (now_ms - self.at_ms).max(0) as f64;
        Self { tokens: (self.tokens + elapsed * REFILL_PER_MS).min(CREATIONS_PER_MINUTE as f64), at_ms: now_ms }
    }
}

impl CreationLimiter {
    /// Take one creation for `organizer` at `now_ms`, or `TooManyRequests` saying when to retry.
    pub fn take(&self, organizer: &str, now_ms: i64) -> Result<(), Refusal> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_ORGANIZERS && !buckets.contains_key(organizer) {
            buckets.retain(|_, b| b.refilled(now_ms).tokens < CREATIONS_PER_MINUTE as f64);
        }
        let full = Bucket { tokens: CREATIONS_PER_MINUTE as f64, at_ms: now_ms };
        let bucket = buckets.entry(organizer.to_string()).or_insert(full);
        *bucket = bucket.refilled(now_ms);
        if bucket.tokens < 1.0 {
            let wait_s = ((1.0 - bucket.tokens) / REFILL_PER_MS / 1000.0).ceil() as i64;
            return Err(Refusal::new(
                ErrorCode::TooManyRequests,
                format!("at most {CREATIONS_PER_MINUTE} meetings per minute per organizer; retry in {wait_s} s"),
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// `list` if it has at most `max` entries, else `InvalidParameter` naming `field`.
pub fn check_list_len(list: &[String], max: usize, field: &str) -> Result<(), Refusal> {
    if list.len() > max {
        return Err(Refusal::new(
            ErrorCode::InvalidParameter,
            format!("`{field}` has {} entries; at most {max} are allowed", list.len()),
        )
        .with_target(field));
    }
    Ok(())
}

/// The entries in first-seen order without repeats, in one pass (a hash set, not a scan).
pub fn dedup_in_order(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    list.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organizer_gets_the_per_minute_budget_then_waits_others_do_not() {
        let limiter = CreationLimiter::default();
        for _ in 0..CREATIONS_PER_MINUTE {
            limiter.take("8:orgid:a", 1_000).unwrap();
        }
        let refused = limiter.take("8:orgid:a", 1_000).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyRequests);
        assert!(refused.message.contains("retry in 3 s"), "{}", refused.message);
        limiter.take("8:orgid:b", 1_000).unwrap();
        // One creation's worth of time later (60 s / 20 = 3 s), one more.
        limiter.take("8:orgid:a", 4_000).unwrap();
        assert!(limiter.take("8:orgid:a", 4_000).is_err());
    }

    #[test]
    fn lists_are_capped_and_deduplicated_in_order() {
        let ids: Vec<String> = ["a", "b", "a", "c", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(dedup_in_order(ids.clone()), ["a", "b", "c"]);
        assert!(check_list_len(&ids, 5, "presenters").is_ok());
        let e = check_list_len(&ids, 4, "presenters").unwrap_err();
        assert_eq!((e.code, e.target.as_deref()), (ErrorCode::InvalidParameter, Some("presenters")));
    }

    #[test]
    fn deduplicating_a_probe_sized_list_keeps_the_first_of_each() {
        // The 1 MiB body of the probe held about 21,000 ids; the old scan compared each with
        // every earlier one (about 220 million string comparisons). A hash set needs 21,000.
        let ids: Vec<String> = (0..21_000).map(|i| format!("8:orgid:{i:08}")).collect();
        let mut doubled = ids.clone();
        doubled.extend(ids.iter().cloned());
        assert_eq!(dedup_in_order(doubled), ids);
    }
}
