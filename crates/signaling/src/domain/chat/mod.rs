//! Chat rules (issue #14), sans-IO: who may do what on a thread ([`access`]), the shapes
//! and checks of threads, messages and participants ([`model`]), id allocation ([`ids`]),
//! HTML sanitising ([`sanitize`]), signed paging tokens ([`page_token`]), rate limits ([`rate_limit`]), the real-time
//! events a change produces ([`events`]) and the Event Grid events they announce ([`grid_events`]), each operation as one store transaction
//! ([`service`]) and meeting threads ([`meeting`]). Tables are in `crate::store::chat`, HTTP
//! in `crate::api::chat`.

pub mod access;
pub mod error;
pub mod events;
pub mod grid_events;
pub mod ids;
pub mod meeting;
pub mod model;
pub mod page_token;
pub mod rate_limit;
pub mod sanitize;
pub mod service;

pub use access::{ChatOperation, Membership};
pub use error::ChatError;
pub use events::ChatEvent;
pub use meeting::MeetingChatChange;
pub use model::{ChatMessage, ChatParticipant, ChatThread, MessageKind, ReadReceipt};
pub use page_token::{PageKeys, PageToken};
pub use service::{Caller, ChatService};

/// Most participants a thread may have (ACS service limit).
pub const MAX_PARTICIPANTS: usize = 250;
/// Most participants one create or add request may name (ACS service limit).
pub const MAX_BATCH: usize = 200;
/// Largest message: content plus metadata keys and values, in bytes (ACS: 28 KB).
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;
/// Largest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 250;
/// Largest page a list operation returns, and the default.
pub const MAX_PAGE_SIZE: usize = 200;
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Threads with more participants than this get no read receipts or typing notifications
/// delivered (ACS: "not supported for threads with more than 20 participants").
pub const MAX_RECEIPT_PARTICIPANTS: usize = 20;
