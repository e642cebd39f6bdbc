//! The backend-independent cases of an [`EventStorage`], run against SQLite here and against
//! PostgreSQL in `palaver-cluster` (through [`crate::event_store_conformance_tests!`]). A
//! shared backend leases what `due` returns, so every case records an outcome for the rows
//! it was given before it asks again.

use super::{DeliveryCounts, EventStorage, ItemKind, NewItem, Origin, OutboxItem, Outcome, ValidationState};
use crate::config::SubscriptionConfig;

pub fn sub(name: &str, handshake: bool) -> SubscriptionConfig {
    SubscriptionConfig {
        name: name.into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        validation_handshake: handshake,
        ..Default::default()
    }
}

pub fn callback(stream: &str, n: u32) -> NewItem {
    NewItem {
        kind: ItemKind::Callback,
        subscription: None,
        stream: Some(stream.into()),
        endpoint: "http://127.0.0.1:9/cb".into(),
        content_type: "application/json".into(),
        event_id: format!("{stream}-{n}"),
        event_type: "Microsoft.Communication.CallConnected".into(),
        payload: "[]".into(),
    }
}

pub fn system(subscription: &str, id: &str) -> NewItem {
    NewItem {
        kind: ItemKind::System,
        subscription: Some(subscription.into()),
        stream: None,
        endpoint: "http://127.0.0.1:9/hook".into(),
        content_type: "application/json".into(),
        event_id: id.into(),
        event_type: "Microsoft.Communication.IncomingCall".into(),
        payload: "[]".into(),
    }
}

pub fn ids(items: &[OutboxItem]) -> Vec<&str> {
    items.iter().map(|i| i.event_id.as_str()).collect()
}

/// Callbacks of one call connection go in order: a later one waits while an earlier one is
/// retried; a dead head lets the rest go on.
pub fn a_later_callback_waits_while_an_earlier_one_is_retried(store: &mut dyn EventStorage) {
    store.enqueue(&[callback("a", 1), callback("a", 2), callback("b", 1), callback("a", 3)], 0).unwrap();
    let due = store.due(0, 10).unwrap();
    assert_eq!(ids(&due), ["a-1", "b-1"], "only the head of each call connection");
    assert_eq!((due[0].attempts, due[0].created_ms, due[0].kind), (0, 0, ItemKind::Callback));
    let a1 = due[0].seq;
    store.record(a1, &Outcome::Retry { attempts: 1, next_attempt_ms: 1_000, error: "HTTP 500".into() }).unwrap();
    store.record(due[1].seq, &Outcome::Delivered { at_ms: 1 }).unwrap();
    assert!(store.due(999, 10).unwrap().is_empty(), "a-2 waits behind the retried a-1");
    let due = store.due(1_000, 10).unwrap();
    assert_eq!(ids(&due), ["a-1"]);
    assert_eq!(due[0].attempts, 1);
    store.record(a1, &Outcome::Delivered { at_ms: 1_000 }).unwrap();
    let due = store.due(1_000, 10).unwrap();
    assert_eq!(ids(&due), ["a-2"]);
    store.record(due[0].seq, &Outcome::Dead { attempts: 30, error: "gone".into() }).unwrap();
    assert_eq!(ids(&store.due(1_000, 10).unwrap()), ["a-3"]);
    assert_eq!(store.counts(None).unwrap(), DeliveryCounts { pending: 1, delivered: 2, dead_lettered: 1 });
    let dead = store.dead_letters(10).unwrap();
    assert_eq!((dead[0].event_id.as_str(), dead[0].last_error.as_deref()), ("a-2", Some("gone")));
    assert_eq!(store.pending_count().unwrap(), 1);
    assert_eq!(store.pending_event_types().unwrap(), ["Microsoft.Communication.CallConnected"]);
    assert_eq!(store.prune_delivered(2).unwrap(), 1, "b-1 (delivered at 1), not a-1 (at 1000)");
    assert_eq!(store.counts(None).unwrap().delivered, 1);
}

/// System events wait for their subscription's handshake; handshakes retry; an unchanged
/// upsert keeps the state, a changed one starts over; deleting drops undelivered rows.
pub fn system_events_wait_for_validation(store: &mut dyn EventStorage) {
    store.upsert_subscription(&sub("needs-handshake", true), Origin::Config, 0).unwrap();
    store.upsert_subscription(&sub("no-handshake", false), Origin::Api, 0).unwrap();
    assert_eq!(store.subscriptions().unwrap().len(), 2);
    store.enqueue(&[system("needs-handshake", "e1"), system("no-handshake", "e1")], 0).unwrap();
    let due = store.due(0, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].subscription.as_deref(), Some("no-handshake"));
    store
        .record(due[0].seq, &Outcome::Retry { attempts: 1, next_attempt_ms: 5_000, error: "HTTP 503".into() })
        .unwrap();
    let pending = store.due_validations(0).unwrap();
    assert_eq!(pending.len(), 1);
    let code = pending[0].validation_code.clone();
    assert!(store.record_validation("needs-handshake", &code, Err(("HTTP 404".into(), 5_000))).unwrap());
    let s = store.subscription("needs-handshake").unwrap().unwrap();
    assert_eq!((s.state, s.validation_attempts, s.origin), (ValidationState::Failed, 1, Origin::Config));
    assert!(store.due_validations(4_999).unwrap().is_empty());
    assert_eq!(store.due_validations(5_000).unwrap().len(), 1);
    assert!(!store.record_validation("needs-handshake", "stale-code", Ok(5_000)).unwrap());
    assert!(store.record_validation("needs-handshake", &code, Ok(5_000)).unwrap());
    assert_eq!(store.due(5_000, 10).unwrap().len(), 2);
    store.upsert_subscription(&sub("needs-handshake", true), Origin::Config, 6_000).unwrap();
    assert_eq!(store.subscription("needs-handshake").unwrap().unwrap().state, ValidationState::Validated);
    let mut changed = sub("needs-handshake", true);
    changed.endpoint = "http://127.0.0.1:10/other".into();
    store.upsert_subscription(&changed, Origin::Config, 6_000).unwrap();
    let s = store.subscription("needs-handshake").unwrap().unwrap();
    assert_eq!((s.state, s.config.endpoint.as_str()), (ValidationState::Pending, "http://127.0.0.1:10/other"));
    assert!(store.delete_subscription("no-handshake").unwrap());
    assert!(!store.delete_subscription("no-handshake").unwrap());
    assert_eq!(store.counts(Some("no-handshake")).unwrap(), DeliveryCounts::default());
    assert!(store.subscription("no-handshake").unwrap().is_none());
}

/// A setting is stored once; later inserts read the first value.
pub fn settings_keep_the_first_value(store: &mut dyn EventStorage) {
    assert_eq!(store.setting("k").unwrap(), None);
    assert_eq!(store.setting_or_insert("k", "v1").unwrap(), "v1");
    assert_eq!(store.setting_or_insert("k", "v2").unwrap(), "v1");
    assert_eq!(store.setting("k").unwrap().as_deref(), Some("v1"));
}

/// One `#[test]` per case; `$store` makes a fresh store (an `impl EventStorage`).
#[macro_export]
macro_rules! event_store_conformance_tests {
    ($store:expr) => {
        $crate::event_store_conformance_tests!(@cases $store;
            a_later_callback_waits_while_an_earlier_one_is_retried,
            system_events_wait_for_validation,
            settings_keep_the_first_value,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut store = $store;
                $crate::store::conformance::$case(&mut store);
            }
        )*
    };
}
