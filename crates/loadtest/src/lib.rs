//! palaver-load: the load generator and benchmark driver.
//!
//! Sets up identities and rooms on a palaver server (from a connection string or a token
//! file), runs a scenario (rooms × participants, talkers and listeners, simulcast video
//! publishers, ramp-up, duration) with real Opus audio over the native QUIC transport, and
//! reports join times, time to first audio, end-to-end latency through the mixer (marker tone
//! onsets), loss, jitter, an E-model MOS estimate and the server's CPU, memory and packet
//! rates from its `/metrics`. See docs/load.md.

pub mod audio;
pub mod cli;
pub mod emodel;
pub mod participant;
mod participant_webrtc;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server_metrics;
pub mod setup;
pub mod signal;
pub mod stats;
pub mod video;

pub use cli::main_with_args;
pub use report::{Report, Thresholds};
pub use run::{RunConfig, Transport, run};
