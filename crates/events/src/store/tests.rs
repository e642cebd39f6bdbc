//! The events store on SQLite: the conformance cases every backend passes (PostgreSQL runs
//! them in palaver-cluster), then the file surviving a reopen.

use super::conformance::{callback, ids};
use super::*;

crate::event_store_conformance_tests!(EventStore::open_in_memory().unwrap());

#[test]
fn the_page_cache_is_bounded() {
    let store = EventStore::open_in_memory().unwrap();
    let cache: i64 = store.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
    assert_eq!(cache, -CACHE_KIB);
}

#[test]
fn rows_survive_reopening_the_file() {
    let dir = std::env::temp_dir().join(format!("palaver-events-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.db");
    {
        let mut store = EventStore::open(&path).unwrap();
        store.enqueue(&[callback("a", 1)], 0).unwrap();
        assert_eq!(store.setting_or_insert("k", "v1").unwrap(), "v1");
    }
    let store = EventStore::open(&path).unwrap();
    assert_eq!(ids(&store.due(0, 10).unwrap()), ["a-1"]);
    assert_eq!(store.setting_or_insert("k", "v2").unwrap(), "v1");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
