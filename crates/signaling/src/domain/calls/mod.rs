//! 1:1 and group calls between users: ring, accept, decline, cancel, no-answer
//! timeout, busy, hang up, add participant, and transfer to a user or to a call queue
//! whose members are rung in turn.
//!
//! [`CallManager`] is a sans-IO state machine over all calls (busy is cross-call
//! state): the gateway feeds it [`Input`]s with a millisecond clock and carries out
//! the [`Output`]s. The API and WebSocket frames are described in `docs/signaling.md`.

mod config;
mod invite;
mod machine;
mod model;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

pub use config::{CallQueueConfig, CallsConfig, CallsConfigError};
pub(crate) use invite::{Target, resolve_target};
pub use machine::CallManager;
pub use model::{
    CallEndReason, CallError, CallEvent, CallSnapshot, CallState, Input, Output, Party, SERVER_LEG_ENDPOINT_PREFIX,
    is_server_leg,
};
