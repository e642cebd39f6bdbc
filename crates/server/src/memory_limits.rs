//! Process-wide memory bounds the `run` command sets before it starts any thread: the heap
//! SQLite may keep for its page caches, and how many malloc arenas glibc may create
//! (docs/soak.md, "Per-arena statistics (session 10)" and "The 30-minute release soak with the
//! fix (session 10)").
//!
//! - **SQLite.** The bundled SQLite (libsqlite3-sys, `SQLITE_ENABLE_MEMORY_MANAGEMENT`) keeps one
//!   page-cache pool for the whole process, and the per-connection `cache_size` settings of the
//!   store, the events store and the ledger did not keep it from growing through a soak:
//!   `sqlite3_memory_used` rose ~52 KiB a minute, 0.92 → 1.46 MB between minutes 5 and 15.
//!   A soft heap limit is SQLite's own process-wide bound: above it the page caches recycle
//!   their least recently used pages instead of allocating, and SQLite frees unused pages.
//! - **glibc arenas.** glibc gives threads up to 8 × cores malloc arenas; memory freed into one
//!   thread's arena is not reused by the others, so the blocking pool's threads (SQLite work)
//!   and the runtime's kept growing their own arenas while the bytes in use stayed flat
//!   (22.4–22.5 MB at minutes 5, 10 and 15). Two arenas keep the freed memory shared.
//!
//! Both can be overridden from the environment: `PALAVER_SQLITE_HEAP_LIMIT_KIB` (0: no limit)
//! and glibc's own `MALLOC_ARENA_MAX` / `GLIBC_TUNABLES`, which this leaves alone when set.

/// SQLite's soft heap limit for the whole process: schemas and prepared statements (~0.3 MiB in
/// the soak) plus ~0.7 MiB of cached pages. Colder pages are read again from the OS page cache.
pub const SQLITE_SOFT_HEAP_LIMIT_KIB: i64 = 1024;

/// The malloc arenas glibc may create (its default is 8 × the number of cores).
pub const MALLOC_ARENAS: i32 = 2;

/// What [`apply`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// SQLite's soft heap limit in bytes (0: none).
    pub sqlite_soft_heap_limit: i64,
    /// The arena cap set through `mallopt`, or `None` when the environment sets glibc's.
    pub malloc_arenas: Option<i32>,
}

/// Sets the bounds above (or the environment's); call before starting threads.
pub fn apply() -> Applied {
    apply_with(|name| std::env::var(name).ok())
}

fn apply_with(env: impl Fn(&str) -> Option<String>) -> Applied {
    let kib = env("PALAVER_SQLITE_HEAP_LIMIT_KIB")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(SQLITE_SOFT_HEAP_LIMIT_KIB);
    let bytes = kib.saturating_mul(1024);
    // SAFETY: sqlite3_soft_heap_limit64 is thread-safe and may be called at any time (it
    // initialises SQLite if needed); a non-negative argument sets the limit, 0 removes it.
    unsafe { rusqlite::ffi::sqlite3_soft_heap_limit64(bytes) };
    let malloc_arenas = if env("MALLOC_ARENA_MAX").is_some() || env("GLIBC_TUNABLES").is_some() {
        None
    } else {
        set_malloc_arenas(MALLOC_ARENAS)
    };
    Applied { sqlite_soft_heap_limit: bytes, malloc_arenas }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_arenas(arenas: i32) -> Option<i32> {
    // SAFETY: mallopt only changes glibc's malloc parameters; M_ARENA_MAX limits the arenas
    // created from now on (none but the main one exist before the first threads).
    (unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } == 1).then_some(arenas)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_arenas(_arenas: i32) -> Option<i32> {
    None
}

#[cfg(test)]
mod tests;
