//! The identity store's conformance cases on SQLite (PostgreSQL runs them in palaver-cluster).

crate::identity_store_conformance_tests!(crate::store::Store::open_in_memory().unwrap());
