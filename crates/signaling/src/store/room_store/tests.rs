//! The rooms store's conformance cases on SQLite (PostgreSQL runs them in palaver-cluster).

crate::room_store_conformance_tests!({
    let store = crate::store::Store::open_in_memory().unwrap();
    crate::store::rooms::migrate(&store).unwrap();
    crate::store::rooms::migrate(&store).unwrap();
    store
});
