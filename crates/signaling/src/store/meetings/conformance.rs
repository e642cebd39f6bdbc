//! The backend-independent cases of a [`MeetingStore`], run against SQLite here and against
//! PostgreSQL in `palaver-cluster` (through [`crate::meeting_store_conformance_tests!`]).

use super::{Created, MeetingDirectory, MeetingRecord, MeetingStore};
use palaver_core::protocol::MeetingPolicy;
use std::sync::Arc;

fn record(id: &str, code: &str) -> MeetingRecord {
    MeetingRecord {
        id: id.into(),
        meeting_code: code.into(),
        passcode: "Ab3xyz".into(),
        subject: Some("Plan".into()),
        organizer_raw_id: "8:orgid:o".into(),
        organizer_tenant_id: Some("t".into()),
        co_organizers: vec!["8:orgid:c".into()],
        presenters: vec!["8:orgid:p".into()],
        policy: MeetingPolicy::default(),
        created_at_ms: 1,
    }
}

/// Create (a taken code draws another), look up by id and code, change the policy, list,
/// the per-organizer cap, delete.
pub async fn create_lookup_update_delete(store: Arc<dyn MeetingStore>) {
    let dir = MeetingDirectory::with_store(store);
    let mut a = record("a", "123456789012");
    assert_eq!(dir.create(&mut a, 10).await.unwrap(), Created::Inserted);
    // Same code again: a new code is drawn, nothing overwritten.
    let mut b = record("b", "123456789012");
    b.created_at_ms = 2;
    assert_eq!(dir.create(&mut b, 10).await.unwrap(), Created::Inserted);
    assert_ne!(b.meeting_code, "123456789012");
    assert_eq!(dir.get("a").await.unwrap().unwrap(), a);
    assert_eq!(dir.by_code("1234 5678 9012").await.unwrap().unwrap().id, "a");
    assert!(a.passcode_matches(" Ab3xyz ") && !a.passcode_matches("ab3xyz"));
    let p = MeetingPolicy { external_dial_out: true, ..Default::default() };
    assert!(dir.set_policy("a", &p).await.unwrap());
    assert!(!dir.set_policy("zz", &p).await.unwrap());
    assert_eq!(dir.get("a").await.unwrap().unwrap().policy, p);
    let listed: Vec<_> = dir.list_by_organizer("8:orgid:o").await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(listed, ["b", "a"], "newest first");
    // The organizer holds two: a cap of two refuses a third and writes nothing.
    let mut c = record("c", "223456789012");
    assert_eq!(dir.create(&mut c, 2).await.unwrap(), Created::OrganizerFull);
    assert!(dir.get("c").await.unwrap().is_none());
    assert!(dir.delete("a").await.unwrap());
    assert!(dir.get("a").await.unwrap().is_none());
    assert!(!dir.delete("a").await.unwrap());
}

/// Racing creates of one organizer against a cap of 2: at most 2 are stored.
pub async fn racing_creates_respect_the_organizer_cap(store: Arc<dyn MeetingStore>) {
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let dir = MeetingDirectory::with_store(store.clone());
            tokio::spawn(async move {
                let mut m = record(&format!("m{i}"), &format!("9{i:011}"));
                dir.create(&mut m, 2).await.unwrap()
            })
        })
        .collect();
    let mut inserted = 0;
    for t in tasks {
        if t.await.unwrap() == Created::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 2);
    assert_eq!(store.meetings_of("8:orgid:o", 10).await.unwrap().len(), 2);
}

/// One `#[tokio::test]` per case; `$store` makes a fresh store (an `impl MeetingStore`).
#[macro_export]
macro_rules! meeting_store_conformance_tests {
    ($store:expr) => {
        $crate::meeting_store_conformance_tests!(@cases $store;
            create_lookup_update_delete,
            racing_creates_respect_the_organizer_cap,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = std::sync::Arc::new($store);
                $crate::store::meetings::conformance::$case(store).await;
            }
        )*
    };
}
