//! The PostgreSQL events store: `palaver-events`' conformance cases (the ones SQLite passes),
//! then the lease between two nodes.

use super::*;
use crate::testing::PostgresServer;
use palaver_events::store::conformance::{callback, ids, sub, system};

fn fresh_database() -> Database {
    Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
}

palaver_events::event_store_conformance_tests!(PgEventStore::open(&fresh_database(), "node-a").unwrap());

#[test]
fn two_nodes_never_hold_one_delivery_at_once() {
    let db = fresh_database();
    let mut a = PgEventStore::open(&db, "node-a").unwrap();
    let mut b = PgEventStore::open(&db, "node-b").unwrap();
    a.upsert_subscription(&sub("hook", false), Origin::Api, 0).unwrap();
    a.enqueue(&[system("hook", "e1"), system("hook", "e2"), callback("call", 1), callback("call", 2)], 0).unwrap();
    let on_a = a.due(0, 2).unwrap();
    assert_eq!(ids(&on_a), ["e1", "e2"]);
    let on_b = b.due(0, 10).unwrap();
    assert_eq!(ids(&on_b), ["call-1"], "b gets what a did not claim; call-2 waits behind call-1");
    assert!(a.due(1, 10).unwrap().is_empty(), "everything due is leased");
    // b delivers call-1: call-2 becomes due, and its lease is b's until recorded.
    b.record(on_b[0].seq, &Outcome::Delivered { at_ms: 1 }).unwrap();
    assert_eq!(ids(&a.due(2, 10).unwrap()), ["call-2"]);
    // a dies holding e1 and e2: once the lease ends, b takes them over.
    assert!(b.due(LEASE_MS - 1, 10).unwrap().is_empty());
    let taken = b.due(LEASE_MS, 10).unwrap();
    assert_eq!(ids(&taken), ["e1", "e2"]);
    b.record(taken[0].seq, &Outcome::Delivered { at_ms: LEASE_MS }).unwrap();
    // a's late verdict on e1 cannot undo b's delivery.
    a.record(on_a[0].seq, &Outcome::Dead { attempts: 9, error: "late".into() }).unwrap();
    assert_eq!(a.counts(Some("hook")).unwrap(), DeliveryCounts { pending: 1, delivered: 1, dead_lettered: 0 });
}

#[test]
fn racing_pollers_claim_each_row_once() {
    let db = fresh_database();
    let mut setup = PgEventStore::open(&db, "setup").unwrap();
    setup.upsert_subscription(&sub("hook", false), Origin::Api, 0).unwrap();
    let items: Vec<_> = (0..40).map(|i| system("hook", &format!("e{i}"))).collect();
    setup.enqueue(&items, 0).unwrap();
    let pollers: Vec<_> = (0..4)
        .map(|n| {
            let store = PgEventStore::open(&db, &format!("node-{n}")).unwrap();
            std::thread::spawn(move || {
                // Until nothing is left that no one holds.
                let mut mine = Vec::new();
                loop {
                    let got = store.due(0, 3).unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|i| i.event_id));
                }
            })
        })
        .collect();
    let mut claimed: Vec<String> = pollers.into_iter().flat_map(|p| p.join().unwrap()).collect();
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!((total, claimed.len()), (40, 40), "every row claimed, none twice");
}
