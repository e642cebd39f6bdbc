//! The backend-independent cases of a [`RoomStore`], run against SQLite here and against
//! PostgreSQL in `palaver-cluster` (through [`crate::room_store_conformance_tests!`]).

use super::{RoomRepeat, RoomStore};
use crate::domain::rooms::{MAX_PARTICIPANTS, ParticipantChange, Room};
use crate::store::rooms::{Created, REPEATABILITY_WINDOW_US, StoredAnswer, WriteRefusal};
use palaver_core::RoomRole;

fn room(id: &str) -> Room {
    Room { id: id.into(), created_at_us: 1, valid_from_us: 1, valid_until_us: 2, pstn_dial_out_enabled: false }
}

fn upsert(raw: &str, role: RoomRole) -> ParticipantChange {
    ParticipantChange::Upsert { raw_id: raw.into(), role }
}

fn repeat(id: &str) -> RoomRepeat {
    RoomRepeat { request_id: id.into(), fingerprint: "fp".into() }
}

/// Create, page, patch (upsert and remove), look up roles, delete with the participants.
pub async fn create_list_patch_delete(s: &dyn RoomStore) {
    s.create_room(&room("r1"), &[upsert("8:acs:x_a", RoomRole::Presenter)], None, "{}").await.unwrap();
    s.create_room(&room("r2"), &[], None, "{}").await.unwrap();
    let rooms = s.list_rooms(0, 10).await.unwrap();
    assert_eq!(rooms.iter().map(|(_, r)| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    assert_eq!(rooms[0].1, room("r1"));
    assert_eq!(s.list_rooms(rooms[0].0, 10).await.unwrap().len(), 1);
    assert_eq!(s.list_rooms(0, 1).await.unwrap().len(), 1);
    assert_eq!(s.find_room("r2").await.unwrap().map(|(seq, _)| seq), Some(rooms[1].0));

    let changes = [upsert("8:acs:x_a", RoomRole::Consumer), upsert("8:acs:x_b", RoomRole::Attendee)];
    s.patch_participants("r1", &changes).await.unwrap().unwrap();
    let seq = rooms[0].0;
    let listed = s.list_participants(seq, 0, 10).await.unwrap();
    let roles: Vec<_> = listed.iter().map(|(_, id, role)| (id.as_str(), *role)).collect();
    assert_eq!(roles, [("8:acs:x_a", RoomRole::Consumer), ("8:acs:x_b", RoomRole::Attendee)]);
    assert_eq!(s.list_participants(seq, listed[0].0, 10).await.unwrap().len(), 1, "pages by position");
    let remove = [ParticipantChange::Remove { raw_id: "8:acs:x_a".into() }];
    s.patch_participants("r1", &remove).await.unwrap().unwrap();
    assert_eq!(s.room_access("r1", "8:acs:x_a").await.unwrap(), Some((room("r1"), None)));
    assert_eq!(s.room_access("r1", "8:acs:x_b").await.unwrap(), Some((room("r1"), Some(RoomRole::Attendee))));
    assert_eq!(s.room_access("nope", "8:acs:x_b").await.unwrap(), None);

    let mut moved = room("r1");
    moved.valid_until_us = 99;
    moved.pstn_dial_out_enabled = true;
    s.update_room(&moved).await.unwrap().unwrap();
    assert_eq!(s.find_room("r1").await.unwrap().unwrap().1, moved);
    assert_eq!(s.update_room(&room("nope")).await.unwrap(), Err(WriteRefusal::RoomNotFound));

    assert_eq!(s.patch_participants("nope", &remove).await.unwrap(), Err(WriteRefusal::RoomNotFound));
    s.delete_room("r1").await.unwrap().unwrap();
    assert_eq!(s.delete_room("r1").await.unwrap(), Err(WriteRefusal::RoomNotFound));
    assert!(s.list_participants(seq, 0, 10).await.unwrap().is_empty(), "participants go with their room");
    assert!(s.find_room("r1").await.unwrap().is_none());
}

/// A patch that would pass the cap writes nothing.
pub async fn too_many_participants_writes_nothing(s: &dyn RoomStore) {
    s.create_room(&room("r1"), &[upsert("8:acs:x_keep", RoomRole::Attendee)], None, "{}").await.unwrap();
    let many: Vec<_> = (0..MAX_PARTICIPANTS).map(|i| upsert(&format!("8:acs:x_{i}"), RoomRole::Attendee)).collect();
    let refused = s.patch_participants("r1", &many).await.unwrap();
    assert_eq!(refused, Err(WriteRefusal::TooManyParticipants { count: MAX_PARTICIPANTS + 1 }));
    let seq = s.find_room("r1").await.unwrap().unwrap().0;
    assert_eq!(s.list_participants(seq, 0, 10).await.unwrap().len(), 1);
}

/// A repeated request id replays the first answer for a day, then is forgotten.
pub async fn repeated_request_id_replays_the_first_answer(s: &dyn RoomStore) {
    let first = s.create_room(&room("r1"), &[], Some(&repeat("req-1")), "{\"id\":\"r1\"}").await.unwrap();
    assert_eq!(first, Created::New);
    let again = s.create_room(&room("r2"), &[], Some(&repeat("req-1")), "{\"id\":\"r2\"}").await.unwrap();
    assert_eq!(
        again,
        Created::Replay(StoredAnswer { fingerprint: "fp".into(), status: 201, body: "{\"id\":\"r1\"}".into() })
    );
    assert_eq!(s.list_rooms(0, 10).await.unwrap().len(), 1);
    let mut later = room("r3");
    later.created_at_us = 1 + REPEATABILITY_WINDOW_US + 1;
    assert_eq!(s.create_room(&later, &[], Some(&repeat("req-1")), "{}").await.unwrap(), Created::New);
    assert_eq!(s.list_rooms(0, 10).await.unwrap().len(), 2);
    assert!(s.create_room(&room("r3"), &[], None, "{}").await.is_err(), "a room id is unique");
}

/// One `#[tokio::test]` per case; `$store` makes a fresh store (an `impl RoomStore`).
#[macro_export]
macro_rules! room_store_conformance_tests {
    ($store:expr) => {
        $crate::room_store_conformance_tests!(@cases $store;
            create_list_patch_delete,
            too_many_participants_writes_nothing,
            repeated_request_id_replays_the_first_answer,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $store;
                $crate::store::room_store::conformance::$case(&store).await;
            }
        )*
    };
}
