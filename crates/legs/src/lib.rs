//! `palaver-legs` owns Call Automation's server-side legs behind the control plane's
//! [`ServerLeg`](palaver_signaling::gateway::ServerLeg) port: the per-leg runtime
//! ([`leg`]), and the sans-IO parts it drives — the [`player`] (play queue, loop,
//! interrupt, cancel), the [`addressed`] streams (audio to some participants only: `playTo`,
//! prompts, music on hold), the DTMF [`recognizer`] and [`dtmf_sender`] on virtual time, the
//! [`recorder`] (durable WAV and Ogg Opus files) and the [`unmixed`] recorder (one WAV
//! channel per participant from the media plane's per-source tap; [`recording`] holds either), play [`sources`] (http(s) fetch with
//! limits, WAV/Ogg Opus decode, espeak-ng speech, the `playSourceCacheId` cache), voice-bot
//! [`streaming`] over WebSocket, and [`wav`] I/O. The media plane's side of a leg (a Direct
//! transport) is `palaver_sfu::control::leg`; the server wires the two together.

pub mod addressed;
pub mod dtmf_sender;
pub mod leg;
pub mod player;
pub mod recognizer;
pub mod recorder;
pub mod recording;
pub mod sources;
pub mod streaming;
pub mod tap_hub;
pub mod transport;
pub mod unmixed;
pub mod wav;

pub use leg::{LegConfig, LegHandle, LegTransport};
pub use sources::{SourceConfig, Sources};
