//! The time spent in phone codecs (G.711 and G.722 decode/encode with their resampling), per
//! thread: the codec functions add their own duration ([`timed`]) and the engine moves the
//! total into its worker's counters after each round of mixer ticks ([`take_ns`]). It is a
//! measurement only (monotonic clock, a few tens of ns per frame) and never steers the mix.

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static TRANSCODE_NS: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` and adds its duration to this thread's transcoding time.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let result = f();
    let ns = started.elapsed().as_nanos() as u64;
    TRANSCODE_NS.with(|t| t.set(t.get().wrapping_add(ns)));
    result
}

/// This thread's transcoding time since the last call, ns.
pub fn take_ns() -> u64 {
    TRANSCODE_NS.with(|t| t.replace(0))
}
