//! The PostgreSQL rooms store: signaling's conformance cases (the ones SQLite passes).

use super::*;
use crate::testing::PostgresServer;

fn fresh_database() -> Database {
    Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
}

palaver_signaling::room_store_conformance_tests!(PgRoomStore::open(&fresh_database()).unwrap());
