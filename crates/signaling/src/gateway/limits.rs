//! Per-connection inbound rate limit: a token bucket driven with the caller's clock, and the
//! [`FloodGuard`] that decides what happens to each inbound frame (every frame counts: text,
//! binary, protocol ping and pong).

/// Frames per second a client may sustain, the burst it may send at once, and how many frames
/// over the limit it may send (refilled at `per_second`) before the server closes the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
    pub max_dropped: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 20, burst: 40, max_dropped: 100 }
    }
}

/// At most one `TooManyRequests` error frame per this many milliseconds.
pub const ERROR_WINDOW_MS: i64 = 1000;

/// What to do with one inbound frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    /// Within the rate: handle it.
    Accept,
    /// Over the rate: drop it and answer one `TooManyRequests` error frame (the first drop
    /// of an [`ERROR_WINDOW_MS`] window).
    DropWithError,
    /// Over the rate: drop it silently (already told in this window).
    Drop,
    /// The client kept flooding past `max_dropped`: close the socket (WebSocket 1008).
    Close,
}

/// The rate limit of one connection: a bucket for frames and one for the client's patience.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    frames: TokenBucket,
    dropped: TokenBucket,
    last_error_ms: Option<i64>,
}

impl FloodGuard {
    pub fn new(limit: RateLimit, now_ms: i64) -> Self {
        let patience = RateLimit { per_second: limit.per_second, burst: limit.max_dropped, max_dropped: 0 };
        Self {
            frames: TokenBucket::new(limit, now_ms),
            dropped: TokenBucket::new(patience, now_ms),
            last_error_ms: None,
        }
    }

    /// Count one inbound frame (of any kind) at `now_ms`.
    pub fn on_frame(&mut self, now_ms: i64) -> FrameVerdict {
        if self.frames.try_take(now_ms) {
            return FrameVerdict::Accept;
        }
        if !self.dropped.try_take(now_ms) {
            return FrameVerdict::Close;
        }
        if self.last_error_ms.is_some_and(|at| now_ms - at < ERROR_WINDOW_MS) {
            return FrameVerdict::Drop;
        }
        self.last_error_ms = Some(now_ms);
        FrameVerdict::DropWithError
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
    fn one_error_per_window_then_close_when_flooding_goes_on() {
        let limit = RateLimit { per_second: 10, burst: 5, max_dropped: 20 };
        let mut g = FloodGuard::new(limit, 0);
        let verdicts: Vec<FrameVerdict> = (0..40).map(|_| g.on_frame(0)).collect();
        assert!(verdicts[..5].iter().all(|v| *v == FrameVerdict::Accept));
        assert_eq!(verdicts[5], FrameVerdict::DropWithError);
        assert!(verdicts[6..25].iter().all(|v| *v == FrameVerdict::Drop), "{verdicts:?}");
        assert!(verdicts[25..].iter().all(|v| *v == FrameVerdict::Close), "{verdicts:?}");
        // A client only slightly over the rate is told once a second and never closed.
        let mut g = FloodGuard::new(limit, 0);
        let mut errors = 0;
        for ms in (0..60_000).step_by(90) {
            match g.on_frame(ms) {
                FrameVerdict::Close => panic!("closed at {ms} ms"),
                FrameVerdict::DropWithError => errors += 1,
                _ => {}
            }
        }
        assert!(errors <= 60, "{errors} error frames in 60 s");
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = TokenBucket::new(RateLimit { per_second: 10, burst: 5, max_dropped: 0 }, 0);
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
