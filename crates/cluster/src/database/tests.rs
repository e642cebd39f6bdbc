//! The pool, both doors and the migrations against the private PostgreSQL.

use super::*;
use crate::testing::PostgresServer;

fn database() -> Database {
    let url = PostgresServer::shared().unwrap().fresh_database().unwrap();
    Database::connect(&url).unwrap()
}

const STEPS: &[&str] = &["CREATE TABLE demo (x BIGINT)", "ALTER TABLE demo ADD COLUMN y TEXT"];

#[test]
fn migrations_apply_once_and_append() {
    let db = database();
    db.migrate("demo", &STEPS[..1]).unwrap();
    db.migrate("demo", &STEPS[..1]).unwrap();
    db.migrate("demo", STEPS).unwrap();
    let n = db
        .block_on(|pool| async move {
            let c = pool.get().await.unwrap();
            c.execute("INSERT INTO demo (x, y) VALUES (1, 'a')", &[]).await.unwrap();
            c.query_one("SELECT COUNT(*) FROM schema_migrations WHERE component = 'demo'", &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn nodes_migrating_together_apply_each_step_once() {
    let url = PostgresServer::shared().unwrap().fresh_database().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Database::connect(&url).unwrap().migrate("demo", STEPS))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_blocking_door_works_inside_a_tokio_task_and_the_async_door_awaits() {
    let db = database();
    let blocking = db.block_on(|pool| async move {
        pool.get().await.unwrap().query_one("SELECT 41::BIGINT + 1", &[]).await.unwrap().get::<_, i64>(0)
    });
    assert_eq!(blocking.unwrap(), 42);
    let awaited = db
        .run(|pool| async move {
            pool.get().await.unwrap().query_one("SELECT 7::BIGINT", &[]).await.unwrap().get::<_, i64>(0)
        })
        .await;
    assert_eq!(awaited.unwrap(), 7);
}

#[test]
fn a_bad_url_is_refused_without_echoing_it() {
    let err = Database::connect("postgres://secret@[bad").unwrap_err().to_string();
    assert!(!err.contains("secret"), "{err}");
}
