//! What the QUIC endpoint's socket receives and what quinn discards: quinn drops datagrams it
//! cannot use (junk, packets of unknown connections or versions, Initials that fail to
//! decrypt) without any counter, so a flood of junk on the QUIC port was invisible on
//! `/metrics` (docs/soak.md, "Flood").
//!
//! [`CountingSocket`] wraps the endpoint's UDP socket and counts every datagram read from it
//! (a GRO batch counts as its segments, as quinn splits it). What quinn made use of is known
//! from its own counters: each connection's `udp_rx.datagrams` (the datagrams routed to it
//! after its first) plus one first datagram per connection attempt whose handshake succeeded.
//! The difference is what reached no established connection: what quinn discarded (or
//! answered statelessly, like a version negotiation or a stateless reset) and junk Initials
//! that quinn surfaced as connection attempts but that failed to decrypt when accepted. The
//! families, read at scrape time:
//!
//! - `palaver_quic_datagrams_received_total`: datagrams read from the QUIC socket;
//! - `palaver_quic_datagrams_discarded_total`: those no established connection got.
//!
//! The discarded count is exact once quinn has handed every read datagram on; a datagram still
//! queued for a connection task at scrape time looks discarded for that instant, so the
//! counter only moves forward to the new difference and never goes back.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Opts};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The endpoint's datagram accounting (shared by the socket, the accept loop and /metrics).
#[derive(Debug, Default)]
pub struct QuicTraffic {
    /// Datagrams read from the socket.
    received: AtomicU64,
    /// Connection attempts quinn surfaced (`Endpoint::accept`): one first datagram each.
    attempts: AtomicU64,
    /// Of those, attempts whose handshake failed: their datagram counts as discarded. quinn
    /// surfaces an Initial once its header protection comes off with valid reserved bits,
    /// which a junk Initial passes one time in four; it is decrypted only when accepted.
    failed_attempts: AtomicU64,
    /// Datagrams routed to connections that have since ended.
    ended_connections_rx: AtomicU64,
    /// Live connections by quinn's stable id, to read their `udp_rx` at scrape time.
    live: Mutex<HashMap<usize, quinn::Connection>>,
}

/// Both counts at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficCounts {
    pub received: u64,
    /// `received` minus what established connections got (never negative).
    pub discarded: u64,
}

impl QuicTraffic {
    /// Count datagrams read from the socket.
    fn received(&self, datagrams: u64) {
        self.received.fetch_add(datagrams, Ordering::Relaxed);
    }

    /// The endpoint surfaced a connection attempt (its first datagram reached quinn's `Incoming`).
    pub fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Complete a connection attempt: an established connection is followed until the guard
    /// is dropped; a failed handshake (an Initial that does not decrypt, a client that gives
    /// up) counts its first datagram as discarded.
    pub async fn handshake(
        self: &Arc<Self>,
        incoming: quinn::Incoming,
    ) -> Result<(quinn::Connection, TrackedConnection), quinn::ConnectionError> {
        match incoming.await {
            Ok(connection) => {
                let tracked = self.track(&connection);
                Ok((connection, tracked))
            }
            Err(e) => {
                self.failed_attempts.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Follow an established connection until the returned guard is dropped.
    fn track(self: &Arc<Self>, connection: &quinn::Connection) -> TrackedConnection {
        if let Ok(mut live) = self.live.lock() {
            live.insert(connection.stable_id(), connection.clone());
        }
        TrackedConnection { traffic: self.clone(), connection: connection.clone() }
    }

    /// The counts now.
    pub fn counts(&self) -> TrafficCounts {
        // The used datagrams under the lock that [`TrackedConnection`]'s drop takes, so an
        // ending connection is counted exactly once; `received` last, as every used datagram
        // was read before it was used.
        let used = match self.live.lock() {
            Ok(live) => {
                live.values().map(|c| c.stats().udp_rx.datagrams).sum::<u64>()
                    + self.ended_connections_rx.load(Ordering::Relaxed)
                    + self.attempts.load(Ordering::Relaxed).saturating_sub(self.failed_attempts.load(Ordering::Relaxed))
            }
            Err(_) => 0,
        };
        let received = self.received.load(Ordering::Relaxed);
        TrafficCounts { received, discarded: received.saturating_sub(used) }
    }
}

/// A live connection's place in [`QuicTraffic`]; dropping it files the connection's datagrams
/// under the ended connections.
pub struct TrackedConnection {
    traffic: Arc<QuicTraffic>,
    connection: quinn::Connection,
}

impl Drop for TrackedConnection {
    fn drop(&mut self) {
        let id = self.connection.stable_id();
        if let Ok(mut live) = self.traffic.live.lock() {
            // Moved under the lock, so a scrape counts this connection exactly once.
            self.traffic.ended_connections_rx.fetch_add(self.connection.stats().udp_rx.datagrams, Ordering::Relaxed);
            live.remove(&id);
        }
    }
}

/// The endpoint's UDP socket, counting what it reads (one atomic add per receive batch).
pub struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    traffic: Arc<QuicTraffic>,
}

impl CountingSocket {
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, traffic: Arc<QuicTraffic>) -> Self {
        Self { inner, traffic }
    }
}

impl fmt::Debug for CountingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingSocket").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// Datagrams in received batches: a GRO batch of `len` bytes holds `len / stride` segments
/// (the last one may be short), as quinn splits it.
fn datagrams_in(meta: &[RecvMeta]) -> u64 {
    meta.iter().map(|m| m.len.div_ceil(m.stride.max(1)) as u64).sum()
}

impl AsyncUdpSocket for CountingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(batches)) = &polled {
            self.traffic.received(datagrams_in(&meta[..*batches]));
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// The two families on `/metrics`, computed from [`QuicTraffic`] at scrape time.
pub struct TrafficCollector {
    traffic: Arc<QuicTraffic>,
    received: IntCounter,
    discarded: IntCounter,
    descs: Vec<Desc>,
}

impl TrafficCollector {
    pub fn new(traffic: Arc<QuicTraffic>) -> prometheus::Result<Self> {
        let received = IntCounter::with_opts(Opts::new(
            "palaver_quic_datagrams_received_total",
            "Datagrams read from the QUIC socket.",
        ))?;
        let discarded = IntCounter::with_opts(Opts::new(
            "palaver_quic_datagrams_discarded_total",
            "Datagrams on the QUIC socket that reached no established connection \
             (junk, unknown connections or versions, Initials that do not decrypt).",
        ))?;
        let descs = received.desc().into_iter().chain(discarded.desc()).cloned().collect();
        Ok(Self { traffic, received, discarded, descs })
    }
}

impl Collector for TrafficCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = self.traffic.counts();
        // Forward only (see the module doc).
        for (counter, value) in [(&self.received, now.received), (&self.discarded, now.discarded)] {
            counter.inc_by(value.saturating_sub(counter.get()));
        }
        self.received.collect().into_iter().chain(self.discarded.collect()).collect()
    }
}

#[cfg(test)]
mod tests;
