//! `cluster_nodes` on the private PostgreSQL: a beating node is alive, a silent one is gone
//! after `DEAD_AFTER` by the database's clock, a drained one at once, an unknown one has no
//! verdict.

use super::*;
use crate::testing::PostgresServer;

fn heartbeats() -> (NodeHeartbeats, Database) {
    let db = Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap();
    (NodeHeartbeats::open(&db).unwrap(), db)
}

fn addresses() -> NodeAddresses {
    NodeAddresses { mesh: Some("127.0.0.1:1".into()), quic: Some("127.0.0.1:2".into()), https: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beating_node_is_alive_a_silent_one_gone_a_drained_one_gone_at_once() {
    let (beats, db) = heartbeats();
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Unknown);
    beats.beat("a", &addresses()).await.unwrap();
    beats.beat("b", &addresses()).await.unwrap();
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Alive);
    assert_eq!(beats.alive_count().await.unwrap(), 2);
    // a's last beat moved back past DEAD_AFTER (as if it had stopped beating that long ago).
    db.run(|pool| async move {
        pool.get()
            .await?
            .execute("UPDATE cluster_nodes SET last_seen = now() - interval '3.5 seconds' WHERE node_id = 'a'", &[])
            .await?;
        Ok::<_, DatabaseError>(())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Gone);
    beats.beat("a", &addresses()).await.unwrap();
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Alive, "a beat brings it back");
    beats.leave("b").await.unwrap();
    assert_eq!(beats.liveness("b").await.unwrap(), Liveness::Gone, "a drained node is gone at once");
    assert_eq!(beats.alive_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_beat_task_keeps_the_row_fresh_and_counts_the_live_nodes() {
    let (beats, _db) = heartbeats();
    let gauge = IntGauge::new("palaver_cluster_pg_nodes", "test").unwrap();
    let task = beats.spawn("a".into(), addresses(), gauge.clone());
    tokio::time::sleep(DEAD_AFTER + BEAT_EVERY).await;
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Alive, "still beating after DEAD_AFTER");
    assert_eq!(gauge.get(), 1);
    task.abort();
    tokio::time::sleep(DEAD_AFTER + Duration::from_millis(300)).await;
    assert_eq!(beats.liveness("a").await.unwrap(), Liveness::Gone, "stopped beating: gone");
}
