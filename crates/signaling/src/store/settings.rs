//! Named settings and generated secrets (resource id, access key, signing keys), so that
//! what the server generates on first start is the same on every later start.

use super::{Store, StoreError};
use rusqlite::OptionalExtension;

pub(super) const MIGRATIONS: &[&str] =
    &["CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;"];

/// Read a setting.
pub fn get(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    store.with_conn(|c| c.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).optional())
}

/// Write (or overwrite) a setting.
pub fn put(store: &Store, name: &str, value: &str) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [name, value],
        )
        .map(|_| ())
    })
}

/// The stored value, or `generate()`'s value stored now (atomically: two callers agree).
pub fn get_or_create(store: &Store, name: &str, generate: impl FnOnce() -> String) -> Result<String, StoreError> {
    store.with_conn(|c| {
        let tx = c.transaction()?;
        let existing: Option<String> =
            tx.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let value = match existing {
            Some(v) => v,
            None => {
                let v = generate();
                tx.execute("INSERT INTO settings (name, value) VALUES (?1, ?2)", [name, v.as_str()])?;
                v
            }
        };
        tx.commit()?;
        Ok(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once() {
        let store = Store::open_in_memory().unwrap();
        let a = get_or_create(&store, "key", || "first".into()).unwrap();
        let b = get_or_create(&store, "key", || "second".into()).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("first", "first"));
        put(&store, "key", "third").unwrap();
        assert_eq!(get(&store, "key").unwrap().as_deref(), Some("third"));
        assert_eq!(get(&store, "missing").unwrap(), None);
    }
}
