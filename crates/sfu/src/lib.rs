//! Media plane: transports (WebRTC, QUIC), router, video forwarder, Opus mixer.
//!
//! The packet path is sans-IO and allocation-free in steady state: [`rtp`] views and rewrites
//! packets in place, [`srtp`] protects/unprotects in place, [`router`] decides who gets what,
//! and [`worker`] is the thin per-thread shell that owns a UDP socket and batches syscalls.

pub mod control;
pub mod mixer;
pub mod router;
pub mod rtp;
pub mod srtp;
pub mod webrtc;
pub mod worker;
