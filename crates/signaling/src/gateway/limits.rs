//! Per-connection inbound rate limit: a token bucket driven with the caller's clock.

/// Frames per second a client may sustain, and the burst it may send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 20, burst: 40 }
    }
}

/// A token bucket: one token per frame.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now_ms: i64) -> Self {
        Self { limit, tokens: f64::from(limit.burst), last_ms: now_ms }
    }

    /// Take one token; `false` when the client is over its rate.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * f64::from(self.limit.per_second)).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(RateLimit { per_second: 10, burst: 5 }, 0);
        assert!((0..5).all(|_| b.try_take(0)));
        assert!(!b.try_take(0));
        assert!(!b.try_take(50)); // half a token
        assert!(b.try_take(100));
        assert!(!b.try_take(100));
        // A long pause refills to the burst, not beyond.
        assert_eq!((0..10).filter(|_| b.try_take(60_000)).count(), 5);
        // A clock going backwards does not mint tokens.
        assert!(!b.try_take(0));
    }
}
