//! The sans-IO media engine of one worker (quinn-proto's role): its routers (one [`Router`]
//! and one mixer each), its transports (UDP with SRTP, WebRTC with ICE-lite and DTLS, or
//! direct), the demultiplexer and the control commands. It is driven with datagrams, direct
//! packets, commands and the time, writes what it sends through a [`Transmit`] sink, and never
//! touches a socket, a thread or a clock. The I/O shell around it is [`crate::net`].
//!
//! [`Router`]: crate::router::Router

mod command;
mod counters;
pub mod early_media;
#[allow(clippy::module_inception)]
mod engine;
mod event;
mod mix_reports;
mod router_mix;
mod source_tap;
pub mod tone_relay;
pub mod trunk_stats;

pub use command::{
    Command, CommandError, DtlsRtpTransportSpec, MixAudio, MixOutputSpec, RouterId, TransportSpec, WebRtcTransportSpec,
};
pub use counters::{
    CountersSnapshot, DropReason, EWMA_WEIGHT, LATENCY_BOUNDS_NS, LatencyHistogram, LatencySnapshot,
    MIXER_TICK_BOUNDS_NS, ReceptionCounters, ReceptionSnapshot, WorkerCounters,
};
pub use engine::{Engine, MAX_DATAGRAM, RtpLatch, Transmit};
pub use event::EngineEvent;
pub use router_mix::{MIX_PERIOD, MIX_RTP_HEADER};
pub use source_tap::{DEFAULT_TAP_CAPACITY, SourceTap, TapFrame};

#[cfg(test)]
pub(crate) mod tests;
