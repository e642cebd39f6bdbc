//! palaver-events: Event Grid system events and Call Automation callbacks, delivered.
//!
//! The crate owns the implementation of core's events port ([`Events`] implements
//! `palaver_core::EventPublisher`): Event Grid subscriptions (from `[[events.subscriptions]]`
//! and a run-time REST API served by signaling), the validation handshakes (Event Grid's
//! `SubscriptionValidationEvent`, CloudEvents' `OPTIONS` abuse protection), the durable
//! outbox (SQLite; an event is committed before `publish`/`callback` returns), at-least-once
//! delivery with exponential backoff, a retry limit and dead letters, `aeg-*` headers, the
//! Event Grid and CloudEvents 1.0 envelopes, Call Automation callbacks (one CloudEvent per
//! POST, in order per call connection, each signed with an RS256 JWT whose key is published
//! as a JWKS), and the call lifecycle events derived from participant sessions
//! ([`lifecycle`]).
//!
//! - [`config`]: `[events]`.  - [`envelope`]: wire shapes.  - [`store`]: the database.
//! - [`schedule`]: backoff, pure.  - [`service`]: [`Events`].  - [`worker`]: delivery.
//! - [`signer`]: JWTs and the JWKS.  - [`subscription`]: filters, REST shapes.
//! - [`lifecycle`]: CallStarted/Ended/ParticipantAdded/Removed.  - [`telemetry`]: counts.

pub mod config;
pub mod envelope;
pub mod lifecycle;
pub mod schedule;
pub mod service;
pub mod signer;
pub mod store;
pub mod subscription;
pub mod telemetry;
pub mod worker;

pub use config::{DeliveryConfig, EventSchema, EventsConfig, SubscriptionConfig};
pub use service::{AdminError, Clock, Events, EventsOptions, EventsStartError, JWKS_PATH, OPENID_CONFIGURATION_PATH};
pub use subscription::{SubscriptionRequest, SubscriptionView};
pub use telemetry::{AttemptResult, DeliveryKind, EventsTelemetry, NoEventsTelemetry};
pub use worker::{DeliveryTask, spawn_delivery};
