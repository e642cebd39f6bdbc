//! The ACS Rooms REST API (api-versions 2023-06-14, 2024-04-15, 2025-03-13), HMAC-
//! authenticated and persisted in SQLite, and the room lookup the WebSocket gateway uses
//! to let participants join.
//!
//! `model` holds the wire shapes and rules (validity window, roles, ids, paging), `store`
//! the SQL, `routes` the thin HTTP handlers, `directory` the handle kept in `AppState`.
//! Reference: `docs/rooms.md`.

mod directory;
pub mod model;
mod routes;
pub mod store;

pub use directory::{RoomAccess, RoomDirectory};
pub use routes::{API_VERSIONS, routes};
#[cfg(test)]
mod tests;
