//! Chat rate limits, sans-IO: fixed 10-second windows counted per identity (and per thread
//! where ACS counts per thread). The ACS service limits (reference §2.5): create thread 10
//! per user, update thread 5 per thread, add/remove participants 10 per thread, list
//! messages 50 per user per thread. ACS publishes no number for sending, so palaver allows 50
//! message writes (send/edit/delete) and 50 typing or read-receipt calls per user per thread,
//! and 300 chat requests of any kind per user, per window. Over a limit is `429
//! TooManyRequests` with the seconds until the window ends (`Retry-After`).

use super::ChatOperation;
use std::collections::HashMap;
use std::sync::Mutex;

/// Length of every window, in milliseconds.
pub const WINDOW_MS: i64 = 10_000;
/// Chat requests of any kind one identity may make per window.
pub const PER_IDENTITY_LIMIT: u32 = 300;
/// Entries kept before expired windows are swept early (a burst of identities within one
/// window); otherwise they are swept once per window.
const SWEEP_AT: usize = 4096;

/// What one limit is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Identity,
    Thread,
    IdentityInThread,
}

/// One limit: `limit` requests per window, counted `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRule {
    pub name: &'static str,
    pub limit: u32,
    pub per: Per,
}

/// The operation's own limit, if it has one (besides the per-identity one).
pub fn rule_for(op: ChatOperation) -> Option<RateRule> {
    use ChatOperation::*;
    let rule = |name, limit, per| Some(RateRule { name, limit, per });
    match op {
        CreateThread => rule("createThread", 10, Per::Identity),
        UpdateTopic => rule("updateThread", 5, Per::Thread),
        AddParticipants | RemoveParticipant => rule("participants", 10, Per::Thread),
        ReadMessages => rule("listMessages", 50, Per::IdentityInThread),
        SendMessage | EditMessage | DeleteMessage => rule("messageWrites", 50, Per::IdentityInThread),
        SendTyping | SendReadReceipt => rule("typingAndReceipts", 50, Per::IdentityInThread),
        DeleteThread | ListThreads | GetThread | ListParticipants | ListReadReceipts => None,
    }
}

/// A refused request: which limit, and the whole seconds until its window ends (≥ 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub rule: &'static str,
    pub limit: u32,
    pub retry_after_secs: u64,
}

type Key = (&'static str, String);

/// The counters; shared by every clone of the chat service.
#[derive(Debug, Default)]
pub struct ChatRateLimiter {
    windows: Mutex<Windows>,
}

/// Every counted key's window `(start_ms, count)`, and when expired windows were last swept.
///
/// Expired windows are swept at least once per [`WINDOW_MS`], so the map holds only the keys
/// seen in the last two windows. Sweeping only when it reached [`SWEEP_AT`] let it grow by
/// up to three keys per identity that ever chatted, until 4,096 keys (the soak creates an
/// identity and a thread every ~5 s, so the table grew for most of its 30 minutes: docs/soak.md).
#[derive(Debug, Default)]
struct Windows {
    by_key: HashMap<Key, (i64, u32)>,
    swept_ms: i64,
}

impl Windows {
    fn sweep_if_due(&mut self, now_ms: i64) {
        if self.by_key.len() < SWEEP_AT && now_ms - self.swept_ms < WINDOW_MS {
            return;
        }
        self.by_key.retain(|_, (start, _)| now_ms - *start < WINDOW_MS);
        // Give back what a burst grew the table to.
        if self.by_key.capacity() > 64 && self.by_key.len() < self.by_key.capacity() / 4 {
            self.by_key.shrink_to(self.by_key.len() * 2);
        }
        self.swept_ms = now_ms;
    }
}

impl ChatRateLimiter {
    /// Count one `op` by `identity` (on `thread`, if any) at `now_ms`: `Err` if it is over
    /// the per-identity limit or the operation's own. A refused request counts nowhere.
    pub fn check(&self, identity: &str, thread: Option<&str>, op: ChatOperation, now_ms: i64) -> Result<(), Limited> {
        let overall = RateRule { name: "chatRequests", limit: PER_IDENTITY_LIMIT, per: Per::Identity };
        let keys: Vec<(RateRule, Key)> = std::iter::once(overall)
            .chain(rule_for(op))
            .map(|rule| {
                let who = match rule.per {
                    Per::Identity => identity.to_string(),
                    Per::Thread => thread.unwrap_or_default().to_string(),
                    Per::IdentityInThread => format!("{identity}\n{}", thread.unwrap_or_default()),
                };
                (rule, (rule.name, who))
            })
            .collect();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.sweep_if_due(now_ms);
        let windows = &mut windows.by_key;
        for (rule, key) in &keys {
            if let Some((start, count)) = windows.get(key)
                && now_ms - start < WINDOW_MS
                && *count >= rule.limit
            {
                let left_ms = (start + WINDOW_MS - now_ms).max(1);
                return Err(Limited {
                    rule: rule.name,
                    limit: rule.limit,
                    retry_after_secs: (left_ms as u64).div_ceil(1000),
                });
            }
        }
        for (_, key) in keys {
            let window = windows.entry(key).or_insert((now_ms, 0));
            if now_ms - window.0 >= WINDOW_MS {
                *window = (now_ms, 0);
            }
            window.1 += 1;
        }
        Ok(())
    }

    /// Keys with a window in the table (expired ones included until the next sweep).
    #[cfg(test)]
    fn tracked_keys(&self) -> usize {
        self.windows.lock().unwrap().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_limits_count_per_identity_or_thread_and_reset_with_the_window() {
        let limiter = ChatRateLimiter::default();
        for i in 0..10 {
            assert!(limiter.check("a", None, ChatOperation::CreateThread, 1_000 + i).is_ok());
        }
        let refused = limiter.check("a", None, ChatOperation::CreateThread, 4_500).unwrap_err();
        assert_eq!(refused, Limited { rule: "createThread", limit: 10, retry_after_secs: 7 });
        // Another identity has its own budget; the window ends and the budget is back.
        assert!(limiter.check("b", None, ChatOperation::CreateThread, 4_500).is_ok());
        assert!(limiter.check("a", None, ChatOperation::CreateThread, 11_000).is_ok());

        // Topic updates count per thread, whoever asks.
        for who in ["a", "b", "c", "d", "e"] {
            assert!(limiter.check(who, Some("t1"), ChatOperation::UpdateTopic, 20_000).is_ok());
        }
        assert_eq!(
            limiter.check("f", Some("t1"), ChatOperation::UpdateTopic, 20_001).unwrap_err().rule,
            "updateThread"
        );
        assert!(limiter.check("f", Some("t2"), ChatOperation::UpdateTopic, 20_001).is_ok());
        // Operations without their own limit are not refused below the per-identity one.
        assert!(limiter.check("f", Some("t1"), ChatOperation::GetThread, 20_001).is_ok());
    }

    #[test]
    fn every_identity_has_an_overall_budget() {
        let limiter = ChatRateLimiter::default();
        for i in 0..PER_IDENTITY_LIMIT {
            assert!(limiter.check("a", Some("t"), ChatOperation::GetThread, 1_000 + i64::from(i)).is_ok());
        }
        let refused = limiter.check("a", Some("t"), ChatOperation::GetThread, 1_999).unwrap_err();
        assert_eq!((refused.rule, refused.retry_after_secs), ("chatRequests", 10));
        // A refused request is not counted: the operation's own window is untouched.
        assert!(limiter.check("a", Some("t"), ChatOperation::SendMessage, 11_000).is_ok());
    }

    #[test]
    fn windows_of_identities_gone_quiet_are_forgotten_within_two_windows() {
        // The soak's chat: a new identity and thread every few seconds, each sending a few
        // messages and never coming back. The table must not keep them all.
        let limiter = ChatRateLimiter::default();
        let mut now = 0;
        for i in 0..1_000 {
            let (who, thread) = (format!("8:acs:user-{i}"), format!("19:thread-{i}"));
            assert!(limiter.check(&who, None, ChatOperation::CreateThread, now).is_ok());
            assert!(limiter.check(&who, Some(&thread), ChatOperation::SendMessage, now).is_ok());
            now += 5_000;
        }
        // Three keys per identity (overall, createThread, messageWrites); identities seen in
        // the last two windows at most: 2 × 10 s / 5 s = 4 of them (plus the one being counted).
        assert!(limiter.tracked_keys() <= 3 * 5, "{} keys kept", limiter.tracked_keys());
        // Forgetting an expired window changes no answer: a quiet identity starts afresh.
        for _ in 0..10 {
            assert!(limiter.check("8:acs:user-0", None, ChatOperation::CreateThread, now).is_ok());
        }
        assert!(limiter.check("8:acs:user-0", None, ChatOperation::CreateThread, now).is_err());
    }
}
