//! palaver-signaling, the control plane: the ACS-compatible REST APIs (identity, directory-user
//! token exchange, rooms), palaver's meetings and usage APIs, the WebSocket signaling gateway
//! with its conversation and call actors, and the reference web client's pages.
//!
//! Layers, each depending only on those listed after it:
//! - [`api`]: thin axum handlers: parse, authenticate, authorize, call the domain, answer in
//!   the ACS error shape ([`api::ApiError`]); the route table ([`api::router`]).
//! - [`gateway`]: the `/signaling/v1` socket endpoints, one actor per live conversation, the
//!   call actor, user presence, and the media-plane port ([`gateway::MediaPlane`]).
//! - [`domain`]: the rules, with no HTTP types: the conversation and call state machines
//!   (sans-IO, time passed in), identities, meetings, rooms.
//! - [`auth`]: HMAC requests, access tokens and their revocation, directory (IdP) tokens, and
//!   the one [`auth::Authenticator`] every door (REST, WebSocket, QUIC) uses.
//! - [`store`]: SQLite (one file, per-component migrations, one async door [`store::Store::call`]).
//!
//! [`app`] builds the shared [`app::AppState`] once from its parts; the binary is the
//! composition root. Billing and telemetry are reached through traits in `palaver_core`.

pub mod api;
pub mod app;
pub mod auth;
pub mod domain;
pub mod gateway;
pub mod store;
