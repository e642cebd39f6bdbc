//! Wall-clock time as the control plane counts it: milliseconds since the Unix epoch, as
//! `i64` (the unit of session events, token expiry, conversation and call machines).
//!
//! State machines take time as input; only shells (handlers, socket loops, actors) read the
//! clock, through [`now_ms`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock (shells only). A clock set
/// before 1970 reads as 0.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_reads_after_2020() {
        assert!(super::now_ms() > 1_577_836_800_000);
    }
}
