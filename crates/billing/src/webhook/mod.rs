//! Call-event webhooks: events derived from ledger changes, queued in the ledger's
//! durable outbox in the same transaction, and delivered at least once with retries.

pub mod delivery;
pub mod events;

pub use delivery::{OUTBOX_LEASE, WebhookConfig, WebhookDelivery, spawn_webhook_delivery};
pub use events::CallEvent;
