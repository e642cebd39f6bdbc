//! The control plane's rules, free of HTTP: what a request may do and what it changes.
//! Errors are domain enums or [`conversation::Refusal`]s (an `ErrorCode` and a message);
//! the `api` layer maps them to the ACS error shape. Time comes in as milliseconds since
//! the Unix epoch (`palaver_core::time`).
//!
//! - [`conversation`]: the sans-IO meeting/group-call/room machine (roster, roles, lobby).
//! - [`call_automation`]: Call Automation's call connections, contexts and their rules.
//! - [`calls`]: the sans-IO user-to-user call machine (ringing, queues, transfer).
//! - [`identity`]: communication identities and their access tokens.
//! - [`meetings`]: meeting definitions, who manages them, their limits, joins by code.
//! - [`rooms`]: ACS Rooms shapes and rules, and the join lookup the gateway uses.
//! - [`chat`]: chat threads, messages, participants: access rules, ids, sanitising, paging
//!   tokens, real-time events, and the transactional chat service.

pub mod call_automation;
pub mod calls;
pub mod chat;
pub mod conversation;
pub mod identity;
pub mod meetings;
mod refusal;
mod repeatability;
pub mod rooms;

pub use refusal::{Refusal, RefusalDetail};
pub use repeatability::Repeatability;
