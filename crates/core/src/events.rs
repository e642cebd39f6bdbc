//! The events port: how the control plane raises Event Grid system events (`IncomingCall`,
//! `CallStarted`, chat events, `RecordingFileStatusUpdated`, ...) and Call Automation
//! mid-call callbacks (`CallConnected`, `PlayCompleted`, ...) without knowing how they are
//! stored, filtered, signed or delivered.
//!
//! Callers build only the event's `data` object in the ACS shape; the implementation
//! (`palaver-events`) wraps the envelope (ids, times, source, `specversion`, Event Grid
//! fields), writes it to a durable outbox before the returned future resolves `Ok`, and
//! delivers it at least once. [`NoEventPublisher`] accepts and drops everything: the
//! default until the composition root plugs in the real publisher.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: the return type of the port's methods (object safe).
pub type EventFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An Event Grid system event, delivered to every matching subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemEvent {
    /// e.g. `Microsoft.Communication.IncomingCall`.
    pub event_type: String,
    /// The Event Grid subject, e.g. `/caller/4:+1.../recipient/8:acs:...`.
    pub subject: String,
    /// The event's `data` object, in the ACS shape.
    pub data: serde_json::Value,
}

/// A Call Automation mid-call event, POSTed to the call connection's callback URI.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackEvent {
    /// Used verbatim (query kept).
    pub callback_uri: String,
    /// Events of one call connection are delivered in the order they were raised.
    pub call_connection_id: String,
    /// e.g. `Microsoft.Communication.CallConnected`.
    pub event_type: String,
    /// The ACS `data` object: `callConnectionId`, `serverCallId`, `correlationId`,
    /// `operationContext`, `resultInformation`, ...
    pub data: serde_json::Value,
}

/// Why an event could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event was malformed (e.g. an unusable callback URI).
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The outbox could not store it (it was not accepted; the caller may retry).
    #[error("event outbox unavailable: {0}")]
    Unavailable(String),
}

/// Raises system events and call callbacks.
pub trait EventPublisher: Send + Sync + 'static {
    /// Durable (in the outbox) when it resolves `Ok`; delivered at least once to every
    /// matching subscription.
    fn publish(&self, event: SystemEvent) -> EventFuture<Result<(), EventError>>;
    /// Durable when `Ok`; one CloudEvent per POST, in call order per `call_connection_id`.
    fn callback(&self, event: CallbackEvent) -> EventFuture<Result<(), EventError>>;
}

/// Accepts and drops every event: the default until the server wires `palaver-events`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEventPublisher;

impl EventPublisher for NoEventPublisher {
    fn publish(&self, _event: SystemEvent) -> EventFuture<Result<(), EventError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn callback(&self, _event: CallbackEvent) -> EventFuture<Result<(), EventError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
