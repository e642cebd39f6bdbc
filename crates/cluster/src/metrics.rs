//! [`ClusterMetrics`]: the cluster's figures on `/metrics` (names fixed with the alert rules
//! and the Grafana row in `deploy/`): live nodes in the registry, conversations homed here,
//! takeovers, writes refused for a stale epoch, the mesh relay's round trip, and whether
//! Redis and PostgreSQL answer, and the nodes alive by the `cluster_nodes` heartbeat. [`ClusterMetrics::spawn_monitor`] refreshes the gauges.

use crate::homes::Homes;
use crate::registry::NodeRegistry;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use std::time::Duration;

/// How often the gauges are refreshed.
pub const MONITOR_EVERY: Duration = Duration::from_secs(1);

/// The cluster metrics of one node. Cheap to clone (shared counters).
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    pub nodes: IntGauge,
    pub homes: IntGauge,
    pub takeovers: IntCounter,
    pub fenced_writes: IntCounter,
    pub relay_latency: Histogram,
    pub redis_up: IntGauge,
    pub postgres_up: IntGauge,
    /// Nodes alive by `cluster_nodes` (heartbeat younger than 3 s by the database's clock).
    pub pg_nodes: IntGauge,
}

impl ClusterMetrics {
    /// Unregistered metrics (tests).
    pub fn unregistered() -> Self {
        Self {
            nodes: IntGauge::new("palaver_cluster_nodes", "Live nodes in the cluster's node registry.")
                .expect("valid metric"),
            homes: IntGauge::new("palaver_cluster_homes", "Conversations whose home is this node.")
                .expect("valid metric"),
            takeovers: IntCounter::new(
                "palaver_cluster_takeovers_total",
                "Conversations this node took over from a home that was gone (compare-and-swap, epoch + 1).",
            )
            .expect("valid metric"),
            fenced_writes: IntCounter::new(
                "palaver_cluster_fenced_writes_total",
                "Writes refused because this node's epoch for the conversation was stale.",
            )
            .expect("valid metric"),
            relay_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "palaver_cluster_relay_latency_seconds",
                    "Round trip of opening a signaling relay to a home node over the mesh.",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            )
            .expect("valid metric"),
            redis_up: IntGauge::new("palaver_cluster_redis_up", "1 when Redis answered the last check, else 0.")
                .expect("valid metric"),
            postgres_up: IntGauge::new(
                "palaver_cluster_postgres_up",
                "1 when PostgreSQL answered the last check, else 0.",
            )
            .expect("valid metric"),
            pg_nodes: IntGauge::new(
                "palaver_cluster_pg_nodes",
                "Nodes whose cluster_nodes heartbeat in PostgreSQL is younger than 3 s (database clock) and not left.",
            )
            .expect("valid metric"),
        }
    }

    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.nodes.clone()))?;
        registry.register(Box::new(m.homes.clone()))?;
        registry.register(Box::new(m.takeovers.clone()))?;
        registry.register(Box::new(m.fenced_writes.clone()))?;
        registry.register(Box::new(m.relay_latency.clone()))?;
        registry.register(Box::new(m.redis_up.clone()))?;
        registry.register(Box::new(m.postgres_up.clone()))?;
        registry.register(Box::new(m.pg_nodes.clone()))?;
        Ok(m)
    }

    /// Refresh the gauges every [`MONITOR_EVERY`]: the registry's live nodes (and Redis up),
    /// this node's homes in `cluster_homes` (and PostgreSQL up).
    pub fn spawn_monitor(
        &self,
        node_id: String,
        registry: Option<NodeRegistry>,
        homes: Homes,
    ) -> tokio::task::JoinHandle<()> {
        let m = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MONITOR_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Some(registry) = &registry {
                    match tokio::time::timeout(MONITOR_EVERY, registry.nodes()).await {
                        Ok(Ok(nodes)) => {
                            m.nodes.set(nodes.len() as i64);
                            m.redis_up.set(1);
                        }
                        _ => m.redis_up.set(0),
                    }
                }
                match tokio::time::timeout(MONITOR_EVERY, homes.count_for(&node_id)).await {
                    Ok(Ok(n)) => {
                        m.homes.set(n);
                        m.postgres_up.set(1);
                    }
                    _ => m.postgres_up.set(0),
                }
            }
        })
    }
}
