//! Queue-attached transports: participants whose media reaches a worker through lock-free
//! queues instead of its UDP socket (e.g. a QUIC connection, which already encrypts, so the
//! packets are plain RTP/RTCP without SRTP). The connection task pushes received packets into
//! the worker's ingress queue ([`WorkerHandle::push_ingress`](super::WorkerHandle::push_ingress));
//! the worker pushes what it sends to that participant into the link's egress queue and wakes
//! the task through [`DirectLink::egress_waker`].

use std::sync::Arc;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use crate::router::TransportId;

/// Default egress capacity of a link: ~1 s of audio plus a video burst.
pub const DEFAULT_EGRESS_CAPACITY: usize = 1024;

/// Link between a worker and one queue-attached transport.
pub struct DirectLink {
    /// Packets the worker sends to this participant (plain RTP/RTCP). Bounded; when full the
    /// worker counts a [`DropReason::EgressQueueFull`](crate::engine::DropReason::EgressQueueFull) drop
    /// instead of blocking.
    pub egress: ArrayQueue<Bytes>,
    /// Woken by the worker after pushing to `egress`; the consumer registers its task's waker
    /// here before checking `egress` again (the usual `AtomicWaker` protocol).
    pub egress_waker: AtomicWaker,
}

impl DirectLink {
    /// A link whose egress queue holds at most `capacity` packets (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self { egress: ArrayQueue::new(capacity.max(1)), egress_waker: AtomicWaker::new() })
    }

    /// Worker side: queues one outgoing packet and wakes the consumer; gives it back if full.
    pub(crate) fn push_egress(&self, packet: Bytes) -> Result<(), Bytes> {
        let result = self.egress.push(packet);
        self.egress_waker.wake();
        result
    }

    /// Consumer side: the next packet the worker sent, if any.
    pub fn pop_egress(&self) -> Option<Bytes> {
        self.egress.pop()
    }
}

impl std::fmt::Debug for DirectLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectLink")
            .field("egress_len", &self.egress.len())
            .field("egress_capacity", &self.egress.capacity())
            .finish_non_exhaustive()
    }
}

/// Packets queue-attached transports sent to one worker, drained by its loop.
pub(crate) type IngressQueue = ArrayQueue<(TransportId, Bytes)>;

/// Default ingress capacity per worker (shared by all its queue-attached transports).
pub const DEFAULT_INGRESS_CAPACITY: usize = 8192;
