//! The fixture itself: private servers on free loopback ports, never the system services;
//! Redis answers and dies on kill; PostgreSQL keeps its data through an immediate stop.

use palaver_cluster::Database;
use palaver_cluster::testing::{PostgresServer, RedisServer};

#[test]
fn redis_runs_on_a_private_port_and_dies_on_kill() {
    let mut redis = RedisServer::start().unwrap();
    assert_ne!(redis.port(), 6379, "never the system service's port");
    assert!(redis.ping());
    redis.kill();
    assert!(!redis.ping());
}

#[test]
fn postgres_keeps_committed_rows_through_an_immediate_stop() {
    let pg = PostgresServer::start().unwrap();
    assert_ne!(pg.port(), 5432, "never the system service's port");
    let url = pg.fresh_database().unwrap();
    let db = Database::connect(&url).unwrap();
    db.migrate("fixture", &["CREATE TABLE t (x BIGINT)"]).unwrap();
    db.block_on(|p| async move { p.get().await.unwrap().execute("INSERT INTO t VALUES (5)", &[]).await.unwrap() })
        .unwrap();
    pg.restart().unwrap();
    // The pool notices the broken connections and opens new ones.
    let x = db
        .block_on(|p| async move {
            p.get().await.unwrap().query_one("SELECT x FROM t", &[]).await.unwrap().get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(x, 5);
    let dir = pg.dir().to_path_buf();
    drop(pg);
    assert!(!dir.exists(), "the scratch directory is removed");
}
