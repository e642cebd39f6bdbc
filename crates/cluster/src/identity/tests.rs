//! The PostgreSQL identity store: signaling's conformance cases (the ones SQLite passes), then
//! two nodes on one database.

use super::*;
use crate::testing::PostgresServer;

fn fresh_database() -> Database {
    Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
}

palaver_signaling::identity_store_conformance_tests!(PgIdentityStore::open(&fresh_database()).unwrap());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_settings_identities_and_marks() {
    // Two pools on one database: two nodes.
    let url = PostgresServer::shared().unwrap().fresh_database().unwrap();
    let a = PgIdentityStore::open(&Database::connect(&url).unwrap()).unwrap();
    let b = PgIdentityStore::open(&Database::connect(&url).unwrap()).unwrap();
    let key_a = a.setting_or_create("token_signing_seed", &mut || "from-a".into()).unwrap();
    let key_b = b.setting_or_create("token_signing_seed", &mut || "from-b".into()).unwrap();
    assert_eq!((key_a.as_str(), key_b.as_str()), ("from-a", "from-a"), "every node signs with one key");
    a.create_identity("8:acs:r_x", 1, None, "{}").await.unwrap();
    assert!(b.identity_exists("8:acs:r_x").await.unwrap());
    b.revoke("8:acs:r_x", 10, RevokeAction::Revoke).await.unwrap();
    assert_eq!(a.revocations().unwrap(), vec![("8:acs:r_x".to_string(), 11)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_repeats_of_one_request_create_one_identity() {
    let db = fresh_database();
    let stores: Vec<_> = (0..4).map(|_| PgIdentityStore::open(&db).unwrap()).collect();
    let rep = RepeatKey { request_id: "same".into(), fingerprint: "fp".into() };
    let tasks: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let rep = rep.clone();
            tokio::spawn(async move {
                s.create_identity(&format!("8:acs:r_{i}"), 5, Some(&rep), &format!("{{\"i\":{i}}}")).await
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            IdentityWrite::Done => done += 1,
            IdentityWrite::Replay(_) => {}
            IdentityWrite::NotFound => panic!("not found"),
        }
    }
    assert_eq!(done, 1);
    assert_eq!(PgIdentityStore::open(&db).unwrap().identity_count().unwrap(), 1);
}
