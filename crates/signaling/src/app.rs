//! `AppState`: everything a request handler may need, cheap to clone (one `Arc`), built once
//! by [`AppState::open`] from the configuration, the store and the [`AppParts`] the binary
//! (the composition root) plugs in: billing, telemetry and the media plane. Nothing is wired
//! in later.
//!
//! Components add a field to [`AppStateInner`] and initialise it in [`AppState::open`].

use crate::auth::directory::{Directory, DirectoryConfig};
use crate::auth::{Authenticator, HmacKeys, RevocationList, TokenService};
use crate::domain::meetings::Meetings;
use crate::gateway::{Gateway, GatewayParts, LoggingSessionObserver, MediaPlane, MediaUnavailable};
use crate::store::identity_store::IdentityStore;
use crate::store::meetings::MeetingDirectory;
use crate::store::{Store, StoreError};
use base64::Engine;
use palaver_core::{ChatTelemetry, EventPublisher, NoEventPublisher, NoTelemetry, SessionObserver, SignalingTelemetry};
use std::sync::Arc;

/// Control-plane settings the binary passes in (from TOML / env / flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingConfig {
    /// Resource id embedded in identities (`8:acs:<resourceId>_<guid>`); generated and
    /// persisted on first start when absent.
    pub resource_id: Option<String>,
    /// Base64 access key for HMAC authentication; generated and persisted when absent.
    pub access_key: Option<String>,
    /// A second accepted key (for rotation).
    pub secondary_access_key: Option<String>,
    /// `resourceLocation` claim of access tokens.
    pub resource_location: Option<String>,
    /// Directory tenants and the development IdP.
    pub directory: DirectoryConfig,
    /// User-to-user calls: ring timeout, phone targets, call queues (`[signaling.calls]`).
    pub calls: crate::domain::calls::CallsConfig,
    /// WebSocket gateway timing and limits: reconnect grace, heartbeats, idle timeout, rate
    /// limit, per-socket queue (`[signaling.gateway]`).
    pub gateway: crate::gateway::GatewayConfig,
    /// Where Call Automation recordings are written (`<data_dir>/recordings`; set by the
    /// binary, not read from TOML): finished recordings are found there after a restart.
    #[serde(skip)]
    pub recordings_dir: Option<std::path::PathBuf>,
}

/// The resource this server acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub resource_id: String,
    /// Primary access key, base64 (goes into the connection string).
    pub access_key: String,
    pub location: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What the composition root plugs into the control plane.
pub struct AppParts {
    /// The billing meter (default: log sessions).
    pub sessions: Arc<dyn SessionObserver>,
    /// Operator counts (default: none).
    pub telemetry: Arc<dyn SignalingTelemetry>,
    /// The media plane (default: every offer answered `MediaUnavailable`).
    pub media: Arc<dyn MediaPlane>,
    /// Chat counters (default: none; the binary plugs in its Prometheus registry).
    pub chat_telemetry: Option<Arc<dyn ChatTelemetry>>,
    /// Chat usage billing: one usage record per message sent (default: none).
    pub chat_usage: Option<Arc<dyn palaver_core::ChatUsageObserver>>,
    /// Event Grid system events and Call Automation callbacks (default: dropped).
    pub events: Arc<dyn EventPublisher>,
    /// Identities, revocation marks and the generated settings (default: the SQLite store;
    /// PostgreSQL in cluster mode, `palaver-cluster`).
    pub identity_store: Option<Arc<dyn IdentityStore>>,
    /// Rooms and meeting definitions (default: the SQLite store; PostgreSQL in cluster mode).
    pub room_store: Option<Arc<dyn crate::store::room_store::RoomStore>>,
    pub meeting_store: Option<Arc<dyn crate::store::meetings::MeetingStore>>,
    /// Chat's transactions (default: the SQLite store; PostgreSQL in cluster mode).
    pub chat_backend: Option<Arc<dyn crate::store::chat_store::ChatBackend>>,
    /// Directory users' tenant bindings (default: the SQLite store; PostgreSQL in cluster mode).
    pub tenant_bindings: Option<Arc<dyn crate::auth::directory::tenant_binding::TenantBindingStore>>,
}

impl Default for AppParts {
    fn default() -> Self {
        Self {
            sessions: Arc::new(LoggingSessionObserver),
            telemetry: Arc::new(NoTelemetry),
            media: Arc::new(MediaUnavailable),
            chat_telemetry: None,
            chat_usage: None,
            events: Arc::new(NoEventPublisher),
            identity_store: None,
            room_store: None,
            meeting_store: None,
            chat_backend: None,
            tenant_bindings: None,
        }
    }
}

/// The shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

pub struct AppStateInner {
    pub config: SignalingConfig,
    pub resource: ResourceInfo,
    pub store: Store,
    /// Identities, revocation marks, resource id and keys (the SQLite store, or PostgreSQL).
    pub identity_store: Arc<dyn IdentityStore>,
    pub hmac_keys: HmacKeys,
    /// Access tokens, revocation marks and directory tenants: the one check of every door.
    pub auth: Authenticator,
    pub rooms: crate::domain::rooms::RoomDirectory,
    pub gateway: Gateway,
    /// The Chat API's service (threads, messages, participants; issue #14).
    pub chat: crate::domain::chat::ChatService,
    /// The meetings domain (definitions, limits, joins by code).
    pub meetings: Meetings,
    /// Operator counts: REST errors by code (the gateway counts the rest).
    pub telemetry: Arc<dyn SignalingTelemetry>,
    /// Event Grid system events and Call Automation callbacks.
    pub events: Arc<dyn EventPublisher>,
}

impl std::fmt::Debug for AppStateInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateInner")
            .field("resource", &self.resource)
            .field("store", &self.store)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

const DEFAULT_LOCATION: &str = "local";

impl AppState {
    /// Build the state: resolve (or generate and persist) the resource id, access key and
    /// token signing key, load revocation marks, and build the gateway around `parts`.
    pub fn open(config: SignalingConfig, store: Store, parts: AppParts) -> Result<Self, StartupError> {
        let identity_store: Arc<dyn IdentityStore> = parts.identity_store.unwrap_or_else(|| Arc::new(store.clone()));
        let resource_id = match &config.resource_id {
            Some(id) => {
                validate_resource_id(id)?;
                id.clone()
            }
            None => identity_store.setting_or_create("resource_id", &mut || uuid::Uuid::new_v4().to_string())?,
        };
        let access_key = match &config.access_key {
            Some(k) => k.clone(),
            None => identity_store.setting_or_create("access_key", &mut generate_access_key)?,
        };
        let keys = std::iter::once(access_key.as_str()).chain(config.secondary_access_key.as_deref());
        let hmac_keys = HmacKeys::from_base64(keys).map_err(|e| StartupError::Config(e.to_string()))?;
        let location = config.resource_location.clone().unwrap_or_else(|| DEFAULT_LOCATION.to_string());
        let seed = identity_store.setting_or_create("token_signing_seed", &mut TokenService::generate_seed_base64)?;
        let tokens = TokenService::from_seed_base64(&seed, &resource_id, &location)
            .map_err(|e| StartupError::Config(format!("stored token signing key: {e}")))?;
        let revocations = RevocationList::load(identity_store.as_ref())?;
        let bindings = match parts.tenant_bindings {
            Some(other) => crate::auth::directory::TenantBindings::with_store(other)?,
            None => crate::auth::directory::TenantBindings::open(&store)?,
        };
        let directory =
            Directory::open(&config.directory, identity_store.as_ref(), bindings).map_err(StartupError::Config)?;
        let resource = ResourceInfo { resource_id, access_key, location };
        let rooms = match parts.room_store {
            Some(other) => crate::domain::rooms::RoomDirectory::with_store(other),
            None => crate::domain::rooms::RoomDirectory::open(store.clone())?,
        };
        config.calls.validate().map_err(|e| StartupError::Config(e.to_string()))?;
        let chat = match parts.chat_backend {
            Some(backend) => {
                // Every node must read the others' paging tokens: the key is a shared setting.
                let page_key = identity_store.setting_or_create(
                    crate::domain::chat::service::PAGE_KEY_SETTING,
                    &mut TokenService::generate_seed_base64,
                )?;
                crate::domain::chat::ChatService::with_backend(backend, &page_key, parts.chat_telemetry)
            }
            None => crate::domain::chat::ChatService::open(store.clone(), parts.chat_telemetry)?,
        }
        .with_usage(parts.chat_usage);
        let meeting_directory = match parts.meeting_store {
            Some(other) => MeetingDirectory::with_store(other),
            None => MeetingDirectory::open(store.clone())?,
        };
        let meetings = Meetings::new(meeting_directory, chat.clone());
        let gateway = Gateway::new(GatewayParts {
            config: config.gateway,
            calls: config.calls.clone(),
            meetings: meetings.clone(),
            sessions: parts.sessions,
            telemetry: parts.telemetry.clone(),
            media: parts.media,
            chat: chat.clone(),
            events: parts.events.clone(),
        });
        // Call Automation: an `incomingCallContext` verifies after a restart (a persisted key)
        // and stays single use (the consumed ones are journaled beside the recordings).
        let context_secret = identity_store.setting_or_create("incoming_call_context_key", &mut generate_access_key)?;
        let journal = config.recordings_dir.as_deref().map(|d| d.with_file_name("incoming-call-contexts"));
        gateway
            .call_automation()
            .restore_contexts(&context_secret, journal.as_deref())
            .map_err(|e| StartupError::Config(format!("incomingCallContext journal: {e}")))?;
        Ok(Self(Arc::new(AppStateInner {
            config,
            resource,
            store,
            identity_store,
            hmac_keys,
            auth: Authenticator::new(tokens, revocations, directory),
            rooms,
            gateway,
            chat,
            meetings,
            telemetry: parts.telemetry,
            events: parts.events,
        })))
    }

    /// The identity rules over this state's parts.
    pub fn identities(&self) -> crate::domain::identity::Identities<'_> {
        crate::domain::identity::Identities {
            store: self.identity_store.as_ref(),
            resource_id: &self.resource.resource_id,
            tokens: &self.auth.tokens,
            revocations: &self.auth.revocations,
        }
    }

    /// Call Automation's live call connections (`connection(ccid)`, ...).
    pub fn call_automation(&self) -> &crate::gateway::CallAutomation {
        self.gateway.call_automation()
    }

    /// `endpoint=<base_url>/;accesskey=<key>` for SDKs.
    pub fn connection_string(&self, base_url: &str) -> String {
        format!("endpoint={}/;accesskey={}", base_url.trim_end_matches('/'), self.resource.access_key)
    }
}

/// 64 random bytes, base64 (the size of ACS access keys).
pub fn generate_access_key() -> String {
    let mut key = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn validate_resource_id(id: &str) -> Result<(), StartupError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StartupError::Config(format!("resource_id `{id}` must be 1-128 letters, digits or `-`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_resource_and_keys_are_stable_across_opens() {
        let store = Store::open_in_memory().unwrap();
        let a = AppState::open(SignalingConfig::default(), store.clone(), AppParts::default()).unwrap();
        let b = AppState::open(SignalingConfig::default(), store, AppParts::default()).unwrap();
        assert_eq!(a.resource, b.resource);
        assert_eq!(a.auth.tokens.kid(), b.auth.tokens.kid());
        assert!(a.connection_string("https://127.0.0.1:1/").starts_with("endpoint=https://127.0.0.1:1/;accesskey="));
    }

    #[test]
    fn configured_values_win_and_are_checked() {
        let store = Store::open_in_memory().unwrap();
        let cfg = SignalingConfig {
            resource_id: Some("my-res".into()),
            access_key: Some("c2VjcmV0".into()),
            ..Default::default()
        };
        let s = AppState::open(cfg, store.clone(), AppParts::default()).unwrap();
        assert_eq!(s.resource.resource_id, "my-res");
        let bad = SignalingConfig { resource_id: Some("has_underscore".into()), ..Default::default() };
        assert!(matches!(AppState::open(bad, store.clone(), AppParts::default()), Err(StartupError::Config(_))));
        let bad_key = SignalingConfig { access_key: Some("!!".into()), ..Default::default() };
        assert!(matches!(AppState::open(bad_key, store, AppParts::default()), Err(StartupError::Config(_))));
    }
}
