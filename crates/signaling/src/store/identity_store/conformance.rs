//! The backend-independent cases of an [`IdentityStore`], run against SQLite here and against
//! PostgreSQL in `palaver-cluster` (through [`crate::identity_store_conformance_tests!`]).

use super::{IdentityStore, IdentityWrite, RepeatKey, RevokeAction};
use crate::store::identities::StoredAnswer;

const ID: &str = "8:acs:r_1";

fn key(id: &str, fingerprint: &str) -> RepeatKey {
    RepeatKey { request_id: id.into(), fingerprint: fingerprint.into() }
}

/// A repeated create answers the first answer and writes nothing more.
pub async fn a_repeated_create_replays_the_first_answer(store: &dyn IdentityStore) {
    let rep = key("req-1", "fp");
    assert_eq!(store.create_identity(ID, 10, Some(&rep), "{\"a\":1}").await.unwrap(), IdentityWrite::Done);
    let again = store.create_identity("8:acs:r_2", 11, Some(&rep), "{\"a\":2}").await.unwrap();
    assert_eq!(again, IdentityWrite::Replay(StoredAnswer { fingerprint: "fp".into(), body: "{\"a\":1}".into() }));
    assert_eq!(store.identity_count().unwrap(), 1);
    assert!(store.identity_exists(ID).await.unwrap());
    assert!(!store.identity_exists("8:acs:r_2").await.unwrap());
    assert!(store.create_identity(ID, 12, None, "{}").await.is_err(), "an identity id is unique");
}

/// Answering for a missing identity remembers nothing; for an existing one, the answer.
pub async fn answers_need_an_existing_identity(store: &dyn IdentityStore) {
    let rep = key("req-t", "fp");
    assert_eq!(store.answer_for_existing(ID, 10, Some(&rep), "{}").await.unwrap(), IdentityWrite::NotFound);
    store.create_identity(ID, 10, None, "{}").await.unwrap();
    assert_eq!(store.answer_for_existing(ID, 11, Some(&rep), "{\"t\":1}").await.unwrap(), IdentityWrite::Done);
    assert!(
        matches!(store.answer_for_existing(ID, 12, Some(&rep), "{}").await.unwrap(), IdentityWrite::Replay(a) if a.body == "{\"t\":1}")
    );
}

/// Marks need the identity (unless mark-only), never move back, and outlive a deletion.
pub async fn revocation_marks_only_move_forward_and_outlive_the_identity(store: &dyn IdentityStore) {
    assert_eq!(store.revoke(ID, 100, RevokeAction::Revoke).await.unwrap(), None);
    store.create_identity(ID, 10, None, "{}").await.unwrap();
    assert_eq!(store.revoke(ID, 100, RevokeAction::Revoke).await.unwrap(), Some(101));
    store.revoke(ID, 50, RevokeAction::Revoke).await.unwrap();
    assert_eq!(store.revocations().unwrap(), vec![(ID.to_string(), 101)]);
    assert_eq!(store.revoke(ID, 200, RevokeAction::Delete).await.unwrap(), Some(201));
    assert!(!store.identity_exists(ID).await.unwrap());
    assert_eq!(store.revoke(ID, 300, RevokeAction::Delete).await.unwrap(), None);
    assert_eq!(store.revoke("8:orgid:o1", 5, RevokeAction::MarkOnly).await.unwrap(), Some(6));
    let mut marks = store.revocations().unwrap();
    marks.sort();
    assert_eq!(marks, vec![(ID.to_string(), 201), ("8:orgid:o1".to_string(), 6)]);
}

/// A generated setting is generated once.
pub async fn settings_are_generated_once(store: &dyn IdentityStore) {
    assert_eq!(store.setting_or_create("k", &mut || "first".into()).unwrap(), "first");
    assert_eq!(store.setting_or_create("k", &mut || "second".into()).unwrap(), "first");
}

/// One `#[tokio::test]` per case; `$store` makes a fresh store (an `impl IdentityStore`).
#[macro_export]
macro_rules! identity_store_conformance_tests {
    ($store:expr) => {
        $crate::identity_store_conformance_tests!(@cases $store;
            a_repeated_create_replays_the_first_answer,
            answers_need_an_existing_identity,
            revocation_marks_only_move_forward_and_outlive_the_identity,
            settings_are_generated_once,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $store;
                $crate::store::identity_store::conformance::$case(&store).await;
            }
        )*
    };
}
