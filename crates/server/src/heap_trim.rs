//! Hands the memory glibc's malloc keeps after it was freed back to the OS, once a minute
//! (`malloc_trim(0)`: besides the top of each arena it releases the whole free pages inside
//! them). Why: in the 30-minute soak the live heap stayed nearly flat once the bounded SQLite
//! caches were full (heaptrack, docs/soak.md), yet the process's anonymous memory kept rising
//! ~0.09 MiB a minute, spread over every malloc arena: freed memory glibc keeps for reuse
//! and fragments across the runtime's and the blocking pool's threads. glibc trims only the
//! top of an arena on its own. The call walks every arena under its lock, so it runs on the
//! blocking pool, not on a runtime worker; the media workers do not allocate per packet, so
//! they never wait for it. Other allocators and platforms: nothing to do.

use std::time::Duration;

/// How often the freed memory is handed back.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// Trims every [`TRIM_INTERVAL`] until the runtime stops.
pub fn spawn() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_INTERVAL);
        every.tick().await; // the first tick is immediate: nothing to trim at start-up
        loop {
            every.tick().await;
            if tokio::task::spawn_blocking(trim).await.is_err() {
                return;
            }
        }
    })
}

/// `malloc_trim(0)`; true when memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks each arena).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests;
