//! The I/O shell around the [`Engine`](crate::engine::Engine) (quinn's and quinn-udp's role),
//! and the only part of the crate with threads, sockets, `libc`, lock-free queues and wakers:
//! N worker threads (default: one per core), each owning one engine and one UDP socket (its own
//! port). A worker drains control commands, batch-receives datagrams (`recvmmsg`), feeds them
//! and the direct transports' packets to its engine and batch-sends what the engine wrote
//! (`sendmmsg`, GSO). Direct transports (QUIC) exchange plain RTP/RTCP with a worker through a
//! [`DirectLink`] instead of its socket.

mod direct_link;
mod pool;
mod send;
mod socket;

pub use direct_link::{DEFAULT_EGRESS_CAPACITY, DEFAULT_INGRESS_CAPACITY, DirectLink};
pub use pool::{WorkerConfig, WorkerHandle, WorkerPool};
pub use send::{SEND_CAPACITY, SendBatch};
pub use socket::RecvBatch;
