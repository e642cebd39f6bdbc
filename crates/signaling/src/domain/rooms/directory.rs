//! [`RoomDirectory`]: the handle to the rooms store (SQLite, or PostgreSQL in cluster mode),
//! held in `AppState`. The REST routes use its store; the WebSocket gateway asks it whether a
//! user may join a room now, and with which role.

use crate::store::room_store::RoomStore;
use crate::store::{Store, StoreError};
use palaver_core::{ErrorCode, RoomRole};
use std::sync::Arc;

/// What a participant may do in a room, as of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomAccess {
    pub role: RoomRole,
    /// May calls in this room dial out to phone numbers?
    pub pstn_dial_out_enabled: bool,
    /// When the room closes (ms since the Unix epoch): the gateway may end sessions then.
    pub valid_until_ms: i64,
}

/// Rooms as seen by other components. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomDirectory {
    store: Arc<dyn RoomStore>,
}

impl RoomDirectory {
    /// Use the SQLite `store`, creating the rooms tables if needed.
    pub fn open(store: Store) -> Result<Self, StoreError> {
        crate::store::rooms::migrate(&store)?;
        Ok(Self { store: Arc::new(store) })
    }

    /// Use another backend's rooms store (PostgreSQL in cluster mode), already migrated.
    pub fn with_store(store: Arc<dyn RoomStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &dyn RoomStore {
        self.store.as_ref()
    }

    /// May `raw_id` join room `room_id` at `now_ms` (ms since the Unix epoch)?
    /// `RoomNotFound`, `RoomNotActive` (outside validFrom..validUntil), `NotRoomParticipant`,
    /// or `StorageUnavailable`. Reads through the store's async door.
    pub async fn access(&self, room_id: &str, raw_id: &str, now_ms: i64) -> Result<RoomAccess, ErrorCode> {
        let found = self.store.room_access(room_id, raw_id).await.map_err(|e| {
            tracing::error!(error = %e, room_id, "room lookup failed");
            ErrorCode::StorageUnavailable
        })?;
        let Some((room, role)) = found else { return Err(ErrorCode::RoomNotFound) };
        if !room.is_active_at(now_ms.saturating_mul(1000)) {
            return Err(ErrorCode::RoomNotActive);
        }
        let role = role.ok_or(ErrorCode::NotRoomParticipant)?;
        Ok(RoomAccess {
            role,
            pstn_dial_out_enabled: room.pstn_dial_out_enabled,
            valid_until_ms: room.valid_until_us / 1000,
        })
    }

    /// The role of `raw_id` in room `room_id` at `now_ms`, or why they may not join.
    pub async fn participant_role(&self, room_id: &str, raw_id: &str, now_ms: i64) -> Result<RoomRole, ErrorCode> {
        self.access(room_id, raw_id, now_ms).await.map(|a| a.role)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ParticipantChange, Room};
    use super::*;

    #[tokio::test]
    async fn lookup_checks_room_window_and_membership() {
        let dir = RoomDirectory::open(Store::open_in_memory().unwrap()).unwrap();
        let room = Room {
            id: "100".into(),
            created_at_us: 0,
            valid_from_us: 10_000_000,
            valid_until_us: 20_000_000,
            pstn_dial_out_enabled: true,
        };
        let p = [ParticipantChange::Upsert { raw_id: "8:acs:r_a".into(), role: RoomRole::Presenter }];
        dir.store().create_room(&room, &p, None, "{}").await.unwrap();
        let access = dir.access("100", "8:acs:r_a", 15_000).await.unwrap();
        assert_eq!(
            access,
            RoomAccess { role: RoomRole::Presenter, pstn_dial_out_enabled: true, valid_until_ms: 20_000 }
        );
        assert_eq!(dir.participant_role("100", "8:acs:r_b", 15_000).await, Err(ErrorCode::NotRoomParticipant));
        assert_eq!(dir.participant_role("100", "8:acs:r_a", 9_999).await, Err(ErrorCode::RoomNotActive));
        assert_eq!(dir.participant_role("100", "8:acs:r_a", 20_000).await, Err(ErrorCode::RoomNotActive));
        assert_eq!(dir.participant_role("999", "8:acs:r_a", 15_000).await, Err(ErrorCode::RoomNotFound));
    }
}
