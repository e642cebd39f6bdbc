//! The mirror on the private PostgreSQL: a takeover restores what the old home stored, the old
//! home cannot overwrite the new epoch's row, stale rows are not restored, and giving up the
//! home removes the row.

use super::*;
use crate::homes::{Home, Homes};
use crate::testing::PostgresServer;
use palaver_core::MeetingRole;
use palaver_core::protocol::{CaptureState, CaptureStatus};
use palaver_signaling::domain::conversation::CarriedParticipant;

const KEY: &str = "meeting:m-17";

fn carried(role: MeetingRole, admitted: bool) -> CarriedConversation {
    CarriedConversation {
        capture: CaptureState { recording: CaptureStatus::Active, transcription: CaptureStatus::Inactive },
        participants: vec![CarriedParticipant {
            raw_id: "8:acs:r_ann".into(),
            participant_id: "p-ann".into(),
            role,
            display_name: "Ann (External)".into(),
            admitted,
            hand_raised: true,
        }],
    }
}

async fn setup() -> (Database, Homes) {
    let db = Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap();
    let homes = Homes::open(&db).unwrap();
    db.migrate("ledger", crate::ledger::MIGRATIONS).unwrap();
    db.migrate("ledger_fencing", crate::ledger::FENCING_MIGRATIONS).unwrap();
    db.migrate("ledger_adoption", crate::ledger::ADOPTION_MIGRATIONS).unwrap();
    (db, homes)
}

fn mirror_of(db: &Database, node: &str, held: &[(&str, i64)]) -> (Arc<ResumeMirror>, Arc<Takeover>) {
    let takeover = Arc::new(Takeover::new(db, node));
    let keys = Arc::new(DashMap::new());
    for (k, e) in held {
        keys.insert(k.to_string(), *e);
    }
    (ResumeMirror::open(db, node, takeover.clone(), keys).unwrap(), takeover)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_restores_what_the_old_home_stored_and_the_old_home_cannot_overwrite_it() {
    let (db, homes) = setup().await;
    homes.claim(KEY, "node-a").await.unwrap();
    let (a, _) = mirror_of(&db, "node-a", &[(KEY, 1)]);
    let promoted = carried(MeetingRole::Presenter, true);
    assert!(a.store(KEY, 1, "live-a", &promoted).await.unwrap());

    // node-b takes over: the restore (only right after a takeover) finds node-a's state.
    let (b, takeover_b) = mirror_of(&db, "node-b", &[]);
    assert_eq!(b.restore(KEY).await, None, "no takeover here: nothing is read");
    let dead = Home { node: "node-a".into(), epoch: 1 };
    assert!(takeover_b.take_over(KEY, &dead).await.unwrap().is_some());
    assert_eq!(b.restore(KEY).await, Some(promoted.clone()));
    assert_eq!(b.restore(KEY).await, None, "restored once");

    // The new home writes epoch 2; the zombie's epoch-1 write is refused (not home any more).
    let fresh = carried(MeetingRole::Attendee, false);
    assert!(b.store(KEY, 2, "live-b", &fresh).await.unwrap());
    assert!(!a.store(KEY, 1, "live-a", &promoted).await.unwrap(), "the old home is fenced");
    assert_eq!(b.load(KEY, 3).await.unwrap(), Some(fresh));

    // Giving up the home (the conversation ended) removes the row with it.
    assert!(homes.release(KEY, "node-b", 2).await.unwrap());
    assert_eq!(b.load(KEY, 3).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_not_stamped_within_the_restore_window_is_not_restored() {
    let (db, homes) = setup().await;
    homes.claim(KEY, "node-a").await.unwrap();
    let (a, _) = mirror_of(&db, "node-a", &[(KEY, 1)]);
    assert!(a.store(KEY, 1, "live-a", &carried(MeetingRole::Presenter, true)).await.unwrap());
    assert!(a.load(KEY, 2).await.unwrap().is_some());
    assert_eq!(a.stamp().await.unwrap(), 1, "the hosted row is stamped");
    // The home died long ago: its last stamp is older than the window.
    db.run(|pool| async move {
        pool.get()
            .await
            .unwrap()
            .execute("UPDATE cluster_conversation_state SET seen_at = now() - interval '5 minutes'", &[])
            .await
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(a.load(KEY, 2).await.unwrap(), None);
}
