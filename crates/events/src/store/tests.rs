use super::*;

fn sub(name: &str, handshake: bool) -> SubscriptionConfig {
    SubscriptionConfig {
        name: name.into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        validation_handshake: handshake,
        ..Default::default()
    }
}

fn callback(stream: &str, n: u32) -> NewItem {
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

fn system(subscription: &str, id: &str) -> NewItem {
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

fn ids(items: &[OutboxItem]) -> Vec<&str> {
    items.iter().map(|i| i.event_id.as_str()).collect()
}

#[test]
fn a_later_callback_waits_while_an_earlier_one_is_retried() {
    let mut store = EventStore::open_in_memory().unwrap();
    store.enqueue(&[callback("a", 1), callback("a", 2), callback("b", 1), callback("a", 3)], 0).unwrap();
    let due = store.due(0, 10).unwrap();
    assert_eq!(ids(&due), ["a-1", "b-1"], "only the head of each call connection");
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
    // a dead head lets the rest go on
    store.record(due[0].seq, &Outcome::Dead { attempts: 30, error: "gone".into() }).unwrap();
    assert_eq!(ids(&store.due(1_000, 10).unwrap()), ["a-3"]);
    assert_eq!(store.counts(None).unwrap(), DeliveryCounts { pending: 1, delivered: 2, dead_lettered: 1 });
    assert_eq!(store.dead_letters(10).unwrap()[0].event_id, "a-2");
}

#[test]
fn system_events_wait_for_validation() {
    let mut store = EventStore::open_in_memory().unwrap();
    store.upsert_subscription(&sub("needs-handshake", true), Origin::Config, 0).unwrap();
    store.upsert_subscription(&sub("no-handshake", false), Origin::Api, 0).unwrap();
    store.enqueue(&[system("needs-handshake", "e1"), system("no-handshake", "e1")], 0).unwrap();
    assert_eq!(store.due(0, 10).unwrap().len(), 1);
    assert_eq!(store.due(0, 10).unwrap()[0].subscription.as_deref(), Some("no-handshake"));
    let pending = store.due_validations(0).unwrap();
    assert_eq!(pending.len(), 1);
    let code = pending[0].validation_code.clone();
    // a failed handshake is retried later and delivers nothing meanwhile
    assert!(store.record_validation("needs-handshake", &code, Err(("HTTP 404".into(), 5_000))).unwrap());
    let s = store.subscription("needs-handshake").unwrap().unwrap();
    assert_eq!((s.state, s.validation_attempts), (ValidationState::Failed, 1));
    assert!(store.due_validations(4_999).unwrap().is_empty());
    assert_eq!(store.due_validations(5_000).unwrap().len(), 1);
    assert!(!store.record_validation("needs-handshake", "stale-code", Ok(5_000)).unwrap());
    assert!(store.record_validation("needs-handshake", &code, Ok(5_000)).unwrap());
    assert_eq!(store.due(5_000, 10).unwrap().len(), 2);
    // an unchanged upsert keeps the state; a changed one starts over
    store.upsert_subscription(&sub("needs-handshake", true), Origin::Config, 6_000).unwrap();
    assert_eq!(store.subscription("needs-handshake").unwrap().unwrap().state, ValidationState::Validated);
    let mut changed = sub("needs-handshake", true);
    changed.endpoint = "http://127.0.0.1:10/other".into();
    store.upsert_subscription(&changed, Origin::Config, 6_000).unwrap();
    assert_eq!(store.subscription("needs-handshake").unwrap().unwrap().state, ValidationState::Pending);
    // deleting drops its undelivered rows
    assert!(store.delete_subscription("no-handshake").unwrap());
    assert_eq!(store.counts(Some("no-handshake")).unwrap(), DeliveryCounts::default());
}

#[test]
fn rows_survive_reopening_the_file() {
    let dir = std::env::temp_dir().join(format!("palaver-events-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.db");
    {
        let mut store = EventStore::open(&path).unwrap();
        store.enqueue(&[callback("a", 1)], 0).unwrap();
        assert_eq!(store.setting_or_insert("k", "v1").unwrap(), "v1");
    }
    let store = EventStore::open(&path).unwrap();
    assert_eq!(ids(&store.due(0, 10).unwrap()), ["a-1"]);
    assert_eq!(store.setting_or_insert("k", "v2").unwrap(), "v1");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
