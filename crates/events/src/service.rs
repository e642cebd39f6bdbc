//! [`Events`]: the events service. It implements the core [`EventPublisher`] port (writing
//! every accepted event to the outbox before returning), administers subscriptions (the
//! TOML ones synced at start, run-time ones through the REST API), answers manual
//! validation, and publishes the callback signing key. [`crate::worker`] delivers.

use crate::config::{EventSchema, EventsConfig, InvalidSubscription, SubscriptionConfig, check_endpoint};
use crate::envelope::{self, StampedEvent};
use crate::signer::{CallbackSigner, SignerError, generate_key_pem};
use crate::store::{EventStorage, EventStore, ItemKind, NewItem, Origin, OutboxRow, StoreError};
use crate::subscription::{SubscriptionRequest, SubscriptionView, matches};
use crate::telemetry::{EventsTelemetry, NoEventsTelemetry};
use palaver_core::{CallbackEvent, EventError, EventFuture, EventPublisher, SystemEvent};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Milliseconds since the Unix epoch (a test may run a virtual clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// The path of the JWKS with the callback signing key.
pub const JWKS_PATH: &str = "/calling/keys";
/// The OpenID configuration (ACS publishes its own at this path).
pub const OPENID_CONFIGURATION_PATH: &str = "/calling/.well-known/acsopenidconfiguration";
/// The `WebHook-Request-Origin` of the CloudEvents handshake.
pub const WEBHOOK_REQUEST_ORIGIN: &str = "eventgrid.azure.net";

/// What the binary gives the service.
pub struct EventsOptions {
    pub config: EventsConfig,
    /// The resource id: the `aud` of callback tokens and the default topic's last segment.
    /// The binary learns it only once the control plane's state is open: it may set it later
    /// with [`Events::set_resource_id`], before anything is published.
    pub resource_id: String,
    pub telemetry: Arc<dyn EventsTelemetry>,
    pub clock: Clock,
}

impl EventsOptions {
    pub fn new(config: EventsConfig, resource_id: impl Into<String>) -> Self {
        Self { config, resource_id: resource_id.into(), telemetry: Arc::new(NoEventsTelemetry), clock: system_clock() }
    }
}

/// Who this server is, as events name it.
#[derive(Debug, Clone)]
struct Identity {
    resource_id: String,
    /// The server's public base URL (validation URLs, `iss`, `jwks_uri`); set once bound.
    public_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsStartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error("events.subscriptions `{name}`: {source}")]
    Subscription { name: String, source: InvalidSubscription },
    #[error("events.subscriptions: `{0}` is configured twice")]
    Duplicate(String),
}

/// Why an administrative request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Invalid(#[from] InvalidSubscription),
    #[error("subscription `{0}` comes from the configuration file and cannot be changed at run time")]
    ReadOnly(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The events service; cheap to clone.
#[derive(Clone)]
pub struct Events(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    store: Mutex<Box<dyn EventStorage>>,
    pub(crate) config: EventsConfig,
    identity: RwLock<Identity>,
    pub(crate) signer: CallbackSigner,
    pub(crate) telemetry: Arc<dyn EventsTelemetry>,
    pub(crate) clock: Clock,
    pub(crate) wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("topic", &self.topic()).finish_non_exhaustive()
    }
}

impl Events {
    /// Open (or create) the events database at `path`.
    pub fn open(path: &Path, options: EventsOptions) -> Result<Self, EventsStartError> {
        Self::open_with_store(Box::new(EventStore::open(path)?), options)
    }

    pub fn open_in_memory(options: EventsOptions) -> Result<Self, EventsStartError> {
        Self::open_with_store(Box::new(EventStore::open_in_memory()?), options)
    }

    /// On another store (PostgreSQL in cluster mode, `palaver-cluster`).
    pub fn open_with_store(mut store: Box<dyn EventStorage>, options: EventsOptions) -> Result<Self, EventsStartError> {
        let now = (options.clock)();
        sync_configured(store.as_mut(), &options.config.subscriptions, now)?;
        let pem = match store.setting("callback_signing_key")? {
            Some(pem) => pem,
            None => store.setting_or_insert("callback_signing_key", &generate_key_pem()?)?,
        };
        let signer = CallbackSigner::from_pem(&pem)?;
        Ok(Self(Arc::new(Inner {
            store: Mutex::new(store),
            config: options.config,
            identity: RwLock::new(Identity {
                resource_id: options.resource_id,
                public_url: "https://localhost".into(),
            }),
            signer,
            telemetry: options.telemetry,
            clock: options.clock,
            wake: tokio::sync::Notify::new(),
        })))
    }

    fn identity(&self) -> Identity {
        self.0.identity.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The server's base URL, once its listener is bound.
    pub fn set_public_url(&self, url: &str) {
        self.0.identity.write().unwrap_or_else(|p| p.into_inner()).public_url = url.trim_end_matches('/').to_string();
    }

    /// The resource id, once the control plane has resolved it.
    pub fn set_resource_id(&self, resource_id: &str) {
        self.0.identity.write().unwrap_or_else(|p| p.into_inner()).resource_id = resource_id.to_string();
    }

    pub fn public_url(&self) -> String {
        self.identity().public_url
    }

    /// `aud` of callback tokens.
    pub fn audience(&self) -> String {
        self.identity().resource_id
    }

    /// `iss` of callback tokens.
    pub fn issuer(&self) -> String {
        self.0.config.issuer.clone().unwrap_or_else(|| self.public_url())
    }

    /// `topic` of Event Grid events, `source` of CloudEvents.
    pub fn topic(&self) -> String {
        match &self.0.config.topic {
            Some(t) => t.clone(),
            None => format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/palaver/providers/\
                 Microsoft.Communication/communicationServices/{}",
                self.identity().resource_id
            ),
        }
    }

    pub(crate) fn now(&self) -> i64 {
        (self.0.clock)()
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Box<dyn EventStorage>> {
        self.0.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accept a system event: one outbox row per matching subscription, committed before this
    /// returns. Subscriptions not yet validated get their rows too (sent once validated).
    pub fn publish_now(&self, event: SystemEvent) -> Result<(), EventError> {
        let now = self.now();
        let stamped = StampedEvent::new(event.event_type, event.subject, event.data, now);
        let mut store = self.store();
        let subscriptions = store.subscriptions().map_err(unavailable)?;
        let topic = self.topic();
        let items: Vec<NewItem> = subscriptions
            .iter()
            .filter(|s| matches(&s.config, &stamped.event_type, &stamped.subject))
            .map(|s| {
                let (content_type, payload) = match s.config.schema {
                    EventSchema::EventGridSchema => {
                        ("application/json", format!("[{}]", envelope::event_grid(&topic, &stamped)))
                    }
                    EventSchema::CloudEventSchemaV10 => (
                        "application/cloudevents+json; charset=utf-8",
                        envelope::cloud_event(&topic, &stamped).to_string(),
                    ),
                };
                NewItem {
                    kind: ItemKind::System,
                    subscription: Some(s.config.name.clone()),
                    stream: None,
                    endpoint: s.config.endpoint.clone(),
                    content_type: content_type.into(),
                    event_id: stamped.id.clone(),
                    event_type: stamped.event_type.clone(),
                    payload,
                }
            })
            .collect();
        if items.is_empty() {
            tracing::debug!(event_type = %stamped.event_type, subject = %stamped.subject, "no subscription matches");
            return Ok(());
        }
        store.enqueue(&items, now).map_err(unavailable)?;
        drop(store);
        tracing::debug!(event_type = %stamped.event_type, id = %stamped.id, subscriptions = items.len(), "event queued");
        self.0.wake.notify_one();
        Ok(())
    }

    /// Accept a callback: one outbox row, committed before this returns.
    pub fn callback_now(&self, event: CallbackEvent) -> Result<(), EventError> {
        check_endpoint(&event.callback_uri).map_err(EventError::Invalid)?;
        if event.call_connection_id.is_empty() {
            return Err(EventError::Invalid("a callback needs its call connection id".into()));
        }
        let now = self.now();
        let stamped = StampedEvent::new(event.event_type, String::new(), event.data, now);
        let payload = envelope::callback_body(&event.call_connection_id, &stamped).to_string();
        let item = NewItem {
            kind: ItemKind::Callback,
            subscription: None,
            stream: Some(event.call_connection_id.clone()),
            endpoint: event.callback_uri,
            content_type: "application/json".into(),
            event_id: stamped.id.clone(),
            event_type: stamped.event_type.clone(),
            payload,
        };
        self.store().enqueue(std::slice::from_ref(&item), now).map_err(unavailable)?;
        tracing::debug!(event_type = %item.event_type, call_connection_id = %event.call_connection_id, "callback queued");
        self.0.wake.notify_one();
        Ok(())
    }

    /// Every subscription with its delivery counts.
    pub fn subscriptions(&self) -> Result<Vec<SubscriptionView>, StoreError> {
        let store = self.store();
        store
            .subscriptions()?
            .into_iter()
            .map(|s| {
                let counts = store.counts(Some(&s.config.name))?;
                Ok(SubscriptionView::new(s, counts))
            })
            .collect()
    }

    pub fn subscription(&self, name: &str) -> Result<Option<SubscriptionView>, StoreError> {
        let store = self.store();
        match store.subscription(name)? {
            Some(s) => Ok(Some(SubscriptionView::new(s, store.counts(Some(name))?))),
            None => Ok(None),
        }
    }

    /// Create or replace a run-time subscription; `true` when it was created.
    pub fn put_subscription(
        &self,
        name: &str,
        request: SubscriptionRequest,
    ) -> Result<(SubscriptionView, bool), AdminError> {
        let config = request.into_config(name)?;
        let now = self.now();
        let mut store = self.store();
        let existing = store.subscription(name)?;
        if existing.as_ref().is_some_and(|s| s.origin == Origin::Config) {
            return Err(AdminError::ReadOnly(name.into()));
        }
        let stored = store.upsert_subscription(&config, Origin::Api, now)?;
        let counts = store.counts(Some(name))?;
        drop(store);
        tracing::info!(subscription = name, endpoint = %config.endpoint, "event subscription saved");
        self.0.wake.notify_one();
        Ok((SubscriptionView::new(stored, counts), existing.is_none()))
    }

    /// Delete a run-time subscription and its undelivered events; `false` when unknown.
    pub fn delete_subscription(&self, name: &str) -> Result<bool, AdminError> {
        let mut store = self.store();
        match store.subscription(name)? {
            None => Ok(false),
            Some(s) if s.origin == Origin::Config => Err(AdminError::ReadOnly(name.into())),
            Some(_) => Ok(store.delete_subscription(name)?),
        }
    }

    /// The validation URL was visited with `code`: validate the subscription if it matches.
    pub fn validate_manually(&self, name: &str, code: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let mut store = self.store();
        let Some(s) = store.subscription(name)? else { return Ok(false) };
        if s.validation_code != code {
            return Ok(false);
        }
        let applied = store.record_validation(name, code, Ok(now))?;
        drop(store);
        tracing::info!(subscription = name, "event subscription validated through its validation URL");
        self.0.wake.notify_one();
        Ok(applied)
    }

    /// The URL Event Grid puts in `validationUrl`.
    pub fn validation_url(&self, name: &str, code: &str) -> String {
        format!("{}/events/subscriptions/{name}/validate?code={code}", self.public_url())
    }

    /// Dead-lettered deliveries, newest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.store().dead_letters(limit)
    }

    /// The callback signing key's JWKS.
    pub fn jwks(&self) -> serde_json::Value {
        self.0.signer.jwks()
    }

    /// The OpenID configuration naming the issuer and the JWKS.
    pub fn openid_configuration(&self) -> serde_json::Value {
        CallbackSigner::openid_configuration(&self.issuer(), &format!("{}{JWKS_PATH}", self.public_url()))
    }
}

fn unavailable(e: StoreError) -> EventError {
    tracing::error!(error = %e, "cannot write the events outbox");
    EventError::Unavailable(e.to_string())
}

/// Make the stored configured subscriptions match the file: new and changed ones upserted
/// (a changed one validates again), removed ones deleted.
fn sync_configured(
    store: &mut dyn EventStorage,
    configured: &[SubscriptionConfig],
    now: i64,
) -> Result<(), EventsStartError> {
    let mut seen = std::collections::HashSet::new();
    for config in configured {
        config.validate().map_err(|source| EventsStartError::Subscription { name: config.name.clone(), source })?;
        if !seen.insert(config.name.clone()) {
            return Err(EventsStartError::Duplicate(config.name.clone()));
        }
        store.upsert_subscription(config, Origin::Config, now)?;
    }
    for stored in store.subscriptions()? {
        if stored.origin == Origin::Config && !seen.contains(&stored.config.name) {
            store.delete_subscription(&stored.config.name)?;
            tracing::info!(subscription = %stored.config.name, "configured event subscription removed");
        }
    }
    Ok(())
}

impl EventPublisher for Events {
    // The store calls block (a hung PostgreSQL up to its query timeout): run them off the
    // async workers.
    fn publish(&self, event: SystemEvent) -> EventFuture<Result<(), EventError>> {
        let events = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || events.publish_now(event))
                .await
                .unwrap_or_else(|e| Err(EventError::Unavailable(format!("event publisher: {e}"))))
        })
    }
    fn callback(&self, event: CallbackEvent) -> EventFuture<Result<(), EventError>> {
        let events = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || events.callback_now(event))
                .await
                .unwrap_or_else(|e| Err(EventError::Unavailable(format!("event publisher: {e}"))))
        })
    }
}
