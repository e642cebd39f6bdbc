//! The rooms store port: the rooms, their listed participants and the first answers to
//! repeatable creates, as the Rooms API and the gateway's join check need them. The SQLite
//! [`Store`] implements it here (queries in [`super::rooms`]); `palaver-cluster` implements it
//! on PostgreSQL, selected by `[cluster] postgres_url`. Every write is one transaction, so a
//! refused request writes nothing.

use super::rooms::{self, Created, WriteRefusal};
use super::{Store, StoreError};
use crate::domain::rooms::{ParticipantChange, Room};
use async_trait::async_trait;
use palaver_core::RoomRole;

/// A repeatable create's `Repeatability-Request-Id` and request fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRepeat {
    pub request_id: String,
    pub fingerprint: String,
}

#[async_trait]
pub trait RoomStore: Send + Sync + std::fmt::Debug + 'static {
    /// Insert `room` with `participants` and remember `answer_body` under `repeat`, in one
    /// transaction; the stored first answer if `repeat` was seen within
    /// [`rooms::REPEATABILITY_WINDOW_US`] of `room.created_at_us` (nothing written).
    async fn create_room(
        &self,
        room: &Room,
        participants: &[ParticipantChange],
        repeat: Option<&RoomRepeat>,
        answer_body: &str,
    ) -> Result<Created, StoreError>;

    /// Rooms after position `after`, oldest first, at most `limit`, with their positions.
    async fn list_rooms(&self, after: i64, limit: usize) -> Result<Vec<(i64, Room)>, StoreError>;

    /// The room with `id` and its position.
    async fn find_room(&self, id: &str) -> Result<Option<(i64, Room)>, StoreError>;

    /// The room and the role of `raw_id` in it (`None` when not listed), in one read.
    async fn room_access(&self, id: &str, raw_id: &str) -> Result<Option<(Room, Option<RoomRole>)>, StoreError>;

    /// Replace the window and dial-out flag of `room.id`.
    async fn update_room(&self, room: &Room) -> Result<Result<(), WriteRefusal>, StoreError>;

    /// Delete a room and its participants.
    async fn delete_room(&self, id: &str) -> Result<Result<(), WriteRefusal>, StoreError>;

    /// Participants of the room at position `room_seq` after position `after`, in the order
    /// they were added, at most `limit`.
    async fn list_participants(
        &self,
        room_seq: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, RoomRole)>, StoreError>;

    /// Apply a participants merge patch; refused (nothing written) if the room would list
    /// more than [`crate::domain::rooms::MAX_PARTICIPANTS`].
    async fn patch_participants(
        &self,
        room_id: &str,
        changes: &[ParticipantChange],
    ) -> Result<Result<(), WriteRefusal>, StoreError>;
}

#[async_trait]
impl RoomStore for Store {
    async fn create_room(
        &self,
        room: &Room,
        participants: &[ParticipantChange],
        repeat: Option<&RoomRepeat>,
        answer_body: &str,
    ) -> Result<Created, StoreError> {
        let (room, participants, repeat, body) =
            (room.clone(), participants.to_vec(), repeat.cloned(), answer_body.to_string());
        self.call(move |c| {
            let repeat = repeat.as_ref().map(|r| (r.request_id.as_str(), r.fingerprint.as_str()));
            rooms::insert_room(c, &room, &participants, repeat, &body)
        })
        .await
    }

    async fn list_rooms(&self, after: i64, limit: usize) -> Result<Vec<(i64, Room)>, StoreError> {
        self.call(move |c| rooms::list_rooms(c, after, limit)).await
    }

    async fn find_room(&self, id: &str) -> Result<Option<(i64, Room)>, StoreError> {
        let id = id.to_string();
        self.call(move |c| rooms::find_room(c, &id)).await
    }

    async fn room_access(&self, id: &str, raw_id: &str) -> Result<Option<(Room, Option<RoomRole>)>, StoreError> {
        let (id, who) = (id.to_string(), raw_id.to_string());
        self.call(move |c| {
            let Some((seq, room)) = rooms::find_room(c, &id)? else { return Ok(None) };
            Ok(Some((room, rooms::participant_role(c, seq, &who)?)))
        })
        .await
    }

    async fn update_room(&self, room: &Room) -> Result<Result<(), WriteRefusal>, StoreError> {
        let room = room.clone();
        self.call(move |c| rooms::update_room(c, &room)).await
    }

    async fn delete_room(&self, id: &str) -> Result<Result<(), WriteRefusal>, StoreError> {
        let id = id.to_string();
        self.call(move |c| rooms::delete_room(c, &id)).await
    }

    async fn list_participants(
        &self,
        room_seq: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, RoomRole)>, StoreError> {
        self.call(move |c| rooms::list_participants(c, room_seq, after, limit)).await
    }

    async fn patch_participants(
        &self,
        room_id: &str,
        changes: &[ParticipantChange],
    ) -> Result<Result<(), WriteRefusal>, StoreError> {
        let (id, changes) = (room_id.to_string(), changes.to_vec());
        self.call(move |c| rooms::patch_participants(c, &id, &changes)).await
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
#[cfg(test)]
mod tests;
