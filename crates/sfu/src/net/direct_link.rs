//! Direct transports: participants whose media reaches a worker through lock-free queues
//! instead of its UDP socket (e.g. a QUIC connection, which already encrypts, so the packets
//! are plain RTP/RTCP without SRTP). The connection task pushes received packets into the
//! worker's ingress queue ([`WorkerHandle::push_ingress`](super::WorkerHandle::push_ingress));
//! the worker pushes what it sends to that participant into the link's egress queue and wakes
//! the task through [`DirectLink::egress_waker`].
//!
//! Egress reuses its buffers: [`DirectEgress`] cuts each packet from one of a ring of
//! preallocated chunks and hands it out as a `Bytes` view; a chunk is written again once every
//! packet cut from it was dropped (sent by the connection), so steady state allocates nothing.
//! The chunks are made on first use: a worker whose participants all use UDP (WebRTC, the QUIC
//! SRTP carrier) holds none (it held 8 × 64 KB each).

use std::sync::Arc;

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use crossbeam_queue::ArrayQueue;

use crate::router::TransportId;

/// Default egress capacity of a link: ~1 s of audio plus a video burst.
pub const DEFAULT_EGRESS_CAPACITY: usize = 1024;

/// Link between a worker and one direct transport.
pub struct DirectLink {
    /// Packets the worker sends to this participant (plain RTP/RTCP). Bounded; when full the
    /// worker counts a [`DropReason::EgressQueueFull`](crate::engine::DropReason::EgressQueueFull)
    /// drop instead of blocking.
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

/// Bytes per egress chunk (about 40 full-size packets, hundreds of audio packets).
const CHUNK: usize = 64 * 1024;
/// Chunks in the ring: a chunk is reused after the other seven filled up, long after the
/// connection sent what was cut from it.
const CHUNKS: usize = 8;

/// The worker side of every direct link of one worker: copies each outgoing packet into a
/// reused chunk and queues a `Bytes` view of it on the link (see the module docs). Only a chunk
/// that still has packets in flight when its turn comes again is replaced by a new allocation.
pub struct DirectEgress {
    chunks: Vec<BytesMut>,
    current: usize,
}

impl Default for DirectEgress {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DirectEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectEgress").field("current", &self.current).finish_non_exhaustive()
    }
}

impl DirectEgress {
    /// An egress with no chunk allocated yet (each is made when the ring first reaches it).
    pub fn new() -> Self {
        Self { chunks: (0..CHUNKS).map(|_| BytesMut::new()).collect(), current: 0 }
    }

    /// Bytes of chunk storage held (0 until the first packet).
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(BytesMut::capacity).sum()
    }

    /// Queues a copy of `packet` on `link` and wakes its consumer; false (nothing copied) when
    /// the link's queue is full. Only the worker pushes, so a checked-not-full push succeeds.
    pub fn send(&mut self, link: &DirectLink, packet: &[u8]) -> bool {
        if link.egress.is_full() {
            link.egress_waker.wake();
            return false;
        }
        let chunk = self.chunk_for(packet.len());
        chunk.extend_from_slice(packet);
        let pushed = link.egress.push(chunk.split().freeze()).is_ok();
        link.egress_waker.wake();
        pushed
    }

    /// The chunk with room for `len` more bytes: the current one, or the next in the ring,
    /// reclaimed in place when every packet cut from it is gone.
    fn chunk_for(&mut self, len: usize) -> &mut BytesMut {
        if self.chunks[self.current].capacity() < len {
            self.current = (self.current + 1) % CHUNKS;
            // `reserve` on an emptied chunk whose views were all dropped moves back to the
            // start of its own allocation; otherwise it allocates a fresh one.
            self.chunks[self.current].reserve(CHUNK.max(len));
        }
        &mut self.chunks[self.current]
    }
}

/// Packets direct transports sent to one worker, drained by its loop.
pub(crate) type IngressQueue = ArrayQueue<(TransportId, Bytes)>;

/// Default ingress capacity per worker (shared by all its direct transports).
pub const DEFAULT_INGRESS_CAPACITY: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_made_on_first_use_and_then_reused() {
        let mut egress = DirectEgress::new();
        assert_eq!(egress.capacity(), 0, "a worker without direct links holds no egress memory");
        let link = DirectLink::new(4096);
        let packet = [7u8; 200];
        assert!(egress.send(&link, &packet));
        assert_eq!(egress.capacity(), CHUNK - packet.len(), "one chunk once something is sent");
        // Fill the whole ring twice, dropping what the connection sent: the chunks are reused.
        for _ in 0..2 * CHUNKS * (CHUNK / packet.len()) {
            assert!(egress.send(&link, &packet));
            while link.pop_egress().is_some() {}
        }
        assert!(egress.capacity() <= CHUNKS * CHUNK, "{}", egress.capacity());
        assert_eq!(link.pop_egress(), None);
    }
}
