use super::*;
use rusqlite::Connection;

fn sqlite_memory_used() -> i64 {
    // SAFETY: a thread-safe read of SQLite's global counter.
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

/// One test, because the limit is the process's: the environment's overrides first, then the
/// default limit against a connection allowed a cache far larger than it.
#[test]
fn sqlite_keeps_its_heap_near_the_soft_limit_whatever_a_connection_may_cache() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    };
    let off = apply_with(env(&[("PALAVER_SQLITE_HEAP_LIMIT_KIB", "0"), ("MALLOC_ARENA_MAX", "4")]));
    assert_eq!(off, Applied { sqlite_soft_heap_limit: 0, malloc_arenas: None });
    let tuned = apply_with(env(&[("PALAVER_SQLITE_HEAP_LIMIT_KIB", "2048"), ("GLIBC_TUNABLES", "x")]));
    assert_eq!(tuned.sqlite_soft_heap_limit, 2048 * 1024);
    assert_eq!(tuned.malloc_arenas, None);

    let applied = apply();
    assert_eq!(applied.sqlite_soft_heap_limit, SQLITE_SOFT_HEAP_LIMIT_KIB * 1024);
    let path = std::env::temp_dir().join(format!("palaver-memory-limits-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let conn = Connection::open(&path).unwrap();
    // One connection allowed 8 MiB of cache, then ~4 MiB of pages written and read back: without
    // the process-wide limit SQLite keeps them all (8.7 MB measured with the limit at 0).
    conn.pragma_update(None, "cache_size", -8192).unwrap();
    conn.execute_batch(
        "CREATE TABLE t(x BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000)
         INSERT INTO t SELECT randomblob(2048) FROM c;",
    )
    .unwrap();
    let total: i64 = conn.query_row("SELECT sum(length(x)) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(total, 2000 * 2048);
    let used = sqlite_memory_used();
    drop(conn);
    let _ = std::fs::remove_file(&path);
    let limit = applied.sqlite_soft_heap_limit;
    assert!(used <= limit + (256 << 10), "SQLite holds {used} bytes, over its soft limit of {limit}");
}
