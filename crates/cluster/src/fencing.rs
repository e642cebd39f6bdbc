//! [`Fence`]: a node that lost a conversation (taken over while it was stalled, partitioned or
//! frozen) stops writing for it and stops hosting it.
//!
//! The [`ClusterRouter`](crate::router::ClusterRouter) records the epoch at which this node
//! holds each conversation it hosts; [`Fence::spawn_checks`] re-reads `cluster_homes` every
//! [`CHECK_EVERY`] and, when the record moved on (another node, or a newer epoch), marks the
//! conversation fenced and ends it here. [`FencedObserver`] wraps billing's session observer:
//! a session start or end of a fenced conversation is **refused** (not written to the usage
//! ledger) and counted in `palaver_cluster_fenced_writes_total`. When the last check is older
//! than [`FRESH_FOR`] (the node was frozen or the checks are behind), the observer checks the
//! record itself before letting the write through, so a node resumed after SIGSTOP cannot
//! bill for a conversation someone else took over before its periodic check ran.
//!
//! The observer's check is a first line; the ledger's write itself is fenced in its own
//! transaction ([`crate::ledger::LedgerFence`], implemented here: the home key and epoch this
//! node holds each live conversation at), so a takeover landing between this check and the
//! write cannot let the write through. docs/cluster.md, "Fencing".

use crate::database::Database;
use crate::homes::Homes;
use crate::metrics::ClusterMetrics;
use dashmap::{DashMap, DashSet};
use palaver_core::{DurableAck, MediaUsed, SessionEnded, SessionObserver, SessionStarted};
use palaver_signaling::domain::conversation::{Authority, ServerCommand};
use palaver_signaling::gateway::Gateway;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often held conversations are checked against `cluster_homes`.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A check younger than this lets writes through without asking PostgreSQL again.
pub const FRESH_FOR: Duration = Duration::from_millis(1000);
/// How long a write waits for the observer's own check: an unresponsive PostgreSQL (one that
/// does not refuse, so the pool waits for its connect timeout) must not hold a join's
/// acknowledgement for seconds; without a verdict the write goes on to the ledger, which spools.
pub const WRITE_CHECK_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
struct Held {
    key: String,
    epoch: i64,
    checked_at: Instant,
}

/// What this node holds and what it lost, shared by the router, the checks and the observer.
#[derive(Debug)]
pub struct Fence {
    node_id: String,
    homes: Homes,
    database: Database,
    metrics: OnceLock<ClusterMetrics>,
    /// Held conversations by conversation id (filled by the checks from the router's keys).
    held: DashMap<String, Held>,
    /// Conversation ids this node lost: nothing more is written for them.
    fenced: DashSet<String>,
    /// Conversation ids this draining node handed over ([`Fence::hand_over`]): nothing more is
    /// written for them either (their open sessions await the next home), but not counted as
    /// fenced writes.
    handed_over: DashSet<String>,
    /// The gateway and the router's held keys (target key → epoch), once the checks run: how
    /// a conversation id not yet seen by a check finds its key and epoch.
    placed: OnceLock<(Gateway, Arc<DashMap<String, i64>>)>,
}

impl Fence {
    pub fn new(node_id: &str, homes: Homes, database: Database) -> Arc<Self> {
        Arc::new(Self {
            node_id: node_id.to_string(),
            homes,
            database,
            metrics: OnceLock::new(),
            held: DashMap::new(),
            fenced: DashSet::new(),
            handed_over: DashSet::new(),
            placed: OnceLock::new(),
        })
    }

    /// Count refusals in `metrics` (set once the metrics are registered).
    pub fn set_metrics(&self, metrics: ClusterMetrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Wrap billing's observer so fenced conversations write nothing.
    pub fn wrap(self: &Arc<Self>, inner: Arc<dyn SessionObserver>) -> Arc<dyn SessionObserver> {
        Arc::new(FencedObserver { fence: self.clone(), inner })
    }

    /// A draining node hands `conversation_id` over: from now on no session change of it is
    /// written here (not even the close of every open session at the process's end), so its
    /// open sessions stay in the ledger for the node that takes the conversation over to adopt.
    pub fn hand_over(&self, conversation_id: &str) {
        self.handed_over.insert(conversation_id.to_string());
        self.held.remove(conversation_id);
    }

    fn refuse(&self, conversation_id: &str, what: &str) {
        if self.handed_over.contains(conversation_id) {
            tracing::debug!(conversation = conversation_id, what, "handed over by the drain: left to the next home");
            return;
        }
        if let Some(m) = self.metrics.get() {
            m.fenced_writes.inc();
        }
        tracing::warn!(conversation = conversation_id, what, node = %self.node_id,
            "fenced: this node lost the conversation to a newer epoch; write refused");
    }

    /// Whether this node may still write for `conversation_id`.
    fn may_write(&self, conversation_id: &str) -> bool {
        if self.fenced.contains(conversation_id) || self.handed_over.contains(conversation_id) {
            return false;
        }
        let Some(held) = self.held.get(conversation_id).map(|h| h.clone()) else { return true };
        if held.checked_at.elapsed() <= FRESH_FOR {
            return true;
        }
        let (homes, node, key, epoch) = (self.homes.clone(), self.node_id.clone(), held.key.clone(), held.epoch);
        let check =
            move |_| async move { tokio::time::timeout(WRITE_CHECK_TIMEOUT, homes.holds(&key, &node, epoch)).await };
        match self.database.block_on(check) {
            Ok(Ok(Ok(true))) => {
                if let Some(mut h) = self.held.get_mut(conversation_id) {
                    h.checked_at = Instant::now();
                }
                true
            }
            Ok(Ok(Ok(false))) => {
                self.fenced.insert(conversation_id.to_string());
                false
            }
            // PostgreSQL unreachable or slower than WRITE_CHECK_TIMEOUT: no verdict; the write
            // goes to the ledger (which spools).
            _ => true,
        }
    }

    /// Check every conversation the router holds every [`CHECK_EVERY`]; end the ones lost.
    pub fn spawn_checks(
        self: &Arc<Self>,
        gateway: Gateway,
        held_keys: Arc<DashMap<String, i64>>,
    ) -> tokio::task::JoinHandle<()> {
        let _ = self.placed.set((gateway.clone(), held_keys.clone()));
        let fence = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let keys: Vec<(String, i64)> = held_keys.iter().map(|e| (e.key().clone(), *e.value())).collect();
                for (key, epoch) in keys {
                    let Some(handle) = gateway.live_handle(&key) else { continue };
                    let conversation_id = handle.conversation_id().to_string();
                    let holds = match fence.homes.holds(&key, &fence.node_id, epoch).await {
                        Ok(holds) => holds,
                        Err(_) => continue,
                    };
                    if holds {
                        let first_seen = !fence.held.contains_key(&conversation_id);
                        if first_seen
                            && let Err(e) = fence.homes.record_live(&key, &fence.node_id, epoch, &conversation_id).await
                        {
                            tracing::warn!(key, error = %e, "could not record the live conversation id (resume elsewhere fails)");
                            continue;
                        }
                        fence.held.insert(conversation_id, Held { key, epoch, checked_at: Instant::now() });
                        continue;
                    }
                    // Lost: write nothing more, stop hosting.
                    fence.fenced.insert(conversation_id.clone());
                    fence.held.remove(&conversation_id);
                    held_keys.remove_if(&key, |_, e| *e == epoch);
                    tracing::warn!(key, epoch, conversation = %conversation_id,
                        "fenced: the conversation was taken over by another node; ending it here");
                    let gateway = gateway.clone();
                    tokio::spawn(async move {
                        let _ = gateway.server_command(&handle, Authority::Server, ServerCommand::Shutdown).await;
                    });
                }
                fence.held.retain(|_, h| held_keys.get(&h.key).is_some_and(|e| *e == h.epoch));
            }
        })
    }
}

impl crate::ledger::LedgerFence for Fence {
    fn holding(&self, conversation_id: &str) -> crate::ledger::Holding {
        use crate::ledger::Holding;
        if self.fenced.contains(conversation_id) || self.handed_over.contains(conversation_id) {
            return Holding::Lost;
        }
        if let Some(h) = self.held.get(conversation_id) {
            return Holding::Held { key: h.key.clone(), epoch: h.epoch };
        }
        // Started since the last check (a join's session start is written before `joined`).
        let Some((gateway, held_keys)) = self.placed.get() else { return Holding::Unplaced };
        held_keys
            .iter()
            .find(|e| gateway.live_handle(e.key()).is_some_and(|h| h.conversation_id() == conversation_id))
            .map_or(Holding::Unplaced, |e| Holding::Held { key: e.key().clone(), epoch: *e.value() })
    }

    fn refused(&self, conversation_id: &str, what: &str) {
        if !self.handed_over.contains(conversation_id) {
            self.fenced.insert(conversation_id.to_string());
        }
        self.refuse(conversation_id, what);
    }
}

/// Billing's observer behind the fence.
struct FencedObserver {
    fence: Arc<Fence>,
    inner: Arc<dyn SessionObserver>,
}

impl SessionObserver for FencedObserver {
    fn session_started(&self, event: SessionStarted) {
        if self.fence.may_write(&event.conversation_id) {
            self.inner.session_started(event);
        } else {
            self.fence.refuse(&event.conversation_id, "session start");
        }
    }

    fn session_started_durably(&self, event: SessionStarted, durable: DurableAck) {
        if self.fence.may_write(&event.conversation_id) {
            self.inner.session_started_durably(event, durable);
        } else {
            self.fence.refuse(&event.conversation_id, "session start");
            durable.acknowledge();
        }
    }

    fn session_ended(&self, event: SessionEnded) {
        if self.fence.may_write(&event.conversation_id) {
            self.inner.session_ended(event);
        } else {
            self.fence.refuse(&event.conversation_id, "session end");
        }
    }

    fn call_type_changed(&self, conversation_id: &str, call_type: palaver_core::CallType) {
        if self.fence.may_write(conversation_id) {
            self.inner.call_type_changed(conversation_id, call_type);
        } else {
            self.fence.refuse(conversation_id, "call type");
        }
    }

    fn media_used(&self, usage: MediaUsed) {
        self.inner.media_used(usage);
    }
}
