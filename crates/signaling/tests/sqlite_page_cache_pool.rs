//! The server's SQLite page caches form one pool (the bundled SQLite is built with
//! `SQLITE_ENABLE_MEMORY_MANAGEMENT`), as large as the sum of every open connection's
//! `cache_size`, and the busiest connection may fill all of it. This test opens the
//! connections `palaver serve` holds (the store, the events store, the ledger's three), writes
//! several MiB through the store alone, and checks that SQLite's page-cache memory stays within
//! the sum of their budgets. With the events store on SQLite's default (~2 MiB) and the ledger
//! at 512 KiB per connection, the store's connection grew the pool towards ~3.7 MiB: the slow
//! heap growth of the 30-minute soak (docs/soak.md, session 9). Its own process (an
//! integration test), since SQLite's memory counters are global.

use palaver_billing::ledger::{LedgerOptions, SqliteLedger};
use palaver_events::store::EventStore;
use palaver_signaling::store::Store;

/// Heap bytes SQLite holds for page caches now (every page is heap-allocated: no
/// `SQLITE_CONFIG_PAGECACHE` buffer is configured, so all of it counts as "overflow").
fn page_cache_bytes() -> i64 {
    let (mut current, mut highwater) = (0i64, 0i64);
    // SAFETY: sqlite3_status64 only writes its two out-parameters.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_status64(
            rusqlite::ffi::SQLITE_STATUS_PAGECACHE_OVERFLOW,
            &mut current,
            &mut highwater,
            0,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
    current
}

#[test]
fn a_busy_store_connection_cannot_grow_the_shared_page_cache_past_the_sum_of_the_budgets() {
    let dir = std::env::temp_dir().join(format!("palaver-page-cache-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("palaver.db")).unwrap();
    let events = EventStore::open(&dir.join("events.db")).unwrap();
    let ledgers: Vec<SqliteLedger> =
        (0..3).map(|_| SqliteLedger::open(dir.join("usage.db"), LedgerOptions::default()).unwrap()).collect();

    store.migrate("page_cache_test", &["CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"]).unwrap();
    // ~6 MiB of rows, 100 to a transaction: far more pages than every budget together.
    let body = "x".repeat(1000);
    let write = |batches: std::ops::Range<i64>| {
        for batch in batches {
            store
                .with_conn(|c| {
                    let tx = c.transaction()?;
                    for i in 0..100 {
                        tx.execute(
                            "INSERT INTO rows (id, body) VALUES (?1, ?2)",
                            rusqlite::params![batch * 100 + i, body],
                        )?;
                    }
                    tx.commit()
                })
                .unwrap();
            // Read an older row too, as chat and identity lookups do, so cold pages come back in.
            let read: i64 = store
                .with_conn(|c| c.query_row("SELECT length(body) FROM rows WHERE id = ?1", [batch * 37], |r| r.get(0)))
                .unwrap();
            assert_eq!(read, 1000);
        }
    };
    write(0..60);

    let budget_kib =
        palaver_signaling::store::CACHE_KIB + palaver_events::store::CACHE_KIB + 3 * palaver_billing::ledger::CACHE_KIB;
    // Each cached page costs its size plus SQLite's per-page headers (~8 % at 4 KiB pages).
    let limit = budget_kib * 1024 * 115 / 100;
    let used = page_cache_bytes();
    assert!(
        used <= limit,
        "SQLite's page caches hold {used} bytes, over the {budget_kib} KiB the five connections' budgets sum to"
    );

    // Why every connection's setting counts: one more idle connection left on SQLite's default
    // cache (~2 MiB), as the events store was, lets the same store connection grow the pool
    // past that bound.
    let idle = rusqlite::Connection::open(dir.join("idle.db")).unwrap();
    idle.execute_batch("CREATE TABLE t (x)").unwrap();
    write(60..120);
    let with_idle = page_cache_bytes();
    assert!(with_idle > limit, "an idle default-cache connection lent the pool nothing: {with_idle} bytes");
    drop((store, events, ledgers, idle));
    let _ = std::fs::remove_dir_all(dir);
}
