//! Sans-IO conversation domain: meetings (organizer, roles, policies, lobby), group
//! calls by group id, rooms joined over the socket; the participant model (display
//! names, billing types), roster snapshot + deltas, recording/transcription state,
//! reconnect grace and token-expiry deadlines, and the authorization matrix.
//!
//! Nothing here does I/O or reads a clock: the gateway feeds `(now_ms, input)` and
//! carries out the returned [`Output`]s.

pub mod authz;
mod carried;
mod commands;
mod machine;
pub mod participant;

#[cfg(test)]
mod tests;

pub use crate::domain::Refusal;
pub use authz::{Action, ActorView, authorize};
pub use carried::{CarriedConversation, CarriedParticipant};
pub use commands::{ServerCommand, apply_policy_update};
pub use machine::{
    Authority, Command, Conversation, ConversationConfig, ConversationSetup, Input, JoinRequest, MeetingSetup, Output,
};
pub use participant::{JoinIdentity, external_display_name};
