//! Rooms tables in the shared SQLite store: rooms, their participants, and first answers
//! to `Repeatability-Request-Id` create requests. Every write runs in one transaction, so
//! a refused request writes nothing. Callers go through the [`super::room_store::RoomStore`]
//! port (whose conformance cases test these queries); PostgreSQL is its other backend.

use crate::domain::rooms::{MAX_PARTICIPANTS, ParticipantChange, Room};
use crate::store::{Store, StoreError};
use palaver_core::RoomRole;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Append-only migration steps of the `rooms` component.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE rooms (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created_at_us INTEGER NOT NULL,
        valid_from_us INTEGER NOT NULL,
        valid_until_us INTEGER NOT NULL,
        pstn_dial_out_enabled INTEGER NOT NULL
    );
    CREATE TABLE room_participants (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        room_seq INTEGER NOT NULL REFERENCES rooms(seq) ON DELETE CASCADE,
        raw_id TEXT NOT NULL,
        role TEXT NOT NULL,
        UNIQUE (room_seq, raw_id)
    );
    CREATE TABLE room_repeatability (
        request_id TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at_us INTEGER NOT NULL
    );"];

/// Apply the rooms migrations (idempotent).
pub fn migrate(store: &Store) -> Result<(), StoreError> {
    store.migrate("rooms", MIGRATIONS)
}

/// Why a write did not happen (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefusal {
    RoomNotFound,
    TooManyParticipants { count: usize },
}

fn row_to_room(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Room)> {
    Ok((
        r.get(0)?,
        Room {
            id: r.get(1)?,
            created_at_us: r.get(2)?,
            valid_from_us: r.get(3)?,
            valid_until_us: r.get(4)?,
            pstn_dial_out_enabled: r.get::<_, i64>(5)? != 0,
        },
    ))
}

const ROOM_COLUMNS: &str = "seq, id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled";

/// The room with `id` and its internal sequence number.
pub fn find_room(conn: &Connection, id: &str) -> rusqlite::Result<Option<(i64, Room)>> {
    conn.query_row(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = ?1"), [id], row_to_room).optional()
}

/// Rooms after position `after`, oldest first, at most `limit`.
pub fn list_rooms(conn: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<(i64, Room)>> {
    let mut stmt = conn.prepare(&format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
    stmt.query_map(params![after, limit as i64], row_to_room)?.collect()
}

/// Participants of room `room_seq` after position `after`, in the order they were added.
pub fn list_participants(
    conn: &Connection,
    room_seq: i64,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, String, RoomRole)>> {
    let mut stmt = conn.prepare(
        "SELECT seq, raw_id, role FROM room_participants WHERE room_seq = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    stmt.query_map(params![room_seq, after, limit as i64], |r| {
        let role: String = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, RoomRole::parse(&role).unwrap_or_default()))
    })?
    .collect()
}

/// The role of `raw_id` in room `room_seq`, if listed.
pub fn participant_role(conn: &Connection, room_seq: i64, raw_id: &str) -> rusqlite::Result<Option<RoomRole>> {
    conn.query_row(
        "SELECT role FROM room_participants WHERE room_seq = ?1 AND raw_id = ?2",
        params![room_seq, raw_id],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map(|role| role.map(|r| RoomRole::parse(&r).unwrap_or_default()))
}

fn count_participants(tx: &Transaction<'_>, room_seq: i64) -> rusqlite::Result<usize> {
    tx.query_row("SELECT COUNT(*) FROM room_participants WHERE room_seq = ?1", [room_seq], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
}

fn apply_changes(tx: &Transaction<'_>, room_seq: i64, changes: &[ParticipantChange]) -> rusqlite::Result<()> {
    for change in changes {
        match change {
            ParticipantChange::Upsert { raw_id, role } => {
                tx.execute(
                    "INSERT INTO room_participants (room_seq, raw_id, role) VALUES (?1, ?2, ?3)
                     ON CONFLICT (room_seq, raw_id) DO UPDATE SET role = excluded.role",
                    params![room_seq, raw_id, role.as_str()],
                )?;
            }
            ParticipantChange::Remove { raw_id } => {
                tx.execute(
                    "DELETE FROM room_participants WHERE room_seq = ?1 AND raw_id = ?2",
                    params![room_seq, raw_id],
                )?;
            }
        }
    }
    Ok(())
}

/// A stored first answer to a repeatable create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

pub fn find_answer(conn: &Connection, request_id: &str) -> rusqlite::Result<Option<StoredAnswer>> {
    conn.query_row(
        "SELECT fingerprint, status, body FROM room_repeatability WHERE request_id = ?1",
        [request_id],
        |r| Ok(StoredAnswer { fingerprint: r.get(0)?, status: r.get::<_, i64>(1)? as u16, body: r.get(2)? }),
    )
    .optional()
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The request id was answered before; here is that answer.
    Replay(StoredAnswer),
}

/// How long a `Repeatability-Request-Id` is remembered.
pub const REPEATABILITY_WINDOW_US: i64 = 24 * 3600 * 1_000_000;

/// Insert a room with its participants, and record the answer under the request id (if
/// any), in one transaction. `answer_body` renders the response for the new room.
/// Request ids older than [`REPEATABILITY_WINDOW_US`] are forgotten.
pub fn insert_room(
    conn: &mut Connection,
    room: &Room,
    participants: &[ParticipantChange],
    repeat: Option<(&str, &str)>,
    answer_body: &str,
) -> rusqlite::Result<Created> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM room_repeatability WHERE created_at_us < ?1",
        [room.created_at_us.saturating_sub(REPEATABILITY_WINDOW_US)],
    )?;
    if let Some((request_id, _)) = repeat
        && let Some(stored) = find_answer(&tx, request_id)?
    {
        return Ok(Created::Replay(stored));
    }
    tx.execute(
        "INSERT INTO rooms (id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            room.id,
            room.created_at_us,
            room.valid_from_us,
            room.valid_until_us,
            room.pstn_dial_out_enabled as i64
        ],
    )?;
    let seq = tx.last_insert_rowid();
    apply_changes(&tx, seq, participants)?;
    if let Some((request_id, fingerprint)) = repeat {
        tx.execute(
            "INSERT INTO room_repeatability (request_id, fingerprint, status, body, created_at_us) VALUES (?1, ?2, 201, ?3, ?4)",
            params![request_id, fingerprint, answer_body, room.created_at_us],
        )?;
    }
    tx.commit()?;
    Ok(Created::New)
}

/// Replace the window and dial-out flag of a room.
pub fn update_room(conn: &mut Connection, room: &Room) -> rusqlite::Result<Result<(), WriteRefusal>> {
    let n = conn.execute(
        "UPDATE rooms SET valid_from_us = ?2, valid_until_us = ?3, pstn_dial_out_enabled = ?4 WHERE id = ?1",
        params![room.id, room.valid_from_us, room.valid_until_us, room.pstn_dial_out_enabled as i64],
    )?;
    Ok(if n == 1 { Ok(()) } else { Err(WriteRefusal::RoomNotFound) })
}

/// Delete a room and its participants.
pub fn delete_room(conn: &mut Connection, id: &str) -> rusqlite::Result<Result<(), WriteRefusal>> {
    let n = conn.execute("DELETE FROM rooms WHERE id = ?1", [id])?;
    Ok(if n == 1 { Ok(()) } else { Err(WriteRefusal::RoomNotFound) })
}

/// Apply a participants merge patch; refused (rolled back) if the room would exceed
/// [`MAX_PARTICIPANTS`].
pub fn patch_participants(
    conn: &mut Connection,
    room_id: &str,
    changes: &[ParticipantChange],
) -> rusqlite::Result<Result<(), WriteRefusal>> {
    let tx = conn.transaction()?;
    let Some((seq, _)) = find_room(&tx, room_id)? else {
        return Ok(Err(WriteRefusal::RoomNotFound));
    };
    apply_changes(&tx, seq, changes)?;
    let count = count_participants(&tx, seq)?;
    if count > MAX_PARTICIPANTS {
        return Ok(Err(WriteRefusal::TooManyParticipants { count }));
    }
    tx.commit()?;
    Ok(Ok(()))
}
