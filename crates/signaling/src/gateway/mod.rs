//! The WebSocket signaling gateway: the `/signaling/v1` endpoint, the registry of live
//! conversations (one actor task each, owning its sans-IO [`Conversation`]), user
//! presence for call notifications, the call actor, and the seams to billing
//! ([`SessionObserver`]), telemetry ([`SignalingTelemetry`]) and media ([`MediaPlane`]), all
//! given once when the gateway is built ([`GatewayParts`]).

mod actor;
mod call_automation;
mod calls;
mod chat;
mod connection;
mod context_journal;
mod conversation_invites;
pub mod legs;
mod limits;
pub mod media;
pub mod phone;
mod phone_moves;
pub mod placement;
pub mod resume;
mod routes;
mod user_bus;

pub use actor::{ConversationHandle, LiveStatus};
pub use call_automation::{CallAutomation, Replay as CallAutomationReplay, call_automation_error};
pub use chat::CHAT_EVENT_FRAME;
pub use connection::{ConnIdentity, serve_frames};
pub use legs::{LegEvent, LegEventKind, LegRefusal, OperationTag, ServerLeg};
pub use limits::RateLimit;
pub use media::{
    AttachedMedia, MediaError, MediaFuture, MediaPlane, MediaSession, MediaUnavailable, TrunkAnswer, TrunkReseat,
};
pub use phone::{MeetingDialOut, PhoneNotice};
pub use placement::{HomeDecision, HomeRouter, RelayCredential, RelayLink, RemoteHome};
pub use resume::ConversationMirror;
pub use routes::{authenticate, routes};
pub use user_bus::{RemoteCallInput, RemoteCallMedia, RemoteMove, UserBus};

use crate::domain::calls::CallsConfig;
use crate::domain::conversation::{
    Authority, Conversation, ConversationConfig, ConversationSetup, JoinRequest, Refusal, ServerCommand,
};
use crate::domain::meetings::{LiveMeetings, Meetings};
use actor::ActorMsg;
pub(crate) use connection::{ConnTx, Outbound};
use dashmap::DashMap;
use palaver_core::{ErrorCode, SessionEnded, SessionObserver, SessionStarted, SignalingTelemetry};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Timing and limits of the gateway (TOML-ready: every field has a default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// A dropped participant stays `reconnecting` this long (default 30 s).
    pub reconnect_grace_ms: i64,
    /// Clients are asked to refresh their token this long before it expires (default 2 min).
    pub token_refresh_lead_ms: i64,
    /// Advertised heartbeat period; the server also pings at this period (default 15 s).
    pub heartbeat_interval_ms: u64,
    /// A socket with no inbound frame for this long counts as dropped (default 45 s).
    pub idle_timeout_ms: u64,
    pub rate_limit: RateLimit,
    /// Frames queued per socket before further frames to it are dropped.
    pub outbound_queue: usize,
    /// Open signaling connections (WebSocket and QUIC) one identity may hold at once
    /// (default 10); one more is refused with `429 TooManyRequests` (issue #19: parallel
    /// sockets on one token multiplied passcode guessing).
    pub max_sockets_per_identity: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            reconnect_grace_ms: 30_000,
            token_refresh_lead_ms: 120_000,
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            rate_limit: RateLimit::default(),
            outbound_queue: 1024,
            max_sockets_per_identity: 10,
        }
    }
}

/// Logs participant sessions when no billing observer is plugged in.
#[derive(Debug, Default)]
pub struct LoggingSessionObserver;

impl SessionObserver for LoggingSessionObserver {
    fn session_started(&self, e: SessionStarted) {
        tracing::info!(session = %e.session_id, conversation = %e.conversation_id, participant = %e.participant_raw_id,
            participant_type = e.participant_type.as_str(), "participant session started");
    }
    fn session_ended(&self, e: SessionEnded) {
        tracing::info!(session = %e.session_id, conversation = %e.conversation_id, reason = e.reason.as_str(),
            "participant session ended");
    }
}

/// One open socket of a user, for call notifications.
#[derive(Clone)]
pub(crate) struct PresenceEntry {
    pub conn_id: String,
    pub tx: ConnTx,
    pub native: bool,
}

/// What a gateway is built from (the application state assembles it once).
pub struct GatewayParts {
    pub config: GatewayConfig,
    pub calls: CallsConfig,
    /// The meetings domain: joins by link or code are resolved against it, and meetings in
    /// progress store their policy changes through it.
    pub meetings: Meetings,
    /// Billing: one `started` and one `ended` per participant session.
    pub sessions: Arc<dyn SessionObserver>,
    /// Error frames by code, live meetings, lobby size.
    pub telemetry: Arc<dyn SignalingTelemetry>,
    pub media: Arc<dyn MediaPlane>,
    /// The chat service: a meeting's thread follows who is in the meeting.
    pub chat: crate::domain::chat::ChatService,
    /// Event Grid system events and Call Automation callbacks (default: dropped).
    pub events: Arc<dyn palaver_core::EventPublisher>,
}

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway(Arc<GatewayInner>);

pub struct GatewayInner {
    config: GatewayConfig,
    calls_config: CallsConfig,
    observer: Arc<dyn SessionObserver>,
    telemetry: Arc<dyn SignalingTelemetry>,
    media: Arc<dyn MediaPlane>,
    meetings: Meetings,
    /// Live conversations by target key (`meeting:<id>`, `groupCall:<id>`, `room:<id>`).
    by_target: DashMap<String, ConversationHandle>,
    /// The same, by conversation id (for `resume` and `/conversations/{id}` routes).
    by_id: DashMap<String, ConversationHandle>,
    presence: DashMap<String, Vec<PresenceEntry>>,
    calls: OnceLock<mpsc::UnboundedSender<calls::CallsMsg>>,
    /// Call events for phone participants, to the SIP gateway.
    phone: phone::PhoneHook,
    next_generation: AtomicU64,
    /// Participants waiting in a lobby, over all conversations (actors add their deltas).
    lobby_total: AtomicI64,
    /// The chat service: meeting threads follow meeting membership.
    chat: crate::domain::chat::ChatService,
    /// Call Automation's live call connections.
    call_automation: CallAutomation,
    /// Event Grid system events and Call Automation callbacks.
    events: Arc<dyn palaver_core::EventPublisher>,
    /// A cluster's placement (none on a single node): where each conversation lives.
    home_router: OnceLock<Arc<dyn HomeRouter>>,
    /// A cluster's mirror of what conversations carry across a takeover (none on a single node).
    mirror: OnceLock<Arc<dyn ConversationMirror>>,
    /// A cluster's user bus (none on a single node): rings and presence across nodes.
    user_bus: OnceLock<Arc<dyn UserBus>>,
    /// Calls on other nodes a user answered from a socket here: user → (node, call id). When
    /// the user's sockets are gone here those nodes are told (`user_bus.rs`).
    answered_elsewhere: DashMap<String, Vec<(String, String)>>,
    /// Calls running here answered from a socket on another node: call id → (that socket's
    /// id, its node). A move into a conversation goes to that node (`user_bus/handover.rs`).
    remote_answers: DashMap<String, Vec<(String, String)>>,
    /// The socket here carrying a call participant's media: `<callId>/<rawId>` → socket id (a
    /// QUIC callee whose media followed the call here from the node it answered on).
    call_media_conns: DashMap<String, String>,
}

impl std::ops::Deref for Gateway {
    type Target = GatewayInner;
    fn deref(&self) -> &GatewayInner {
        &self.0
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("live_conversations", &self.by_target.len())
            .field("users_online", &self.presence.len())
            .finish()
    }
}

impl Gateway {
    pub fn new(parts: GatewayParts) -> Self {
        let gateway = Self(Arc::new(GatewayInner {
            config: parts.config,
            calls_config: parts.calls,
            observer: parts.sessions,
            telemetry: parts.telemetry,
            media: parts.media,
            meetings: parts.meetings,
            by_target: DashMap::new(),
            by_id: DashMap::new(),
            presence: DashMap::new(),
            calls: OnceLock::new(),
            phone: phone::PhoneHook::default(),
            next_generation: AtomicU64::new(1),
            lobby_total: AtomicI64::new(0),
            chat: parts.chat,
            call_automation: CallAutomation::default(),
            events: parts.events,
            home_router: OnceLock::new(),
            mirror: OnceLock::new(),
            user_bus: OnceLock::new(),
            answered_elsewhere: DashMap::new(),
            remote_answers: DashMap::new(),
            call_media_conns: DashMap::new(),
        }));
        gateway.publish_meeting_count();
        gateway
    }

    /// Where system events and call callbacks go.
    pub fn events(&self) -> &Arc<dyn palaver_core::EventPublisher> {
        &self.events
    }

    /// Count an error answered on a socket (REST errors are counted by the HTTP layer).
    pub fn record_error(&self, code: ErrorCode) {
        self.telemetry.error_answered(code);
    }

    /// Count an outgoing frame if it is an error frame.
    pub(crate) fn record_if_error(&self, message: &palaver_core::protocol::ServerMessage) {
        if let palaver_core::protocol::ServerMessage::Error { code, .. } = message
            && let Some(code) = ErrorCode::ALL.iter().find(|c| c.as_str() == code)
        {
            self.record_error(*code);
        }
    }

    /// A conversation's lobby grew or shrank by `delta` participants.
    pub(crate) fn lobby_changed(&self, delta: i64) {
        if delta == 0 {
            return;
        }
        let total = self.lobby_total.fetch_add(delta, Ordering::Relaxed) + delta;
        self.telemetry.lobby_size(total.max(0) as usize);
    }

    /// Live meetings (directory-style meetings and rooms; group calls and 1:1 calls are
    /// counted as calls by the billing recorder).
    fn publish_meeting_count(&self) {
        let meetings = self.by_target.iter().filter(|e| !e.key().starts_with("groupCall:")).count();
        self.telemetry.active_meetings(meetings);
    }

    pub fn config(&self) -> GatewayConfig {
        self.config
    }
    pub(crate) fn calls_config(&self) -> CallsConfig {
        self.calls_config.clone()
    }
    /// The hold audio file of the call queue `raw_id` (`28:orgid:<appId>`), if it has one
    /// (the SIP gateway plays it to phone callers waiting in the queue).
    pub fn queue_hold_audio(&self, raw_id: &str) -> Option<std::path::PathBuf> {
        let app_id = raw_id.strip_prefix("28:orgid:")?;
        self.calls_config.queue(app_id)?.hold_audio.clone()
    }
    pub(crate) fn observer(&self) -> Arc<dyn SessionObserver> {
        self.observer.clone()
    }
    pub(crate) fn telemetry(&self) -> &dyn SignalingTelemetry {
        self.telemetry.as_ref()
    }
    pub(crate) fn media(&self) -> Arc<dyn MediaPlane> {
        self.media.clone()
    }
    pub(crate) fn meetings(&self) -> &Meetings {
        &self.meetings
    }
    /// Call Automation's live call connections.
    pub fn call_automation(&self) -> &CallAutomation {
        &self.call_automation
    }

    /// Plug in a cluster's placement (once, at start; docs/cluster.md). False if one was set.
    pub fn set_home_router(&self, router: Arc<dyn HomeRouter>) -> bool {
        self.home_router.set(router).is_ok()
    }

    pub(crate) fn home_router(&self) -> Option<&Arc<dyn HomeRouter>> {
        self.home_router.get()
    }

    /// Plug in a cluster's conversation mirror (once, at start). False if one was set.
    pub fn set_conversation_mirror(&self, mirror: Arc<dyn ConversationMirror>) -> bool {
        self.mirror.set(mirror).is_ok()
    }

    pub(crate) fn conversation_mirror(&self) -> Option<&Arc<dyn ConversationMirror>> {
        self.mirror.get()
    }

    /// Number of live conversations.
    pub fn live_conversations(&self) -> usize {
        self.by_target.len()
    }

    /// Route a join to the live conversation for `key`, starting it if needed.
    pub(crate) async fn join(
        &self,
        key: String,
        setup: ConversationSetup,
        request: JoinRequest,
        conn_id: String,
        conn: ConnTx,
    ) -> ConversationHandle {
        self.join_as(key, setup, request, false, conn_id, conn).await
    }

    /// [`Gateway::join`], or with `resumed` a `resume` that reached the conversation's new home
    /// after a takeover (the request carries the participant id the old home gave).
    pub(crate) async fn join_as(
        &self,
        key: String,
        setup: ConversationSetup,
        request: JoinRequest,
        resumed: bool,
        conn_id: String,
        conn: ConnTx,
    ) -> ConversationHandle {
        let (accepted_by, accepted) = oneshot::channel();
        let mut msg =
            ActorMsg::Join { key: key.clone(), setup: setup.clone(), request, resumed, conn_id, conn, accepted_by };
        loop {
            let handle = self.handle_for(&key, &setup);
            match handle.tx.send(msg).await {
                // The actor that took it, which is another one when this one was ending (its
                // leftover joins go to a fresh conversation): the socket routes there.
                Ok(()) => return accepted.await.unwrap_or(handle),
                // The actor ended between lookup and send: it is gone from the registry, retry.
                Err(mpsc::error::SendError(back)) => {
                    self.forget(&key, &handle);
                    msg = back;
                }
            }
        }
    }

    fn handle_for(&self, key: &str, setup: &ConversationSetup) -> ConversationHandle {
        let handle = self
            .by_target
            .entry(key.to_string())
            .or_insert_with(|| {
                let conversation_id = uuid::Uuid::new_v4().to_string();
                let cfg = self.config();
                let conv_cfg = ConversationConfig {
                    reconnect_grace_ms: cfg.reconnect_grace_ms,
                    token_refresh_lead_ms: cfg.token_refresh_lead_ms,
                    ..ConversationConfig::default()
                };
                let conversation = Conversation::new(conversation_id.clone(), setup.clone(), conv_cfg);
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                let handle = actor::spawn(self.clone(), key.to_string(), generation, conversation, setup.clone());
                self.by_id.insert(conversation_id, handle.clone());
                tracing::info!(key, conversation = %handle.conversation_id, "conversation started");
                handle
            })
            .clone();
        self.publish_meeting_count();
        handle
    }

    /// Drop a conversation from the registry (only the given generation).
    pub(crate) fn forget(&self, key: &str, handle: &ConversationHandle) {
        if self.by_target.remove_if(key, |_, h| h.generation == handle.generation).is_some()
            && let Some(router) = self.home_router()
        {
            router.released(key);
        }
        self.by_id.remove_if(&handle.conversation_id, |_, h| h.generation == handle.generation);
        self.publish_meeting_count();
    }

    /// Is a conversation running for this target key?
    pub fn is_live(&self, key: &str) -> bool {
        self.by_target.contains_key(key)
    }

    pub(crate) fn by_conversation_id(&self, id: &str) -> Option<ConversationHandle> {
        self.by_id.get(id).map(|h| h.clone())
    }
    /// The live conversation of a target key (`meeting:<id>`, `groupCall:<id>`, `room:<id>`).
    pub fn live_handle(&self, key: &str) -> Option<ConversationHandle> {
        self.by_target.get(key).map(|h| h.clone())
    }
    /// The live conversation of a meeting, if it is in progress.
    pub fn meeting_handle(&self, meeting_id: &str) -> Option<ConversationHandle> {
        self.by_target.get(&format!("meeting:{meeting_id}")).map(|h| h.clone())
    }
    /// A live conversation by its id (as in snapshots).
    pub fn conversation_handle(&self, conversation_id: &str) -> Option<ConversationHandle> {
        self.by_conversation_id(conversation_id)
    }

    /// A REST command on a live conversation (by target key or conversation id).
    pub async fn server_command(
        &self,
        handle: &ConversationHandle,
        authority: Authority,
        command: ServerCommand,
    ) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        let gone = || Refusal::new(ErrorCode::InvalidState, "the conversation is not in progress");
        handle.tx.send(ActorMsg::Server { authority, command, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Loudest participants of a live conversation, from the media plane (roster delta
    /// `activeSpeakers`). False when the conversation is not running.
    pub async fn active_speakers(&self, conversation_id: &str, participant_ids: Vec<String>) -> bool {
        let Some(handle) = self.by_conversation_id(conversation_id) else { return false };
        let input = crate::domain::conversation::Input::ActiveSpeakers { participant_ids };
        handle.tx.send(ActorMsg::Input(input)).await.is_ok()
    }

    /// Trickle a server-side ICE candidate to a participant (`media.iceCandidate`).
    /// False when the participant has no live socket in that conversation.
    pub async fn send_ice_candidate(
        &self,
        conversation_id: &str,
        participant_id: &str,
        candidate: palaver_core::protocol::IceCandidate,
    ) -> bool {
        let Some(handle) = self.by_conversation_id(conversation_id) else { return false };
        let (reply, rx) = oneshot::channel();
        let message = palaver_core::protocol::ServerMessage::MediaIceCandidate { candidate, call_id: None };
        let msg = ActorMsg::ToParticipant { participant_id: participant_id.to_string(), message, reply };
        handle.tx.send(msg).await.is_ok() && rx.await.unwrap_or(false)
    }

    /// Tell a participant which participant's camera or screen each of its video receive
    /// slots carries (`media.slots`, the whole list). False when the participant has no
    /// live socket in that conversation.
    pub async fn send_media_slots(
        &self,
        conversation_id: &str,
        participant_id: &str,
        slots: Vec<palaver_core::protocol::MediaSlot>,
    ) -> bool {
        let Some(handle) = self.by_conversation_id(conversation_id) else { return false };
        let (reply, rx) = oneshot::channel();
        let message = palaver_core::protocol::ServerMessage::MediaSlots { slots };
        let msg = ActorMsg::ToParticipant { participant_id: participant_id.to_string(), message, reply };
        handle.tx.send(msg).await.is_ok() && rx.await.unwrap_or(false)
    }

    /// Clean shutdown: end every participant session of every live conversation with
    /// `ServerShutdown` (one `session_ended` each), telling the clients. Call before exiting.
    pub async fn shutdown(&self) -> usize {
        let handles: Vec<ConversationHandle> = self.by_target.iter().map(|e| e.value().clone()).collect();
        let mut ended = 0;
        for handle in handles {
            if self.server_command(&handle, Authority::Server, ServerCommand::Shutdown).await.is_ok() {
                ended += 1;
            }
        }
        tracing::info!(conversations = ended, "signaling gateway shut down");
        ended
    }

    /// Live status of a conversation, if it is running.
    pub async fn live_status(&self, handle: &ConversationHandle) -> Option<LiveStatus> {
        let (reply, rx) = oneshot::channel();
        handle.tx.send(ActorMsg::Status { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Register a socket of a user, unless the user already holds `max_sockets_per_identity`
    /// (checked and added under the same map entry lock); false when refused.
    pub(crate) fn presence_add(&self, raw_id: &str, entry: PresenceEntry) -> bool {
        let mut entries = self.presence.entry(raw_id.to_string()).or_default();
        if entries.len() >= self.config.max_sockets_per_identity {
            return false;
        }
        let first = entries.is_empty();
        entries.push(entry);
        drop(entries);
        if first && let Some(bus) = self.user_bus() {
            bus.user_online(raw_id);
        }
        true
    }

    /// `TooManyRequests` if `raw_id` already holds its maximum of open sockets (checked again,
    /// atomically, when the socket registers).
    pub(crate) fn check_socket_cap(&self, raw_id: &str) -> Result<(), Refusal> {
        let open = self.presence.get(raw_id).map_or(0, |v| v.len());
        if open >= self.config.max_sockets_per_identity {
            return Err(socket_cap_refusal(self.config.max_sockets_per_identity));
        }
        Ok(())
    }

    /// Remove a socket; true when it was the user's last one.
    pub(crate) fn presence_remove(&self, raw_id: &str, conn_id: &str) -> bool {
        let mut last = false;
        if let Some(mut entries) = self.presence.get_mut(raw_id) {
            entries.retain(|e| e.conn_id != conn_id);
            last = entries.is_empty();
        }
        if last {
            self.presence.remove_if(raw_id, |_, v| v.is_empty());
            if let Some(bus) = self.user_bus() {
                bus.user_offline(raw_id);
            }
        }
        last
    }

    pub(crate) fn presence_of(&self, raw_id: &str) -> Vec<PresenceEntry> {
        self.presence.get(raw_id).map(|v| v.clone()).unwrap_or_default()
    }

    /// End every live signaling connection of `raw_id` authenticated with a token issued
    /// before `revoked_before_ms` (its tokens were revoked or the identity deleted): a
    /// participant's session ends as `TokenRevoked` (billing closes it then), then the socket
    /// closes with [`ConnectionClose::AccessRevoked`](palaver_core::protocol::ConnectionClose).
    /// Returns how many connections were told.
    pub fn revoke_access(&self, raw_id: &str, revoked_before_ms: i64) -> usize {
        let entries = self.presence_of(raw_id);
        for entry in &entries {
            let tx = entry.tx.clone();
            // Never dropped for a full queue: the socket must end.
            tokio::spawn(async move {
                let _ = tx.send(Outbound::AccessRevoked { revoked_before_ms }).await;
            });
        }
        if !entries.is_empty() {
            tracing::info!(user = raw_id, connections = entries.len(), "ending revoked signaling connections");
        }
        entries.len()
    }

    /// Send a prepared frame to every socket of a user: here, and in a cluster through the
    /// user bus on the other nodes too.
    pub(crate) fn notify_user(&self, raw_id: &str, text: Arc<str>) {
        if let Some(bus) = self.user_bus() {
            bus.notify_elsewhere(raw_id, text.clone());
        }
        self.notify_local(raw_id, text);
    }

    /// Send a prepared frame to every socket of a user on this node.
    pub(crate) fn notify_local(&self, raw_id: &str, text: Arc<str>) {
        for entry in self.presence_of(raw_id) {
            if entry.tx.try_send(Outbound::Frame(text.clone())).is_err() {
                tracing::warn!(user = raw_id, conn = %entry.conn_id, "outbound queue full; call event dropped");
            }
        }
    }
}

/// The refusal of a socket beyond the per-identity cap.
pub(crate) fn socket_cap_refusal(max: usize) -> Refusal {
    Refusal::new(ErrorCode::TooManyRequests, format!("at most {max} signaling connections per identity are open"))
}

impl LiveMeetings for Gateway {
    async fn command(
        &self,
        meeting_id: &str,
        authority: Authority,
        command: ServerCommand,
    ) -> Option<Result<(), Refusal>> {
        let handle = self.meeting_handle(meeting_id)?;
        Some(self.server_command(&handle, authority, command).await)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_invitations;
#[cfg(test)]
mod tests_joins;
#[cfg(test)]
mod tests_placement;
#[cfg(test)]
mod tests_resilience;
#[cfg(test)]
mod tests_resume;
