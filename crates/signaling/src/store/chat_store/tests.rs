//! The chat store's conformance cases on SQLite (PostgreSQL runs them in palaver-cluster).

crate::chat_store_conformance_tests!({
    let store = crate::store::Store::open_in_memory().unwrap();
    crate::store::chat::migrate(&store).unwrap();
    store
});
