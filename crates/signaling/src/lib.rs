//! Control plane: ACS-compatible REST (identity, rooms, chat, call automation), WebSocket
//! signaling, meeting/call/lobby state machines.
//!
//! Foundation: [`http`] (state, router, errors, extractors), [`auth`] (HMAC, access tokens,
//! revocation), [`store`] (SQLite). APIs: [`identity`].

pub mod api;
pub mod auth;
pub mod calls;
pub mod conversation;
pub mod directory;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod meetings_api;
pub mod rooms;
pub mod store;
pub mod usage_api;
pub mod webapp;
