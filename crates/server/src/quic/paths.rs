//! The datagram paths of live QUIC connections, by [`MediaPathId`]: the connection registers
//! its path when it authenticates; `media.attach` (the media negotiator) points the path at a
//! worker's direct transport ([`Route`]); the connection's datagram pumps follow the route.
//! The pumps keep their own copy of the route and only look at the shared one when its
//! generation changes (one atomic load per datagram, no lock, no clone).

use palaver_core::MediaPathId;
use palaver_core::protocol::quic::SrtpKeying;
use palaver_sfu::net::{DirectLink, WorkerPool};
use palaver_sfu::router::TransportId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// Where one connection's datagrams go: a direct transport of one worker.
#[derive(Debug, Clone)]
pub struct Route {
    pub pool: Arc<WorkerPool>,
    pub worker: usize,
    pub transport: TransportId,
    pub link: Arc<DirectLink>,
}

/// One connection's datagram path.
#[derive(Debug, Default)]
pub struct QuicPath {
    route: Mutex<Option<Route>>,
    /// Bumped after every route change (read by the pumps before they copy the route).
    generation: AtomicU64,
    /// Signalled (one stored permit) when the route changes, for the egress pump.
    changed: Notify,
    /// Set when the connection chose the SRTP media carrier (`auth` `"media":"srtp"`): the
    /// keys exported from its TLS session. Its media then bypasses the datagram pumps.
    srtp_keying: OnceLock<SrtpKeying>,
}

impl QuicPath {
    /// Marks the connection's media carrier as SRTP over UDP with these keys (once).
    pub fn use_srtp(&self, keying: SrtpKeying) {
        let _ = self.srtp_keying.set(keying);
    }

    /// The SRTP keys, if the connection's media carrier is SRTP over UDP.
    pub fn srtp_keying(&self) -> Option<&SrtpKeying> {
        self.srtp_keying.get()
    }

    pub fn route(&self) -> Option<Route> {
        self.route.lock().ok().and_then(|r| r.clone())
    }

    pub fn set_route(&self, route: Option<Route>) {
        if let Ok(mut r) = self.route.lock() {
            *r = route;
        }
        self.generation.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }

    /// The route, fetched again only when it changed since `cached` was taken: the per-datagram
    /// cost of following the route is one atomic load.
    pub fn follow<'c>(&self, cached: &'c mut CachedRoute) -> Option<&'c Route> {
        let generation = self.generation.load(Ordering::Acquire);
        if cached.generation != Some(generation) {
            cached.route = self.route();
            cached.generation = Some(generation);
        }
        cached.route.as_ref()
    }

    /// Resolves after the next [`Self::set_route`] (or at once if one happened unobserved).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A pump's own copy of its path's route (see [`QuicPath::follow`]).
#[derive(Debug, Default)]
pub struct CachedRoute {
    generation: Option<u64>,
    route: Option<Route>,
}

/// Datagram drops of the QUIC shell (before the worker sees them), for `GET /quic`.
#[derive(Debug, Default)]
pub struct DatagramDrops {
    /// Datagrams that arrived before `media.attach`.
    pub unattached: AtomicU64,
    /// Datagrams the worker's ingress queue had no room for.
    pub ingress_full: AtomicU64,
    /// Packets the connection could not send (too large for the path's datagram size).
    pub unsendable: AtomicU64,
}

/// All live paths.
#[derive(Debug, Default)]
pub struct QuicPaths {
    next: AtomicU64,
    paths: Mutex<HashMap<MediaPathId, Arc<QuicPath>>>,
    pub drops: DatagramDrops,
}

impl QuicPaths {
    pub fn register(&self) -> (MediaPathId, Arc<QuicPath>) {
        let id = MediaPathId(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let path = Arc::new(QuicPath::default());
        if let Ok(mut paths) = self.paths.lock() {
            paths.insert(id, path.clone());
        }
        (id, path)
    }

    pub fn unregister(&self, id: MediaPathId) {
        if let Ok(mut paths) = self.paths.lock() {
            paths.remove(&id);
        }
    }

    pub fn get(&self, id: MediaPathId) -> Option<Arc<QuicPath>> {
        self.paths.lock().ok()?.get(&id).cloned()
    }

    /// Connections that have authenticated and not yet closed.
    pub fn connections(&self) -> usize {
        self.paths.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_register_route_and_unregister() {
        let paths = QuicPaths::default();
        let (a, path) = paths.register();
        let (b, _) = paths.register();
        assert_ne!(a, b);
        assert!(path.route().is_none());
        let link = DirectLink::new(4);
        let config = palaver_sfu::net::WorkerConfig { workers: 1, ..Default::default() };
        let pool = Arc::new(WorkerPool::start(config).expect("one loopback worker"));
        path.set_route(Some(Route { pool, worker: 0, transport: TransportId(7), link }));
        assert_eq!(paths.get(a).and_then(|p| p.route()).map(|r| r.transport), Some(TransportId(7)));
        paths.unregister(a);
        assert!(paths.get(a).is_none());
        assert_eq!(paths.connections(), 1);
    }

    #[test]
    fn a_pump_follows_route_changes_and_keeps_its_copy_otherwise() {
        let path = QuicPath::default();
        let mut cached = CachedRoute::default();
        assert!(path.follow(&mut cached).is_none(), "before media.attach");
        let config = palaver_sfu::net::WorkerConfig { workers: 1, ..Default::default() };
        let pool = Arc::new(WorkerPool::start(config).expect("one loopback worker"));
        let route = |transport| Route { pool: pool.clone(), worker: 0, transport, link: DirectLink::new(4) };
        path.set_route(Some(route(TransportId(1))));
        assert_eq!(path.follow(&mut cached).map(|r| r.transport), Some(TransportId(1)));
        let copy = path.follow(&mut cached).map(|r| Arc::as_ptr(&r.link));
        assert_eq!(path.follow(&mut cached).map(|r| Arc::as_ptr(&r.link)), copy, "unchanged: the same copy");
        path.set_route(Some(route(TransportId(2))));
        assert_eq!(path.follow(&mut cached).map(|r| r.transport), Some(TransportId(2)));
        path.set_route(None);
        assert!(path.follow(&mut cached).is_none(), "detached");
    }

    #[tokio::test]
    async fn a_route_change_before_waiting_is_not_lost() {
        let path = QuicPath::default();
        path.set_route(None);
        tokio::time::timeout(std::time::Duration::from_secs(1), path.changed()).await.expect("stored permit");
    }
}
