//! [`PasscodeGuard`]: slows down meeting-code + passcode guessing (issue #19). Failures are
//! counted per submitted meeting code, whether or not a meeting has that code (so a lockout
//! says nothing about which codes exist), and per identity (so one user cannot spray codes).
//! Each key gets [`FREE_FAILURES`] failures; after that every further failure locks the key
//! for a back-off that doubles from [`FIRST_BACKOFF_MS`] up to [`MAX_BACKOFF_MS`]. A key's
//! count is forgotten [`FORGET_AFTER_MS`] after its last failure. Sans-IO: time comes in.

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures a meeting code (or an identity) gets before back-off starts.
pub const FREE_FAILURES: u32 = 5;
/// The lock after the first failure beyond the free ones; it doubles with each further failure.
pub const FIRST_BACKOFF_MS: i64 = 1_000;
/// The longest lock.
pub const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// A key with no failure for this long starts again from zero.
pub const FORGET_AFTER_MS: i64 = 15 * 60 * 1000;
/// Keys remembered per map; when full, keys past their forget time go first, then unlocked ones.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
    locked_until_ms: i64,
}

#[derive(Debug, Default)]
struct FailureMap(HashMap<String, Failures>);

impl FailureMap {
    fn locked_until(&self, key: &str, now_ms: i64) -> Option<i64> {
        self.0.get(key).map(|f| f.locked_until_ms).filter(|&until| until > now_ms)
    }

    fn fail(&mut self, key: &str, now_ms: i64) {
        if self.0.len() >= MAX_KEYS && !self.0.contains_key(key) {
            self.0.retain(|_, f| now_ms - f.last_ms < FORGET_AFTER_MS);
            if self.0.len() >= MAX_KEYS {
                self.0.retain(|_, f| f.locked_until_ms > now_ms);
            }
        }
        let entry = self.0.entry(key.to_string()).or_insert(Failures { count: 0, last_ms: now_ms, locked_until_ms: 0 });
        if now_ms - entry.last_ms >= FORGET_AFTER_MS {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last_ms = now_ms;
        if entry.count > FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES - 1).min(20);
            let backoff = FIRST_BACKOFF_MS.saturating_mul(1 << doublings).min(MAX_BACKOFF_MS);
            entry.locked_until_ms = now_ms + backoff;
        }
    }
}

/// Failure counters of code joins.
#[derive(Debug, Default)]
pub struct PasscodeGuard {
    inner: Mutex<(FailureMap, FailureMap)>,
}

impl PasscodeGuard {
    /// May `identity` try `code` now? `Err(ms)`: not before this many milliseconds. An empty
    /// `code` (a malformed one, which no meeting has) is checked per identity only.
    pub fn check(&self, code: &str, identity: &str, now_ms: i64) -> Result<(), i64> {
        let maps = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let by_code = if code.is_empty() { None } else { maps.0.locked_until(code, now_ms) };
        let until = by_code.into_iter().chain(maps.1.locked_until(identity, now_ms)).max();
        match until {
            Some(until) => Err(until - now_ms),
            None => Ok(()),
        }
    }

    /// `identity` tried `code` with a wrong passcode, or a code no meeting has.
    pub fn failed(&self, code: &str, identity: &str, now_ms: i64) {
        let mut maps = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !code.is_empty() {
            maps.0.fail(code, now_ms);
        }
        maps.1.fail(identity, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_gets_free_failures_then_a_doubling_lock() {
        let guard = PasscodeGuard::default();
        let mut now = 0;
        for attacker in 0..FREE_FAILURES {
            // Different identities, same code: the code's own counter locks it.
            let who = format!("8:acs:r_{attacker}");
            assert_eq!(guard.check("111111111111", &who, now), Ok(()));
            guard.failed("111111111111", &who, now);
        }
        assert_eq!(guard.check("111111111111", "8:acs:r_new", now), Ok(()));
        guard.failed("111111111111", "8:acs:r_new", now);
        assert_eq!(guard.check("111111111111", "8:acs:r_other", now), Err(FIRST_BACKOFF_MS));
        // Another code is not affected.
        assert_eq!(guard.check("222222222222", "8:acs:r_other", now), Ok(()));
        now += FIRST_BACKOFF_MS;
        assert_eq!(guard.check("111111111111", "8:acs:r_other", now), Ok(()));
        guard.failed("111111111111", "8:acs:r_other", now);
        assert_eq!(guard.check("111111111111", "8:acs:r_other", now), Err(2 * FIRST_BACKOFF_MS));
        // Many more failures: the lock stops growing at the cap.
        for _ in 0..30 {
            guard.failed("111111111111", "8:acs:r_other", now);
        }
        assert_eq!(guard.check("111111111111", "8:acs:r_x", now), Err(MAX_BACKOFF_MS));
        // Quiet long enough: forgotten.
        now += FORGET_AFTER_MS;
        guard.failed("111111111111", "8:acs:r_x", now);
        assert_eq!(guard.check("111111111111", "8:acs:r_y", now), Ok(()));
    }

    #[test]
    fn one_identity_spraying_codes_is_locked_whatever_the_codes() {
        let guard = PasscodeGuard::default();
        for i in 0..=FREE_FAILURES {
            guard.failed(&format!("{:012}", 100_000_000_000u64 + i as u64), "8:acs:r_sprayer", 0);
        }
        assert_eq!(guard.check("999999999999", "8:acs:r_sprayer", 0), Err(FIRST_BACKOFF_MS));
        assert_eq!(guard.check("999999999999", "8:acs:r_someone_else", 0), Ok(()));
    }
}
