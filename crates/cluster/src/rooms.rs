//! [`PgRoomStore`]: rooms, their listed participants and the first answers to repeatable
//! creates on PostgreSQL, behind signaling's [`RoomStore`] port (the SQLite tables of
//! `store/rooms.rs`). Each method is one transaction. Two nodes racing the same
//! `Repeatability-Request-Id` serialise on a transaction-scoped advisory lock on it; two
//! patches of one room serialise on its row lock, so the participant cap holds across nodes.
//! Positions are `BIGSERIAL`s: a row committed late with a lower position than a page's
//! cursor is missed by that paging pass (SQLite's single writer cannot do that; the SDK pages
//! within seconds, and a room created during it shows on the next listing).

use crate::database::Database;
use crate::identity::{pg, store_error};
use async_trait::async_trait;
use palaver_core::RoomRole;
use palaver_signaling::domain::rooms::{MAX_PARTICIPANTS, ParticipantChange, Room};
use palaver_signaling::store::StoreError;
use palaver_signaling::store::room_store::{RoomRepeat, RoomStore};
use palaver_signaling::store::rooms::{Created, REPEATABILITY_WINDOW_US, StoredAnswer, WriteRefusal};
use tokio_postgres::{GenericClient, Row};

/// Append-only migration steps of the `rooms` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE rooms (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    created_at_us BIGINT NOT NULL,
    valid_from_us BIGINT NOT NULL,
    valid_until_us BIGINT NOT NULL,
    pstn_dial_out_enabled BOOLEAN NOT NULL
);
CREATE TABLE room_participants (
    seq BIGSERIAL PRIMARY KEY,
    room_seq BIGINT NOT NULL REFERENCES rooms(seq) ON DELETE CASCADE,
    raw_id TEXT NOT NULL,
    role TEXT NOT NULL,
    UNIQUE (room_seq, raw_id)
);
CREATE TABLE room_repeatability (
    request_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX room_repeatability_age ON room_repeatability (created_at_us);
"];

const ROOM_COLUMNS: &str = "seq, id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled";

/// The rooms store of a cluster.
#[derive(Clone, Debug)]
pub struct PgRoomStore {
    db: Database,
}

impl PgRoomStore {
    /// The store on `db`, after applying its migrations.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        db.migrate("rooms", MIGRATIONS).map_err(store_error)?;
        Ok(Self { db: db.clone() })
    }
}

fn row_to_room(r: &Row) -> (i64, Room) {
    (
        r.get(0),
        Room {
            id: r.get(1),
            created_at_us: r.get(2),
            valid_from_us: r.get(3),
            valid_until_us: r.get(4),
            pstn_dial_out_enabled: r.get(5),
        },
    )
}

async fn find<C: GenericClient + Sync>(c: &C, id: &str, lock: bool) -> Result<Option<(i64, Room)>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row =
        c.query_opt(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1{lock}"), &[&id]).await.map_err(pg)?;
    Ok(row.as_ref().map(row_to_room))
}

async fn apply_changes<C: GenericClient + Sync>(
    c: &C,
    room_seq: i64,
    changes: &[ParticipantChange],
) -> Result<(), StoreError> {
    for change in changes {
        match change {
            ParticipantChange::Upsert { raw_id, role } => c
                .execute(
                    "INSERT INTO room_participants (room_seq, raw_id, role) VALUES ($1, $2, $3)
                     ON CONFLICT (room_seq, raw_id) DO UPDATE SET role = excluded.role",
                    &[&room_seq, raw_id, &role.as_str()],
                )
                .await
                .map_err(pg)?,
            ParticipantChange::Remove { raw_id } => c
                .execute("DELETE FROM room_participants WHERE room_seq = $1 AND raw_id = $2", &[&room_seq, raw_id])
                .await
                .map_err(pg)?,
        };
    }
    Ok(())
}

fn role(s: &str) -> RoomRole {
    RoomRole::parse(s).unwrap_or_default()
}

async fn client(pool: &deadpool_postgres::Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| store_error(e.into()))
}

#[async_trait]
impl RoomStore for PgRoomStore {
    async fn create_room(
        &self,
        room: &Room,
        participants: &[ParticipantChange],
        repeat: Option<&RoomRepeat>,
        answer_body: &str,
    ) -> Result<Created, StoreError> {
        let (room, participants, repeat, body) =
            (room.clone(), participants.to_vec(), repeat.cloned(), answer_body.to_string());
        self.db
            .run(move |pool| async move {
                let mut client = client(&pool).await?;
                let tx = client.transaction().await.map_err(pg)?;
                let cutoff = room.created_at_us.saturating_sub(REPEATABILITY_WINDOW_US);
                tx.execute("DELETE FROM room_repeatability WHERE created_at_us < $1", &[&cutoff]).await.map_err(pg)?;
                if let Some(rep) = &repeat {
                    tx.execute("SELECT pg_advisory_xact_lock(hashtext('room ' || $1))", &[&rep.request_id])
                        .await
                        .map_err(pg)?;
                    if let Some(row) = tx
                        .query_opt(
                            "SELECT fingerprint, status, body FROM room_repeatability WHERE request_id = $1",
                            &[&rep.request_id],
                        )
                        .await
                        .map_err(pg)?
                    {
                        let status: i32 = row.get(1);
                        let answer = StoredAnswer { fingerprint: row.get(0), status: status as u16, body: row.get(2) };
                        return Ok(Created::Replay(answer));
                    }
                }
                let seq: i64 = tx
                    .query_one(
                        "INSERT INTO rooms (id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled)
                         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
                        &[
                            &room.id,
                            &room.created_at_us,
                            &room.valid_from_us,
                            &room.valid_until_us,
                            &room.pstn_dial_out_enabled,
                        ],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                apply_changes(&*tx, seq, &participants).await?;
                if let Some(rep) = &repeat {
                    tx.execute(
                        "INSERT INTO room_repeatability (request_id, fingerprint, status, body, created_at_us)
                         VALUES ($1, $2, 201, $3, $4)",
                        &[&rep.request_id, &rep.fingerprint, &body, &room.created_at_us],
                    )
                    .await
                    .map_err(pg)?;
                }
                tx.commit().await.map_err(pg)?;
                Ok(Created::New)
            })
            .await
            .map_err(store_error)?
    }

    async fn list_rooms(&self, after: i64, limit: usize) -> Result<Vec<(i64, Room)>, StoreError> {
        self.db
            .run(move |pool| async move {
                let rows = client(&pool)
                    .await?
                    .query(
                        &format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE seq > $1 ORDER BY seq LIMIT $2"),
                        &[&after, &(limit as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(row_to_room).collect())
            })
            .await
            .map_err(store_error)?
    }

    async fn find_room(&self, id: &str) -> Result<Option<(i64, Room)>, StoreError> {
        let id = id.to_string();
        self.db
            .run(move |pool| async move { find(&**client(&pool).await?, &id, false).await })
            .await
            .map_err(store_error)?
    }

    async fn room_access(&self, id: &str, raw_id: &str) -> Result<Option<(Room, Option<RoomRole>)>, StoreError> {
        let (id, who) = (id.to_string(), raw_id.to_string());
        self.db
            .run(move |pool| async move {
                let row = client(&pool)
                    .await?
                    .query_opt(
                        "SELECT r.seq, r.id, r.created_at_us, r.valid_from_us, r.valid_until_us,
                                r.pstn_dial_out_enabled, p.role
                         FROM rooms r LEFT JOIN room_participants p ON p.room_seq = r.seq AND p.raw_id = $2
                         WHERE r.id = $1",
                        &[&id, &who],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.map(|r| (row_to_room(&r).1, r.get::<_, Option<String>>(6).as_deref().map(role))))
            })
            .await
            .map_err(store_error)?
    }

    async fn update_room(&self, room: &Room) -> Result<Result<(), WriteRefusal>, StoreError> {
        let room = room.clone();
        self.db
            .run(move |pool| async move {
                let n = client(&pool)
                    .await?
                    .execute(
                        "UPDATE rooms SET valid_from_us = $2, valid_until_us = $3, pstn_dial_out_enabled = $4
                         WHERE id = $1",
                        &[&room.id, &room.valid_from_us, &room.valid_until_us, &room.pstn_dial_out_enabled],
                    )
                    .await
                    .map_err(pg)?;
                Ok(if n == 1 { Ok(()) } else { Err(WriteRefusal::RoomNotFound) })
            })
            .await
            .map_err(store_error)?
    }

    async fn delete_room(&self, id: &str) -> Result<Result<(), WriteRefusal>, StoreError> {
        let id = id.to_string();
        self.db
            .run(move |pool| async move {
                let n = client(&pool).await?.execute("DELETE FROM rooms WHERE id = $1", &[&id]).await.map_err(pg)?;
                Ok(if n == 1 { Ok(()) } else { Err(WriteRefusal::RoomNotFound) })
            })
            .await
            .map_err(store_error)?
    }

    async fn list_participants(
        &self,
        room_seq: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, RoomRole)>, StoreError> {
        self.db
            .run(move |pool| async move {
                let rows = client(&pool)
                    .await?
                    .query(
                        "SELECT seq, raw_id, role FROM room_participants WHERE room_seq = $1 AND seq > $2
                         ORDER BY seq LIMIT $3",
                        &[&room_seq, &after, &(limit as i64)],
                    )
                    .await
                    .map_err(pg)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1), role(r.get(2)))).collect())
            })
            .await
            .map_err(store_error)?
    }

    async fn patch_participants(
        &self,
        room_id: &str,
        changes: &[ParticipantChange],
    ) -> Result<Result<(), WriteRefusal>, StoreError> {
        let (id, changes) = (room_id.to_string(), changes.to_vec());
        self.db
            .run(move |pool| async move {
                let mut client = client(&pool).await?;
                let tx = client.transaction().await.map_err(pg)?;
                // The room's row lock serialises patches of one room, so the cap holds.
                let Some((seq, _)) = find(&*tx, &id, true).await? else {
                    return Ok(Err(WriteRefusal::RoomNotFound));
                };
                apply_changes(&*tx, seq, &changes).await?;
                let count: i64 = tx
                    .query_one("SELECT COUNT(*) FROM room_participants WHERE room_seq = $1", &[&seq])
                    .await
                    .map_err(pg)?
                    .get(0);
                if count as usize > MAX_PARTICIPANTS {
                    return Ok(Err(WriteRefusal::TooManyParticipants { count: count as usize }));
                }
                tx.commit().await.map_err(pg)?;
                Ok(Ok(()))
            })
            .await
            .map_err(store_error)?
    }
}

#[cfg(test)]
mod tests;
