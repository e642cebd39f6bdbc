//! The retry schedule, pure: exponential backoff with jitter, and what one attempt's result
//! means for a delivery ([`outcome`]) or a validation handshake.

use crate::config::DeliveryConfig;
use crate::store::Outcome;

/// Delay before retry number `failures` (1 = after the first failure): `base * 2^(n-1)`,
/// capped, plus up to 10% jitter derived from `key` so many retries spread out.
pub fn backoff_ms(config: &DeliveryConfig, failures: u32, key: &str) -> i64 {
    let base = config.base_backoff_ms.max(1) as i64;
    let max = config.max_backoff_ms.max(1) as i64;
    let exp = failures.saturating_sub(1).min(30);
    let delay = base.saturating_mul(1_i64 << exp).min(max).max(1);
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    delay + (hash % (delay as u64 / 10 + 1)) as i64
}

/// The last moment a delivery of `event_type` raised at `created_ms` is worth attempting:
/// `IncomingCall` only while the call rings (`incoming_call_window_ms`); others have none.
pub fn deadline_ms(config: &DeliveryConfig, event_type: &str, created_ms: i64) -> Option<i64> {
    (event_type == INCOMING_CALL).then(|| created_ms.saturating_add(config.incoming_call_window_ms as i64))
}

/// The Event Grid type of an incoming call.
pub const INCOMING_CALL: &str = "Microsoft.Communication.IncomingCall";

/// What to record after an attempt: `Ok(status)` is an HTTP answer, `Err` a transport error.
/// Any 2xx is delivered; anything else is retried until `max_attempts` or, for a delivery
/// with a `deadline_ms`, until the next try would come after it — then dead.
pub fn outcome(
    config: &DeliveryConfig,
    attempts_before: u32,
    key: &str,
    result: Result<u16, String>,
    now_ms: i64,
    deadline_ms: Option<i64>,
) -> Outcome {
    let attempts = attempts_before + 1;
    let error = match result {
        Ok(status) if (200..300).contains(&status) => return Outcome::Delivered { at_ms: now_ms },
        Ok(status) => format!("HTTP {status}"),
        Err(e) => e,
    };
    let next_attempt_ms = now_ms + backoff_ms(config, attempts, key);
    if attempts >= config.max_attempts.max(1) {
        Outcome::Dead { attempts, error }
    } else if deadline_ms.is_some_and(|deadline| next_attempt_ms > deadline) {
        Outcome::Dead { attempts, error: format!("{error}; not retried: the call is no longer ringing") }
    } else {
        Outcome::Retry { attempts, next_attempt_ms, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_dies_at_the_limit() {
        let config =
            DeliveryConfig { base_backoff_ms: 1_000, max_backoff_ms: 60_000, max_attempts: 3, ..Default::default() };
        let within = |failures, lo: i64| {
            let d = backoff_ms(&config, failures, "evt");
            assert!((lo..=lo + lo / 10).contains(&d), "{failures}: {d}");
        };
        within(1, 1_000);
        within(2, 2_000);
        within(3, 4_000);
        within(40, 60_000);
        assert_eq!(outcome(&config, 0, "k", Ok(204), 5, None), Outcome::Delivered { at_ms: 5 });
        match outcome(&config, 0, "k", Ok(503), 100, None) {
            Outcome::Retry { attempts: 1, next_attempt_ms, error } => {
                assert!((1_100..=1_200).contains(&next_attempt_ms));
                assert_eq!(error, "HTTP 503");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            outcome(&config, 2, "k", Err("refused".into()), 0, None),
            Outcome::Dead { attempts: 3, error: "refused".into() }
        );
        // a redirect is not a delivery
        assert!(matches!(outcome(&config, 0, "k", Ok(302), 0, None), Outcome::Retry { .. }));
    }

    #[test]
    fn incoming_call_is_retried_only_while_the_call_rings() {
        let config = DeliveryConfig { base_backoff_ms: 1_000, incoming_call_window_ms: 30_000, ..Default::default() };
        let deadline = deadline_ms(&config, INCOMING_CALL, 10_000);
        assert_eq!(deadline, Some(40_000));
        assert_eq!(deadline_ms(&config, "Microsoft.Communication.CallStarted", 10_000), None);
        assert!(matches!(outcome(&config, 0, "k", Ok(503), 11_000, deadline), Outcome::Retry { .. }));
        // The fifth failure would wait 16 s: past the ring, so it is the last attempt.
        match outcome(&config, 4, "k", Ok(503), 30_000, deadline) {
            Outcome::Dead { attempts: 5, error } => assert!(error.contains("no longer ringing"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(outcome(&config, 4, "k", Ok(503), 30_000, None), Outcome::Retry { .. }), "others go on");
    }
}
